"""Near-duplicates that mean the same on every embedding: a rule calibrated on the data itself.

A fixed cosine cut cannot: offset or non-negative features (post-ReLU, abs(normal) + 5) put
unrelated items at cosine 0.99, and in 2 to 8 dimensions most pairs pass any cut. So a pair is
judged against the data's own neighbour distances, in a metric where distances mean something:

- metric: cosine, as the chordal distance sqrt(2 - 2 cos), on the run's shared kNN graph (which
  centres the vectors when their mean dominates, see `neighbors.offset_center`); Euclidean when
  there are at most LOW_DIM dimensions, where a direction says little (standardized tabular
  features), on an exact graph of its own (a KD-tree, cheap in so few dimensions).
- scales: s_i, the distance from item i to its k-th neighbour, and m, the median distance to
  the nearest neighbour. Copies (distance ~0) are left out of m and of the dimension estimate.
- dimension D: if neighbours are locally uniform, (d1/dk)^D follows Beta(1, k-1), whose median
  is 1 - 2^(-1/(k-1)); so D = -log(1 - 2^(-1/(k-1))) / median(-log(d1/dk)).
- a pair (a, b) at distance d is a near-duplicate when d <= max(rho * min(s_a, s_b), gamma * m):
  far closer than both items' k-th neighbours (local: a tight cluster of different items keeps
  its usual ratios), or far below the typical nearest-neighbour distance (global: a group larger
  than k shares its k nearest neighbours, as in Datalab, which uses 0.13 x m).
  rho = min(local cap, (alpha / (k-1))^(1/D)) and gamma = min(global cap, (alpha / ln 2)^(1/D)):
  on locally uniform data a share alpha of items would pass each rule by chance, which is what
  shrinks the thresholds in few dimensions; the caps bind in many dimensions, where real data
  are far from uniform (on sms-spam, pairs at half the k-th distance are still spam templates).
- a possible near-duplicate (to review) passes the same test with the review caps and 10 alpha.
- an exact copy: the same embedding up to float rounding (raw vectors differ by <= ROUNDING of
  their norm), besides the byte hashes the duplicates analysis adds.

Each pair gets a score: 1 for an exact copy, 0.5-1 inside the near-duplicate radius (1 - d/2r),
falling linearly from 0.5 to 0 across the review band, so a list sorted by score is sorted by tier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.neighbors import knn, normalize, shared_graph

if TYPE_CHECKING:
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.dataset import AuditDataset

# At most this many dimensions: Euclidean distance instead of cosine.
LOW_DIM = 8
# Raw vectors this close, relative to their norm, are one vector up to float rounding (BLAS on
# AVX2 embeds one input with different last bits in different batches).
ROUNDING = 1e-3
# Distances below this share of the median k-th neighbour distance count as copies when
# calibrating (float32 cosines near 1 leave chordal distances of ~1e-3).
COPY_SHARE = 0.01

EXACT, NEAR, POSSIBLE, NONE = 0, 1, 2, 3
TIER_NAMES = np.array(["exact", "near-duplicate", "possible near-duplicate", ""], dtype=object)


@dataclass(frozen=True, eq=False)
class NearDuplicateRule:
    """A calibrated near-duplicate rule and the kNN graph (in its metric) it was fitted on.

    distances, indices : (N, k) neighbours of every item, nearest first (index -1 = none)
    scale              : (N,) distance to the k-th neighbour
    local, global_     : (near, possible) thresholds as calibrated: ratios to min(s_a, s_b),
                         and multiples of median_nn
    """

    metric: str  # "cosine" | "euclidean"
    center: NDArray[np.float32] | None
    distances: NDArray[np.float32]
    indices: NDArray[np.int64]
    scale: NDArray[np.float32]
    median_nn: float
    dimension: float
    local: tuple[float, float]
    global_: tuple[float, float]
    graph_method: str = "exact"
    recall_at_k: float | None = None
    # Engine form (`rule_on`): no per-row arrays on the driver; kernels read each row's distances
    # from the chunk (`chunk_graph`) and pass scales to the *_for methods.
    median_scale: float | None = None
    n_neighbors: int | None = None
    euclidean: EuclideanGraph | None = None

    @property
    def k(self) -> int:
        return self.n_neighbors if self.distances is None else self.distances.shape[1]

    # -- geometry ---------------------------------------------------------------------------
    def vectors(self, x: NDArray) -> NDArray[np.float32]:
        """Rows of `x` in the rule's metric space: Euclidean distance there is the rule's."""
        if self.metric == "cosine":
            return normalize(np.asarray(x), center=self.center)
        out = np.asarray(x, dtype=np.float32).copy()
        return out - self.center if self.center is not None else out

    def nearest(
        self, embeddings: NDArray, rows: NDArray[np.int64], index_rows: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """(distance, row) of the nearest of `index_rows` to each of `rows`."""
        q = self.vectors(embeddings[rows])
        x = self.vectors(embeddings[index_rows])
        if self.metric == "cosine":
            sims, pos = knn(q, x, k=1, exclude_self=False)
            dist = _chordal(sims[:, 0])
        else:
            from sklearn.neighbors import KDTree

            dist, pos = KDTree(x).query(q, k=1)
            dist = dist[:, 0].astype(np.float32)
        return dist, np.asarray(index_rows)[pos[:, 0]]

    def pair_distances(
        self, embeddings: NDArray, a: NDArray[np.int64], b: NDArray[np.int64]
    ) -> NDArray[np.float32]:
        """Distance of each pair (a[i], b[i]), rows gathered chunk by chunk."""
        out = np.empty(len(a), dtype=np.float32)
        for start in range(0, len(a), 65536):
            va = self.vectors(embeddings[a[start : start + 65536]])
            vb = self.vectors(embeddings[b[start : start + 65536]])
            out[start : start + 65536] = np.linalg.norm(va - vb, axis=1)
        return out

    # -- the rule ---------------------------------------------------------------------------
    def radii(
        self, a: NDArray[np.int64], b: NDArray[np.int64]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(near-duplicate radius, review radius) of each pair."""
        return self.radii_for(self.scale[a], self.scale[b])

    def radii_for(
        self, scale_a: NDArray, scale_b: NDArray
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """(near-duplicate radius, review radius) of pairs whose items have these scales."""
        s = np.minimum(scale_a, scale_b)
        near = np.maximum(self.local[0] * s, self.global_[0] * self.median_nn)
        review = np.maximum(self.local[1] * s, self.global_[1] * self.median_nn)
        return near.astype(np.float32), np.maximum(review, near).astype(np.float32)

    def grade(
        self, a: NDArray[np.int64], b: NDArray[np.int64], dist: NDArray
    ) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
        """(tier, score) of each pair: NEAR, POSSIBLE or NONE; score as in the module doc."""
        return self.grade_for(self.scale[a], self.scale[b], dist)

    def grade_for(
        self, scale_a: NDArray, scale_b: NDArray, dist: NDArray
    ) -> tuple[NDArray[np.int8], NDArray[np.float32]]:
        """`grade` for pairs whose items have these scales (k-th neighbour distances)."""
        near, review = self.radii_for(scale_a, scale_b)
        d = np.asarray(dist, dtype=np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            inner = 1 - 0.5 * d / near
            band = 0.5 - 0.5 * (d - near) / (review - near)
        score = np.where(d <= near, np.where(near > 0, inner, 1.0), np.where(d <= review, band, 0))
        tier = np.where(d <= near, NEAR, np.where(d <= review, POSSIBLE, NONE)).astype(np.int8)
        return tier, np.clip(np.nan_to_num(score), 0, 1).astype(np.float32)

    def copies(
        self, embeddings: NDArray, a: NDArray[np.int64], b: NDArray[np.int64], dist: NDArray
    ) -> NDArray[np.bool_]:
        """Pairs that are one vector up to float rounding: raw and rule distances both ~0."""
        out = np.asarray(dist) <= self.copy_distance
        if out.any():
            out[out] = identical(embeddings, a[out], b[out])
        return out

    @property
    def copy_distance(self) -> float:
        """Rule distances at most this are copies (up to float rounding) when the raw vectors
        agree too (`identical`)."""
        median = self.median_scale if self.median_scale is not None else np.median(self.scale)
        return COPY_SHARE * float(median)

    def chunk_graph(self, chunk) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """(distances, neighbour positions) of a chunk's rows in the rule's metric: the chunk's
        graph columns (cosine), or the rows of the rule's own Euclidean graph."""
        if self.euclidean is not None:
            if self.euclidean.indices is None:  # kept per partition by the engine
                return chunk.euclidean
            return self.euclidean.distances[chunk.pos], self.euclidean.indices[chunk.pos]
        idx = chunk.neighbors
        dist = np.where(idx >= 0, _chordal(chunk.similarities), np.inf).astype(np.float32)
        return dist, idx

    def is_near(self, a: NDArray[np.int64], b: NDArray[np.int64], dist: NDArray) -> NDArray:
        return np.asarray(dist) <= self.radii(a, b)[0]

    def edges(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float32]]:
        """Every graph edge inside the review radius once: (a, b, distance), a < b."""
        n, k = self.distances.shape
        rows = np.repeat(np.arange(n, dtype=np.int64), k)
        cols = self.indices.ravel()
        dist = self.distances.ravel()
        ok = (cols >= 0) & (cols != rows)
        rows, cols, dist = rows[ok], cols[ok], dist[ok]
        ok = dist <= self.radii(rows, cols)[1]
        a, b, dist = np.minimum(rows, cols)[ok], np.maximum(rows, cols)[ok], dist[ok]
        key = a * n + b
        _, first = np.unique(key, return_index=True)
        return a[first], b[first], dist[first]

    def describe(self) -> str:
        space = (
            "cosine (chordal distance) on centred vectors"
            if self.metric == "cosine" and self.center is not None
            else "cosine (chordal distance)"
            if self.metric == "cosine"
            else "Euclidean distance (few dimensions)"
        )
        return (
            f"{space}, {self.k} neighbours ({self.graph_method} search); a pair is a "
            f"near-duplicate within max({self.local[0]:.3g} x the nearer k-th-neighbour "
            f"distance, {self.global_[0]:.3g} x the median nearest-neighbour distance "
            f"{self.median_nn:.3g}), a possible near-duplicate within max({self.local[1]:.3g} x, "
            f"{self.global_[1]:.3g} x); calibrated for an estimated dimension of "
            f"{self.dimension:.1f}"
        )

    def params(self) -> dict:
        return {
            "near_duplicate_metric": self.metric,
            "near_duplicate_centred": self.center is not None,
            "near_duplicate_local": round(float(self.local[0]), 4),
            "possible_duplicate_local": round(float(self.local[1]), 4),
            "near_duplicate_global": round(float(self.global_[0]), 4),
            "possible_duplicate_global": round(float(self.global_[1]), 4),
            "median_nn_distance": float(self.median_nn),
            "estimated_dimension": round(float(self.dimension), 2),
        }


def _chordal(sims: NDArray) -> NDArray[np.float32]:
    s = np.where(np.isfinite(sims), sims, -1.0)
    return np.sqrt(np.maximum(2.0 - 2.0 * s, 0.0)).astype(np.float32)


def calibrate(
    distances: NDArray[np.float32], *, tail: float, caps: tuple[float, float, float, float]
) -> tuple[NDArray[np.float32], float, float, tuple[float, float], tuple[float, float]]:
    """(scale per row, median NN distance, dimension, local thresholds, global thresholds).

    `distances` are each row's neighbour distances, nearest first (inf = none); `caps` are the
    (near local, near global, review local, review global) caps of the config.
    """
    n, k = distances.shape
    scale, d1 = neighbour_scales(distances)
    floor = COPY_SHARE * float(np.median(scale)) if n else 0.0
    distinct = (d1 > floor) & (scale > floor)
    median_nn = float(np.median(d1[distinct])) if distinct.any() else float(np.median(scale))
    spread = float(np.median(log_ratios(d1[distinct], scale[distinct]))) if distinct.any() else 0.0
    dimension, local, glob = thresholds(k, int(distinct.sum()), spread, tail=tail, caps=caps)
    return scale, median_nn, dimension, local, glob


def neighbour_scales(distances: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray]:
    """(s, d1) per row: the distance to the farthest found (the k-th) and to the nearest neighbour."""
    n, k = distances.shape
    # Missing neighbours (inf) read as 0; k = 0 (a single item) leaves nothing to measure.
    found = np.where(np.isfinite(distances), distances, 0.0) if k else np.zeros((n, 1))
    return found.max(axis=1).astype(np.float32), found[:, 0]


def log_ratios(d1: NDArray, scale: NDArray) -> NDArray:
    """-log(d1 / s), whose median estimates the dimension (see the module docstring)."""
    return -np.log(np.clip(d1 / scale, 1e-12, 1.0))


def thresholds(
    k: int, n_distinct: int, spread: float, *, tail: float, caps: tuple[float, float, float, float]
) -> tuple[float, tuple[float, float], tuple[float, float]]:
    """(dimension, local thresholds, global thresholds) from the median log ratio `spread`."""
    if k >= 2 and n_distinct >= 10:
        dimension = -np.log(1 - 0.5 ** (1 / (k - 1))) / max(spread, 1e-6)
    else:
        dimension = 1.0
    dimension = float(np.clip(dimension, 1.0, 1e4))
    m = max(k - 1, 1)
    near_local, near_global, review_local, review_global = caps
    local = (
        min(near_local, (tail / m) ** (1 / dimension)),
        min(review_local, (min(10 * tail, 1.0) / m) ** (1 / dimension)),
    )
    glob = (
        min(near_global, (tail / np.log(2)) ** (1 / dimension)),
        min(review_global, (min(10 * tail, 0.5) / np.log(2)) ** (1 / dimension)),
    )
    return dimension, local, glob


def fit_rule(
    embeddings: NDArray,
    config: AuditConfig,
    *,
    similarities: NDArray[np.float32] | None = None,
    indices: NDArray[np.int64] | None = None,
    center: NDArray[np.float32] | None = None,
    graph_method: str = "exact",
    recall_at_k: float | None = None,
) -> NearDuplicateRule:
    """Fit the rule on `embeddings`, reusing a cosine kNN graph (its similarities) when given.

    With at most LOW_DIM dimensions the rule builds its own Euclidean graph and ignores it.
    """
    n, d = embeddings.shape
    k = min(config.knn_k, max(n - 1, 0))
    if d <= LOW_DIM:
        metric = "euclidean"
        center = _mean(embeddings)
        dist, idx = euclidean_graph(np.asarray(embeddings, dtype=np.float32) - center, k)
        graph_method, recall_at_k = "exact", None
    else:
        metric = "cosine"
        if similarities is None or indices is None:
            similarities, indices = knn(normalize(embeddings, center=center), k=k)
        dist, idx = _chordal(similarities), indices
        dist = np.where(idx >= 0, dist, np.inf).astype(np.float32)
    scale, median_nn, dimension, local, glob = calibrate(
        dist, tail=config.near_duplicate_tail, caps=_caps(config)
    )
    return NearDuplicateRule(
        metric,
        center,
        dist,
        idx,
        scale,
        median_nn,
        dimension,
        local,
        glob,
        graph_method,
        recall_at_k,
    )


def _caps(config: AuditConfig) -> tuple[float, float, float, float]:
    return (
        config.near_duplicate_local,
        config.near_duplicate_global,
        config.possible_duplicate_local,
        config.possible_duplicate_global,
    )


def euclidean_graph(x: NDArray[np.float32], k: int) -> tuple[NDArray[np.float32], NDArray]:
    """Exact k nearest neighbours by Euclidean distance (self excluded), via a KD-tree."""
    from sklearn.neighbors import KDTree

    n = len(x)
    if k <= 0 or n < 2:
        return np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    tree = KDTree(x)
    dist = np.empty((n, k), dtype=np.float32)
    idx = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, 100_000):
        block = x[start : start + 100_000]
        dd, ii = tree.query(block, k=k + 1)
        own = ii == np.arange(start, start + len(block))[:, None]
        # Copies tie with the row itself at distance 0: drop the row wherever it sits.
        order = np.argsort(own, axis=1, kind="stable")[:, :k]
        dist[start : start + len(block)] = np.take_along_axis(dd, order, axis=1)
        idx[start : start + len(block)] = np.take_along_axis(ii, order, axis=1)
    return dist, idx


