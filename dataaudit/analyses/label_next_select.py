"""The label-next queue's selection: every strategy over candidate pools, on the driver.

A pool is the top n eligible rows by one strategy's score, ranked (score descending, table
position ascending), as a frame: `pos`, `score`, for the OOD pool `flag` (is_ood) and for the
look-alike pool `nearest` (index of the nearest known failure), and with embeddings the rows'
`vector` (raw embedding), `scale` and `near_labeled` (the near-duplicate rule's facts of the
row). A source hands pools out (`Pools`): `ArrayPools` from whole arrays (`select_queue`, the
benchmarks), label_next's engine pools by exact per-chunk top-k on any engine.

Each strategy walks its pool in order through the de-duplicator. When a pool runs out before
its quota is filled and more eligible rows exist, it is fetched again four times larger and the
walk repeated from the same state, so the picks equal a walk over every eligible row in score
order: pools change where the rows come from, not which rows are picked. The pools start at
POOL_FACTOR candidates per pick (cluster-margin: its CANDIDATES_PER_PICK, plus that margin).
Samples (diversity, typicality) are the first rows by `strategies.position_hash`, the same on
every engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit import strategies as st
from dataaudit.similarity import NearDuplicateRule, fit_rule

STRATEGIES = (
    "mix",
    "margin",
    "entropy",
    "least_confidence",
    "bald",
    "vote_entropy",
    "kl",
    "rare",
    "ood",
    "lookalike",
    "diversity",
    "random",
)
MIX_PARTS = ("uncertainty", "rare", "ood", "lookalike")
# Cluster-margin (Citovsky et al. 2021): the most uncertain 20× the quota are clustered. 20 beat
# 3, 5 and 10 by 1-2 pp of LMR on digits and mnist_5k (benchmarks/active_learning.py).
CANDIDATES_PER_PICK = 20
# Candidates fetched per pick of a quota before the de-duplicator's walk (more when it runs out).
POOL_FACTOR = 4
# Cold start: below this many labels per class, uncertainty means little; pick typical items.
COLD_START_PER_CLASS = 3
TYPICALITY_K = 20
# Diversity, typicality and the OOD spread work on a sample of the pool, so their cost does not
# grow with N.
SAMPLE_ROWS = 20_000
# De-duplication checks picks against each other in blocks of this many.
DEDUP_BLOCK = 1024

KnnFn = Callable[..., tuple[NDArray[np.float32], NDArray[np.int64]]]


@dataclass
class Queue:
    """A selection: table positions in rank order, the strategy and score that chose each."""

    rows: NDArray[np.int64]
    strategy: NDArray[np.object_]
    score: NDArray[np.float32]
    allocation: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ood_share: float | None = None  # share of the pool flagged OOD, when flags were given
    nearest: dict[int, int] = field(default_factory=dict)  # look-alike pick -> failure index


class Pools(Protocol):
    """Where the selection's candidates come from (see the module docstring)."""

    n_eligible: int
    label_counts: NDArray[np.int64]  # labeled items per class
    has_embeddings: bool
    has_committee: bool
    rule: NearDuplicateRule | None
    ood_available: bool  # some eligible row has an OOD score
    n_ood_flagged: int | None  # eligible rows flagged OOD; None when no flags were given
    lookalike_available: bool  # some eligible row has a known failure among its neighbours

    def prefetch(self, sizes: dict[str, int]) -> None: ...

    def top(self, name: str, n: int, **params) -> tuple[pd.DataFrame, bool]: ...

    def sample(self, which: str, n: int) -> pd.DataFrame: ...


def vectors_of(frame: pd.DataFrame) -> NDArray[np.float32]:
    if not len(frame):
        return np.zeros((0, 1), dtype=np.float32)
    return np.asarray(np.stack(frame["vector"].to_numpy()), dtype=np.float32)


