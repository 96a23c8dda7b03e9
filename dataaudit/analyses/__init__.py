"""The registry: every analysis a run may perform, in the order they run.

An analysis runs when the dataset has the inputs it `requires`; otherwise it is recorded as
skipped with the reason. `after` names analyses whose results it reads; they come earlier here.
"""

from __future__ import annotations

import importlib

from dataaudit.result import Analysis

# Module names in run order. They are imported on first use of ANALYSES, not with this package:
# they pull in torch and scipy (seconds), which `dataaudit --help` and bad input need not wait for.
_ORDER = (
    "label_errors",
    "reviews",  # reads label_errors; label_next skips the items it finds pending
    "swapped_pairs",
    "per_class",
    "slices",
    "duplicates",
    "outliers",
    "lookalikes",
    "label_next",  # last: reads label_errors, outliers, lookalikes when present
    "embedding_map",  # reads label_errors / outliers flags when present
)


def _registry() -> tuple[Analysis, ...]:
    if "ANALYSES" not in globals():
        modules = [importlib.import_module(f"{__name__}.{name}") for name in _ORDER]
        globals()["ANALYSES"] = tuple(module.ANALYSIS for module in modules)
    return globals()["ANALYSES"]


def __getattr__(name: str):
    if name == "ANALYSES":
        return _registry()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def by_name() -> dict[str, Analysis]:
    return {analysis.name: analysis for analysis in _registry()}
