"""Label errors: labeled items whose given label the evidence contradicts.

Requires: probs, labels. Uses the run's shared kNN graph when embeddings are given. Runs on
labeled items only.

The evidence (per item i with given label y):
- the model: its out-of-sample probabilities p_i;
- the neighbours (embeddings given): the labels of the labeled items among i's k nearest
  neighbours in the run's shared kNN graph (the one duplicates and outliers use, so it costs
  nothing extra), each vote weighted by its cosine similarity (clipped at 0), plus one
  pseudo-vote spread over the classes in proportion to their share of labeled items:
  q_i(c) = (sum_j s_ij [y_j = c] + prior(c)) / (sum_j s_ij + 1). An item with no labeled
  neighbour gets the prior.

`error_score` (default `config.label_error_score = "confidence_and_neighbors"`) is the
self-confidence of a linear pool of the two: pooled_i = (1 - w) p_i + w q_i with
w = `config.label_error_neighbor_weight` (0.15), error_score = 1 - pooled_i(y), in [0, 1],
increasing in 1 - p_i(y) and in the neighbours' disagreement 1 - q_i(y). Without embeddings
w = 0 and it is cleanlab's self_confidence. Where each piece comes from:
- self-confidence rather than normalized margin: cleanlab's default rank method (rank.py;
  Kuan & Mueller 2022, "Model-agnostic label quality scoring to detect real-world label errors",
  compare it with margin and entropy on real errors). On the sets in benchmarks/label_errors.py
  it ties the best cleanlab method everywhere (margin leads on cifar10 AP by 0.008, inside a
  bootstrap interval of -0.08 to 0; margin loses 0.09 AP on Roman numerals). Per-class
  percentiles, cleanlab's adjust_pred_probs and the confident-learning flag placed first each
  lost clearly on some set.
- votes of the nearest labeled neighbours: deep kNN filtering (Bahri, Jiang & Gupta 2020,
  "Deep k-NN for noisy labels") flags an item whose label disagrees with its neighbours' in a
  learned representation; SimiFeat (Zhu, Dong & Liu 2022, "Detecting corrupted labels without
  training a model to predict") scores the given label against a similarity-weighted vote of
  the k nearest neighbours' labels. Taken: the similarity-weighted vote. Not taken: SimiFeat's
  per-class rank thresholds from an estimated noise transition matrix (the flag count below
  comes from confident learning instead) and its averaging over feature augmentations.
- the pool: cleanlab's ensemble scores average the pred_probs of several models; here the kNN
  vote is the second model. The weight is fixed: weighting by each source's accuracy on the
  given labels (~0.5), or by the mixture weight that maximises the likelihood of the given
  labels (0.98 for the weak model), lost AP (benchmarks/label_errors.py lists them). 0.15 is
  the largest weight at which the pool wins or ties (within 0.002) the best cleanlab method in
  AUROC and AP on every Roman-numerals row (fix / bad / all, with a weak, the given and a
  strong model); 0.25 gains AUROC but loses 0.016 AP on the weak model's "fix" errors.

How many are flagged (confident learning, Northcutt et al. 2021, via cleanlab):
- Confident-learning flag: the item lies off the diagonal of cleanlab's confident joint. Each class j
  gets a threshold t_j = mean p(j) over items labeled j; an item is flagged when some other class
  clears its threshold (the most probable such class wins) and the model's top class is not the
  given label. This equals `cleanlab.filter.find_label_issues(filter_by="confident_learning")`,
  computed per chunk of rows from the K thresholds, so it maps over partitions.
- `is_label_error` (default `config.label_error_filter = "calibrated_count"`): as many items as
  cleanlab's calibrated estimate of the number of label errors
  (`cleanlab.count.num_label_issues(estimation_method="off_diagonal_calibrated")`), taken from
  the top of the error_score ranking among the items whose evidence points to another class
  (the model's top class and the pooled top class are not the given label; neighbours alone
  never flag: on Roman numerals this costs at most 1% recall, and on uniform probabilities with
  random embeddings it keeps the flags at zero). Items confident in no class never reach the
  confident joint, so when probabilities are soft the plain flag misses many errors
  (benchmarks/scale.py at 10k: it finds 62% of the planted flips, the calibrated count 86%);
  calibration rescales each given class's row of the joint to that class's size, which counts
  them back. The flagged set is the top of the ranking, so a reviewer working relabel.csv
  top-down sees the same order. "confident_learning" keeps the plain flag; any other cleanlab
  filter_by value ("prune_by_noise_rate", Datalab's default, ...) is computed by cleanlab over
  all rows at once.
- Other scores: "flagged_then_margin" (the default before: (confident-learning flag +
  margin_score) / 2, with the calibrated count it flags the confident-learning items first) or
  any cleanlab rank method name ("self_confidence", "normalized_margin",
  "confidence_weighted_entropy"), whose quality score q becomes error_score = 1 - q. These use
  the model alone.

Table "items" (one row per labeled item): id, given_label, suggested_label (the pooled top
class; the model's top class without embeddings), suggested_label_prob and given_label_prob
(the model's probabilities of those classes), margin_score (1 - cleanlab's normalized-margin
quality, in [0, 1]), neighbor_label (the most common label among the item's labeled
neighbours, "" when none), neighbor_label_count, n_labeled_neighbors, neighbor_agreement
(q_i(y); NaN without embeddings), is_label_error, error_score (higher = more likely mislabeled).
Table "relabel" (the flagged items, most likely mislabeled first, as a reviewer works them; the
rows of relabel.csv): rank, id, given_label, suggested_label, error_score, reason,
suggested_label_prob, given_label_prob.
Summary: n_labeled, n_label_errors, label_error_rate (over labeled items) with a Wilson interval,
n_confident_learning_flags (items off the confident joint's diagonal, whichever filter flags).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import wilson_interval

DEFAULT_SCORE = "confidence_and_neighbors"
FLAG_THEN_MARGIN = "flagged_then_margin"
CLEANLAB_SCORES = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
SCORES = (DEFAULT_SCORE, FLAG_THEN_MARGIN, *CLEANLAB_SCORES)
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
    if method not in SCORES:
        raise ValueError(f"label_error_score must be one of {', '.join(SCORES)}; got {method!r}")
    if config.label_error_filter not in FILTERS:
        choices = ", ".join(FILTERS)
        raise ValueError(
            f"label_error_filter must be one of {choices}; got {config.label_error_filter!r}"
        )
    weight = config.label_error_neighbor_weight
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"label_error_neighbor_weight must be in [0, 1]; got {weight!r}")
    labeled = np.flatnonzero(data.labeled)
    labels = data.labels[labeled]
    # The global quantities: K class thresholds and K class shares, reductions over labeled rows.
    thresholds = class_thresholds(given_probs(data.probs, data.labels, labeled), labels, data.k)
    prior = np.bincount(labels, minlength=data.k) / max(len(labels), 1)
    graph = None
    if method == DEFAULT_SCORE and data.embeddings is not None and weight > 0:
        from dataaudit.neighbors import shared_graph

        graph = shared_graph(data, ctx)

    chunks = []
    starts = range(0, len(labeled), CHUNK_ROWS)
    if len(starts) > 1:
        starts = ctx.progress.bar(starts, total=len(starts), desc="label errors")
    for start in starts:
        rows = labeled[start : start + CHUNK_ROWS]
        votes = None
        if graph is not None:
            votes = neighbor_votes(graph.similarities[rows], graph.indices[rows], data.labels)
        chunks.append(
            score_chunk(
                np.asarray(data.probs[rows], dtype=np.float32),
                data.labels[rows],
                thresholds,
                votes=votes,
                prior=prior,
                neighbor_weight=weight,
            )
        )
    scored = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    if method == FLAG_THEN_MARGIN:
        scored["error_score"] = combine_flag_and_margin(
            scored["is_label_error"], scored["margin_score"]
        )
    elif method in CLEANLAB_SCORES:
        from cleanlab.rank import get_label_quality_scores

        probs = np.asarray(data.probs[labeled], dtype=np.float32)
        scored["error_score"] = 1.0 - get_label_quality_scores(labels, probs, method=method)

    notes = []
    n_confident = int(scored["is_label_error"].sum())
    n_estimated = None
    if config.label_error_filter == DEFAULT_FILTER:
        scored["is_label_error"], n_estimated = calibrated_count_flags(scored, labels, data.k)
    elif config.label_error_filter in CLEANLAB_FILTERS:
        from cleanlab.filter import find_label_issues

        probs = np.asarray(data.probs[labeled], dtype=np.float32)
        scored["is_label_error"] = find_label_issues(
            labels, probs, filter_by=config.label_error_filter
        )
        if method == FLAG_THEN_MARGIN:
            scored["error_score"] = combine_flag_and_margin(
                scored["is_label_error"], scored["margin_score"]
            )

    items = pd.DataFrame(
        {
            "id": data.ids[labeled],
            "given_label": data.label_names(labels),
            "suggested_label": data.label_names(scored["suggested"]),
            "suggested_label_prob": scored["suggested_prob"],
            "given_label_prob": scored["given_prob"],
            "margin_score": scored["margin_score"],
            "neighbor_label": data.label_names(scored["neighbor_label"]),
            "neighbor_label_count": scored["neighbor_label_count"],
            "n_labeled_neighbors": scored["n_labeled_neighbors"],
            "neighbor_agreement": scored["neighbor_agreement"],
            "is_label_error": scored["is_label_error"],
            "error_score": scored["error_score"].astype(np.float32),
        }
    )

    n_labeled = len(labeled)
    n_errors = int(items["is_label_error"].sum())
    low, high = wilson_interval(n_errors, n_labeled, config.confidence_level)
    if config.label_error_filter == DEFAULT_FILTER:
        notes.append(
            f"Flagged: the top {n_estimated:,} of the ranking among items whose evidence points"
            " to another class; that count is cleanlab's calibrated estimate of the number of"
            f" label errors ({n_confident:,} items lie off the diagonal of its confident joint)."
        )
    elif config.label_error_filter == "confident_learning":
        notes.append(
            "Flagged by confident learning: off the diagonal of cleanlab's confident joint."
        )
    else:
        notes.append(
            f"Flagged by cleanlab's find_label_issues, filter_by={config.label_error_filter}."
        )
    notes.append(f"Ranked by {_describe(method, config.label_error_filter, graph, weight)}.")
    if data.n_models > 1:
        notes.append(
            f"The probabilities of {data.n_models} models were averaged before finding label errors."
        )
    return AnalysisResult(
        name="label_errors",
        tables={"items": items, "relabel": relabel_candidates(items)},
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
            "label_error_neighbor_weight": weight if graph is not None else 0.0,
            "knn_k": graph.k if graph is not None else None,
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


@dataclass(frozen=True)
class NeighborVotes:
    """The labeled neighbours of a chunk of rows: labels (-1 = unlabeled or none) and weights."""

    labels: NDArray[np.int64]  # (n, k)
    weights: NDArray[np.float32]  # (n, k): cosine similarity clipped at 0; 0 where labels == -1


def neighbor_votes(
    similarities: NDArray, indices: NDArray[np.int64], all_labels: NDArray[np.int64]
) -> NeighborVotes:
    """Votes of the kNN graph rows `similarities`, `indices` (N x k) from the labels of all items."""
    found = indices >= 0
    return votes_of(similarities, np.where(found, all_labels[np.where(found, indices, 0)], -1))


def votes_of(similarities: NDArray, neighbor_labels: NDArray[np.int64]) -> NeighborVotes:
    """Votes of neighbours with these similarities and labels (-1: unlabeled or none), as an
    engine chunk carries them (chunk.similarities, chunk.neighbor_labels)."""
    votes = np.asarray(neighbor_labels, dtype=np.int64)
    weights = np.where(votes >= 0, np.clip(similarities, 0.0, None), 0.0).astype(np.float32)
    return NeighborVotes(votes, weights)


def score_chunk(
    probs: NDArray[np.float32],
    labels: NDArray[np.int64],
    thresholds: NDArray[np.float64],
    *,
    votes: NeighborVotes | None = None,
    prior: NDArray[np.float64] | None = None,
    neighbor_weight: float = 0.0,
) -> dict[str, NDArray]:
    """Score a chunk of labeled rows given the global class thresholds (and class shares).

    Returns arrays aligned with the rows: suggested (pooled top class), suggested_prob and
    given_prob (the model's), margin_score, error_score (1 - pooled p(given)), neighbor_label,
    neighbor_label_count, n_labeled_neighbors, neighbor_agreement, is_label_error
    (confident-learning flag), confident_guess (the confident joint's column, -1 when no class is
    confident), model_disagrees (some other class beats the given label by more than float
    noise), evidence_disagrees (so do the pooled probabilities).
    """
    n, k = probs.shape
    rows = np.arange(n)
    given = probs[rows, labels]

    others = probs.copy()
    others[rows, labels] = -np.inf
    best_other = others.max(axis=1)
    # cleanlab's normalized margin quality is (p_given - max other + 1) / 2; flip it.
    margin_score = ((best_other - given + 1.0) / 2.0).astype(np.float32)

    guess = confident_guess(probs, thresholds)
    disagrees = model_disagrees(probs, labels)
    flag = (guess >= 0) & (guess != labels) & disagrees

    neighbor = {
        "neighbor_label": np.full(n, -1, dtype=np.int64),
        "neighbor_label_count": np.zeros(n, dtype=np.int64),
        "n_labeled_neighbors": np.zeros(n, dtype=np.int64),
        "neighbor_agreement": np.full(n, np.nan, dtype=np.float32),
    }
    pooled = probs
    if votes is not None and neighbor_weight > 0:
        if prior is None:
            raise ValueError("neighbour votes need the class shares (prior)")
        pooled, agreement = pool_with_neighbors(probs, labels, votes, prior, neighbor_weight)
        top, top_count = most_common_vote(votes.labels)
        neighbor = {
            "neighbor_label": top,
            "neighbor_label_count": top_count,
            "n_labeled_neighbors": (votes.labels >= 0).sum(axis=1),
            "neighbor_agreement": agreement.astype(np.float32),
        }
    suggested = pooled.argmax(axis=1)
    return {
        "suggested": suggested.astype(np.int64),
        "suggested_prob": probs[rows, suggested].astype(np.float32),
        "given_prob": given.astype(np.float32),
        "margin_score": margin_score,
        "error_score": (1.0 - pooled[rows, labels]).astype(np.float32),
        **neighbor,
        "is_label_error": flag,
        "confident_guess": guess,
        "model_disagrees": disagrees,
        # Neighbours reorder and choose among the items the model disagrees with; alone they never
        # flag (votes of random embeddings would flag many items of a model that knows nothing).
        "evidence_disagrees": disagrees & model_disagrees(pooled, labels),
    }


def pool_with_neighbors(
    probs: NDArray[np.float32],
    labels: NDArray[np.int64],
    votes: NeighborVotes,
    prior: NDArray[np.float64],
    weight: float,
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """(1 - weight) * probs + weight * q, q the neighbours' vote with one prior pseudo-vote.

    Returns the pooled probabilities and q(given label), the neighbours' agreement.
    """
    n = len(labels)
    rows = np.arange(n)
    mass = votes.weights.sum(axis=1, dtype=np.float64) + 1.0
    agree = (votes.weights * (votes.labels == labels[:, None])).sum(axis=1, dtype=np.float64)
    agreement = (agree + prior[labels]) / mass
    pooled = (1.0 - weight) * probs + (weight / mass)[:, None].astype(np.float32) * prior.astype(
        np.float32
    )
    # Sparse part of q: each neighbour's weight on its label (rows without votes add 0).
    share = (weight * votes.weights / mass[:, None]).astype(np.float32)
    np.add.at(
        pooled,
        (np.repeat(rows, votes.labels.shape[1]), votes.labels.clip(0).ravel()),
        share.ravel(),
    )
    return pooled, agreement


def most_common_vote(vote_labels: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Most common label per row (-1 ignored; ties: the smallest class) and how many times."""
    n, k = vote_labels.shape
    top = np.full(n, -1, dtype=np.int64)
    top_count = np.zeros(n, dtype=np.int64)
    # Pairwise comparisons within a row: blocks of rows keep them near 4M elements.
    step = max(1, (1 << 22) // max(k * k, 1))
    for start in range(0, n if k else 0, step):
        block = vote_labels[start : start + step]
        counts = (block[:, :, None] == block[:, None, :]).sum(axis=2)
        counts = np.where(block >= 0, counts, 0)
        # Equal counts go to the smallest class, so the result does not hang on graph order.
        best = (counts * (block.max(initial=0) + 2) - block).argmax(axis=1)
        picked = np.arange(len(block))
        top[start : start + step] = np.where(counts[picked, best] > 0, block[picked, best], -1)
        top_count[start : start + step] = counts[picked, best]
    return top, top_count


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
    """The default flag from score_chunk's arrays over all labeled rows: (flags, estimated count).

    The top `estimated count` items by error_score among those whose evidence disagrees with the
    given label (ties by row order).
    """
    joint = confident_joint_counts(scored["confident_guess"], labels, k)
    n_estimated = calibrated_error_count(joint, np.bincount(labels, minlength=k))
    flag = top_flags(scored["error_score"], scored["evidence_disagrees"], n_estimated)
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


def top_flags(
    error_score: NDArray, eligible: NDArray[np.bool_], n_target: int
) -> NDArray[np.bool_]:
    """The n_target eligible items with the highest error_score (ties by row order)."""
    candidates = np.flatnonzero(eligible)
    order = np.argsort(-error_score[candidates], kind="stable")
    flag = np.zeros(len(error_score), dtype=bool)
    flag[candidates[order[: max(n_target, 0)]]] = True
    return flag


def combine_flag_and_margin(flag: NDArray[np.bool_], margin_score: NDArray) -> NDArray[np.float32]:
    """Flagged items in [0.5, 1], others in [0, 0.5]: the flag decides, the margin orders."""
    return ((flag.astype(np.float32) + margin_score.astype(np.float32)) / 2.0).astype(np.float32)


def _describe(method: str, filter_by: str, graph, weight: float) -> str:
    if method == DEFAULT_SCORE:
        if graph is None:
            return "1 - the model's probability of the given label (cleanlab's self_confidence)"
        return (
            f"1 - p(given label) pooled from the model ({1 - weight:.2f}) and the"
            f" similarity-weighted labels of each item's {graph.k} nearest neighbours"
            f" ({weight:.2f})"
        )
    if method == FLAG_THEN_MARGIN:
        # error_score = (flag + margin_score) / 2
        flag = (
            "confident-learning flag"
            if filter_by in (DEFAULT_FILTER, "confident_learning")
            else "flag"
        )
        return f"{flag} first, then the model's margin against the given label within each group"
    return f"1 - cleanlab's label quality score ({method})"


def relabel_candidates(items: pd.DataFrame) -> pd.DataFrame:
    """Flagged items ranked top-down, as a reviewer works them: the "relabel" table.

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
    if "neighbor_label" in ranked:  # reports saved before neighbours counted have no such column
        reason = [r + n for r, n in zip(reason, neighbor_reasons(ranked))]
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


def neighbor_reasons(ranked: pd.DataFrame) -> list[str]:
    """ "; 8 of its 10 nearest labeled neighbours are labeled 'cat'" where the neighbours' most
    common label is not the given one, else "" (one per row)."""
    out = []
    for label, count, total, given in zip(
        ranked["neighbor_label"],
        ranked["neighbor_label_count"],
        ranked["n_labeled_neighbors"],
        ranked["given_label"],
    ):
        if not label or label == given or count <= 0:
            out.append("")
        elif total == 1:
            out.append(f"; its nearest labeled neighbour is labeled '{label}'")
        else:
            out.append(f"; {count} of its {total} nearest labeled neighbours are labeled '{label}'")
    return out
