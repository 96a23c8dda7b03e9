"""Write every output of a run into its folder: the report model, report.html, CSVs, summary.json.

Everything is first written into a hidden staging folder beside the outputs, then renamed into
place, so a run interrupted while computing or writing leaves the previous run's files whole.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from dataaudit.files import swap_folder
from dataaudit.render.csv import EXPORTS, write_exports
from dataaudit.render.html import write_html
from dataaudit.render.summary import write_summary
from dataaudit.report import REPORT_DIR

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

FIXED_OUTPUTS = ("report.html", "summary.json", "comparison.json")


def output_names() -> set[str]:
    """Every file name dataaudit may write at the top of an output folder."""
    return set(EXPORTS) | set(FIXED_OUTPUTS)


def write_outputs(report: AuditReport, out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dataaudit-staging-", dir=out))
    try:
        staged = write_exports(report, staging)
        staged.append(write_summary(report, staging / "summary.json"))
        staged.append(write_html(report, staging / "report.html"))
        if report.comparison is not None:
            from dataaudit.render.comparison_json import write_comparison_json

            staged.append(write_comparison_json(report, staging / "comparison.json"))
        report.save(staging)
        for path in staged:
            os.replace(path, out / path.name)
        # Outputs of an earlier run in this folder that this run did not produce (e.g.
        # duplicates.csv from a run that had embeddings) would mix two runs: remove them.
        for name in output_names() - {p.name for p in staged}:
            (out / name).unlink(missing_ok=True)
        swap_folder(staging / REPORT_DIR, out / REPORT_DIR)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / p.name for p in staged] + [out / REPORT_DIR]