# -- de-duplication ---------------------------------------------------------------------------------
def near_radius(rule: NearDuplicateRule, scale_a: NDArray, scale_b: NDArray) -> NDArray:
    """The rule's near-duplicate radius of pairs whose items have these k-th-neighbour scales."""
    return rule.radii_for(scale_a, scale_b)[0]


def _distances(a: NDArray[np.float32], b: NDArray[np.float32]) -> NDArray[np.float32]:
    sa, sb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    return np.sqrt(np.maximum(sa[:, None] + sb[None, :] - 2 * (a @ b.T), 0)).astype(np.float32)


class _Deduper:
    """Accepts candidates in order unless near-duplicate of a labeled item or an earlier pick.

    A candidate is near a labeled item when its `near_labeled` fact says so (the rule's kNN
    graph: a labeled copy hidden behind more than k unlabeled copies is missed), near a pick
    when within the rule's radius of the nearest pick.
    """

    def __init__(self, rule: NearDuplicateRule | None):
        self.rule = rule
        self.selected: list[int] = []
        self.vectors: list[NDArray[np.float32]] = []
        self.scales: list[float] = []
        self.rejected = 0

    def snapshot(self) -> tuple:
        return len(self.selected), self.rejected

    def restore(self, state: tuple) -> None:
        n, self.rejected = state
        del self.selected[n:], self.vectors[n:], self.scales[n:]

    def take(self, frame: pd.DataFrame, need: int) -> NDArray[np.int64]:
        """The first `need` rows of `frame` (in order) that are not near-duplicates."""
        seen = set(self.selected)
        pos = frame["pos"].to_numpy(np.int64)
        if self.rule is None:
            fresh = [int(r) for r in pos[: need + len(seen)] if int(r) not in seen][:need]
            self.selected.extend(fresh)
            return np.asarray(fresh, dtype=np.int64)
        taken: list[int] = []
        at = 0
        while len(taken) < need and at < len(frame):
            size = min(DEDUP_BLOCK, 2 * (need - len(taken)) + 8)
            block = frame.iloc[at : at + size]
            at += len(block)
            block = block[[int(r) not in seen for r in block["pos"]]]
            if len(block) == 0:
                continue
            v = self.rule.vectors(vectors_of(block))
            scale = block["scale"].to_numpy(np.float32)
            ok = ~block["near_labeled"].to_numpy(bool)
            if self.selected:
                picked = np.asarray(self.vectors, dtype=np.float32)
                dist = _distances(v, picked)
                nearest = dist.argmin(axis=1)
                d = dist[np.arange(len(v)), nearest]
                ok &= ~(d <= near_radius(self.rule, scale, np.asarray(self.scales)[nearest]))
            keep = _greedy_unique(self.rule, v[ok], scale[ok])
            self.rejected += len(block) - int(keep.sum())
            rows = block["pos"].to_numpy(np.int64)[ok][keep]
            for r, vec, s in zip(rows, v[ok][keep], scale[ok][keep]):
                if len(taken) == need:
                    break
                taken.append(int(r))
                self.selected.append(int(r))
                self.vectors.append(vec)
                self.scales.append(float(s))
                seen.add(int(r))
        return np.asarray(taken, dtype=np.int64)


def _greedy_unique(
    rule: NearDuplicateRule, v: NDArray[np.float32], scale: NDArray[np.float32]
) -> NDArray[np.bool_]:
    """Walk rows in order; keep a row unless it is near an earlier kept row (all pairs checked)."""
    n = len(v)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    near = _distances(v, v) <= near_radius(rule, scale[:, None], scale[None, :])
    near &= np.tri(n, k=-1, dtype=bool)  # only earlier rows count
    for i in np.flatnonzero(near.any(axis=1)):
        if keep[near[i]].any():
            keep[i] = False
    return keep


