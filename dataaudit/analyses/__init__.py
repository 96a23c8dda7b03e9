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
    "shift",
    "calibration",  # before label_next, which uses its temperature when it says so
    "label_next",  # last: reads label_errors, outliers, lookalikes when present
    "embedding_map",  # reads label_errors / outliers flags when present
)

# The summary keys (the metrics of summary.json and --fail-on) each analysis may produce, known
# without importing it, so `--fail-on no_such_metric>0` is refused before any data is read.
# fnmatch patterns where a key depends on the data. A contract test keeps these exact.
METRICS: dict[str, tuple[str, ...]] = {
    "label_errors": (
        "n_labeled",
        "n_label_errors",
        "label_error_rate",
        "label_error_rate_ci_low",
        "label_error_rate_ci_high",
        "n_confident_learning_flags",
    ),
    "reviews": (
        "reviewed_items",
        "n_reviewed_kept",
        "n_confirmed",
        "n_fixed",
        "n_pending",
        "reviewed_precision",
        "reviewed_precision_ci_low",
        "reviewed_precision_ci_high",
        "estimated_label_errors",
        "estimated_label_errors_ci_low",
        "estimated_label_errors_ci_high",
    ),
    "swapped_pairs": ("n_confused_pairs", "top_pair", "top_pair_joint_probability"),
    "per_class": (
        "accuracy",
        "accuracy_ci_low",
        "accuracy_ci_high",
        "worst_class",
        "worst_class_error_rate",
    ),
    "slices": (
        "n_slices_tested",
        "n_slices_below_min_support",
        "n_given_slices_significant",
        "n_failure_slices",
        "n_failure_rules",
        "n_failure_clusters",
        "worst_slice",
        "worst_slice_error_rate",
        "n_slice_pairs_tested",
        "n_slice_pairs_screened_out",
        "n_slice_columns_skipped",
        "n_given_slices_not_listed",
    ),
    "duplicates": (
        "n_duplicate_groups",
        "n_duplicate_items",
        "n_exact_duplicate_groups",
        "leakage",
        "n_leaking_items",
        "n_conflicting_label_groups",
        "n_conflicting_label_items",
        "n_possible_duplicate_pairs",
        "leakage_*_*",  # per pair of splits, e.g. leakage_train_test
    ),
    "outliers": ("n_outliers", "outlier_rate", "n_ood_scored", "n_ood", "ood_rate"),
    "lookalikes": ("n_lookalike_queries", "n_lookalike_items", "lookalike_mean_similarity"),
    "shift": (
        "n_shifted_columns",
        "embedding_shift_auroc",
        "embedding_shift_auroc_ci_low",
        "embedding_shift_auroc_ci_high",
        "prior_shift_tv",
        "prior_shift_tv_ci_low",
        "prior_shift_tv_ci_high",
        "shift_detected",
    ),
    "calibration": (
        "ece",
        "ece_ci_low",
        "ece_ci_high",
        "ece_if_calibrated",
        "calibration_gap",
        "temperature",
        "ece_after_temperature",
        "ece_after_temperature_ci_low",
        "ece_after_temperature_ci_high",
        "calibration_miscalibrated",
        "calibration_applied",
    ),
    "label_next": (
        "label_next_budget",
        "label_next_count",
        "auto_label_count",
        "auto_label_estimated_precision",
    ),
    "embedding_map": ("embedding_map_points",),
}


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


# Analyses with an engine form (dataaudit.engine): name -> module defining run_on(engine, ctx,
# config). label_errors' lives in label_errors_chunks.py until label_errors.py is rebuilt on it.
_ENGINE_FORMS = {
    "calibration": "calibration",
    "duplicates": "duplicates",
    "label_errors": "label_errors_chunks",
    "lookalikes": "lookalikes",
    "per_class": "per_class",
    "shift": "shift",
    "slices": "slices",
    "swapped_pairs": "swapped_pairs",
    "outliers": "outliers",
    "label_next": "label_next",
    "embedding_map": "embedding_map",
    "reviews": "reviews",
}


def names() -> tuple[str, ...]:
    """Every analysis name, in run order (without importing the analyses)."""
    return _ORDER


def engine_forms() -> dict:
    """name -> run_on for the analyses that run on any engine, in run order."""
    return {
        name: importlib.import_module(f"{__name__}.{_ENGINE_FORMS[name]}").run_on
        for name in _ORDER
        if name in _ENGINE_FORMS
    }
