"""The registry: every analysis a run may perform, in the order they run.

An analysis runs when the dataset has the inputs it `requires`; otherwise it is recorded as
skipped with the reason. `after` names analyses whose results it reads; they come earlier here.
"""

from __future__ import annotations

from dataaudit.analyses import (
    duplicates,
    embedding_map,
    label_errors,
    label_next,
    lookalikes,
    outliers,
    per_class,
    slices,
    swapped_pairs,
)
from dataaudit.result import Analysis

ANALYSES: tuple[Analysis, ...] = (
    label_errors.ANALYSIS,
    swapped_pairs.ANALYSIS,
    per_class.ANALYSIS,
    slices.ANALYSIS,
    duplicates.ANALYSIS,
    outliers.ANALYSIS,
    lookalikes.ANALYSIS,
    label_next.ANALYSIS,  # last: reads label_errors, outliers, lookalikes when present
    embedding_map.ANALYSIS,  # reads label_errors / outliers flags when present
)


def by_name() -> dict[str, Analysis]:
    return {analysis.name: analysis for analysis in ANALYSES}
