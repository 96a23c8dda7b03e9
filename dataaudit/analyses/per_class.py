"""Per-class errors: how often the model disagrees with the given label, per class and per split.

Requires: probs, labels; reads the "label_errors" result for the estimated label-noise rate.

On labeled items, for each split and for all splits together (split "all"), and each class:
support (items labeled with the class), error_rate (share of them the model predicts as another
class; 1 - recall), precision (share of items predicted as the class that carry its label), recall,
and label_noise_rate (share flagged as label errors by the label_errors analysis). Each rate has a
Wilson interval at config.confidence_level (columns <rate>_low, <rate>_high). Errors are measured
against the given labels, which are themselves partly wrong; label_noise_rate says how much.

Table "classes" (tidy, one row per split and class): split, class, support, n_predicted, n_correct,
n_label_errors, then error_rate, precision, recall, label_noise_rate, each with _low and _high.
Summary: accuracy (+ _ci_low/_ci_high) over all labeled items, worst_class and
worst_class_error_rate (highest error rate on split "all").
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import wilson_interval

ALL_SPLITS = "all"
RATES = ("error_rate", "precision", "recall", "label_noise_rate")


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    labeled = np.flatnonzero(data.labeled)
    labels = data.labels[labeled]
    predicted = data.predicted[labeled]
    splits = np.asarray(data.splits[labeled]).astype(str)
    flagged = _label_error_flags(ctx, data.ids[labeled])

    groups = [(ALL_SPLITS, np.ones(len(labeled), dtype=bool))]
    split_names = pd.unique(splits)
    if not (len(split_names) == 1 and split_names[0] == ALL_SPLITS):
        groups += [(name, splits == name) for name in sorted(split_names)]
    frames = []
    for name, mask in groups:
        frame = class_rates(
            labels[mask], predicted[mask], flagged[mask], data.classes, config.confidence_level
        )
        frame.insert(0, "split", name)
        frames.append(frame)
    classes = pd.concat(frames, ignore_index=True)

    n_correct = int((labels == predicted).sum())
    low, high = wilson_interval(n_correct, len(labels), config.confidence_level)
    overall = classes[(classes["split"] == ALL_SPLITS) & (classes["support"] > 0)]
    worst = overall.sort_values(["error_rate", "support"], ascending=False, kind="stable").iloc[0]
    return AnalysisResult(
        name="per_class",
        tables={"classes": classes},
        summary={
            "accuracy": n_correct / len(labels),
            "accuracy_ci_low": float(low),
            "accuracy_ci_high": float(high),
            "worst_class": str(worst["class"]),
            "worst_class_error_rate": float(worst["error_rate"]),
        },
        params={"confidence_level": config.confidence_level},
        notes=(
            "Rates are measured against the given labels, on labeled items only.",
            f"Intervals are {config.confidence_level:.0%} Wilson intervals.",
            "label_noise_rate is the share of a class's items flagged as label errors.",
        ),
    )


ANALYSIS = Analysis(
    name="per_class",
    title="Per-class errors",
    run=run,
    requires=("probs", "labels"),
    after=("label_errors",),
)


# -- pure helpers ------------------------------------------------------------------------------


def class_rates(
    labels: NDArray[np.int64],
    predicted: NDArray[np.int64],
    flagged: NDArray[np.bool_],
    classes: tuple[str, ...],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """One row per class: counts, the four rates and their Wilson intervals (nan when undefined)."""
    k = len(classes)
    support = np.bincount(labels, minlength=k)
    n_predicted = np.bincount(predicted, minlength=k)
    n_correct = np.bincount(labels[labels == predicted], minlength=k)
    n_label_errors = np.bincount(labels[flagged], minlength=k)
    frame = pd.DataFrame(
        {
            "class": list(classes),
            "support": support,
            "n_predicted": n_predicted,
            "n_correct": n_correct,
            "n_label_errors": n_label_errors,
        }
    )
    for rate, successes, trials in (
        ("error_rate", support - n_correct, support),
        ("precision", n_correct, n_predicted),
        ("recall", n_correct, support),
        ("label_noise_rate", n_label_errors, support),
    ):
        with np.errstate(invalid="ignore", divide="ignore"):
            frame[rate] = np.where(trials > 0, successes / np.maximum(trials, 1), np.nan)
        frame[f"{rate}_low"], frame[f"{rate}_high"] = wilson_interval(successes, trials, confidence)
    return frame


def _label_error_flags(ctx: AuditContext, ids: NDArray) -> NDArray[np.bool_]:
    """is_label_error aligned with `ids`, joined by id (never by row position)."""
    items = ctx.results["label_errors"].table("items")
    position = pd.Index(items["id"]).get_indexer(ids)
    if (position < 0).any():
        raise ValueError("label_errors result lacks some labeled ids; it must run on the same data")
    return items["is_label_error"].to_numpy(bool)[position]
