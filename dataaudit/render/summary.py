"""summary.json: the machine-readable summary a CI job reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataaudit.files import atomic_write_text
from dataaudit.report import jsonable

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

SUMMARY_SCHEMA_VERSION = 1


def build_summary(report: AuditReport) -> dict[str, Any]:
    dataset = report.dataset
    return jsonable(
        {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "dataaudit_version": report.run.get("dataaudit_version"),
            "generated_at": report.run.get("started_at"),
            "counts": {
                "n_items": dataset["n_items"],
                "n_labeled": dataset["n_labeled"],
                "n_unlabeled": dataset["n_unlabeled"],
                "n_classes": len(dataset["classes"]),
                "splits": dataset["splits"],
            },
            "metrics": report.metrics(),
            "warnings": [w.to_dict() for w in report.all_warnings()],
            "checks": [c.to_dict() for c in report.checks],
            "analyses": {
                name: {"summary": dict(r.summary), "params": dict(r.params), "notes": list(r.notes)}
                for name, r in report.results.items()
            },
            "skipped": report.skipped,
            "failed": {name: why.splitlines()[0] for name, why in report.failed.items()},
            "inputs": report.run.get("inputs", []),
        }
    )


def write_summary(report: AuditReport, path: str | Path) -> Path:
    atomic_write_text(path, json.dumps(build_summary(report), indent=2, allow_nan=False))
    return Path(path)
