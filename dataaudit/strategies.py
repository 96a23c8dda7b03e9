"""Active-learning scores: which unlabeled item is most worth a label.

Every scorer is a pure, vectorised function of one chunk of rows (probabilities N×K, committee
probabilities M×N×K, embeddings N×d, or a score the similarity engine computed) and returns one
float32 score per row, higher = label first. Nothing here needs the whole dataset at once, so a
caller may map the scorers over chunks (or Dask partitions) and concatenate.

The selectors at the bottom (k-center greedy, cluster stratification, typicality) turn scores and
embeddings into an order over a candidate set of budget size, never over all N rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

F32 = NDArray[np.float32]
_EPS = 1e-12


def _as_probs(probs: ArrayLike) -> NDArray:
    p = np.asarray(probs)
    if p.ndim != 2:
        raise ValueError(f"expected probabilities of shape N×K, got shape {p.shape}")
    return p.astype(np.float32, copy=False)


def _as_committee(member_probs: ArrayLike) -> NDArray:
    p = np.asarray(member_probs)
    if p.ndim != 3:
        raise ValueError(f"expected committee probabilities of shape M×N×K, got shape {p.shape}")
    return p.astype(np.float32, copy=False)


def _entropy(p: NDArray, axis: int = -1) -> NDArray:
    return -(p * np.log(np.clip(p, _EPS, 1.0))).sum(axis=axis)


def top2(probs: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64], F32, F32]:
    """Best and runner-up class per row, with their probabilities."""
    p = _as_probs(probs)
    if p.shape[1] < 2:
        raise ValueError("need at least 2 classes")
    part = np.argpartition(-p, 1, axis=1)[:, :2]
    vals = np.take_along_axis(p, part, axis=1)
    swap = vals[:, 1] > vals[:, 0]
    first = np.where(swap, part[:, 1], part[:, 0]).astype(np.int64)
    second = np.where(swap, part[:, 0], part[:, 1]).astype(np.int64)
    p1 = np.where(swap, vals[:, 1], vals[:, 0]).astype(np.float32)
    p2 = np.where(swap, vals[:, 0], vals[:, 1]).astype(np.float32)
    return first, second, p1, p2


# -- uncertainty of one model (N×K) --------------------------------------------------------------


def least_confidence(probs: ArrayLike) -> F32:
    """1 − max probability: high when the model's best guess is weak."""
    p = _as_probs(probs)
    return (1.0 - p.max(axis=1)).astype(np.float32)


def margin(probs: ArrayLike) -> F32:
    """1 − (p_best − p_second): high when the two best classes are nearly tied.

    Margin (a.k.a. breaking ties) is the baseline to beat on tabular and text benchmarks.
    """
    _, _, p1, p2 = top2(probs)
    return (1.0 - (p1 - p2)).astype(np.float32)


def entropy(probs: ArrayLike) -> F32:
    """Predictive entropy divided by log K, so it lies in [0, 1] for any number of classes."""
    p = _as_probs(probs)
    return (_entropy(p) / np.log(p.shape[1])).astype(np.float32)


# -- disagreement of a committee / MC-dropout passes (M×N×K) -------------------------------------


def vote_entropy(member_probs: ArrayLike) -> F32:
    """Entropy of the members' hard votes, / log K: high when members pick different classes."""
    p = _as_committee(member_probs)
    m, n, k = p.shape
    votes = p.argmax(axis=2)  # M×N
    counts = np.zeros((n, k), dtype=np.float32)
    rows = np.broadcast_to(np.arange(n), (m, n))
    np.add.at(counts, (rows.ravel(), votes.ravel()), 1.0)
    return (_entropy(counts / m) / np.log(k)).astype(np.float32)


def kl_to_consensus(member_probs: ArrayLike) -> F32:
    """Mean KL divergence of each member from the consensus (mean) distribution."""
    p = _as_committee(member_probs)
    consensus = p.mean(axis=0)
    logp = np.log(np.clip(p, _EPS, 1.0))
    logc = np.log(np.clip(consensus, _EPS, 1.0))
    kl = (p * (logp - logc[None])).sum(axis=2)
    return np.clip(kl.mean(axis=0), 0.0, None).astype(np.float32)


