"""AuditReport: the report model. Every renderer and `compare` read it; it saves and loads back equal.

On disk (inside the output folder):
    audit/report.json                 schema version, dataset summary, run metadata, config,
                                      per-analysis summary / params / notes, skipped and failed
    audit/items.parquet               the per-item facts (id, split, labels, prediction, content)
    audit/<analysis>.<table>.parquet  every table of every analysis
    audit/comparison.<table>.parquet  the comparison with a baseline run, when the report has one
    audit/items.all.parquet/          (Dask engine) every row's facts, one Parquet part per partition
    audit/<analysis>.all_<table>.parquet/  (Dask engine) an analysis's full per-item table, when
                                      the one above holds only its capped, ranked rows

Schema versions: 1 (first release); 2 adds the optional "comparison" (reports of version 1
load, migrated, with no comparison); 3 adds coded warnings, run-level and per analysis (older
reports load with none) and the checks a run was gated by (dataaudit/checks.py); 4 adds the
tables the ranked CSVs are, label_errors' "relabel" and slices' "ranked" (older reports load
with them built from the tables they hold).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dataaudit.checks import CheckResult
from dataaudit.config import AuditConfig
from dataaudit.files import (
    atomic_write,
    atomic_write_text,
    interrupted_write_target,
    readable_mode,
    swap_folder,
)
from dataaudit.problems import AuditWarning
from dataaudit.result import AnalysisResult

if TYPE_CHECKING:
    from dataaudit.compare import RunDiff

SCHEMA_VERSION = 4
# The partitioned per-item facts the Dask engine's workers write (items.parquet then holds only
# the rows the capped tables mention).
ITEM_PARTS = "items.all.parquet"
REPORT_DIR = "audit"


class ReportLoadError(Exception):
    """A saved report that cannot be read: missing, damaged, or from an unknown schema version."""


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


@dataclass(eq=False)
class AuditReport:
    """Everything one audit found, and what it was computed on."""

    dataset: dict[str, Any]
    items: pd.DataFrame
    results: dict[str, AnalysisResult]
    config: AuditConfig
    run: dict[str, Any]
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)  # analysis name -> section title
    schema_version: int = SCHEMA_VERSION
    comparison: RunDiff | None = None  # what changed since a baseline run (dataaudit.compare)
    # Run-level doubts (reading the inputs, the label sanity check); analyses carry their own.
    warnings: list[AuditWarning] = field(default_factory=list)
    # The run's gates (config-file [checks] and --fail-on), evaluated on its metrics.
    checks: list[CheckResult] = field(default_factory=list)
    # Partitioned per-item datasets beside a loaded report ("items", "<analysis>.<table>" -> path).
    parts: dict[str, Path] = field(default_factory=dict)

    # -- convenience ------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Every analysis's summary scalars in one flat dict (the `--fail-on` keys)."""
        flat: dict[str, Any] = {}
        for result in self.results.values():
            flat.update(jsonable(dict(result.summary)))
        if self.comparison is not None:  # e.g. `regression`, so --fail-on works with --baseline
            flat.update(jsonable(dict(self.comparison.summary)))
        return flat

    def all_warnings(self) -> list[AuditWarning]:
        """The run's warnings, then each analysis's, in registry order."""
        found = list(self.warnings)
        for result in self.results.values():
            found += list(result.warnings)
        return found

    def relabel_list(self) -> pd.DataFrame | None:
        """The items to relabel, ranked (relabel.csv): after earlier verdicts when the run read a
        ledger, else as label_errors ranks them; None when label_errors did not run."""
        for name in ("reviews", "label_errors"):
            result = self.results.get(name)
            if result is not None and "relabel" in result.tables:
                return result.table("relabel")
        return None

    def __getitem__(self, name: str) -> AnalysisResult:
        return self.results[name]

    def full_items(self) -> pd.DataFrame:
        """Every row's facts: `items`, or the partitioned items the Dask engine wrote."""
        if "items" in self.parts:
            return (
                pd.read_parquet(self.parts["items"])
                .sort_values("pos", kind="stable")
                .drop(columns="pos")
                .reset_index(drop=True)
            )
        return self.items

    def full_table(self, name: str, table: str) -> pd.DataFrame | None:
        """An analysis's table with every row: its partitioned form when one was written (the
        saved table is then capped), else the saved table; None when it has neither."""
        key = f"{name}.{table}"
        if key in self.parts:
            return pd.read_parquet(self.parts[key])
        result = self.results.get(name)
        return None if result is None else result.tables.get(table)

    # -- renderers (thin wrappers so notebooks need one import) -------------------------------------
    def to_html(self, path: str | Path) -> Path:
        from dataaudit.render.html import write_html

        return write_html(self, path)

    def _repr_html_(self) -> str:
        from dataaudit.render.html import render_html

        return render_html(self)

    # -- persistence -----------------------------------------------------------------------------
    def save(self, out_dir: str | Path) -> Path:
        """Save into out_dir/audit/. Written aside and swapped in, so an interrupted save leaves
        the previous report whole."""
        final = Path(out_dir) / REPORT_DIR
        final.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f".{REPORT_DIR}.", dir=final.parent))
        os.chmod(folder, readable_mode(is_dir=True))
        _write_parquet(self.items, folder / "items.parquet")
        analyses = {}
        for name, result in self.results.items():
            for table_name, frame in result.tables.items():
                _write_parquet(frame, folder / f"{name}.{table_name}.parquet")
            analyses[name] = {
                "tables": list(result.tables),
                "summary": jsonable(dict(result.summary)),
                "params": jsonable(dict(result.params)),
                "notes": list(result.notes),
                "warnings": [w.to_dict() for w in result.warnings],
            }
        document = {
            "schema_version": self.schema_version,
            "dataset": jsonable(self.dataset),
            "run": jsonable(self.run),
            "config": jsonable(self.config.to_dict()),
            "analyses": analyses,
            "skipped": self.skipped,
            "failed": self.failed,
            "titles": self.titles,
            "warnings": [w.to_dict() for w in self.warnings],
            "checks": [c.to_dict() for c in self.checks],
        }
        if self.comparison is not None:
            for table_name, frame in self.comparison.tables.items():
                _write_parquet(frame, folder / f"comparison.{table_name}.parquet")
            document["comparison"] = self.comparison.to_document()
        # report.json is written last: a folder with a report.json holds a complete report.
        atomic_write_text(folder / "report.json", json.dumps(document, indent=2))
        swap_folder(folder, final, carry=foreign_entries(final))
        return final

    @classmethod
    def load(cls, out_dir: str | Path) -> AuditReport:
        folder = Path(out_dir)
        if (folder / REPORT_DIR / "report.json").is_file():
            folder = folder / REPORT_DIR
        path = folder / "report.json"
        if not path.is_file():
            raise ReportLoadError(
                f"{out_dir}: no saved report (expected {REPORT_DIR}/report.json); "
                "give the --out folder of an earlier `dataaudit run`."
            )
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ReportLoadError(f"{path}: cannot be read ({exc}).") from exc
        saved_version = document.get("schema_version")
        document = migrate(document, path)
        try:
            results = {
                name: AnalysisResult(
                    name=name,
                    tables={
                        t: pd.read_parquet(folder / f"{name}.{t}.parquet") for t in saved["tables"]
                    },
                    summary=saved["summary"],
                    params=saved["params"],
                    notes=tuple(saved["notes"]),
                    warnings=tuple(AuditWarning.from_dict(w) for w in saved["warnings"]),
                )
                for name, saved in document["analyses"].items()
            }
            if isinstance(saved_version, int) and saved_version < 4:
                results = _add_v4_tables(results)
            items = pd.read_parquet(folder / "items.parquet")
            comparison = _load_comparison(document.get("comparison"), folder)
        except (OSError, KeyError, ValueError) as exc:
            raise ReportLoadError(f"{folder}: the saved report is incomplete ({exc}).") from exc
        return cls(
            dataset=document["dataset"],
            items=items,
            results=results,
            config=AuditConfig.from_dict(document["config"]),
            run=document["run"],
            skipped=document["skipped"],
            failed=document["failed"],
            titles=document.get("titles", {}),
            schema_version=document["schema_version"],
            comparison=comparison,
            warnings=[AuditWarning.from_dict(w) for w in document["warnings"]],
            checks=[CheckResult.from_dict(c) for c in document.get("checks", [])],
            parts=partitioned_tables(folder),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AuditReport):
            return NotImplemented
        if (
            self.schema_version != other.schema_version
            or jsonable(self.dataset) != jsonable(other.dataset)
            or jsonable(self.run) != jsonable(other.run)
            or self.config != other.config
            or self.skipped != other.skipped
            or self.failed != other.failed
            or self.all_warnings() != other.all_warnings()
            or self.checks != other.checks
            or set(self.results) != set(other.results)
            or not _frames_equal(self.items, other.items)
        ):
            return False
        for name, mine in self.results.items():
            theirs = other.results[name]
            if (
                jsonable(dict(mine.summary)) != jsonable(dict(theirs.summary))
                or jsonable(dict(mine.params)) != jsonable(dict(theirs.params))
                or tuple(mine.notes) != tuple(theirs.notes)
                or set(mine.tables) != set(theirs.tables)
                or not all(_frames_equal(mine.tables[t], theirs.tables[t]) for t in mine.tables)
            ):
                return False
        if (self.comparison is None) != (other.comparison is None):
            return False
        return self.comparison is None or self.comparison == other.comparison


