"""CSV exports: ranked tables an annotation team works through top-down, safe in a spreadsheet.

The escape, exactly: a text cell starting with = + - @, a tab or a carriage return (which a
spreadsheet would run as a formula) is written with one ' in front; so that the escape can be
undone without doubt, a text cell that itself starts with ' gets one more ' too. To get the
exact value back, drop one leading ' from every text cell that starts with ': `read_export`
does it (every cell as text, so ids like 007 or NA stay as written). Numbers are never escaped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dataaudit.files import atomic_write

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

# Spreadsheets run a cell starting with these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_ESCAPE = "'"
_ESCAPED_START = (*_FORMULA_START, _ESCAPE)  # the escape itself is escaped: exact round trip


# Columns a reviewer fills in (the CSV route of `dataaudit verdicts import`): verdict is error,
# ok, unsure or a class name; corrected_label optionally names the right class.
REVIEW_COLUMNS = ("verdict", "corrected_label")


def _for_review(frame: pd.DataFrame) -> pd.DataFrame:
    missing = {c: "" for c in REVIEW_COLUMNS if c not in frame.columns}
    return frame.assign(**missing) if missing else frame


def _relabel(report: AuditReport) -> pd.DataFrame | None:
    ranked = report.relabel_list()
    return None if ranked is None else _for_review(ranked)


def _label_next(report: AuditReport) -> pd.DataFrame | None:
    result = report.results.get("label_next")
    return None if result is None else _for_review(result.table("queue"))


def _auto_label(report: AuditReport) -> pd.DataFrame | None:
    result = report.results.get("label_next")
    return None if result is None else result.table("auto_label")


def _slices(report: AuditReport) -> pd.DataFrame | None:
    result = report.results.get("slices")
    return None if result is None else result.table("ranked")


def _comparison_items(report: AuditReport) -> pd.DataFrame | None:
    from dataaudit.render.comparison_json import comparison_items_export

    return comparison_items_export(report)


def _comparison_groups(report: AuditReport) -> pd.DataFrame | None:
    from dataaudit.render.comparison_json import comparison_groups_export

    return comparison_groups_export(report)


def _duplicates(report: AuditReport) -> pd.DataFrame | None:
    from dataaudit.render.sections.duplicates import export

    return export(report)


# filename -> builder; a builder returns None when its analysis did not run.
EXPORTS: dict[str, Callable[[AuditReport], pd.DataFrame | None]] = {
    "relabel.csv": _relabel,
    "label_next.csv": _label_next,
    "auto_label.csv": _auto_label,
    "slices.csv": _slices,
    "duplicates.csv": _duplicates,
    "comparison_items.csv": _comparison_items,
    "comparison_groups.csv": _comparison_groups,
}


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula (and cells starting with the
    prefix itself) with a single quote; `unescape` undoes it exactly.

    Numbers stay numbers (a negative score is data, not a formula); only text cells change.
    """
    safe = frame.copy()
    for column in safe.columns:
        values = safe[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            continue
        text = values.astype(object)
        is_str = text.map(lambda v: isinstance(v, str)).to_numpy(dtype=bool)
        starts = np.zeros(len(text), dtype=bool)
        if is_str.any():
            starts[is_str] = (
                text[is_str].astype(str).str.startswith(_ESCAPED_START).to_numpy(dtype=bool)
            )
        if starts.any():
            text = text.copy()
            text[starts] = _ESCAPE + text[starts].astype(str)
            safe[column] = text
    return safe


def unescape(values: pd.Series) -> pd.Series:
    """The exact text of cells written by spreadsheet_safe: one leading ' dropped."""
    text = values.astype(object)
    escaped = text.map(lambda v: isinstance(v, str) and v.startswith(_ESCAPE)).to_numpy(dtype=bool)
    if escaped.any():
        text = text.copy()
        text[escaped] = text[escaped].str.slice(1)
    return text


def read_export(path: str | Path) -> pd.DataFrame:
    """Read a CSV export back with its exact values: every cell as text (ids such as 007, NA or
    1e5 stay as written), the spreadsheet escape undone. Join on "id" with your own table.

    >>> import dataaudit
    >>> relabel = dataaudit.read_export("audit-run/relabel.csv")  # doctest: +SKIP
    """
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.apply(unescape) if len(frame.columns) else frame


def write_csv(frame: pd.DataFrame, path: str | Path) -> None:
    safe = spreadsheet_safe(frame)
    atomic_write(path, lambda handle: safe.to_csv(handle, index=False))


def write_exports(report: AuditReport, out_dir: str | Path) -> list[Path]:
    """Write every export whose analysis ran; returns the paths written."""
    written = []
    for filename, build in EXPORTS.items():
        frame = build(report)
        if frame is None:
            continue
        path = Path(out_dir) / filename
        write_csv(frame, path)
        written.append(path)
    return written
