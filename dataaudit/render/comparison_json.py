"""comparison.json (what CI reads after `dataaudit compare` or `run --baseline`) and the
comparison CSVs: every per-item change, and the error rate of every group in both runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.files import atomic_write_text
from dataaudit.report import jsonable

if TYPE_CHECKING:
    from dataaudit.compare import RunDiff
    from dataaudit.report import AuditReport

ITEMS_CSV = "comparison_items.csv"
GROUPS_CSV = "comparison_groups.csv"
# Small tables go into the JSON whole; per-item tables are capped there (the CSV holds them all).
_WHOLE = ("groups", "metrics", "splits", "classes", "inputs", "failure_slices")
_PER_ITEM = ("membership", "labels", "label_errors", "queue", "duplicates")
ITEM_ROWS_IN_JSON = 1000


def build_comparison_json(diff: RunDiff) -> dict[str, Any]:
    groups = diff.tables["groups"]
    document: dict[str, Any] = {
        "schema_version": diff.schema_version,
        "baseline": dict(diff.baseline),
        "current": dict(diff.current),
        "summary": dict(diff.summary),
        "regressions": _records(groups[groups["change"] == "regression"]),
        "improvements": _records(groups[groups["change"] == "improvement"]),
        "notes": list(diff.notes),
        "params": dict(diff.params),
        "tables": {},
    }
    for name in _WHOLE:
        if name in diff.tables:
            document["tables"][name] = _records(diff.tables[name])
    for name in _PER_ITEM:
        if name in diff.tables:
            frame = diff.tables[name]
            document["tables"][name] = {
                "total_rows": len(frame),
                "rows": _records(frame.head(ITEM_ROWS_IN_JSON)),
                "all_rows_in": ITEMS_CSV if name != "duplicates" else None,
            }
    return jsonable(document)


def write_comparison_json(report: AuditReport, path: str | Path) -> Path:
    if report.comparison is None:
        raise ValueError("this report has no comparison; give a baseline run to compare with")
    text = json.dumps(build_comparison_json(report.comparison), indent=2, allow_nan=False)
    atomic_write_text(path, text)
    return Path(path)


def item_changes(diff: RunDiff) -> pd.DataFrame:
    """Every per-item change in one tidy table: id, what, change, old, new (values as text)."""
    parts = []
    t = diff.tables
    if "membership" in t:
        m = t["membership"]
        where = (
            "split " + m["split"].astype(str) + ", label " + m["given_label"].fillna("").astype(str)
        )
        old = where.where(m["change"] == "only_old", "")
        new = where.where(m["change"] == "only_new", "")
        parts.append(_part(m["id"], "membership", m["change"], old, new))
    if "labels" in t:
        m = t["labels"]
        parts.append(_part(m["id"], "label", m["change"], m["old"], m["new"]))
    if "label_errors" in t:
        m = t["label_errors"]
        parts.append(
            _part(m["id"], "label_error", m["status"], m["old_given_label"], m["new_given_label"])
        )
    if "queue" in t:
        m = t["queue"]
        parts.append(_part(m["id"], "label_next_queue", m["status"], m["old_rank"], m["new_rank"]))
    columns = ["id", "what", "change", "old", "new"]
    if not parts:
        return pd.DataFrame(columns=columns)
    return pd.concat(parts, ignore_index=True)[columns]


def _part(ids, what, change, old, new) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(ids).to_numpy(),
            "what": what,
            "change": pd.Series(change).to_numpy(),
            "old": _text(old),
            "new": _text(new),
        }
    )


def _text(values) -> NDArray:
    series = pd.Series(values)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        # ranks read back as floats when some are missing: show 3, not 3.0
        numbers = series.to_numpy(dtype=float)
        whole = np.isfinite(numbers) & (numbers == np.round(numbers))
        text = series.astype(str).to_numpy(dtype=object)
        text[whole] = numbers[whole].astype(np.int64).astype(str)
        text[~np.isfinite(numbers)] = ""
        return text
    series = series.astype(object)
    return series.where(series.notna(), "").astype(str).to_numpy(dtype=object)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return jsonable(frame.astype(object).to_dict(orient="records"))


# -- CSV export builders (registered in render/csv.py EXPORTS) ------------------------------------


def comparison_items_export(report: AuditReport) -> pd.DataFrame | None:
    return None if report.comparison is None else item_changes(report.comparison)


def comparison_groups_export(report: AuditReport) -> pd.DataFrame | None:
    return None if report.comparison is None else report.comparison.tables["groups"]