def partitioned_tables(folder: Path) -> dict[str, Path]:
    """The partitioned per-item datasets in a saved-report folder, by what they hold."""
    found = {}
    for entry in sorted(folder.glob("*.parquet")):
        if not entry.is_dir():
            continue
        if entry.name == ITEM_PARTS:
            found["items"] = entry
        elif ".all_" in entry.name:
            name, table = entry.name.removesuffix(".parquet").split(".all_", 1)
            found[f"{name}.{table}"] = entry
    return found


def foreign_entries(folder: Path) -> list[str]:
    """Entries of a saved-report folder that no dataaudit save wrote (a reviewer's notes, say).

    Ours: report.json and the tables it lists, or (if it is damaged) any `<analysis>.<table>.parquet`
    of a known analysis, and leftovers of an interrupted atomic write (`.<name>.*.tmp`).
    """
    if not folder.is_dir():
        return []
    from dataaudit.analyses import _ORDER as analysis_names

    ours = {"report.json", "items.parquet"}
    try:
        document = json.loads((folder / "report.json").read_text(encoding="utf-8"))
        for name, saved in document.get("analyses", {}).items():
            ours.update(f"{name}.{t}.parquet" for t in saved.get("tables", ()))
        ours.update(
            f"comparison.{t}.parquet" for t in (document.get("comparison") or {}).get("tables", ())
        )
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    known = {*analysis_names, "comparison", "items"}

    def is_ours(name: str) -> bool:
        if name in ours:
            return True
        if name.endswith(".parquet") and name.split(".")[0] in known:
            return True
        target = interrupted_write_target(name)
        return target is not None and is_ours(target)

    return sorted(entry.name for entry in folder.iterdir() if not is_ours(entry.name))


