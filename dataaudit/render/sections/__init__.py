"""Section builders of the HTML report, in page order after the overview.

Each is a function `build(report) -> list[SectionView]` that returns [] when its analysis did not run.
"""

from __future__ import annotations

from collections.abc import Callable

from dataaudit.render.sections import (
    calibration,
    comparison,
    duplicates,
    embedding_map,
    label_errors,
    label_next,
    lookalikes,
    outliers,
    per_class,
    reviews,
    shift,
    slices,
    swapped_pairs,
)
from dataaudit.render.view import SectionView

SECTIONS: tuple[Callable[..., list[SectionView]], ...] = (
    comparison.build,  # first: what changed since the baseline run, when there is one
    label_errors.build,
    reviews.build,  # what reviewers said about the list above
    swapped_pairs.build,
    per_class.build,
    calibration.build,
    slices.build,
    duplicates.build,
    outliers.build,
    lookalikes.build,
    shift.build,
    label_next.build,
    embedding_map.build,  # last: a picture of everything flagged above
)