def bald(member_probs: ArrayLike) -> F32:
    """Mutual information between prediction and model (BALD): H(mean) − mean(H(member)).

    High only when members are each confident but disagree — epistemic, not aleatoric, doubt.
    """
    p = _as_committee(member_probs)
    mi = _entropy(p.mean(axis=0)) - _entropy(p).mean(axis=0)
    return np.clip(mi, 0.0, None).astype(np.float32)


def agreement(probs: ArrayLike, member_probs: ArrayLike | None = None) -> F32:
    """Share of committee members whose vote equals the consensus vote (1.0 for a single model)."""
    p = _as_probs(probs)
    if member_probs is None:
        return np.ones(p.shape[0], dtype=np.float32)
    votes = _as_committee(member_probs).argmax(axis=2)
    return (votes == p.argmax(axis=1)[None]).mean(axis=0).astype(np.float32)


# -- coverage quotas -------------------------------------------------------------------------------


def class_rarity(label_counts: ArrayLike, rare_below: float = 0.5) -> F32:
    """Per-class rarity in [0, 1]: 0 for common classes, up to 1 for classes with no labels.

    A class is rare when its labeled count is below `rare_below` × the median class count;
    its rarity is then 1 − count / (rare_below × median).
    """
    counts = np.asarray(label_counts, dtype=np.float64)
    cut = rare_below * float(np.median(counts))
    if cut <= 0:
        return (counts == 0).astype(np.float32)
    return np.clip(1.0 - counts / cut, 0.0, 1.0).astype(np.float32)


def rare_prediction(probs: ArrayLike, rarity: ArrayLike) -> F32:
    """Expected rarity of the item's class under the model: Σ_c p_c · rarity_c.

    `rarity` is per class (see `class_rarity`); 0 everywhere means no class is rare.
    """
    p = _as_probs(probs)
    r = np.asarray(rarity, dtype=np.float32)
    if r.shape != (p.shape[1],):
        raise ValueError(f"rarity must have one value per class ({p.shape[1]}), got {r.shape}")
    return (p @ r).astype(np.float32)


def ood(ood_score: ArrayLike) -> F32:
    """The similarity engine's out-of-distribution score, as is; missing (NaN) scores rank last."""
    s = np.asarray(ood_score, dtype=np.float32)
    return np.where(np.isfinite(s), s, -np.inf).astype(np.float32)


def lookalike(nearest_failure_sims: ArrayLike) -> F32:
    """Cosine similarity to the nearest known failure (label error, misclassified item, bad slice).

    Takes the first column of `neighbors.knn(items, index=failure_embeddings, k=1)`.
    """
    s = np.asarray(nearest_failure_sims, dtype=np.float32)
    if s.ndim == 2:
        s = s[:, 0]
    return np.where(np.isfinite(s), s, -np.inf).astype(np.float32)


def random_scores(n: int, seed: int = 0) -> F32:
    """Seeded uniform scores: the control every other strategy must beat."""
    return np.random.default_rng(seed).random(n, dtype=np.float32)


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def position_hash(pos: ArrayLike, seed: int = 0) -> NDArray[np.float64]:
    """A uniform score in [0, 1) per table position (splitmix64 of pos and seed).

    It depends on the row's position only, never on how rows are chunked, so the top n rows by
    it are a seeded uniform sample that every engine draws alike (an exact top-k).
    """
    with np.errstate(over="ignore"):
        z = np.asarray(pos, dtype=np.uint64) * _GOLDEN + np.uint64(seed % 2**64) * np.uint64(
            0xBF58476D1CE4E5B9
        )
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


# -- difficulty and auto-labelling ----------------------------------------------------------------

DIFFICULTY_EASY = (0.9, 0.8)  # confidence ≥ 0.9 and agreement ≥ 0.8
DIFFICULTY_HARD = (0.5, 0.2, 0.6)  # confidence < 0.5, or top-2 margin < 0.2, or agreement < 0.6


