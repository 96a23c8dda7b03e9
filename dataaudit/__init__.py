"""dataaudit: audit the data of a training run.

>>> import dataaudit
>>> report = dataaudit.audit("examples.csv", "probs.npy", embeddings="embeddings.npy")  # doctest: +SKIP
>>> report.to_html("report.html")  # doctest: +SKIP
"""

from __future__ import annotations

from dataaudit.config import AuditConfig, ColumnRoles
from dataaudit.dataset import AuditDataset
from dataaudit.pipeline import audit, run_analyses
from dataaudit.problems import InputError, Problem
from dataaudit.render.csv import read_export
from dataaudit.report import AuditReport

__version__ = "0.1.0"

__all__ = [
    "AuditConfig",
    "AuditDataset",
    "AuditReport",
    "ColumnRoles",
    "InputError",
    "Problem",
    "audit",
    "read_export",
    "run_analyses",
    "__version__",
]
