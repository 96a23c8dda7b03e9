"""Label errors: labeled items whose given label the model's out-of-sample probabilities contradict.

Requires: probs, labels. Runs on labeled items only.

How it decides (confident learning, Northcutt et al. 2021, via cleanlab):
- Confident-learning flag: the item lies off the diagonal of cleanlab's confident joint. Each class j
  gets a threshold t_j = mean p(j) over items labeled j; an item is flagged when some other class
  clears its threshold (the most probable such class wins) and the model's top class is not the
  given label. This equals `cleanlab.filter.find_label_issues(filter_by="confident_learning")`,
  computed per chunk of rows from the K thresholds, so it maps over partitions.
- `is_label_error` (default `config.label_error_filter = "calibrated_count"`): the confident-learning
  flags, topped up with the unflagged items the model disagrees with, largest margin first, until
  there are as many as cleanlab's calibrated estimate of the number of label errors
  (`cleanlab.count.num_label_issues(estimation_method="off_diagonal_calibrated")`). Items confident
  in no class never reach the confident joint, so when probabilities are soft the plain flag misses
  many errors (benchmarks/scale.py at 10k: it finds 62% of the planted flips, this 86%, at a
  precision of 0.84); calibration rescales each given class's row of the joint to that class's
  size, which counts them back. With the default score the flagged set is the top of the
  error_score ranking, so a reviewer working relabel.csv top-down sees the confident flags first.
  "confident_learning" keeps the plain flag; any other cleanlab filter_by value
  ("prune_by_noise_rate", Datalab's default, ...) is computed by cleanlab over all rows at once.
- `error_score` (default "flagged_then_margin"): (confident-learning flag + margin_score) / 2, so
  every confidently off-diagonal item ranks above every other one, and within each group the model's
  margin against the given label orders them. On the human-verified cifar10 and mnist test-set
  errors this ranks at least as well as cleanlab's best single score (benchmarks/label_errors.py).
  With a cleanlab filter the flag in that sum is the filter's. Any cleanlab rank method name
  ("self_confidence", "normalized_margin", "confidence_weighted_entropy") may be configured instead;
  its quality score q becomes error_score = 1 - q.

Table "items" (one row per labeled item): id, given_label, suggested_label (the model's top class),
suggested_label_prob, given_label_prob, margin_score (1 - cleanlab's normalized-margin quality, in
[0, 1]), is_label_error, error_score (higher = more likely mislabeled).
Summary: n_labeled, n_label_errors, label_error_rate (over labeled items) with a Wilson interval,
n_confident_learning_flags (items off the confident joint's diagonal, whichever filter flags).
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

DEFAULT_SCORE = "flagged_then_margin"
CLEANLAB_SCORES = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
DEFAULT_FILTER = "calibrated_count"
CLEANLAB_FILTERS = (
    "prune_by_noise_rate",
    "prune_by_class",
    "both",
    "predicted_neq_given",
    "low_normalized_margin",
    "low_self_confidence",
)
FILTERS = (DEFAULT_FILTER, "confident_learning", *CLEANLAB_FILTERS)
# cleanlab's constants: fuzzy float comparison and the floor of a class threshold.
_EPS = 1e-6
_THRESHOLD_FLOOR = 2e-6
# A class with no labeled items gets a threshold no probability reaches (as cleanlab does).
_UNREACHABLE = 2.0
CHUNK_ROWS = 200_000


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    method = config.label_error_score
    if method != DEFAULT_SCORE and method not in CLEANLAB_SCORES:
        choices = ", ".join((DEFAULT_SCORE, *CLEANLAB_SCORES))
        raise ValueError(f"label_error_score must be one of {choices}; got {method!r}")
    if config.label_error_filter not in FILTERS:
        choices = ", ".join(FILTERS)
        raise ValueError(
            f"label_error_filter must be one of {choices}; got {config.label_error_filter!r}"
        )
    labeled = np.flatnonzero(data.labeled)
    labels = data.labels[labeled]
    # The one global quantity: K class thresholds, a reduction over all labeled rows.
    thresholds = class_thresholds(given_probs(data.probs, data.labels, labeled), labels, data.k)

    chunks = []
    starts = range(0, len(labeled), CHUNK_ROWS)
    if len(starts) > 1:
        starts = ctx.progress.bar(starts, total=len(starts), desc="label errors")
    for start in starts:
        rows = labeled[start : start + CHUNK_ROWS]
        chunks.append(
            score_chunk(
                np.asarray(data.probs[rows], dtype=np.float32), data.labels[rows], thresholds
            )
        )
    scored = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}

    notes = []
    n_confident = int(scored["is_label_error"].sum())
    n_estimated = None
    if config.label_error_filter == DEFAULT_FILTER:
        # error_score keeps the confident-learning flag: those items stay first, the top-up follows.
        scored["is_label_error"], n_estimated = calibrated_count_flags(scored, labels, data.k)
    elif config.label_error_filter in CLEANLAB_FILTERS:
        from cleanlab.filter import find_label_issues

        probs = np.asarray(data.probs[labeled], dtype=np.float32)
        scored["is_label_error"] = find_label_issues(
            labels, probs, filter_by=config.label_error_filter
        )
        scored["error_score"] = combine_flag_and_margin(
            scored["is_label_error"], scored["margin_score"]
        )
    if method in CLEANLAB_SCORES:
        from cleanlab.rank import get_label_quality_scores

        probs = np.asarray(data.probs[labeled], dtype=np.float32)
        scored["error_score"] = 1.0 - get_label_quality_scores(labels, probs, method=method)

    items = pd.DataFrame(
        {
            "id": data.ids[labeled],
            "given_label": data.label_names(labels),
            "suggested_label": data.label_names(scored["suggested"]),
            "suggested_label_prob": scored["suggested_prob"],
            "given_label_prob": scored["given_prob"],
            "margin_score": scored["margin_score"],
            "is_label_error": scored["is_label_error"],
            "error_score": scored["error_score"].astype(np.float32),
        }
    )

    n_labeled = len(labeled)
    n_errors = int(items["is_label_error"].sum())
    low, high = wilson_interval(n_errors, n_labeled, config.confidence_level)
    if config.label_error_filter == DEFAULT_FILTER:
        notes.append(
            f"Flagged: the {n_confident:,} items off the diagonal of cleanlab's confident joint,"
            " then items the model disagrees with, largest margin first, up to"
            f" {n_estimated:,}, cleanlab's calibrated estimate of the number of label errors."
        )
    elif config.label_error_filter == "confident_learning":
        notes.append(
            "Flagged by confident learning: off the diagonal of cleanlab's confident joint."
        )
    else:
        notes.append(
            f"Flagged by cleanlab's find_label_issues, filter_by={config.label_error_filter}."
        )
    notes.append(f"Ranked by {_describe(method, config.label_error_filter)}.")
    if data.n_models > 1:
        notes.append(
            f"The probabilities of {data.n_models} models were averaged before finding label errors."
        )
    return AnalysisResult(
        name="label_errors",
        tables={"items": items},
        summary={
            "n_labeled": n_labeled,
            "n_label_errors": n_errors,
            "label_error_rate": n_errors / n_labeled if n_labeled else float("nan"),
            "label_error_rate_ci_low": float(low),
            "label_error_rate_ci_high": float(high),
            "n_confident_learning_flags": n_confident,
        },
        params={
            "label_error_score": method,
            "label_error_filter": config.label_error_filter,
            "confidence_level": config.confidence_level,
            "n_models_averaged": data.n_models,
            "class_thresholds": [float(t) for t in thresholds],
            "n_label_errors_estimated": n_estimated,
        },
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="label_errors",
    title="Label errors",
    run=run,
    requires=("probs", "labels"),
)


# -- pure helpers on arrays (tests call these directly) ---------------------------------------


def given_probs(probs: NDArray, labels: NDArray[np.int64], rows: NDArray[np.int64]) -> NDArray:
    """p(given label) for the listed rows; rows must be labeled."""
    return np.asarray(probs[rows, labels[rows]], dtype=np.float64)


def class_thresholds(given_prob: NDArray, labels: NDArray[np.int64], k: int) -> NDArray[np.float64]:
    """Per-class confident thresholds t_j = mean p(j) over items labeled j (cleanlab's definition).

    A sum and a count per class, so over partitions it is a reduction of partial bincounts.
    """
    sums = np.bincount(labels, weights=given_prob, minlength=k)
    counts = np.bincount(labels, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, _UNREACHABLE)
    return np.clip(means, _THRESHOLD_FLOOR, None)


def score_chunk(
    probs: NDArray[np.float32], labels: NDArray[np.int64], thresholds: NDArray[np.float64]
) -> dict[str, NDArray]:
    """Score a chunk of labeled rows given the global class thresholds.

    Returns arrays aligned with the rows: suggested (top class), suggested_prob, given_prob,
    margin_score, is_label_error (confident-learning flag), error_score (flagged_then_margin),
    confident_guess (the confident joint's column, -1 when no class is confident), model_disagrees
    (some other class beats the given label by more than float noise).
    """
    n = len(labels)
    rows = np.arange(n)
    given = probs[rows, labels]
    suggested = probs.argmax(axis=1)
    suggested_prob = probs[rows, suggested]

    others = probs.copy()
    others[rows, labels] = -np.inf
    best_other = others.max(axis=1)
    # cleanlab's normalized margin quality is (p_given - max other + 1) / 2; flip it.
    margin_score = ((best_other - given + 1.0) / 2.0).astype(np.float32)

    guess = confident_guess(probs, thresholds)
    disagrees = model_disagrees(probs, labels)
    flag = (guess >= 0) & (guess != labels) & disagrees
    return {
        "suggested": suggested.astype(np.int64),
        "suggested_prob": suggested_prob.astype(np.float32),
        "given_prob": given.astype(np.float32),
        "margin_score": margin_score,
        "is_label_error": flag,
        "error_score": combine_flag_and_margin(flag, margin_score),
        "confident_guess": guess,
        "model_disagrees": disagrees,
    }


def confident_learning_flag(
    probs: NDArray, labels: NDArray[np.int64], thresholds: NDArray[np.float64]
) -> NDArray[np.bool_]:
    """Off-diagonal membership of cleanlab's confident joint, minus items the model agrees with."""
    guess = confident_guess(probs, thresholds)
    return (guess >= 0) & (guess != labels) & model_disagrees(probs, labels)


def confident_guess(probs: NDArray, thresholds: NDArray[np.float64]) -> NDArray[np.int32]:
    """The class each row counts for in cleanlab's confident joint; -1 when none is confident."""
    confident = probs >= thresholds - _EPS
    n_confident = confident.sum(axis=1)
    # Several confident classes: the most probable wins; one: that one (cleanlab's rule).
    guess = np.where(n_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    return np.where(n_confident > 0, guess, -1).astype(np.int32)


def model_disagrees(probs: NDArray, labels: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Some other class beats the given label by more than float noise (cleanlab drops the rest)."""
    rows = np.arange(len(labels))
    nudged = probs.copy()
    nudged[rows, labels] += _EPS
    return nudged.argmax(axis=1) != labels


def calibrated_count_flags(
    scored: dict[str, NDArray], labels: NDArray[np.int64], k: int
) -> tuple[NDArray[np.bool_], int]:
    """The default flag from score_chunk's arrays over all labeled rows: (flags, estimated count)."""
    joint = confident_joint_counts(scored["confident_guess"], labels, k)
    n_estimated = calibrated_error_count(joint, np.bincount(labels, minlength=k))
    flag = top_up_flags(
        scored["is_label_error"], scored["margin_score"], scored["model_disagrees"], n_estimated
    )
    return flag, n_estimated


def confident_joint_counts(
    guess: NDArray[np.int32], labels: NDArray[np.int64], k: int
) -> NDArray[np.int64]:
    """cleanlab's uncalibrated confident joint: rows = given label, columns = confident guess.

    A bincount over rows, so over partitions it is a sum of partial joints.
    """
    confident = guess >= 0
    cells = labels[confident] * k + guess[confident]
    return np.bincount(cells, minlength=k * k).reshape(k, k)


def calibrated_error_count(joint: NDArray[np.int64], label_counts: NDArray[np.int64]) -> int:
    """Estimated number of label errors: the off-diagonal of the calibrated confident joint.

    Equals `cleanlab.count.num_label_issues(estimation_method="off_diagonal_calibrated")`. Each row
    is rescaled to the number of items with that given label (items confident in no class are
    counted in their row's proportions), then rounded preserving the row totals.
    """
    joint = joint.astype(np.float64)
    # cleanlab keeps at least one correctly labeled item in every class.
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1.0))
    calibrated = joint / joint.sum(axis=1, keepdims=True) * label_counts[:, None]
    rounded = np.vstack([_round_preserving_sum(row) for row in calibrated])
    return int(rounded.sum() - np.trace(rounded))


def _round_preserving_sum(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """Round to integers whose sum is the rounded sum, moving the largest remainders (as cleanlab)."""
    ints = values.round()
    short = int(round(values.sum()) - ints.sum())
    if short:
        step = 1 if short > 0 else -1
        order = np.argsort(values - ints)[::-step][: abs(short)]
        ints[order] += step
    return ints


def top_up_flags(
    flag: NDArray[np.bool_],
    margin_score: NDArray,
    eligible: NDArray[np.bool_],
    n_target: int,
) -> NDArray[np.bool_]:
    """Add unflagged eligible items, largest margin first (ties by row order), until n_target flags.

    Never removes a flag: when n_target <= flag.sum() the flags come back unchanged.
    """
    n_missing = n_target - int(flag.sum())
    candidates = np.flatnonzero(eligible & ~flag)
    if n_missing <= 0 or not len(candidates):
        return flag
    order = np.argsort(-margin_score[candidates], kind="stable")
    topped = flag.copy()
    topped[candidates[order[:n_missing]]] = True
    return topped


def combine_flag_and_margin(flag: NDArray[np.bool_], margin_score: NDArray) -> NDArray[np.float32]:
    """Flagged items in [0.5, 1], others in [0, 0.5]: the flag decides, the margin orders."""
    return ((flag.astype(np.float32) + margin_score.astype(np.float32)) / 2.0).astype(np.float32)


def _describe(method: str, filter_by: str) -> str:
    if method == DEFAULT_SCORE:
        # error_score = (flag + margin_score) / 2
        flag = (
            "confident-learning flag"
            if filter_by in (DEFAULT_FILTER, "confident_learning")
            else "flag"
        )
        return f"{flag} first, then the model's margin against the given label within each group"
    return f"1 - cleanlab's label quality score ({method})"


def relabel_candidates(items: pd.DataFrame) -> pd.DataFrame:
    """Flagged items ranked top-down, as a reviewer works them: the relabel.csv rows.

    Columns: rank, id, given_label, suggested_label, error_score, reason, then the probabilities.
    """
    flagged = items.loc[items["is_label_error"].to_numpy(bool)]
    ranked = flagged.sort_values("error_score", ascending=False, kind="stable").reset_index(
        drop=True
    )
    # Formatted per row: on an empty frame `.map` returns float32 and pandas 3 cannot add str to it.
    reason = [
        f"model gives '{s}' {sp:.2f}, label '{g}' gets {gp:.2f}"
        for s, sp, g, gp in zip(
            ranked["suggested_label"],
            ranked["suggested_label_prob"],
            ranked["given_label"],
            ranked["given_label_prob"],
        )
    ]
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(ranked) + 1),
            "id": ranked["id"].to_numpy(),
            "given_label": ranked["given_label"].to_numpy(),
            "suggested_label": ranked["suggested_label"].to_numpy(),
            "error_score": ranked["error_score"].to_numpy(),
            "reason": np.array(reason, dtype=object),
            "suggested_label_prob": ranked["suggested_label_prob"].to_numpy(),
            "given_label_prob": ranked["given_label_prob"].to_numpy(),
        }
    )
