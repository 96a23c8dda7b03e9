"""Label next: one ranked queue of unlabeled items worth an annotator's time, within a budget.

Requires: probs and unlabeled items. Uses embeddings (diversity, de-duplication, look-alikes,
all through the run's shared kNN graph), committee probabilities (committee strategies,
difficulty, auto-label), and, when those analyses ran, `label_errors` (is_label_error) and
`outliers` (ood_score in its "items" table). A missing input drops the quota that needs it, and
the result's notes say so.

Eligible items: every item without a label (unlabeled pool and production rows alike).

Strategy `mix` (default; `config.label_next_mix` sets the weights):
- small quotas first, for coverage the model's own doubt misses: `ood` (most out-of-distribution
  vs train), `lookalike` (nearest to a known failure: label-error candidate or misclassified
  labeled item), `rare` (predicted as a class rare among the labels);
- the rest goes to the backbone: cluster-margin (the most uncertain candidates, 20× the quota,
  clustered over embeddings, best of each cluster in turn), or typicality (TypiClust) at cold
  start, while fewer than 3 labels per class exist. Without embeddings it is plain margin.
  With several models the margin is that of their mean: in benchmarks/active_learning.py a BALD
  backbone over a bootstrap committee did worse than random, margin of the mean did not.
- the strategies' picks are interleaved in proportion, so any prefix of the queue has the mix.
Any single strategy name (margin, entropy, least_confidence, bald, vote_entropy, kl, rare, ood,
lookalike, diversity, random) ranks by that score alone.

Every strategy's picks are de-duplicated: an item that is a near-duplicate of an already-labeled
item or of an earlier pick, by the run's calibrated rule (dataaudit/similarity.py, the one the
duplicates analysis groups by), is passed over.

The OOD quota adapts to the data: when a share s of the pool is flagged out-of-distribution
(`is_ood` of the outliers analysis), it gets at least ceil(s x budget) slots, what random
sampling would give that region, and its picks are spread over the region (the flagged items
are clustered, and the quota shared among clusters in proportion to their size, each taking
its most OOD items).

Table "queue" (= label_next.csv): rank, id, priority (1 = label first, falling to ~0), reason,
predicted_label, predicted_prob, strategy, difficulty (easy / medium / hard), score (the
strategy's own score).
Table "auto_label": rank, id, predicted_label, predicted_prob, agreement: unlabeled items so
confidently (and unanimously, with a committee) predicted that a reviewer could accept the label;
the confidence cut is the lowest at which labeled items reach `config.auto_label_precision`.
Table "allocation": strategy, weight, quota, selected.
Summary: label_next_budget, label_next_count, auto_label_count, auto_label_estimated_precision.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit import strategies as st
from dataaudit.analyses.calibration import decision_probs
from dataaudit.analyses.reviews import pending_rows
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.similarity import NearDuplicateRule, fit_rule, near_duplicate_rule
from dataaudit.stats import wilson_interval

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
# Cold start: below this many labels per class, uncertainty means little; pick typical items.
COLD_START_PER_CLASS = 3
TYPICALITY_K = 20
# Diversity and typicality work on a sample of the pool, so their cost does not grow with N.
SAMPLE_ROWS = 20_000
# Known failures whose look-alikes count: label-error candidates first, then misclassified.
MAX_FAILURES = 100_000
# De-duplication checks picks against each other in blocks of this many.
DEDUP_BLOCK = 1024

KnnFn = Callable[..., tuple[NDArray[np.float32], NDArray[np.int64]]]


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    # Temperature-scaled probabilities when the calibration analysis found them miscalibrated.
    data, calibrated = decision_probs(data, ctx)
    notes: list[str] = [calibrated] if calibrated else []
    strategy = config.strategy
    mix = parse_mix(config.label_next_mix)
    # Items out for labeling with no verdict yet (the verdict ledger) are not sent twice.
    eligible = ~data.labeled & ~pending_rows(data, ctx)
    ood_score = _ood_scores(data, ctx.results.get("outliers"))
    failure_rows, failure_kind = _failures(data, ctx.results.get("label_errors"))
    lookalike_score, nearest = _lookalike_scores(data, ctx, failure_rows, eligible)

    rule = near_duplicate_rule(data, ctx) if data.embeddings is not None else None
    near_labeled = _near_labeled(rule, data.labeled) if rule is not None else None
    ood_flag = _ood_flags(data, ctx.results.get("outliers"))
    with ctx.progress.step("label-next queue"):
        queue = select_queue(
            data.probs,
            data.labels,
            budget=config.budget,
            strategy=strategy,
            mix=mix,
            eligible=eligible,
            member_probs=data.member_probs,
            embeddings=data.embeddings,
            ood_score=ood_score,
            ood_flag=ood_flag,
            lookalike_score=lookalike_score,
            rule=rule,
            near_labeled=near_labeled,
            seed=config.seed,
        )
    notes.extend(queue.notes)
    rows = queue.rows
    first, second, p1, p2 = st.top2(data.probs[rows]) if len(rows) else (rows, rows, rows, rows)
    labeled_counts = np.bincount(data.labels[data.labeled], minlength=data.k)
    context = _ReasonContext(
        classes=data.classes,
        labeled_counts=labeled_counts,
        member_votes=None
        if data.member_probs is None
        else np.asarray(data.member_probs[:, rows]).argmax(axis=2),
        nearest_failure=None if nearest is None else nearest[rows],
        failure_ids=None if failure_rows is None else data.ids[failure_rows],
        failure_kind=failure_kind,
        ood_share=queue.ood_share,
    )
    reasons = [
        _reason(name, float(score), i, int(a), int(b), float(pa), float(pb), context)
        for i, (name, score, a, b, pa, pb) in enumerate(
            zip(queue.strategy, queue.score, first, second, p1, p2)
        )
    ]
    n_q = len(rows)
    queue_frame = pd.DataFrame(
        {
            "rank": np.arange(1, n_q + 1, dtype=np.int64),
            "id": data.ids[rows],
            "priority": np.round(1.0 - np.arange(n_q) / max(n_q, 1), 4),
            "reason": np.asarray(reasons, dtype=object),
            "predicted_label": data.label_names(data.predicted[rows]),
            "predicted_prob": data.probs[rows].max(axis=1).astype(np.float32),
            "strategy": queue.strategy,
            "difficulty": st.difficulty(
                data.probs[rows], None if data.member_probs is None else data.member_probs[:, rows]
            ),
            "score": queue.score,
        }
    )

    not_queued = eligible.copy()
    not_queued[rows] = False
    auto_frame, auto = auto_label(data, not_queued, config)
    notes.append(auto["note"])
    allocation = pd.DataFrame(
        queue.allocation
        or [dict(strategy=strategy, weight=1.0, quota=config.budget, selected=n_q)],
        columns=["strategy", "weight", "quota", "selected"],
    )
    if strategy == "mix":
        notes.insert(
            0,
            "mix weights: "
            + ", ".join(f"{name} {w:.0%}" for name, w in mix.items())
            + " (config label_next_mix); the uncertainty share is cluster-margin "
            "(margin of the models' mean when several are given), typicality at cold start",
        )
    if n_q < config.budget:
        notes.append(
            f"only {n_q} items could be queued for a budget of {config.budget} "
            f"({int(eligible.sum())} unlabeled items, near-duplicates passed over)"
        )
    return AnalysisResult(
        name="label_next",
        tables={"queue": queue_frame, "auto_label": auto_frame, "allocation": allocation},
        summary={
            "label_next_budget": int(config.budget),
            "label_next_count": n_q,
            "auto_label_count": int(len(auto_frame)),
            "auto_label_estimated_precision": auto["precision"],
        },
        params={
            "strategy": strategy,
            "budget": int(config.budget),
            "mix": mix,
            "near_duplicates": "calibrated rule of the duplicates analysis"
            if rule is not None
            else "not de-duplicated (no embeddings)",
            "ood_share": queue.ood_share,
            "auto_label_precision": config.auto_label_precision,
            "auto_label_threshold": auto["threshold"],
            "candidates_per_pick": CANDIDATES_PER_PICK,
            "cold_start_labels_per_class": COLD_START_PER_CLASS,
        },
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="label_next",
    title="Label next",
    run=run,
    requires=("probs", "unlabeled"),
    # Reads `outliers` too when it ran (registered earlier), but works without it, so it is not
    # listed: the pipeline skips an analysis whose `after` entry was skipped.
    after=("label_errors",),
)


# -- helpers on arrays ---------------------------------------------------------------------------


def auto_label(
    data: AuditDataset, candidates: NDArray[np.bool_], config: AuditConfig
) -> tuple[pd.DataFrame, dict]:
    """Confident, unanimous predictions among `candidates`, with precision estimated on labeled items."""
    conf = data.probs.max(axis=1).astype(np.float32)
    agree = st.agreement(data.probs, data.member_probs)
    unanimous = agree >= 1.0
    labeled = data.labeled & unanimous
    correct = data.predicted[labeled] == data.labels[labeled]
    threshold, precision, support = st.auto_label_threshold(
        conf[labeled], correct, config.auto_label_precision
    )
    pick = np.flatnonzero(candidates & unanimous & (conf >= threshold))
    pick = pick[np.argsort(-conf[pick], kind="stable")]
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(pick) + 1, dtype=np.int64),
            "id": data.ids[pick],
            "predicted_label": data.label_names(data.predicted[pick]),
            "predicted_prob": conf[pick],
            "agreement": agree[pick],
        }
    )
    if np.isfinite(threshold):
        low, high = wilson_interval(round(precision * support), support, config.confidence_level)
        note = (
            f"auto-label: {len(pick)} unlabeled items predicted with confidence ≥ {threshold:.3f}"
            + (" by every model" if data.n_models > 1 else "")
            + f"; at that cut {support} labeled items are {precision:.1%} correct "
            f"({config.confidence_level:.0%} CI {float(low):.1%}–{float(high):.1%}), the estimated "
            "precision if the unlabeled items resemble the labeled ones"
        )
    else:
        note = (
            f"auto-label: no confidence cut reaches {config.auto_label_precision:.0%} precision "
            "on at least 30 labeled items, so no item is proposed"
        )
        precision = float("nan")
    return frame, {
        "precision": None if not np.isfinite(precision) else float(precision),
        "threshold": None if not np.isfinite(threshold) else float(threshold),
        "note": note,
    }


def _near_labeled(rule: NearDuplicateRule, labeled: NDArray[np.bool_]) -> NDArray[np.bool_]:
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


def _rows_of(data: AuditDataset, ids) -> NDArray[np.int64]:
    pos = pd.Index(data.ids).get_indexer(pd.Index(ids))
    return pos[pos >= 0].astype(np.int64)


def _ood_scores(data: AuditDataset, outliers) -> NDArray[np.float32] | None:
    """Per-row OOD score from the outliers analysis (NaN where it gave none), or None."""
    if outliers is None or "items" not in outliers.tables:
        return None
    items = outliers.tables["items"]
    if "ood_score" not in items.columns or "id" not in items.columns:
        return None
    out = np.full(data.n, np.nan, dtype=np.float32)
    pos = pd.Index(data.ids).get_indexer(pd.Index(items["id"]))
    ok = pos >= 0
    out[pos[ok]] = items["ood_score"].to_numpy(dtype=np.float32)[ok]
    return out if np.isfinite(out).any() else None


def _ood_flags(data: AuditDataset, outliers) -> NDArray[np.bool_] | None:
    """Per-row is_ood flag from the outliers analysis, or None when it did not score OOD."""
    if outliers is None or "items" not in outliers.tables:
        return None
    items = outliers.tables["items"]
    if "is_ood" not in items.columns or not outliers.summary.get("n_ood_scored"):
        return None
    out = np.zeros(data.n, dtype=bool)
    pos = pd.Index(data.ids).get_indexer(pd.Index(items["id"]))
    ok = pos >= 0
    out[pos[ok]] = items["is_ood"].to_numpy(dtype=bool)[ok]
    return out


def _failures(data: AuditDataset, label_errors) -> tuple[NDArray[np.int64] | None, NDArray]:
    """Rows of known failures: label-error candidates, then confidently misclassified items."""
    flagged = np.empty(0, dtype=np.int64)
    if label_errors is not None and "items" in label_errors.tables:
        items = label_errors.tables["items"]
        if "is_label_error" in items.columns:
            flagged = _rows_of(data, items.loc[items["is_label_error"].astype(bool), "id"])
    wrong = np.flatnonzero(data.labeled & (data.predicted != data.labels))
    wrong = np.setdiff1d(wrong, flagged)
    wrong = wrong[np.argsort(-data.probs[wrong].max(axis=1), kind="stable")]
    rows = np.concatenate([flagged, wrong])[:MAX_FAILURES]
    kind = np.where(np.arange(len(rows)) < len(flagged), "label error", "misclassified")
    return (rows if len(rows) else None), kind.astype(object)


def _lookalike_scores(data, ctx, failure_rows, eligible):
    """(similarity to the nearest failure per row, index into failure_rows) or (None, None).

    Read off the run's shared kNN graph: an unlabeled item is a look-alike when a known failure
    is among its k nearest neighbours. O(N·k), no extra search; NaN where no failure is near.
    """
    if failure_rows is None or data.embeddings is None or not eligible.any():
        return None, None
    from dataaudit.neighbors import shared_graph

    graph = shared_graph(data, ctx)
    # One extra slot so that a missing neighbour (index -1) reads as "not a failure".
    failure_pos = np.full(data.n + 1, -1, dtype=np.int64)
    failure_pos[failure_rows] = np.arange(len(failure_rows))
    score = np.full(data.n, np.nan, dtype=np.float32)
    nearest = np.full(data.n, -1, dtype=np.int64)
    pool = np.flatnonzero(eligible)
    for start in range(0, len(pool), 200_000):
        rows = pool[start : start + 200_000]
        sims, idx = graph.similarities[rows], graph.indices[rows]
        pos = failure_pos[idx]
        masked = np.where(pos >= 0, sims, -np.inf)
        best = masked.argmax(axis=1)
        found = np.isfinite(masked[np.arange(len(rows)), best])
        score[rows[found]] = masked[np.arange(len(rows)), best][found]
        nearest[rows[found]] = pos[np.arange(len(rows)), best][found]
    return (score, nearest) if np.isfinite(score).any() else (None, None)


@dataclass
class _ReasonContext:
    classes: Sequence[str]
    labeled_counts: NDArray[np.int64]
    member_votes: NDArray | None  # M × queue
    nearest_failure: NDArray[np.int64] | None  # per queue row, index into failure_ids
    failure_ids: NDArray | None
    failure_kind: NDArray | None
    ood_share: float | None = None


def _reason(name, score, i, a, b, pa, pb, c: _ReasonContext) -> str:
    """One line saying why the item is in the queue, e.g. 'margin 0.03 between cat/dog'."""
    ca, cb = c.classes[a], c.classes[b]
    if name in ("margin", "cluster_margin"):
        return f"margin {pa - pb:.2f} between {ca}/{cb}"
    if name == "least_confidence":
        return f"top class {ca} at only {pa:.2f}"
    if name == "entropy":
        return f"entropy {score:.2f} ({ca} {pa:.2f}, {cb} {pb:.2f})"
    if name in ("bald", "cluster_bald"):
        return f"models disagree (BALD {score:.2f}): {ca} vs {cb}"
    if name == "vote_entropy" and c.member_votes is not None:
        votes = c.member_votes[:, i]
        return (
            f"{int((votes == a).sum())} of {len(votes)} models say {ca} (vote entropy {score:.2f})"
        )
    if name == "kl":
        return f"models diverge from the consensus {ca} (KL {score:.2f})"
    if name == "rare":
        return f"predicted {ca} ({pa:.2f}), a rare class ({int(c.labeled_counts[a])} labeled)"
    if name == "ood":
        if c.ood_share:
            return (
                f"OOD vs train (score {score:.2f}); the OOD region holds {c.ood_share:.1%} of "
                "the pool, so it gets at least that share of the queue, spread across it"
            )
        return f"OOD vs train (score {score:.2f})"
    if name == "lookalike" and c.nearest_failure is not None and c.failure_ids is not None:
        j = int(c.nearest_failure[i])
        return f"near {c.failure_kind[j]} #{c.failure_ids[j]} (similarity {score:.2f})"
    if name == "typicality":
        return "typical of an unlabeled cluster (cold start)"
    if name == "diversity":
        return "far from everything labeled"
    if name == "random":
        return "random pick (control)"
    return f"{name} {score:.2f}"


def parse_mix(spec: str) -> dict[str, float]:
    """'uncertainty:0.9,rare:0.04' -> {'uncertainty': 0.9, 'rare': 0.04}, normalised to sum 1."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        name, sep, value = part.partition(":")
        name = name.strip()
        if not sep or name not in MIX_PARTS:
            raise ValueError(
                f"label_next_mix entry {part!r} must look like name:weight with name one of "
                f"{', '.join(MIX_PARTS)}"
            )
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(
                f"label_next_mix weight {value!r} for {name!r} is not a number"
            ) from None
        if weights[name] < 0:
            raise ValueError(f"label_next_mix weight for {name!r} must be ≥ 0, got {value}")
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("label_next_mix needs at least one positive weight")
    return {name: w / total for name, w in weights.items()}