# -- the selection ----------------------------------------------------------------------------------
def allocate(budget: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer quotas summing exactly to `budget` (largest remainder)."""
    names = list(weights)
    raw = np.array([weights[n] * budget for n in names])
    quotas = np.floor(raw).astype(int)
    short = budget - int(quotas.sum())
    if short > 0:
        quotas[np.argsort(-(raw - quotas), kind="stable")[:short]] += 1
    return dict(zip(names, quotas.tolist()))


def select(
    pools: Pools,
    *,
    budget: int,
    strategy: str = "mix",
    mix: dict[str, float] | None = None,
    seed: int = 0,
    knn: KnnFn | None = None,
) -> Queue:
    """Choose up to `budget` eligible rows to label next from `pools` (see select_queue)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if knn is None and pools.has_embeddings:
        from dataaudit.neighbors import knn
    budget = int(min(max(budget, 0), pools.n_eligible))
    k = len(pools.label_counts)
    n_labeled = int(pools.label_counts.sum())
    rule = pools.rule
    notes: list[str] = []
    dedup = _Deduper(rule)
    if not pools.has_embeddings:
        notes.append("no embeddings: the queue is not de-duplicated or diversified")
    rarity = st.class_rarity(pools.label_counts)

    def need(inputs_ok: bool, what: str) -> None:
        if not inputs_ok:
            raise ValueError(f"strategy {strategy!r} needs {what}")

    def check(name: str) -> None:
        if name in st.COMMITTEE:
            need(pools.has_committee, "probabilities from several models (M×N×K)")
        elif name == "ood":
            need(
                pools.ood_available or pools.n_ood_flagged is not None,
                "OOD scores (the outliers analysis, which needs embeddings)",
            )
        elif name == "lookalike":
            need(pools.lookalike_available, "known failures and embeddings")

    def walk(name, quota, *, order_of=None, keep=None, start=None, **params):
        """(picks, their scores, the pool walked) for `quota` rows of pool `name`."""
        size = start or POOL_FACTOR * quota + 8
        state = dedup.snapshot()
        while True:
            frame, complete = pools.top(name, size, **params)
            if keep is not None:
                ok = keep(frame["score"].to_numpy(np.float64))
                # Pools are ranked, so the first row failing a bound on the score ends them.
                complete = complete or not ok.all()
                frame = frame[ok]
            ordered = order_of(frame) if order_of is not None else frame
            rows = dedup.take(ordered, quota)
            if len(rows) == quota or complete:
                score = pd.Series(frame["score"].to_numpy(), index=frame["pos"].to_numpy())
                return rows, score.loc[rows].to_numpy(np.float32), frame
            dedup.restore(state)
            size *= 4

    if strategy == "diversity":
        need(pools.has_embeddings, "embeddings")
        cand = pools.sample("eligible", SAMPLE_ROWS)
        centers = pools.sample("labeled", SAMPLE_ROWS)
        order = cand.iloc[
            st.k_center_greedy(
                vectors_of(cand), min(len(cand), 3 * budget + 10), vectors_of(centers)
            )
        ]
        rows = dedup.take(order, budget)
        # k-center order: earlier picks are farther from everything labeled.
        score = np.linspace(1, 0, len(rows), endpoint=False, dtype=np.float32)
        return Queue(rows, np.full(len(rows), "diversity", object), score, notes=notes)

    if strategy != "mix":
        check(strategy)
        params = {"rarity": rarity} if strategy == "rare" else {}
        rows, score, frame = walk(strategy, budget, **params)
        nearest = _nearest_of(frame, rows) if strategy == "lookalike" else {}
        return Queue(
            rows, np.full(len(rows), strategy, object), score, notes=notes, nearest=nearest
        )

    # -- mix ----------------------------------------------------------------------------------
    weights = dict(mix or {"uncertainty": 1.0})
    unavailable = {
        "ood": None if pools.ood_available else "no OOD scores (the outliers analysis did not run)",
        "lookalike": None if pools.lookalike_available else "no known failures with embeddings",
        "rare": None if (rarity > 0).any() else "no class is rare among the labels",
    }
    quotas = allocate(budget, weights)
    ood_share = None
    if pools.n_ood_flagged is not None and unavailable["ood"] is None and pools.n_eligible:
        ood_share = pools.n_ood_flagged / pools.n_eligible
        floor = min(int(np.ceil(ood_share * budget - 1e-9)), budget)
        if floor > quotas.get("ood", 0):
            # At least random sampling's share of the region the model never saw.
            quotas = _raise_quota(quotas, "ood", floor)
            notes.append(
                f"ood quota raised to {floor}: {ood_share:.1%} of the pool is flagged OOD, and "
                "the queue gives that region at least its random share"
            )
    spread = pools.n_ood_flagged is not None and pools.has_embeddings and rule is not None
    ood_start = (min(pools.n_ood_flagged or 0, SAMPLE_ROWS) if spread else 0) + (
        POOL_FACTOR * quotas.get("ood", 0) + 8
    )
    sizes = {
        part: (ood_start if part == "ood" else POOL_FACTOR * quotas[part] + 8)
        for part in ("ood", "lookalike", "rare")
        if quotas.get(part, 0) and not unavailable[part]
    }
    sizes["margin"] = (CANDIDATES_PER_PICK + POOL_FACTOR) * budget + 8
    pools.prefetch(sizes)

    picks: dict[str, tuple[NDArray[np.int64], NDArray[np.float32]]] = {}
    nearest: dict[int, int] = {}
    allocation = []
    for part in ("ood", "lookalike", "rare"):
        quota = quotas.get(part, 0)
        reason = unavailable[part]
        if quota and reason:
            notes.append(f"{part} quota ({quota}) went to uncertainty: {reason}")
            allocation.append(
                dict(strategy=part, weight=weights.get(part, 0.0), quota=quota, selected=0)
            )
            continue
        if not quota:
            continue
        if part == "rare":
            # Only items the quota's score flags: a zero rarity is not a rare prediction.
            rows, score, frame = walk(
                part, quota, keep=lambda s: np.isfinite(s) & (s > 0), rarity=rarity
            )
        elif part == "ood" and spread:
            rows, score, frame = walk(
                part,
                quota,
                keep=np.isfinite,
                start=ood_start,
                order_of=lambda f, q=quota: _spread_flagged(f, rule, q, seed),
            )
        else:
            rows, score, frame = walk(part, quota, keep=np.isfinite)
        if part == "lookalike":
            nearest = _nearest_of(frame, rows)
        picks[part] = (rows, score)
        allocation.append(
            dict(strategy=part, weight=weights.get(part, 0.0), quota=quota, selected=len(rows))
        )

    remaining = budget - sum(len(r) for r, _ in picks.values())
    backbone, rows, score = _backbone(pools, n_labeled, k, remaining, dedup, walk, seed, knn)
    picks[backbone] = (rows, score)
    allocation.insert(
        0,
        dict(
            strategy=backbone,
            weight=weights.get("uncertainty", 0.0),
            quota=quotas.get("uncertainty", 0),
            selected=len(rows),
        ),
    )
    if backbone == "typicality":
        notes.append(
            f"cold start: fewer than {COLD_START_PER_CLASS} labels per class, so the backbone picks "
            "typical items of uncovered clusters (TypiClust) instead of uncertain ones"
        )
    if dedup.rejected:
        notes.append(f"{dedup.rejected} near-duplicate candidates were passed over")

    # Interleave in proportion: the j-th of n picks of a strategy sits at (j + 0.5) / n.
    all_rows, all_strategy, all_score, position = [], [], [], []
    for name, (rows, score) in picks.items():
        m = len(rows)
        all_rows.append(rows)
        all_strategy.append(np.full(m, name, dtype=object))
        all_score.append(score)
        position.append((np.arange(m) + 0.5) / max(m, 1))
    rows = np.concatenate(all_rows)
    order = np.argsort(np.concatenate(position), kind="stable")
    return Queue(
        rows[order],
        np.concatenate(all_strategy)[order],
        np.concatenate(all_score)[order].astype(np.float32),
        allocation,
        notes,
        ood_share,
        nearest,
    )


def _nearest_of(frame: pd.DataFrame, rows: NDArray[np.int64]) -> dict[int, int]:
    if "nearest" not in frame.columns:
        return {}
    nearest = dict(zip(frame["pos"].tolist(), frame["nearest"].tolist()))
    return {int(r): int(nearest[int(r)]) for r in rows}


def _raise_quota(quotas: dict[str, int], part: str, value: int) -> dict[str, int]:
    """`part` raised to `value`, the difference taken from uncertainty, then from the others."""
    out = dict(quotas)
    extra = value - out.get(part, 0)
    out[part] = value
    for name in ["uncertainty", *[p for p in out if p not in ("uncertainty", part)]]:
        take = min(extra, out.get(name, 0))
        if take:
            out[name] -= take
            extra -= take
    return out


def _spread_flagged(
    frame: pd.DataFrame, rule: NearDuplicateRule, quota: int, seed: int
) -> pd.DataFrame:
    """Flagged rows of the ranked OOD pool spread over their region, then the rest in order.

    A region the model never saw is often one tight cluster whose most OOD items are each
    other's neighbours, so plain top-k spends the quota on one corner. The flagged rows (the
    first SAMPLE_ROWS of them in score order) are clustered (k-means, `quota` clusters) and the
    quota is shared among the clusters in proportion to their size (largest remainder), each
    taking its best-scored items, in turns; the rest follow in the same proportional turns, for
    picks that de-duplication rejects.
    """
    mask = frame["flag"].to_numpy(bool)
    inside, rest = frame[mask], frame[~mask]
    if len(inside) > quota > 1:
        sample = inside.iloc[:SAMPLE_ROWS]
        clusters = st.cluster_labels(rule.vectors(vectors_of(sample)), quota, seed=seed)
        size = np.bincount(clusters)
        share = allocate(quota, {c: float(n) for c, n in enumerate(size)})
        alloc = np.array([share[c] for c in range(len(size))], dtype=np.float64)
        # Rank within the cluster, by the order `sample` already has (score order).
        by_cluster = np.argsort(clusters, kind="stable")
        starts = np.r_[0, np.cumsum(size)[:-1]]
        within = np.empty(len(sample), dtype=np.int64)
        within[by_cluster] = np.arange(len(sample)) - np.repeat(starts, size)
        first = within < alloc[clusters]
        position = np.where(
            first,
            (within + 0.5) / np.maximum(alloc[clusters], 1),
            1 + (within + 0.5) / size[clusters],
        )
        inside = pd.concat(
            [sample.iloc[np.argsort(position, kind="stable")], inside.iloc[SAMPLE_ROWS:]]
        )
    return pd.concat([inside, rest])


def _backbone(pools, n_labeled, k, quota, dedup, walk, seed, knn):
    """(name, rows, scores) of the mix's main share: cluster-margin, typicality or margin."""
    if quota <= 0:
        return "cluster_margin", np.empty(0, np.int64), np.empty(0, np.float32)
    if pools.has_embeddings and n_labeled < COLD_START_PER_CLASS * k:
        cand = pools.sample("eligible", SAMPLE_ROWS)
        vecs = vectors_of(cand)
        kk = min(TYPICALITY_K, len(cand) - 1)
        typical = (
            st.typicality(knn(vecs, None, k=kk, exclude_self=True)[0])
            if kk > 0
            else np.ones(len(cand), np.float32)
        )
        labeled = pools.sample("labeled", n_labeled)
        both = np.concatenate([vecs, vectors_of(labeled)]) if n_labeled else vecs
        clusters = st.cluster_labels(both, n_labeled + quota, seed=seed)
        size = np.bincount(clusters, minlength=clusters.max() + 1).astype(np.float64)
        covered = np.bincount(clusters[len(cand) :], minlength=len(size)) > 0
        # Uncovered clusters first, largest first (TypiClust).
        priority = size - covered * (size.max() + 1)
        order = st.stratified_order(clusters[: len(cand)], typical, priority)
        rows = dedup.take(cand.iloc[order], quota)
        score = pd.Series(typical, index=cand["pos"].to_numpy())
        return "typicality", rows, score.loc[rows].to_numpy(np.float32)

    # The margin is that of the committee's mean when several models were given.
    if not pools.has_embeddings:
        rows, score, _ = walk("margin", quota)
        return "margin", rows, score
    cand_n = min(pools.n_eligible, CANDIDATES_PER_PICK * quota)

    def cluster_margin(frame: pd.DataFrame) -> pd.DataFrame:
        cand = frame.iloc[:cand_n]
        strat = st.cluster_margin_order(
            cand["score"].to_numpy(np.float32), vectors_of(cand), quota, seed=seed
        )
        return pd.concat([cand.iloc[strat], frame.iloc[cand_n:]])

    start = cand_n + POOL_FACTOR * quota + 8
    rows, score, _ = walk("margin", quota, order_of=cluster_margin, start=start)
    return "cluster_margin", rows, score


# -- pools from whole arrays ------------------------------------------------------------------------
class ArrayPools:
    """Pools over in-memory arrays: every eligible row scored at once, pools are slices."""

    def __init__(
        self,
        probs: NDArray,
        labels: NDArray[np.int64],
        *,
        eligible: NDArray[np.bool_] | None = None,
        member_probs: NDArray | None = None,
        embeddings: NDArray | None = None,
        ood_score: NDArray | None = None,
        ood_flag: NDArray[np.bool_] | None = None,
        lookalike_score: NDArray | None = None,
        rule: NearDuplicateRule | None = None,
        near_labeled: NDArray[np.bool_] | None = None,
        seed: int = 0,
    ):
        self.probs = np.asarray(probs, dtype=np.float32)
        self.labels = np.asarray(labels, dtype=np.int64)
        n, k = self.probs.shape
        if eligible is None:
            eligible = self.labels < 0
        self.pool = np.flatnonzero(np.asarray(eligible) & (self.labels < 0))
        self.labeled_rows = np.flatnonzero(self.labels >= 0)
        self.n_eligible = len(self.pool)
        self.label_counts = np.bincount(self.labels[self.labeled_rows], minlength=k)
        self.member_probs = member_probs
        self.has_committee = member_probs is not None
        self.embeddings = embeddings
        self.has_embeddings = embeddings is not None
        if rule is None and embeddings is not None and n > 1:
            from dataaudit.config import AuditConfig

            rule = fit_rule(np.asarray(embeddings), AuditConfig())
        self.rule = rule
        if rule is not None and near_labeled is None:
            near_labeled = near_labeled_rows(rule, self.labels >= 0)
        self.near_labeled = near_labeled
        self.ood_score = None if ood_score is None else np.asarray(ood_score, dtype=np.float32)
        self.ood_flag = None if ood_flag is None else np.asarray(ood_flag, dtype=bool)
        self.ood_available = self.ood_score is not None and bool(
            np.isfinite(self.ood_score[self.pool]).any()
        )
        self.n_ood_flagged = None if self.ood_flag is None else int(self.ood_flag[self.pool].sum())
        self.lookalike_score = lookalike_score
        self.lookalike_available = lookalike_score is not None and bool(
            np.isfinite(np.asarray(lookalike_score)[self.pool]).any()
        )
        self.seed = seed

    def prefetch(self, sizes: dict[str, int]) -> None:
        pass

    def _scores(self, name: str, rarity=None) -> NDArray:
        pool = self.pool
        if name in st.UNCERTAINTY:
            return st.UNCERTAINTY[name](self.probs[pool])
        if name in st.COMMITTEE:
            return st.COMMITTEE[name](np.asarray(self.member_probs)[:, pool])
        if name == "rare":
            return st.rare_prediction(self.probs[pool], rarity)
        if name == "ood":
            return st.ood(self.ood_score[pool])
        if name == "lookalike":
            return st.lookalike(np.asarray(self.lookalike_score)[pool])
        if name == "random":
            return st.position_hash(pool, self.seed)
        raise AssertionError(name)

    def top(self, name: str, n: int, rarity=None) -> tuple[pd.DataFrame, bool]:
        s = self._scores(name, rarity)
        order = np.argsort(-s.astype(np.float64), kind="stable")[:n]
        frame = pd.DataFrame({"pos": self.pool[order], "score": s[order]})
        if name == "ood" and self.ood_flag is not None:
            frame["flag"] = self.ood_flag[frame["pos"].to_numpy()]
        return self._payload(frame), len(order) >= len(self.pool)

    def sample(self, which: str, n: int) -> pd.DataFrame:
        rows = self.pool if which == "eligible" else self.labeled_rows
        key = st.position_hash(rows, self.seed)
        rows = np.sort(rows[np.argsort(-key, kind="stable")[:n]])
        return self._payload(pd.DataFrame({"pos": rows}))

    def _payload(self, frame: pd.DataFrame) -> pd.DataFrame:
        if self.embeddings is None:
            return frame
        pos = frame["pos"].to_numpy(np.int64)
        frame["vector"] = list(np.asarray(self.embeddings[pos], dtype=np.float32))
        if self.rule is not None:
            frame["scale"] = self.rule.scale[pos]
            frame["near_labeled"] = self.near_labeled[pos]
        return frame


def near_labeled_rows(rule: NearDuplicateRule, labeled: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Rows with a labeled near-duplicate among their neighbours in the rule's kNN graph.

    The graph is built once per run (duplicates and outliers use it too). It holds k
    neighbours per item, so a labeled copy hidden behind more than k unlabeled copies is missed.
    """
    a, b, dist = rule.edges()
    near = rule.is_near(a, b, dist)
    a, b = a[near], b[near]
    out = np.zeros(len(labeled), dtype=bool)
    out[a[labeled[b]]] = True
    out[b[labeled[a]]] = True
    return out


def select_queue(
    probs: NDArray,
    labels: NDArray[np.int64],
    *,
    budget: int,
    strategy: str = "mix",
    mix: dict[str, float] | None = None,
    eligible: NDArray[np.bool_] | None = None,
    member_probs: NDArray | None = None,
    embeddings: NDArray | None = None,
    ood_score: NDArray | None = None,
    ood_flag: NDArray[np.bool_] | None = None,
    lookalike_score: NDArray | None = None,
    rule: NearDuplicateRule | None = None,
    near_labeled: NDArray[np.bool_] | None = None,
    seed: int = 0,
    knn: KnnFn | None = None,
) -> Queue:
    """Choose up to `budget` rows to label next, from whole arrays (the analysis' selection).

    Parameters
    ----------
    probs : N×K probabilities (mean over models).
    labels : N class indices, -1 = unlabeled.
    eligible : rows that may be queued (default: unlabeled rows).
    ood_score, lookalike_score : per-row scores from the similarity engine (NaN = none).
    ood_flag : rows flagged out-of-distribution; in `mix` their share s of the pool sets the
        OOD quota's floor, ceil(s x budget), and the quota's picks are spread over them.
    rule : the near-duplicate rule (`dataaudit.similarity`); default fitted on `embeddings`.
    near_labeled : rows already known to be near-duplicates of a labeled row; default read off
        the rule's kNN graph.
    knn : `dataaudit.neighbors.knn` (default) or a compatible function.

    Returns
    -------
    Queue with exactly min(budget, eligible rows left after de-duplication) rows.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    pools = ArrayPools(
        probs,
        labels,
        eligible=eligible,
        member_probs=member_probs,
        embeddings=embeddings,
        ood_score=ood_score,
        ood_flag=ood_flag,
        lookalike_score=lookalike_score,
        rule=rule,
        near_labeled=near_labeled,
        seed=seed,
    )
    return select(pools, budget=budget, strategy=strategy, mix=mix, seed=seed, knn=knn)
