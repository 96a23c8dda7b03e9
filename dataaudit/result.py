"""The one shape every analysis returns, and the spec by which the registry knows an analysis."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from dataaudit.problems import AuditWarning

if TYPE_CHECKING:
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.dataset import AuditDataset

Scalar = float | int | str | bool | None


@dataclass(frozen=True)
class AnalysisResult:
    """What one analysis found.

    tables  : tidy tables by name. By convention "items" holds one row per item, keyed by an
              "id" column holding the user's ids; other tables (per class, pairs, groups) are
              keyed by their own columns. Scores follow one direction: higher = more urgent.
    summary : flat scalars; they become summary.json metrics and `--fail-on` keys.
    params  : the parameters this analysis used (JSON-serialisable).
    notes   : plain sentences the report shows, e.g. "probabilities of 5 models were averaged".
    warnings: coded doubts about the result (AuditWarning), listed with the run's warnings.
    """

    name: str
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    summary: Mapping[str, Scalar] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    warnings: tuple[AuditWarning, ...] = ()

    def table(self, name: str) -> pd.DataFrame:
        return self.tables[name]


@dataclass(frozen=True)
class Analysis:
    """One entry of the registry.

    requires : dataset inputs the analysis needs (see AuditDataset.missing_inputs).
    after    : analyses whose results it reads from ctx.results; they run first.
    skip_reason : for needs `requires` cannot name (e.g. a second split to compare with): the
               reason to skip, or None to run.
    """

    name: str
    title: str
    run: Callable[[AuditDataset, AuditContext, AuditConfig], AnalysisResult]
    requires: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    skip_reason: Callable[[AuditDataset, AuditConfig], str | None] | None = None