def allocate(budget: int, weights: dict[str, float]) -> dict[str, int]:
    """Integer quotas summing exactly to `budget` (largest remainder)."""
    names = list(weights)
    raw = np.array([weights[n] * budget for n in names])
    quotas = np.floor(raw).astype(int)
    short = budget - int(quotas.sum())
    if short > 0:
        quotas[np.argsort(-(raw - quotas), kind="stable")[:short]] += 1
    return dict(zip(names, quotas.tolist()))


@dataclass
class Queue:
    """A selection: row positions in rank order, the strategy and score that chose each."""

    rows: NDArray[np.int64]
    strategy: NDArray[np.object_]
    score: NDArray[np.float32]
    allocation: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ood_share: float | None = None  # share of the pool flagged OOD, when flags were given


class _Deduper:
    """Accepts candidates in order unless near-duplicate of a labeled item or an earlier pick."""

    def __init__(
        self,
        embeddings: NDArray | None,
        labeled_rows: NDArray[np.int64],
        rule: NearDuplicateRule | None,
        near_labeled: NDArray[np.bool_] | None = None,
    ):
        self.emb = embeddings
        self.labeled = labeled_rows
        self.near_labeled = near_labeled
        self.rule = rule
        self.selected: list[int] = []
        self.rejected = 0

    def _near(self, rows: NDArray[np.int64], index_rows: NDArray[np.int64]) -> NDArray[np.bool_]:
        if len(index_rows) == 0 or len(rows) == 0:
            return np.zeros(len(rows), dtype=bool)
        dist, nearest = self.rule.nearest(self.emb, rows, index_rows)
        return self.rule.is_near(rows, nearest, dist)

    def take(self, order: NDArray[np.int64], need: int) -> NDArray[np.int64]:
        """The first `need` rows of `order` that are not near-duplicates; updates the picks."""
        taken: list[int] = []
        seen = set(self.selected)
        if self.emb is None or self.rule is None:
            fresh = [int(r) for r in order[: need + len(seen)] if int(r) not in seen][:need]
            self.selected.extend(fresh)
            return np.asarray(fresh, dtype=np.int64)
        pos = 0
        while len(taken) < need and pos < len(order):
            block = np.asarray(
                order[pos : pos + min(DEDUP_BLOCK, 2 * (need - len(taken)) + 8)], dtype=np.int64
            )
            pos += len(block)
            block = block[[int(r) not in seen for r in block]]
            if len(block) == 0:
                continue
            if self.near_labeled is not None:
                ok = ~self.near_labeled[block]
            else:
                ok = ~self._near(block, self.labeled)
            ok &= ~self._near(block, np.asarray(self.selected, dtype=np.int64))
            block_ok = block[ok]
            keep = _greedy_unique(self.rule, self.emb, block_ok)
            self.rejected += len(block) - int(keep.sum())
            for r in block_ok[keep]:
                if len(taken) == need:
                    break
                taken.append(int(r))
                self.selected.append(int(r))
                seen.add(int(r))
        return np.asarray(taken, dtype=np.int64)