def migrate(document: dict[str, Any], path: Path) -> dict[str, Any]:
    """Bring a report saved by an older version up to SCHEMA_VERSION, or say why not."""
    version = document.get("schema_version")
    while isinstance(version, int) and version in _MIGRATIONS:
        document = _MIGRATIONS[version](document)
        version = document["schema_version"]
    if version == SCHEMA_VERSION:
        return document
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise ReportLoadError(
            f"{path}: saved with report schema version {version}, newer than this dataaudit "
            f"understands ({SCHEMA_VERSION}); upgrade dataaudit to read it."
        )
    raise ReportLoadError(
        f"{path}: report schema version {version!r} is not supported (this dataaudit reads "
        f"version {SCHEMA_VERSION}); re-run the audit with this version."
    )


def _v1_to_v2(document: dict[str, Any]) -> dict[str, Any]:
    # Version 2 added the optional comparison with a baseline run; version 1 reports have none.
    return {**document, "comparison": None, "schema_version": 2}


def _v2_to_v3(document: dict[str, Any]) -> dict[str, Any]:
    # Version 3 added coded warnings; reports saved before carry none.
    analyses = {name: {"warnings": [], **saved} for name, saved in document["analyses"].items()}
    return {**document, "analyses": analyses, "warnings": [], "schema_version": 3}


def _v3_to_v4(document: dict[str, Any]) -> dict[str, Any]:
    # Version 4 added tables, not document fields: load() builds them (_add_v4_tables).
    return {**document, "schema_version": 4}


def _add_v4_tables(results: dict[str, AnalysisResult]) -> dict[str, AnalysisResult]:
    """The tables version 4 added, built from the tables an older report holds."""
    from dataaudit.analyses.label_errors import relabel_candidates
    from dataaudit.analyses.slices import ranked_table

    added: dict[str, dict[str, pd.DataFrame]] = {}
    label_errors = results.get("label_errors")
    if label_errors is not None and "items" in label_errors.tables:
        added["label_errors"] = {"relabel": relabel_candidates(label_errors.table("items"))}
    slices = results.get("slices")
    if slices is not None and {"discovered", "given", "examples"} <= set(slices.tables):
        t = slices.tables
        added["slices"] = {"ranked": ranked_table(t["discovered"], t["given"], t["examples"])}
    return {
        name: replace(result, tables={**result.tables, **added.get(name, {})})
        for name, result in results.items()
    }


# version -> step to the next version; migrate() applies them in turn.
_MIGRATIONS = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def _load_comparison(saved: dict[str, Any] | None, folder: Path) -> RunDiff | None:
    if not saved:
        return None
    from dataaudit.compare import RunDiff

    tables = {t: pd.read_parquet(folder / f"comparison.{t}.parquet") for t in saved["tables"]}
    return RunDiff.from_document(saved, tables)


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    atomic_write(path, lambda handle: frame.to_parquet(handle, index=False), mode="wb")


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(
            a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False, check_exact=False
        )
    except AssertionError:
        return False
    return True