def _mean(x: NDArray) -> NDArray[np.float32]:
    total = np.zeros(x.shape[1], dtype=np.float64)
    for start in range(0, len(x), 1 << 16):
        total += np.asarray(x[start : start + (1 << 16)], dtype=np.float64).sum(axis=0)
    return (total / max(len(x), 1)).astype(np.float32)


def identical(embeddings: NDArray, a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray:
    """Pairs whose raw vectors are one vector up to float rounding (ROUNDING of the norm).

    Callers also require the pair to be a copy in the rule's metric (see `NearDuplicateRule.
    copies`): with a large offset, a ROUNDING share of the norm may span the data's spread.
    """
    out = np.zeros(len(a), dtype=bool)
    for start in range(0, len(a), 65536):
        va = np.asarray(embeddings[a[start : start + 65536]], dtype=np.float32)
        vb = np.asarray(embeddings[b[start : start + 65536]], dtype=np.float32)
        norm = np.maximum(np.linalg.norm(va, axis=1), np.linalg.norm(vb, axis=1))
        out[start : start + 65536] = np.linalg.norm(va - vb, axis=1) <= ROUNDING * norm
    return out


def near_duplicate_rule(data: AuditDataset, ctx: AuditContext) -> NearDuplicateRule:
    """The run's rule with its per-row arrays (for in-process callers that index rows), fitted
    once and cached in the context. Its calibration is `rule_on`'s on an InProcessEngine: the
    same passes over the same graph, so both engines calibrate alike."""
    import dataclasses

    from dataaudit.engine.inprocess import InProcessEngine

    def compute() -> NearDuplicateRule:
        fitted = rule_on(InProcessEngine(data), ctx)
        if fitted.euclidean is not None:
            dist, idx = fitted.euclidean.distances, fitted.euclidean.indices
        else:
            graph = shared_graph(data, ctx)
            dist = np.where(graph.indices >= 0, _chordal(graph.similarities), np.inf)
            dist, idx = dist.astype(np.float32), graph.indices
        return dataclasses.replace(
            fitted, distances=dist, indices=idx, scale=neighbour_scales(dist)[0]
        )

    return ctx.cached("near_duplicate_rule", compute)


# -- the rule in engine form ----------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EuclideanGraph:
    """The rule's own exact Euclidean kNN graph (few dimensions): every row's arrays in process;
    on an engine that keeps them per partition (Dask) only the centre and k, and each chunk
    carries its rows' arrays (Chunk.euclidean)."""

    center: NDArray[np.float32]
    distances: NDArray[np.float32] | None
    indices: NDArray[np.int64] | None
    n_neighbors: int | None = None

    @property
    def k(self) -> int:
        return self.n_neighbors if self.indices is None else self.indices.shape[1]


def rule_on(engine, ctx: AuditContext) -> NearDuplicateRule:
    """The run's near-duplicate rule fitted on any engine, cached in the context.

    The calibration reads each row's neighbour distances in the chunk (the shared graph's
    similarities as chordal distances; with at most LOW_DIM dimensions a Euclidean graph of
    the rule's own) and needs three medians, which are exact order statistics of float32 values
    found in two histogram passes each (`medians`), so the thresholds equal `fit_rule`'s. The
    rule holds no per-row arrays: kernels get distances from `rule.chunk_graph(chunk)`, scales
    as `neighbour_scales(distances)[0]`, and judge pairs with `radii_for` / `grade_for`;
    `near_edges` collects the pairs inside the review radius. Call it once per engine (it makes
    the engine's chunks carry the graph).
    """

    def compute() -> NearDuplicateRule:
        config = ctx.config
        if engine.embedding_dim <= LOW_DIM:
            own = _euclidean_on(engine, ctx)
            metric, center, k, method, recall = (
                "euclidean",
                own.center,
                own.k,
                "exact",
                None,
            )
        else:
            info = engine.graph(ctx)
            own, metric, center, k = None, "cosine", info.center, info.k
            method, recall = info.method, info.recall
        probe = NearDuplicateRule(
            metric, center, None, None, None, 0.0, 1.0, (0, 0), (0, 0), euclidean=own, n_neighbors=k
        )
        with ctx.progress.step("near-duplicate rule (calibration passes)"):
            ((median_scale, _),) = medians(engine, _scale_values, probe).values()
            floor = COPY_SHARE * float(median_scale) if median_scale is not None else 0.0
            found = medians(engine, _distinct_values, probe, floor)
        (d1, n_distinct), (spread, _) = found["d1"], found["spread"]
        median_nn = float(d1) if n_distinct else float(median_scale or 0.0)
        dimension, local, glob = thresholds(
            k,
            n_distinct,
            float(spread) if n_distinct else 0.0,
            tail=config.near_duplicate_tail,
            caps=_caps(config),
        )
        return NearDuplicateRule(
            metric,
            center,
            None,
            None,
            None,
            median_nn,
            dimension,
            local,
            glob,
            method,
            recall,
            median_scale=float(median_scale or 0.0),
            n_neighbors=k,
            euclidean=own,
        )

    if engine.embedding_dim > LOW_DIM:
        engine.graph(ctx)  # chunks of this engine carry the graph columns from now on
    elif hasattr(engine, "euclidean_graph"):
        engine.euclidean_graph(ctx)  # ... or the Euclidean graph's
    return ctx.cached("near_duplicate_rule_on", compute)


def _euclidean_on(engine, ctx: AuditContext) -> EuclideanGraph:
    if hasattr(engine, "euclidean_graph"):  # kept per partition (Dask)
        return engine.euclidean_graph(ctx)
    data = getattr(engine, "data", None)
    if data is None:
        from dataaudit.engine import GraphNotAvailable

        raise GraphNotAvailable(
            f"graph not available on {engine.name}: the near-duplicate rule of embeddings with at "
            f"most {LOW_DIM} dimensions needs an exact Euclidean graph, built in process only"
        )

    def compute() -> EuclideanGraph:
        with ctx.progress.step("near-duplicate rule (Euclidean graph)"):
            k = min(ctx.config.knn_k, max(data.n - 1, 0))
            center = _mean(data.embeddings)
            dist, idx = euclidean_graph(np.asarray(data.embeddings, dtype=np.float32) - center, k)
            return EuclideanGraph(center, dist, idx)

    return ctx.cached("euclidean_graph", compute)


def _scale_values(chunk, rule: NearDuplicateRule) -> dict[str, NDArray]:
    return {"scale": neighbour_scales(rule.chunk_graph(chunk)[0])[0]}


def _distinct_values(chunk, rule: NearDuplicateRule, floor: float) -> dict[str, NDArray]:
    scale, d1 = neighbour_scales(rule.chunk_graph(chunk)[0])
    distinct = (d1 > floor) & (scale > floor)
    return {"d1": d1[distinct], "spread": log_ratios(d1[distinct], scale[distinct])}


# -- exact medians over chunks --------------------------------------------------------------------
_HALF = 16  # bits per histogram pass: two passes of 65,536 bins pin a float32 exactly


def _keys(values: NDArray) -> NDArray[np.uint32]:
    """float32 -> uint32 in the same order (sign bit flipped; negatives' bits inverted)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    return np.where(bits >> 31, ~bits, bits | np.uint32(0x80000000)).astype(np.uint32)


def _values(keys: NDArray) -> NDArray[np.float32]:
    keys = np.asarray(keys, dtype=np.uint32)
    bits = np.where(keys >> 31, keys & np.uint32(0x7FFFFFFF), ~keys).astype(np.uint32)
    return bits.view(np.float32)


def _high_counts(chunk, kernel, params) -> dict[str, NDArray[np.int64]]:
    return {
        name: np.bincount(_keys(v) >> _HALF, minlength=1 << _HALF)
        for name, v in kernel(chunk, *params).items()
    }


def _low_counts(chunk, kernel, params, bins: dict) -> dict[str, NDArray[np.int64]]:
    out = {}
    for name, v in kernel(chunk, *params).items():
        if not bins[name]:
            out[name] = np.zeros((0, 1 << _HALF), dtype=np.int64)
            continue
        keys = _keys(v)
        high, low = keys >> _HALF, keys & np.uint32((1 << _HALF) - 1)
        out[name] = np.stack(
            [np.bincount(low[high == b], minlength=1 << _HALF) for b in bins[name]]
        ).reshape(len(bins[name]), 1 << _HALF)
    return out


def medians(engine, kernel, *params) -> dict[str, tuple[np.float32 | None, int]]:
    """(median, count) of each float32 value set `kernel(chunk, *params)` returns as a dict,
    over all chunks: np.median's value exactly (the mean of the two middle values in float32),
    from two passes of bit-pattern histograms (`engine.map_reduce`, summed). None when empty."""
    from dataaudit.engine import add

    high = engine.map_reduce(_high_counts, add, kernel, params)
    ranks, bins = {}, {}
    for name, counts in high.items():
        n = int(counts.sum())
        middle = sorted({(n - 1) // 2, n // 2}) if n else []
        cum = np.cumsum(counts)
        at = [int(np.searchsorted(cum, r, side="right")) for r in middle]
        ranks[name] = [(b, r - (int(cum[b - 1]) if b else 0)) for b, r in zip(at, middle)]
        bins[name] = sorted(set(at))
    low = engine.map_reduce(_low_counts, add, kernel, params, bins) if any(bins.values()) else {}
    out = {}
    for name, counts in high.items():
        picked = []
        for b, r in ranks[name]:
            row = low[name][bins[name].index(b)]
            j = int(np.searchsorted(np.cumsum(row), r, side="right"))
            picked.append(_values(np.array([(b << _HALF) | j], dtype=np.uint32))[0])
        n = int(counts.sum())
        pair = picked if len(picked) == 2 else picked * 2
        value = np.mean(np.array(pair, dtype=np.float32)) if picked else None
        out[name] = (value, n)
    return out


# -- the pairs inside the review radius, from the graph columns -----------------------------------
EDGE_COLUMNS = ("a", "b", "distance", "scale_a", "scale_b")


def near_edges(engine, rule: NearDuplicateRule, limit: int) -> tuple[pd.DataFrame, int]:
    """(edges, n_candidates): every graph edge inside the review radius once, a < b, sorted by
    (a, b), with both items' scales (for `grade_for`), as `NearDuplicateRule.edges` lists them.

    Pass 1 keeps, per row, the neighbours within the review radius its own scale allows (an upper
    bound: the radius uses the smaller scale of the two), at most `limit` of them, closest first
    (exact top-k over chunks); n_candidates counts them all, so `n_candidates > limit` says the
    list was capped. Pass 2 reads the scales of the neighbours those edges name.
    """
    from dataaudit.engine import concat, select_top

    def merge(x, y):
        return select_top(pd.concat([x[0], y[0]], ignore_index=True), limit, "closeness"), x[1] + y[
            1
        ]

    found, n_candidates = engine.map_reduce(_edge_candidates, merge, rule, limit)
    wanted = np.unique(found["other"].to_numpy(np.int64))
    scales = engine.map_reduce(_scales_of, concat, rule, wanted).sort_values("pos")
    at = np.searchsorted(scales["pos"].to_numpy(), found["other"].to_numpy())
    other_scale = (
        scales["scale"].to_numpy(np.float32)[at] if len(found) else np.zeros(0, np.float32)
    )
    row_scale = found["scale"].to_numpy(np.float32)
    dist = found["distance"].to_numpy(np.float32)
    keep = dist <= rule.radii_for(row_scale, other_scale)[1]
    row, other = found["pos"].to_numpy(np.int64), found["other"].to_numpy(np.int64)
    edges = pd.DataFrame(
        {
            "a": np.minimum(row, other),
            "b": np.maximum(row, other),
            "distance": dist,
            "scale_a": np.where(row < other, row_scale, other_scale),
            "scale_b": np.where(row < other, other_scale, row_scale),
            "_row": row,
        }
    )[keep]
    # The pair as listed by its smaller row wins (NearDuplicateRule.edges keeps that one).
    edges = edges.sort_values(["a", "b", "_row"], kind="stable").drop_duplicates(["a", "b"])
    return edges.drop(columns="_row").reset_index(drop=True), int(n_candidates)


def _edge_candidates(chunk, rule: NearDuplicateRule, limit: int):
    from dataaudit.engine import select_top

    dist, idx = rule.chunk_graph(chunk)
    scale = neighbour_scales(dist)[0]
    n, k = idx.shape
    row = np.repeat(chunk.pos, k)
    slot_scale = np.repeat(scale, k)
    other, d = idx.ravel(), dist.ravel()
    ok = (other >= 0) & (other != row)
    ok[ok] = d[ok] <= rule.radii_for(slot_scale[ok], slot_scale[ok])[1]
    frame = pd.DataFrame(
        {
            "pos": row[ok],
            "other": other[ok],
            "distance": d[ok],
            "closeness": -d[ok],
            "scale": slot_scale[ok],
        }
    )
    return select_top(frame, limit, "closeness"), int(ok.sum())


def _scales_of(chunk, rule: NearDuplicateRule, wanted: NDArray[np.int64]) -> pd.DataFrame:
    rows = np.flatnonzero(np.isin(chunk.pos, wanted))
    if len(rows) == 0:
        return pd.DataFrame({"pos": np.zeros(0, np.int64), "scale": np.zeros(0, np.float32)})
    dist = rule.chunk_graph(chunk)[0][rows]
    return pd.DataFrame({"pos": chunk.pos[rows], "scale": neighbour_scales(dist)[0]})