def difficulty(probs: ArrayLike, member_probs: ArrayLike | None = None) -> NDArray[np.object_]:
    """'easy' / 'medium' / 'hard' per item from model confidence, margin and committee agreement."""
    p = _as_probs(probs)
    _, _, p1, p2 = top2(p)
    agree = agreement(p, member_probs)
    easy = (p1 >= DIFFICULTY_EASY[0]) & (agree >= DIFFICULTY_EASY[1])
    hard = (p1 < DIFFICULTY_HARD[0]) | (p1 - p2 < DIFFICULTY_HARD[1]) | (agree < DIFFICULTY_HARD[2])
    out = np.full(p.shape[0], "medium", dtype=object)
    out[easy] = "easy"
    out[hard] = "hard"
    return out


def auto_label_threshold(
    confidence: ArrayLike,
    correct: ArrayLike,
    target_precision: float = 0.98,
    min_support: int = 30,
) -> tuple[float, float, int]:
    """Lowest confidence cut whose items (on labeled, out-of-sample data) are ≥ target precise.

    Parameters
    ----------
    confidence : per labeled item, the model's confidence (after any agreement filter).
    correct : per labeled item, whether the predicted class equals the given label.

    Returns
    -------
    (threshold, precision, support): precision and count of labeled items at or above the cut;
    threshold is inf (nothing auto-labelled) when no cut with ≥ `min_support` items reaches the
    target.

    Examples
    --------
    >>> auto_label_threshold([0.99, 0.98, 0.6, 0.55], [1, 1, 0, 1], 0.95, min_support=2)
    (0.98, 1.0, 2)
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if conf.size == 0:
        return float("inf"), float("nan"), 0
    order = np.argsort(-conf, kind="stable")
    conf_sorted = conf[order]
    hits = np.cumsum(ok[order])
    support = np.arange(1, conf.size + 1)
    precision = hits / support
    # A cut must fall between distinct confidence values, so ties are all in or all out.
    last_of_tie = np.r_[conf_sorted[1:] != conf_sorted[:-1], True]
    good = (precision >= target_precision) & (support >= min_support) & last_of_tie
    if not good.any():
        return float("inf"), float("nan"), 0
    i = int(np.flatnonzero(good)[-1])
    return float(conf_sorted[i]), float(precision[i]), int(support[i])


# -- selectors over a candidate set --------------------------------------------------------------


def _normalize(x: NDArray) -> NDArray[np.float32]:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def k_center_greedy(
    embeddings: ArrayLike,
    n: int,
    centers: ArrayLike | None = None,
    chunk_rows: int = 65536,
) -> NDArray[np.int64]:
    """Pick `n` rows of `embeddings`, each the farthest (cosine) from all centers picked so far.

    `centers` are embeddings already covered (the labeled set). Memory is O(rows); time is
    O(n · rows · d), so call it on a candidate set, not on a million-row pool.
    """
    x = _normalize(np.asarray(embeddings))
    rows = x.shape[0]
    n = min(int(n), rows)
    if n <= 0:
        return np.empty(0, dtype=np.int64)
    # Cosine distance to the nearest center, 1 − max sim.
    min_dist = np.full(rows, np.inf, dtype=np.float32)
    if centers is not None and len(centers):
        c = _normalize(np.asarray(centers))
        for start in range(0, rows, chunk_rows):
            block = x[start : start + chunk_rows]
            best = np.full(block.shape[0], -np.inf, dtype=np.float32)
            for cs in range(0, c.shape[0], chunk_rows):
                best = np.maximum(best, (block @ c[cs : cs + chunk_rows].T).max(axis=1))
            min_dist[start : start + chunk_rows] = 1.0 - best
    picked = np.empty(n, dtype=np.int64)
    for i in range(n):
        j = int(np.argmax(min_dist)) if np.isfinite(min_dist).any() else 0
        picked[i] = j
        min_dist = np.minimum(min_dist, 1.0 - x @ x[j])
        min_dist[j] = -np.inf
    return picked


def stratified_order(
    clusters: ArrayLike, scores: ArrayLike, cluster_priority: ArrayLike | None = None
) -> NDArray[np.int64]:
    """Round-robin order over clusters: each cluster's best item, then each one's second, ...

    Within a round, items follow `cluster_priority` (higher first) when given, else their
    own score. Returns positions into the inputs. This is how cluster-margin turns the most
    uncertain candidates into a batch that covers many regions instead of one.
    """
    cl = np.asarray(clusters, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if cl.size == 0:
        return np.empty(0, dtype=np.int64)
    by_cluster = np.lexsort((-s, cl))
    sorted_cl = cl[by_cluster]
    starts = np.r_[0, np.flatnonzero(sorted_cl[1:] != sorted_cl[:-1]) + 1]
    run_start = np.repeat(starts, np.diff(np.r_[starts, cl.size]))
    within = np.empty(cl.size, dtype=np.int64)
    within[by_cluster] = np.arange(cl.size) - run_start
    tie = s if cluster_priority is None else np.asarray(cluster_priority, dtype=np.float64)[cl]
    second = s if cluster_priority is not None else np.zeros_like(s)
    return np.lexsort((-second, -tie, within)).astype(np.int64)


def cluster_labels(
    embeddings: ArrayLike, n_clusters: int, seed: int = 0, sample_rows: int = 20000
) -> NDArray[np.int64]:
    """k-means cluster ids (fit on at most `sample_rows` rows, then every row assigned)."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = _normalize(np.asarray(embeddings))
    n_clusters = max(1, min(int(n_clusters), x.shape[0]))
    if n_clusters == 1:
        return np.zeros(x.shape[0], dtype=np.int64)
    rng = np.random.default_rng(seed)
    fit_rows = x if x.shape[0] <= sample_rows else x[rng.choice(x.shape[0], sample_rows, False)]
    n_clusters = min(n_clusters, fit_rows.shape[0])
    if fit_rows.shape[0] <= 5000:
        model = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed, max_iter=100)
    else:
        model = MiniBatchKMeans(n_clusters=n_clusters, n_init=1, random_state=seed, batch_size=4096)
    # float64: scikit-learn's float32 distance path upcasts chunk by chunk, several times slower.
    model.fit(fit_rows.astype(np.float64))
    labels = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], 100_000):
        labels[start : start + 100_000] = model.predict(
            x[start : start + 100_000].astype(np.float64)
        )
    return labels