def _greedy_unique(
    rule: NearDuplicateRule, embeddings: NDArray, rows: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Walk rows in order; keep a row unless it is near an earlier kept row (all pairs checked).

    Rows come in blocks of at most DEDUP_BLOCK, so the pair matrix stays small.
    """
    n = len(rows)
    keep = np.ones(n, dtype=bool)
    if n < 2:
        return keep
    v = rule.vectors(embeddings[rows])
    sq = np.einsum("ij,ij->i", v, v)
    dist = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * (v @ v.T), 0))
    a, b = np.meshgrid(rows, rows, indexing="ij")
    near = rule.is_near(a.ravel(), b.ravel(), dist.ravel()).reshape(n, n)
    near &= np.tri(n, k=-1, dtype=bool)  # only earlier rows count
    for i in np.flatnonzero(near.any(axis=1)):
        if keep[near[i]].any():
            keep[i] = False
    return keep


def _scatter(n: int, rows: NDArray[np.int64], values: NDArray) -> NDArray[np.float32]:
    """A length-n array holding `values` at `rows` (NaN elsewhere), for lookups by row."""
    out = np.full(n, np.nan, dtype=np.float32)
    out[rows] = values
    return out


def _top_order(scores: NDArray, rows: NDArray[np.int64]) -> NDArray[np.int64]:
    """Rows sorted by score, highest first (stable, so ties keep row order)."""
    return rows[np.argsort(-scores, kind="stable")]


def _sample(rows: NDArray[np.int64], n: int, seed: int) -> NDArray[np.int64]:
    if len(rows) <= n:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, n, replace=False))


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
    """Choose up to `budget` rows to label next; the array-level core of the analysis.

    Parameters
    ----------
    probs : N×K probabilities (mean over models).
    labels : N class indices, -1 = unlabeled.
    eligible : rows that may be queued (default: unlabeled rows).
    ood_score, lookalike_score : per-row scores from the similarity engine (NaN = none).
    ood_flag : rows flagged out-of-distribution; in `mix` their share s of the pool sets the
        OOD quota's floor, ceil(s x budget), and the quota's picks are spread over them.
    rule : the near-duplicate rule (`dataaudit.similarity`); default fitted on `embeddings`.
    near_labeled : rows already known to be near-duplicates of a labeled row (from the rule's
        kNN graph); without it each candidate block is searched against every labeled row.
    knn : `dataaudit.neighbors.knn` (default) or a compatible function.

    Returns
    -------
    Queue with exactly min(budget, eligible rows left after de-duplication) rows.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    if knn is None and embeddings is not None:
        from dataaudit.neighbors import knn
    probs = np.asarray(probs, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    n, k = probs.shape
    if eligible is None:
        eligible = labels < 0
    pool = np.flatnonzero(eligible & (labels < 0))
    labeled_rows = np.flatnonzero(labels >= 0)
    budget = int(min(max(budget, 0), len(pool)))
    notes: list[str] = []
    if rule is None and embeddings is not None and n > 1:
        from dataaudit.config import AuditConfig

        rule = fit_rule(embeddings, AuditConfig())
    dedup = _Deduper(embeddings, labeled_rows, rule, near_labeled)
    if embeddings is None:
        notes.append("no embeddings: the queue is not de-duplicated or diversified")

    def need(inputs_ok: bool, what: str) -> None:
        if not inputs_ok:
            raise ValueError(f"strategy {strategy!r} needs {what}")

    def score_of(name: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """(scores over pool rows, pool rows ordered best first) for a score-based strategy."""
        if name in st.UNCERTAINTY:
            s = st.UNCERTAINTY[name](probs[pool])
        elif name in st.COMMITTEE:
            need(member_probs is not None, "probabilities from several models (M×N×K)")
            s = st.COMMITTEE[name](np.asarray(member_probs)[:, pool])
        elif name == "rare":
            counts = np.bincount(labels[labeled_rows], minlength=k)
            s = st.rare_prediction(probs[pool], st.class_rarity(counts))
        elif name == "ood":
            need(
                ood_score is not None, "OOD scores (the outliers analysis, which needs embeddings)"
            )
            s = st.ood(np.asarray(ood_score)[pool])
        elif name == "lookalike":
            need(lookalike_score is not None, "known failures and embeddings")
            s = st.lookalike(np.asarray(lookalike_score)[pool])
        elif name == "random":
            s = st.random_scores(len(pool), seed)
        else:
            raise AssertionError(name)
        return s, _top_order(s, pool)

    if strategy == "diversity":
        need(embeddings is not None, "embeddings")
        cand = _sample(pool, SAMPLE_ROWS, seed)
        centers = np.asarray(embeddings[_sample(labeled_rows, SAMPLE_ROWS, seed)])
        order = cand[
            st.k_center_greedy(
                np.asarray(embeddings[cand]), min(len(cand), 3 * budget + 10), centers
            )
        ]
        rows = dedup.take(order, budget)
        # k-center order: earlier picks are farther from everything labeled.
        score = np.linspace(1, 0, len(rows), endpoint=False, dtype=np.float32)
        return Queue(rows, np.full(len(rows), "diversity", object), score, notes=notes)

    if strategy != "mix":
        s, order = score_of(strategy)
        rows = dedup.take(order, budget)
        score = _scatter(n, pool, s)[rows]
        return Queue(rows, np.full(len(rows), strategy, object), score, notes=notes)

    # -- mix ----------------------------------------------------------------------------------
    weights = dict(mix or {"uncertainty": 1.0})
    unavailable = {
        "ood": None
        if ood_score is not None and np.isfinite(ood_score[pool]).any()
        else "no OOD scores (the outliers analysis did not run)",
        "lookalike": None
        if lookalike_score is not None and np.isfinite(lookalike_score[pool]).any()
        else "no known failures with embeddings",
        "rare": None,
    }
    counts = np.bincount(labels[labeled_rows], minlength=k)
    rarity = st.class_rarity(counts)
    if not (rarity > 0).any():
        unavailable["rare"] = "no class is rare among the labels"
    quotas = allocate(budget, weights)
    ood_share = None
    if ood_flag is not None and unavailable["ood"] is None and len(pool):
        ood_share = float(np.asarray(ood_flag)[pool].mean())
        floor = min(int(np.ceil(ood_share * budget - 1e-9)), budget)
        if floor > quotas.get("ood", 0):
            # At least random sampling's share of the region the model never saw.
            quotas = _raise_quota(quotas, "ood", floor)
            notes.append(
                f"ood quota raised to {floor}: {ood_share:.1%} of the pool is flagged OOD, and "
                "the queue gives that region at least its random share"
            )
    picks: dict[str, tuple[NDArray[np.int64], NDArray[np.float32]]] = {}
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
        s, order = score_of(part)
        # Only items the quota's score flags: a zero rarity is not a rare prediction.
        ranked = s[np.argsort(-s, kind="stable")]
        order = order[np.isfinite(ranked) & ((ranked > 0) | (part != "rare"))]
        if part == "ood" and ood_flag is not None and embeddings is not None and rule is not None:
            order = _spread_flagged(order, np.asarray(ood_flag), embeddings, rule, quota, seed)
        rows = dedup.take(order, quota)
        picks[part] = (rows, _scatter(n, pool, s)[rows])
        allocation.append(
            dict(strategy=part, weight=weights.get(part, 0.0), quota=quota, selected=len(rows))
        )

    remaining = budget - sum(len(r) for r, _ in picks.values())
    backbone, rows, score = _backbone(
        probs, labels, pool, labeled_rows, embeddings, remaining, dedup, seed, knn
    )
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
    if not all_rows:
        return Queue(
            np.empty(0, np.int64),
            np.empty(0, object),
            np.empty(0, np.float32),
            allocation,
            notes,
            ood_share,
        )
    rows = np.concatenate(all_rows)
    order = np.argsort(np.concatenate(position), kind="stable")
    return Queue(
        rows[order],
        np.concatenate(all_strategy)[order],
        np.concatenate(all_score)[order].astype(np.float32),
        allocation,
        notes,
        ood_share,
    )


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
    order: NDArray[np.int64],
    flagged: NDArray[np.bool_],
    embeddings: NDArray,
    rule: NearDuplicateRule,
    quota: int,
    seed: int,
) -> NDArray[np.int64]:
    """Flagged rows of `order` spread over their region, then the rest in order.

    A region the model never saw is often one tight cluster whose most OOD items are each
    other's neighbours, so plain top-k spends the quota on one corner. The flagged rows are
    clustered (k-means, `quota` clusters) and the quota is shared among the clusters in
    proportion to their size (largest remainder), each taking its best-scored items, in turns;
    the rest follow in the same proportional turns, for picks that de-duplication rejects.
    """
    mask = flagged[order]
    inside, rest = order[mask], order[~mask]
    if len(inside) > quota > 1:
        sample = inside[:SAMPLE_ROWS]
        clusters = st.cluster_labels(rule.vectors(embeddings[sample]), quota, seed=seed)
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
        inside = np.r_[sample[np.argsort(position, kind="stable")], inside[SAMPLE_ROWS:]]
    return np.r_[inside, rest].astype(np.int64)


def _backbone(probs, labels, pool, labeled_rows, embeddings, quota, dedup, seed, knn):
    """(name, rows, scores) of the mix's main share: cluster-margin, typicality or margin."""
    k = probs.shape[1]
    if quota <= 0:
        return "cluster_margin", np.empty(0, np.int64), np.empty(0, np.float32)
    if embeddings is not None and len(labeled_rows) < COLD_START_PER_CLASS * k:
        cand = _sample(pool, SAMPLE_ROWS, seed)
        vecs = np.asarray(embeddings[cand], dtype=np.float32)
        kk = min(TYPICALITY_K, len(cand) - 1)
        typical = (
            st.typicality(knn(vecs, None, k=kk, exclude_self=True)[0])
            if kk > 0
            else np.ones(len(cand), np.float32)
        )
        both = np.concatenate([vecs, np.asarray(embeddings[labeled_rows], dtype=np.float32)])
        clusters = st.cluster_labels(both, len(labeled_rows) + quota, seed=seed)
        size = np.bincount(clusters, minlength=clusters.max() + 1).astype(np.float64)
        covered = np.bincount(clusters[len(cand) :], minlength=len(size)) > 0
        # Uncovered clusters first, largest first (TypiClust).
        priority = size - covered * (size.max() + 1)
        order = cand[st.stratified_order(clusters[: len(cand)], typical, priority)]
        rows = dedup.take(order, quota)
        return "typicality", rows, _scatter(len(probs), cand, typical)[rows]

    # `probs` is the committee's mean when several models were given.
    name, s = "margin", st.margin(probs[pool])
    order = _top_order(s, pool)
    full = _scatter(len(probs), pool, s)
    if embeddings is not None:
        cand_n = min(len(pool), CANDIDATES_PER_PICK * quota)
        cand = order[:cand_n]
        cand_scores = full[cand]
        strat = st.cluster_margin_order(cand_scores, np.asarray(embeddings[cand]), quota, seed=seed)
        order = np.concatenate([cand[strat], order[cand_n:]])
        name = "cluster_" + name
    rows = dedup.take(order, quota)
    return name, rows, full[rows]
