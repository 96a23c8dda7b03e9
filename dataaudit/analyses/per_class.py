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

Engine form (`run_on`, any dataaudit.engine): one kernel counts support, predictions, correct
predictions and flagged items per split and class in a chunk; the counts are summed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.analyses.label_errors_chunks import scores_of
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, Engine, add
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import wilson_interval

ALL_SPLITS = "all"
RATES = ("error_rate", "precision", "recall", "label_noise_rate")


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    """The analysis as one map/reduce: counts per split and class from every chunk, summed."""
    classes = engine.classes
    scores = scores_of(ctx.results["label_errors"], classes)
    counts = engine.map_reduce(_split_counts, add, scores, len(classes))
    total = sum(counts.values())

    groups = [(ALL_SPLITS, total)]
    if set(counts) != {ALL_SPLITS}:
        groups += [(name, counts[name]) for name in sorted(counts)]
    frames = []
    for name, c in groups:
        frame = rates_frame(*c, classes, config.confidence_level)
        frame.insert(0, "split", name)
        frames.append(frame)
    classes_table = pd.concat(frames, ignore_index=True)

    n_correct, n_labeled = int(total[2].sum()), int(total[0].sum())
    low, high = wilson_interval(n_correct, n_labeled, config.confidence_level)
    overall = classes_table[(classes_table["split"] == ALL_SPLITS) & (classes_table["support"] > 0)]
    worst = overall.sort_values(["error_rate", "support"], ascending=False, kind="stable").iloc[0]
    return AnalysisResult(
        name="per_class",
        tables={"classes": classes_table},
        summary={
            "accuracy": n_correct / n_labeled,
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


def _split_counts(chunk: Chunk, scores, k: int) -> dict[str, NDArray[np.int64]]:
    """Kernel: per split of the chunk's labeled rows, a 4 x K array of support, n_predicted,
    n_correct and n_label_errors per class."""
    s = scores(chunk)
    rows = s["rows"]
    labels = chunk.labels[rows]
    predicted = np.asarray(chunk.probs[rows]).argmax(axis=1)
    flagged = s["is_label_error"]
    splits = np.asarray(chunk.splits[rows]).astype(str)
    out = {}
    for name in pd.unique(splits):
        m = splits == name
        out[str(name)] = _counts(labels[m], predicted[m], flagged[m], k)
    return out


def _counts(labels, predicted, flagged, k: int) -> NDArray[np.int64]:
    return np.stack(
        [
            np.bincount(labels, minlength=k),
            np.bincount(predicted, minlength=k),
            np.bincount(labels[labels == predicted], minlength=k),
            np.bincount(labels[flagged], minlength=k),
        ]
    ).astype(np.int64)


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
    return rates_frame(*_counts(labels, predicted, flagged, len(classes)), classes, confidence)


def rates_frame(
    support: NDArray[np.int64],
    n_predicted: NDArray[np.int64],
    n_correct: NDArray[np.int64],
    n_label_errors: NDArray[np.int64],
    classes: tuple[str, ...],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """class_rates from the four per-class counts (the reduction of the chunk kernel)."""
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
