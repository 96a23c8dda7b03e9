"""Write every output of a run into its folder: the report model, report.html, CSVs, summary.json."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dataaudit.render.csv import write_exports
from dataaudit.render.html import write_html
from dataaudit.render.summary import write_summary

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def write_outputs(report: AuditReport, out_dir: str | Path) -> list[Path]:
    """Each file is written aside and renamed in place; the report model goes last, so a folder
    whose audit/report.json is new holds a complete run."""
    out = Path(out_dir)
    written = write_exports(report, out)
    written.append(write_summary(report, out / "summary.json"))
    written.append(write_html(report, out / "report.html"))
    written.append(report.save(out))
    return written
