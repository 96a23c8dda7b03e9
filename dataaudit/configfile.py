"""Run settings from a file: `--config FILE`, else `dataaudit.toml`, else `[tool.dataaudit]` in
`pyproject.toml`, looked up in the current folder. Flags on the command line override the file.

    table = "data/examples.csv"        # any `dataaudit run` option, by its long name
    probs = "runs/42/probs.npy"        # (dashes or underscores: label-next-mix = label_next_mix)
    out = "audit-42"
    budget = 200

    [columns]                          # column roles: id, label, split, text, image, ignore
    label = "target"
    ignore = ["notes", "annotator"]

    [checks]                           # see dataaudit/checks.py
    label_error_rate = { warn = 0.03, fail = 0.05 }
    leakage = { fail = 0 }

Paths are relative to the file's folder. Unknown keys and values of the wrong type are named
errors (exit 2), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dataaudit.checks import CheckError, CheckSpec, parse_checks

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG_FILE = "dataaudit.toml"
# Options whose values are paths, resolved against the config file's folder.
PATH_OPTIONS = ("table", "probs", "embeddings", "out", "baseline", "verdicts")
# [columns] keys -> `run` option names.
COLUMN_OPTIONS = {
    "id": "id_col",
    "label": "label_col",
    "split": "split_col",
    "text": "text_col",
    "image": "image_col",
    "ignore": "ignore_cols",
}
# Options a file may not set: they say where the file is, or only make sense typed.
NOT_IN_FILE = {"config", "help", "version", "command"}


class ConfigFileError(ValueError):
    """A config file that cannot be read or holds an unknown key or a bad value (exit 2)."""


@dataclass(frozen=True)
class RunSettings:
    """What a config file sets: option defaults for the parser, and checks."""

    path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)
    checks: tuple[CheckSpec, ...] = ()


def find_config_file(explicit: str | None, folder: Path) -> Path | None:
    """The file to read: the explicit one (which must exist), else the ones looked up in folder."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigFileError(f"--config {explicit}: no such file.")
        return path
    if (folder / CONFIG_FILE).is_file():
        return folder / CONFIG_FILE
    pyproject = folder / "pyproject.toml"
    if pyproject.is_file() and "dataaudit" in _read_toml(pyproject).get("tool", {}):
        return pyproject
    return None


def read_settings(path: Path | None, parser: argparse.ArgumentParser) -> RunSettings:
    """Settings from `path`, checked against the options of `parser` (the `run` subcommand)."""
    if path is None:
        return RunSettings()
    document = _read_toml(path)
    if path.name == "pyproject.toml":
        document = document.get("tool", {}).get("dataaudit", {})
        where = f"{path} [tool.dataaudit]"
    else:
        where = str(path)
    document = dict(document)
    try:
        checks = tuple(parse_checks(document.pop("checks", {}), where))
    except CheckError as exc:
        raise ConfigFileError(str(exc)) from exc
    columns = document.pop("columns", {})
    if not isinstance(columns, dict):
        raise ConfigFileError(f"{where}: [columns] must be a table of role = column name")
    for role, column in columns.items():
        if role not in COLUMN_OPTIONS:
            raise ConfigFileError(
                f"{where}: [columns] has no role {role!r}; roles: {', '.join(COLUMN_OPTIONS)}"
            )
        document[COLUMN_OPTIONS[role]] = column
    actions = {a.dest: a for a in parser._actions if a.dest not in NOT_IN_FILE}
    options = {}
    for key, value in document.items():
        dest = key.replace("-", "_")
        action = actions.get(dest)
        if action is None or dest in NOT_IN_FILE:
            raise ConfigFileError(
                f"{where}: unknown option {key!r}. Options: {', '.join(sorted(actions))}, "
                "and the tables [columns] and [checks]."
            )
        options[dest] = _option_value(action, value, f"{where}: {key}")
        if dest in PATH_OPTIONS and isinstance(options[dest], str):
            options[dest] = str((path.parent / options[dest]).resolve())
        elif dest == "classes" and isinstance(options[dest], str):
            # A class list or a file of classes: a file beside the config file is meant.
            beside = path.parent / options[dest]
            if beside.is_file():
                options[dest] = str(beside.resolve())
    return RunSettings(path, options, checks)


def _option_value(action: argparse.Action, value: Any, where: str) -> Any:
    """The value as the parser would have made it from the flag, or a named error."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}: expected true or false, got {value!r}")
        return value
    if isinstance(action, argparse._AppendAction):
        values = value if isinstance(value, list) else [value]
        return [_one_value(action, v, where) for v in values]
    if isinstance(value, list):  # e.g. ignore = ["a", "b"] for a comma-separated option
        return ",".join(str(_one_value(action, v, where)) for v in value)
    return _one_value(action, value, where)


def _one_value(action: argparse.Action, value: Any, where: str) -> Any:
    if isinstance(value, (dict, list, bool)):
        raise ConfigFileError(f"{where}: expected a single value, got {value!r}")
    text = str(value)
    try:
        converted = action.type(text) if action.type is not None else text
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise ConfigFileError(f"{where}: {value!r} is not valid ({exc})") from exc
    if action.choices is not None and converted not in action.choices:
        raise ConfigFileError(
            f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}"
        )
    return converted


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigFileError(f"{path}: cannot be read ({exc}).") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML ({exc}).") from exc