def cluster_margin_order(
    scores: ArrayLike, embeddings: ArrayLike, n_clusters: int, seed: int = 0
) -> NDArray[np.int64]:
    """Cluster the candidates, then take the most uncertain of each cluster in turn.

    `scores` are any uncertainty score (margin by default) of the candidate rows; returns
    positions into them, the best-covering order first.
    """
    clusters = cluster_labels(embeddings, n_clusters, seed=seed)
    return stratified_order(clusters, scores)


def typicality(neighbor_sims: ArrayLike) -> F32:
    """Mean cosine similarity to an item's k nearest neighbours: high in dense, typical regions.

    Takes the `sims` of `neighbors.knn(pool, k=20)`. Used at cold start (TypiClust), when the
    model is too weak for its uncertainty to mean anything.
    """
    s = np.asarray(neighbor_sims, dtype=np.float32)
    return np.nanmean(np.where(np.isfinite(s), s, np.nan), axis=1).astype(np.float32)


# Name -> scorer for the single-strategy queue. Each takes keyword inputs it needs.
UNCERTAINTY: dict[str, Callable[[ArrayLike], F32]] = {
    "least_confidence": least_confidence,
    "margin": margin,
    "entropy": entropy,
}
COMMITTEE: dict[str, Callable[[ArrayLike], F32]] = {
    "vote_entropy": vote_entropy,
    "kl": kl_to_consensus,
    "bald": bald,
}
