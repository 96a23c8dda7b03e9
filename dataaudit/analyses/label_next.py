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

Engine form (`run_on`, any dataaudit.engine); `run` is it on an InProcessEngine:
1. counts per chunk: eligible rows and labels per class (summed);
2. per chunk the scores each strategy needs, from the chunk's (temperature-scaled)
   probabilities, the outliers result's OOD scores, the kNN graph's neighbours (look-alikes of
   known failures, themselves an exact top-k of label-error candidates and misclassified items);
   per strategy an exact top-k of candidates (label_next_select.py: a pool a stated multiple of
   the quota, grown when de-duplication exhausts it, so the queue equals a walk over all rows),
   carrying the candidates' embeddings and near-duplicate facts; samples (diversity, typicality)
   are the first rows by position hash;
3. the driver's selection over the small pools (label_next_select.select);
4. the auto-label cut from a histogram of labeled confidences (float32 bit patterns: 65,536
   bins of the high 16 bits, then exact values inside the lowest bins that could hold the cut),
   and the auto-label list as an exact top-k (at most MAX_DRIVER_ROWS rows).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit import strategies as st
from dataaudit.analyses.label_next_select import (
    CANDIDATES_PER_PICK,
    COLD_START_PER_CLASS,
    MIX_PARTS,
    POOL_FACTOR,
    SAMPLE_ROWS,
    STRATEGIES,
    Queue,
    allocate,
    select,
    select_queue,
)
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import (
    MAX_DRIVER_ROWS,
    Chunk,
    Engine,
    add,
    concat,
    label_names,
    select_top,
)
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.problems import AuditWarning
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.similarity import neighbour_scales
from dataaudit.stats import wilson_interval

__all__ = [
    "MIX_PARTS",
    "STRATEGIES",
    "Queue",
    "allocate",
    "parse_mix",
    "run",
    "run_on",
    "select_queue",
]

# Known failures whose look-alikes count: label-error candidates first, then misclassified.
MAX_FAILURES = 100_000
# The auto-label cut: labeled items it must keep at least (st.auto_label_threshold's).
AUTO_LABEL_MIN_SUPPORT = 30
# Histogram bins whose exact values are fetched per pass while looking for the auto-label cut.
CUT_BINS_PER_PASS = 64


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    classes = engine.classes
    temperature, calibrated = _temperature(ctx)
    notes: list[str] = [calibrated] if calibrated else []
    strategy = config.strategy
    mix = parse_mix(config.label_next_mix)
    with_embeddings = bool(getattr(engine, "has_embeddings", False))
    facts = RowFacts(
        temperature=temperature,
        # Items out for labeling with no verdict yet (the verdict ledger) are not sent twice.
        pending=_pending_ids(ctx),
        members=getattr(engine, "n_models", 1) > 1,
        seed=config.seed,
    )
    facts.ood, facts.ood_flags = _ood_source(ctx, engine, with_embeddings)
    failures = None
    if with_embeddings:
        failures = _failures(engine, ctx, facts)
        if failures is not None:
            engine.graph(ctx)
            facts.failures = np.sort(failures["pos"].to_numpy(np.int64))
            facts.failure_order = np.argsort(failures["pos"].to_numpy(np.int64), kind="stable")
    rule = None
    unruled: list[AuditWarning] = []
    if with_embeddings:
        from dataaudit.engine import GraphNotAvailable
        from dataaudit.similarity import rule_on

        try:
            rule = facts.rule = rule_on(engine, ctx)
        except GraphNotAvailable as exc:  # <= 8-d embeddings on Dask: queue without the rule
            unruled.append(
                AuditWarning(
                    "queue_not_deduplicated",
                    f"The queue was not de-duplicated: {exc}. Run in process to drop "
                    "near-duplicates from it.",
                )
            )

    with ctx.progress.step("label-next queue"):
        pools = EnginePools(engine, facts, rule, config.budget, strategy, with_embeddings)
        queue = select(pools, budget=config.budget, strategy=strategy, mix=mix, seed=config.seed)
    notes.extend(queue.notes)
    rows = queue.rows
    details = _gather(engine, facts, rows)
    context = _ReasonContext(
        classes=classes,
        labeled_counts=pools.label_counts,
        member_votes=details["votes"],
        nearest_failure=np.array([queue.nearest.get(int(r), -1) for r in rows], dtype=np.int64),
        failure_ids=None if failures is None else failures["id"].to_numpy(),
        failure_kind=None if failures is None else failures["kind"].to_numpy(),
        ood_share=queue.ood_share,
    )
    reasons = [
        _reason(name, float(score), i, int(a), int(b), float(pa), float(pb), context)
        for i, (name, score, a, b, pa, pb) in enumerate(
            zip(
                queue.strategy,
                queue.score,
                details["first"],
                details["second"],
                details["p1"],
                details["p2"],
            )
        )
    ]
    n_q = len(rows)
    queue_frame = pd.DataFrame(
        {
            "rank": np.arange(1, n_q + 1, dtype=np.int64),
            "id": details["id"],
            "priority": np.round(1.0 - np.arange(n_q) / max(n_q, 1), 4),
            "reason": np.asarray(reasons, dtype=object),
            "predicted_label": label_names(classes, details["first"]),
            "predicted_prob": details["p1"].astype(np.float32),
            "strategy": queue.strategy,
            "difficulty": details["difficulty"],
            "score": queue.score,
        }
    )

    auto_frame, auto = auto_label(engine, facts, rows, config)
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
            f"({pools.n_eligible} unlabeled items, near-duplicates passed over)"
        )
    return AnalysisResult(
        name="label_next",
        tables={"queue": queue_frame, "auto_label": auto_frame, "allocation": allocation},
        summary={
            "label_next_budget": int(config.budget),
            "label_next_count": n_q,
            "auto_label_count": int(auto["count"]),
            "auto_label_estimated_precision": auto["precision"],
        },
        params={
            "strategy": strategy,
            "budget": int(config.budget),
            "mix": mix,
            "near_duplicates": "calibrated rule of the duplicates analysis"
            if rule is not None
            else "not de-duplicated (see the warning)"
            if unruled
            else "not de-duplicated (no embeddings)",
            "ood_share": queue.ood_share,
            "auto_label_precision": config.auto_label_precision,
            "auto_label_threshold": auto["threshold"],
            "candidates_per_pick": CANDIDATES_PER_PICK,
            "candidate_pool_per_pick": POOL_FACTOR,
            "cold_start_labels_per_class": COLD_START_PER_CLASS,
        },
        notes=tuple(notes),
        warnings=tuple(unruled),
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


# -- what every chunk kernel needs: small, picklable ------------------------------------------------
@dataclass
class RowFacts:
    """The run's facts a kernel applies to any chunk (set on the driver before the passes)."""

    temperature: float = 1.0
    pending: tuple[str, ...] = ()
    members: bool = False
    seed: int = 0
    ood: object | None = None  # outliers' per-chunk scorer (ood_scores, ood_flags)
    ood_flags: bool = False
    failures: NDArray[np.int64] | None = None  # sorted table positions of known failures
    failure_order: NDArray[np.int64] | None = None  # failure index of each sorted position
    rule: object | None = None  # the near-duplicate rule (similarity.rule_on; no per-row arrays)

    def probs(self, chunk: Chunk) -> NDArray[np.float32]:
        from dataaudit.analyses.calibration import temper

        return temper(chunk.probs, self.temperature)

    def eligible(self, chunk: Chunk) -> NDArray[np.int64]:
        """Rows of the chunk that may be queued: unlabeled and not pending a verdict."""
        mask = ~chunk.labeled
        if self.pending:
            ids = pd.Index(pd.Series(chunk.ids).astype(str))
            mask &= ~ids.isin(self.pending)
        return np.flatnonzero(mask)

    def scores(self, chunk: Chunk, name: str, rows, rarity=None) -> dict[str, NDArray]:
        """{'score': ...} of strategy `name` for the chunk's `rows` (+ 'flag' for ood, 'nearest'
        for lookalike)."""
        if name in st.UNCERTAINTY:
            return {"score": st.UNCERTAINTY[name](self.probs(chunk)[rows])}
        if name in st.COMMITTEE:
            return {"score": st.COMMITTEE[name](np.asarray(chunk.member_probs)[:, rows])}
        if name == "rare":
            return {"score": st.rare_prediction(self.probs(chunk)[rows], rarity)}
        if name == "random":
            return {"score": st.position_hash(chunk.pos[rows], self.seed)}
        if name == "ood":
            raw = self.ood.ood_scores(chunk, rows)
            out = {"score": st.ood(raw)}
            if self.ood_flags:
                out["flag"] = self.ood.ood_flags(chunk, rows, raw)
            return out
        if name == "lookalike":
            return self.lookalike(chunk, rows)
        raise AssertionError(name)

    def lookalike(self, chunk: Chunk, rows) -> dict[str, NDArray]:
        """Similarity to the nearest known failure among each row's graph neighbours (O(n·k),
        no extra search; -inf where none is near) and that failure's index."""
        n = len(rows)
        if self.failures is None or not n:
            return {"score": np.full(n, -np.inf, np.float32), "nearest": np.full(n, -1)}
        nb = np.asarray(chunk.neighbors[rows])
        sims = np.asarray(chunk.similarities[rows], dtype=np.float32)
        at = np.clip(np.searchsorted(self.failures, nb), 0, len(self.failures) - 1)
        hit = (nb >= 0) & (self.failures[at] == nb)
        masked = np.where(hit, sims, -np.inf)
        best = masked.argmax(axis=1) if masked.shape[1] else np.zeros(n, dtype=np.int64)
        score = masked[np.arange(n), best] if masked.shape[1] else np.full(n, -np.inf)
        nearest = np.where(np.isfinite(score), self.failure_order[at[np.arange(n), best]], -1)
        return {"score": st.lookalike(score), "nearest": nearest.astype(np.int64)}

    def payload(self, chunk: Chunk, rows) -> dict[str, object]:
        """The columns a candidate carries to the driver: its embedding and, with a rule, its
        scale (k-th neighbour distance) and neighbours (positions, distances) in the rule's
        metric, from which the driver tells whether a labeled item is a near-duplicate."""
        out: dict[str, object] = {
            "vector": list(np.asarray(chunk.embeddings[rows], dtype=np.float32))
        }
        if self.rule is not None:
            dist, idx = self.rule.chunk_graph(chunk)
            out["scale"] = neighbour_scales(dist)[0][rows]
            out["nb"] = list(np.asarray(idx)[rows])
            out["nd"] = list(np.asarray(dist)[rows])
        return out


def _temperature(ctx: AuditContext) -> tuple[float, str | None]:
    """The calibration analysis' temperature when it says to use it, with a note."""
    result = ctx.results.get("calibration")
    if result is None or not result.summary.get("calibration_applied"):
        return 1.0, None
    t = float(result.summary["temperature"])
    note = (
        f"probabilities temperature-scaled (T = {t:.2f}) before the margin, difficulty and "
        f"auto-label cut: calibration found them miscalibrated (ECE {result.summary['ece']:.3f})"
    )
    return t, note


def _pending_ids(ctx: AuditContext) -> tuple[str, ...]:
    """Ids sent out for labeling or review that have no verdict yet (the queue skips them)."""
    result = ctx.results.get("reviews")
    if result is None:
        return ()
    items = result.tables["items"]
    return tuple(sorted(set(items.loc[items["status"] == "pending", "id"].astype(str))))


def _ood_source(ctx: AuditContext, engine: Engine, with_embeddings: bool):
    """(the outliers result's per-chunk scorer or None, whether it flags OOD items)."""
    from dataaudit.analyses.outliers import outlier_scores_of

    outliers = ctx.results.get("outliers")
    if outliers is None:
        return None, False
    items = outliers.tables.get("items")
    if "outlier_cut" not in outliers.params and (items is None or "ood_score" not in items.columns):
        return None, False
    scorer = outlier_scores_of(outliers, engine, ctx)
    flags = bool(outliers.summary.get("n_ood_scored")) and (
        "outlier_cut" in outliers.params or "is_ood" in items.columns
    )
    return scorer, flags


# -- known failures ---------------------------------------------------------------------------------
def _failure_candidates(chunk: Chunk, scores, facts: RowFacts, m: int):
    labeled = np.flatnonzero(chunk.labeled)
    flagged = np.zeros(len(chunk), dtype=bool)
    error = np.zeros(len(chunk), dtype=np.float32)
    if scores is not None:
        s = scores(chunk)
        flagged[s["rows"]] = s["is_label_error"]
        error[s["rows"]] = s["error_score"]
    probs = facts.probs(chunk)
    wrong = labeled[(probs[labeled].argmax(axis=1) != chunk.labels[labeled]) & ~flagged[labeled]]
    flag_rows = np.flatnonzero(flagged)
    return (
        select_top(
            pd.DataFrame(
                {"pos": chunk.pos[flag_rows], "id": chunk.ids[flag_rows], "score": error[flag_rows]}
            ),
            m,
            "score",
        ),
        select_top(
            pd.DataFrame(
                {
                    "pos": chunk.pos[wrong],
                    "id": chunk.ids[wrong],
                    "score": probs[wrong].max(axis=1) if len(wrong) else np.zeros(0, np.float32),
                }
            ),
            m,
            "score",
        ),
    )


def _merge_failures(m: int, a, b):
    return tuple(select_top(pd.concat([x, y], ignore_index=True), m, "score") for x, y in zip(a, b))


def _failures(engine: Engine, ctx: AuditContext, facts: RowFacts) -> pd.DataFrame | None:
    """Known failures (pos, id, kind): label-error candidates by error score, then confidently
    misclassified labeled items, at most MAX_FAILURES; None when there are none."""
    from dataaudit.analyses.label_errors_chunks import scores_of

    label_errors = ctx.results.get("label_errors")
    scores = None
    if label_errors is not None and "items" in label_errors.tables:
        scores = scores_of(label_errors, engine.classes)
    flagged, wrong = engine.map_reduce(
        _failure_candidates,
        functools.partial(_merge_failures, MAX_FAILURES),
        scores,
        facts,
        MAX_FAILURES,
    )
    wrong = wrong.iloc[: MAX_FAILURES - len(flagged)]
    failures = pd.concat(
        [flagged.assign(kind="label error"), wrong.assign(kind="misclassified")],
        ignore_index=True,
    )
    if not len(failures):
        return None
    failures["kind"] = failures["kind"].astype(object)
    return failures


# -- pools on an engine -----------------------------------------------------------------------------
def _counts(chunk: Chunk, facts: RowFacts, k: int) -> dict:
    return {
        "eligible": len(facts.eligible(chunk)),
        "labels": np.bincount(chunk.labels[chunk.labeled], minlength=k),
    }


def _light_lists(chunk: Chunk, facts: RowFacts, sizes: dict, rarity) -> dict:
    """Kernel: per requested strategy, the chunk's top rows by its score (pos, score, and
    flag / nearest), and the number of eligible rows flagged OOD."""
    rows = facts.eligible(chunk)
    out: dict = {}
    for name, n in sizes.items():
        s = facts.scores(chunk, name, rows, rarity)
        frame = pd.DataFrame({"pos": chunk.pos[rows], **s})
        if name == "ood" and "flag" in s:
            out["n_flag"] = int(np.asarray(s["flag"]).sum())
        out[name] = select_top(frame, n, "score")
    return out


def _merge_lists(sizes: dict, a: dict, b: dict) -> dict:
    out = {}
    for name in a:
        if name == "n_flag":
            out[name] = a[name] + b[name]
        else:
            both = pd.concat([a[name], b[name]], ignore_index=True)
            out[name] = select_top(both, sizes[name], "score")
    return out


def _payload_rows(chunk: Chunk, facts: RowFacts, wanted: NDArray[np.int64]):
    """Kernel: the payload of the chunk's rows in `wanted`, and (with a rule) the edges from
    the chunk's labeled rows to wanted rows: (pos of the wanted row, distance, the labeled
    row's scale), the other direction of the graph."""
    rows = np.flatnonzero(np.isin(chunk.pos, wanted))
    frame = pd.DataFrame({"pos": chunk.pos[rows], **facts.payload(chunk, rows)})
    reverse = pd.DataFrame({"pos": np.zeros(0, np.int64), "d": np.zeros(0, np.float32)})
    if facts.rule is not None:
        labeled = np.flatnonzero(chunk.labeled)
        dist, idx = facts.rule.chunk_graph(chunk)
        dist, idx = np.asarray(dist)[labeled], np.asarray(idx)[labeled]
        hit = np.isin(idx, wanted) & (idx >= 0)
        scale = np.repeat(neighbour_scales(dist)[0], idx.shape[1]).reshape(idx.shape)
        reverse = pd.DataFrame({"pos": idx[hit], "d": dist[hit], "scale_b": scale[hit]})
    return frame, reverse


def _merge_payload(a, b):
    return concat(a[0], b[0]), concat(a[1], b[1])


def _neighbour_facts(chunk: Chunk, facts: RowFacts, wanted: NDArray[np.int64]) -> pd.DataFrame:
    """Kernel: (pos, labeled, scale) of the chunk's rows in `wanted`."""
    rows = np.flatnonzero(np.isin(chunk.pos, wanted))
    dist, _ = facts.rule.chunk_graph(chunk)
    return pd.DataFrame(
        {
            "pos": chunk.pos[rows],
            "labeled": chunk.labeled[rows],
            "scale_b": neighbour_scales(np.asarray(dist))[0][rows],
        }
    )


def near_labeled(rule, found: pd.DataFrame, reverse: pd.DataFrame, engine, facts) -> NDArray:
    """Per row of `found` (payload rows), whether a labeled item is its near-duplicate: an edge
    of the rule's graph in either direction within the near radius (label_next_select.
    near_labeled_rows on whole arrays)."""
    pos = found["pos"].to_numpy(np.int64)
    scale = pd.Series(found["scale"].to_numpy(np.float32), index=pos)
    counts = found["nb"].map(len).to_numpy()
    edges = pd.DataFrame(
        {
            "pos": np.repeat(pos, counts),
            "b": np.concatenate(found["nb"].to_numpy()) if len(found) else np.zeros(0, np.int64),
            "d": np.concatenate(found["nd"].to_numpy()) if len(found) else np.zeros(0),
        }
    )
    edges = edges[edges["b"] >= 0]
    near = set()
    if len(edges):
        b_facts = engine.map_reduce(
            _neighbour_facts, concat, facts, np.unique(edges["b"].to_numpy())
        ).drop_duplicates("pos")
        edges = edges.merge(b_facts.rename(columns={"pos": "b"}), on="b", how="inner")
        edges = edges[edges["labeled"].to_numpy(bool)]
        radius = rule.radii_for(scale.loc[edges["pos"]].to_numpy(), edges["scale_b"].to_numpy())
        near |= set(edges.loc[edges["d"].to_numpy() <= radius[0], "pos"].tolist())
    if len(reverse):
        radius = rule.radii_for(scale.loc[reverse["pos"]].to_numpy(), reverse["scale_b"].to_numpy())
        near |= set(reverse.loc[reverse["d"].to_numpy() <= radius[0], "pos"].tolist())
    return np.isin(pos, list(near))


def _sample_rows(chunk: Chunk, facts: RowFacts, which: str, n: int) -> pd.DataFrame:
    rows = facts.eligible(chunk) if which == "eligible" else np.flatnonzero(chunk.labeled)
    pos = chunk.pos[rows]
    return select_top(
        pd.DataFrame({"pos": pos, "key": st.position_hash(pos, facts.seed)}), n, "key"
    )


class EnginePools:
    """label_next_select.Pools on an engine: exact per-chunk top-k lists of (pos, score) per
    strategy, and the embeddings and rule facts of the rows the selection walks, gathered by
    position in one pass per batch."""

    def __init__(self, engine, facts: RowFacts, rule, budget: int, strategy: str, embeddings: bool):
        self.engine, self.facts, self.rule = engine, facts, rule
        k = len(engine.classes)
        counts = engine.map_reduce(_counts, add, facts, k)
        self.n_eligible = int(counts["eligible"])
        self.label_counts = np.asarray(counts["labels"], dtype=np.int64)
        self.has_embeddings = embeddings
        self.has_committee = facts.members
        self.rarity = st.class_rarity(self.label_counts)
        self.lists: dict[str, tuple[pd.DataFrame, bool]] = {}
        self.payloads = pd.DataFrame({"pos": np.zeros(0, np.int64)})
        self.n_ood_flagged = None
        budget = max(int(budget), 0)
        # The OOD and look-alike lists first: whether they exist decides the quotas.
        first = {}
        if facts.ood is not None and strategy in ("mix", "ood"):
            spread = facts.ood_flags and strategy == "mix" and embeddings and rule is not None
            first["ood"] = (SAMPLE_ROWS if spread else 0) + POOL_FACTOR * budget + 8
        if facts.failures is not None and strategy in ("mix", "lookalike"):
            first["lookalike"] = POOL_FACTOR * budget + 8
        if first:
            self._fetch(first)
        self.ood_available = "ood" in self.lists and _finite_head(self.lists["ood"][0])
        self.lookalike_available = "lookalike" in self.lists and _finite_head(
            self.lists["lookalike"][0]
        )

    def _fetch(self, sizes: dict[str, int]) -> None:
        lists = self.engine.map_reduce(
            _light_lists, functools.partial(_merge_lists, sizes), self.facts, sizes, self.rarity
        )
        for name, n in sizes.items():
            self.lists[name] = (lists[name], len(lists[name]) < n)
        if "n_flag" in lists:
            self.n_ood_flagged = int(lists["n_flag"])

    def prefetch(self, sizes: dict[str, int]) -> None:
        """The lists of `sizes` in one pass, then the payload of all their rows in another."""
        wanted = {n: s for n, s in sizes.items() if not self._holds(n, s)}
        if wanted:
            self._fetch(wanted)
        self._gather(np.concatenate([self.lists[n][0]["pos"].to_numpy() for n in sizes]))

    def _holds(self, name: str, n: int) -> bool:
        if name not in self.lists:
            return False
        frame, complete = self.lists[name]
        return complete or len(frame) >= n

    def _gather(self, pos: NDArray[np.int64]) -> None:
        if not self.has_embeddings:
            return
        have = self.payloads["pos"].to_numpy()
        missing = np.setdiff1d(pos, have)
        if len(missing):
            found, reverse = self.engine.map_reduce(
                _payload_rows, _merge_payload, self.facts, missing
            )
            if self.rule is not None:
                found["near_labeled"] = near_labeled(
                    self.rule, found, reverse, self.engine, self.facts
                )
                found = found.drop(columns=["nb", "nd"])
            self.payloads = pd.concat([self.payloads, found], ignore_index=True)

    def top(self, name: str, n: int, rarity=None) -> tuple[pd.DataFrame, bool]:
        if not self._holds(name, n):
            self._fetch({name: n})
        frame, complete = self.lists[name]
        frame = frame.iloc[:n]
        complete = complete and len(frame) == len(self.lists[name][0])
        self._gather(frame["pos"].to_numpy())
        if self.has_embeddings:
            frame = frame.merge(self.payloads, on="pos", how="left", sort=False)
        return frame.reset_index(drop=True), complete

    def sample(self, which: str, n: int) -> pd.DataFrame:
        def merge(a, b):
            return select_top(pd.concat([a, b], ignore_index=True), n, "key")

        top = self.engine.map_reduce(_sample_rows, merge, self.facts, which, n)
        top = top.sort_values("pos", kind="stable").reset_index(drop=True)
        self._gather(top["pos"].to_numpy())
        if self.has_embeddings:
            top = top.merge(self.payloads, on="pos", how="left", sort=False)
        return top


def _finite_head(frame: pd.DataFrame) -> bool:
    return bool(len(frame)) and bool(np.isfinite(frame["score"].iloc[0]))


# -- the queued rows' details -----------------------------------------------------------------------
def _details(chunk: Chunk, facts: RowFacts, wanted: NDArray[np.int64]) -> pd.DataFrame:
    rows = np.flatnonzero(np.isin(chunk.pos, wanted))
    probs = facts.probs(chunk)[rows]
    members = None if not facts.members else np.asarray(chunk.member_probs)[:, rows]
    if len(rows):
        first, second, p1, p2 = st.top2(probs)
    else:
        first = second = np.zeros(0, np.int64)
        p1 = p2 = np.zeros(0, np.float32)
    frame = pd.DataFrame(
        {
            "pos": chunk.pos[rows],
            "id": chunk.ids[rows],
            "first": first,
            "second": second,
            "p1": p1,
            "p2": p2,
            "difficulty": st.difficulty(probs, members),
        }
    )
    if members is not None:
        frame["votes"] = list(members.argmax(axis=2).T)
    return frame


def _gather(engine: Engine, facts: RowFacts, rows: NDArray[np.int64]) -> dict:
    """Per queued row (in queue order): id, top-2 classes and probabilities, difficulty and the
    models' votes."""
    found = engine.map_reduce(_details, concat, facts, np.sort(rows))
    found = found.set_index("pos").loc[rows] if len(rows) else found
    return {
        "id": found["id"].to_numpy(),
        "first": found["first"].to_numpy(np.int64),
        "second": found["second"].to_numpy(np.int64),
        "p1": found["p1"].to_numpy(np.float32),
        "p2": found["p2"].to_numpy(np.float32),
        "difficulty": found["difficulty"].to_numpy(object),
        "votes": np.stack(found["votes"].to_numpy()).T
        if "votes" in found.columns and len(found)
        else None,
    }


# -- auto-label -------------------------------------------------------------------------------------
def _confidence(chunk: Chunk, facts: RowFacts):
    probs = facts.probs(chunk)
    members = np.asarray(chunk.member_probs) if facts.members else None
    conf = probs.max(axis=1).astype(np.float32)
    unanimous = st.agreement(probs, members) >= 1.0
    return probs, conf, unanimous


def _confidence_bins(chunk: Chunk, facts: RowFacts) -> tuple[NDArray, NDArray]:
    """Kernel: labeled unanimous items per high-16-bit bin of their confidence, and correct."""
    probs, conf, unanimous = _confidence(chunk, facts)
    rows = np.flatnonzero(chunk.labeled & unanimous)
    high = conf[rows].view(np.uint32) >> 16
    correct = probs[rows].argmax(axis=1) == chunk.labels[rows]
    return (
        np.bincount(high, minlength=1 << 16).astype(np.int64),
        np.bincount(high, weights=correct, minlength=1 << 16).astype(np.int64),
    )


def _confidence_values(chunk: Chunk, facts: RowFacts, bins: NDArray) -> pd.DataFrame:
    """Kernel: (confidence bits, items, correct) of labeled unanimous items inside `bins`."""
    probs, conf, unanimous = _confidence(chunk, facts)
    rows = np.flatnonzero(chunk.labeled & unanimous)
    bits = conf[rows].view(np.uint32)
    inside = np.isin(bits >> 16, bins)
    rows, bits = rows[inside], bits[inside]
    correct = (probs[rows].argmax(axis=1) == chunk.labels[rows]).astype(np.int64)
    frame = pd.DataFrame({"bits": bits.astype(np.int64), "n": 1, "correct": correct})
    return frame.groupby("bits", as_index=False).sum()


def _sum_values(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([a, b], ignore_index=True).groupby("bits", as_index=False).sum()


def auto_label_cut(engine: Engine, facts: RowFacts, target: float) -> tuple[float, float, int]:
    """st.auto_label_threshold over every labeled unanimous item, from histograms: (threshold,
    precision, support), threshold inf when no cut reaches the target.

    The cut is the lowest distinct confidence whose items at or above it are at least `target`
    precise, with at least AUTO_LABEL_MIN_SUPPORT of them. Counts per bin of the high 16 bits
    bound the precision any value inside a bin can reach; the lowest bins that could hold the
    cut are resolved to exact values, CUT_BINS_PER_PASS bins per pass, until one holds it.
    """
    n_bin, c_bin = engine.map_reduce(_confidence_bins, add, facts)
    # Items and correct ones strictly above each bin (bins ascend with the value).
    above_n = np.r_[np.cumsum(n_bin[::-1])[::-1][1:], 0]
    above_c = np.r_[np.cumsum(c_bin[::-1])[::-1][1:], 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        best = np.where(c_bin > 0, (above_c + c_bin) / (above_n + c_bin), above_c / (above_n + 1))
    candidates = np.flatnonzero(
        (n_bin > 0) & (best >= target) & (above_n + n_bin >= AUTO_LABEL_MIN_SUPPORT)
    )
    for start in range(0, len(candidates), CUT_BINS_PER_PASS):
        bins = candidates[start : start + CUT_BINS_PER_PASS]
        values = engine.map_reduce(_confidence_values, _sum_values, facts, bins)
        values = values.sort_values("bits", ascending=False, kind="stable")
        high = (values["bits"].to_numpy() >> 16).astype(np.int64)
        support = above_n[high] + values.groupby(high, sort=False)["n"].cumsum().to_numpy()
        hits = above_c[high] + values.groupby(high, sort=False)["correct"].cumsum().to_numpy()
        precision = hits / support
        good = (precision >= target) & (support >= AUTO_LABEL_MIN_SUPPORT)
        if good.any():
            i = int(np.flatnonzero(good)[-1])
            value = np.array([values["bits"].iloc[i]], dtype=np.uint32).view(np.float32)[0]
            return float(value), float(precision[i]), int(support[i])
    return float("inf"), float("nan"), 0


def _auto_rows(chunk, facts: RowFacts, threshold: float, queued: NDArray, m: int, classes):
    """Kernel: the chunk's auto-label candidates (eligible, not queued, unanimous, confident):
    their number and the m most confident."""
    probs, conf, unanimous = _confidence(chunk, facts)
    rows = facts.eligible(chunk)
    rows = rows[~np.isin(chunk.pos[rows], queued) & unanimous[rows] & (conf[rows] >= threshold)]
    members = np.asarray(chunk.member_probs)[:, rows] if facts.members else None
    frame = pd.DataFrame(
        {
            "pos": chunk.pos[rows],
            "id": chunk.ids[rows],
            "predicted_label": label_names(classes, probs[rows].argmax(axis=1)),
            "predicted_prob": conf[rows],
            "agreement": st.agreement(probs[rows], members),
        }
    )
    return len(frame), select_top(frame, m, "predicted_prob")


def _merge_auto(m: int, a, b):
    return a[0] + b[0], select_top(pd.concat([a[1], b[1]], ignore_index=True), m, "predicted_prob")


def auto_label(
    engine: Engine, facts: RowFacts, queued: NDArray[np.int64], config: AuditConfig
) -> tuple[pd.DataFrame, dict]:
    """Confident, unanimous predictions among eligible items not queued, with precision
    estimated on labeled items."""
    threshold, precision, support = auto_label_cut(engine, facts, config.auto_label_precision)
    count, top = 0, pd.DataFrame()
    if np.isfinite(threshold):
        count, top = engine.map_reduce(
            _auto_rows,
            functools.partial(_merge_auto, MAX_DRIVER_ROWS),
            facts,
            threshold,
            np.sort(queued),
            MAX_DRIVER_ROWS,
            engine.classes,
        )
    frame = pd.DataFrame(
        {
            "rank": np.arange(1, len(top) + 1, dtype=np.int64),
            "id": top["id"].to_numpy() if len(top) else np.zeros(0, object),
            "predicted_label": top["predicted_label"].to_numpy(object)
            if len(top)
            else np.zeros(0, object),
            "predicted_prob": top["predicted_prob"].to_numpy(np.float32)
            if len(top)
            else np.zeros(0, np.float32),
            "agreement": top["agreement"].to_numpy(np.float32)
            if len(top)
            else np.zeros(0, np.float32),
        }
    )
    if np.isfinite(threshold):
        low, high = wilson_interval(round(precision * support), support, config.confidence_level)
        note = (
            f"auto-label: {count} unlabeled items predicted with confidence ≥ {threshold:.3f}"
            + (" by every model" if facts.members else "")
            + f"; at that cut {support} labeled items are {precision:.1%} correct "
            f"({config.confidence_level:.0%} CI {float(low):.1%}–{float(high):.1%}), the estimated "
            "precision if the unlabeled items resemble the labeled ones"
        )
        if count > len(frame):
            note += f"; the table lists the {len(frame):,} most confident"
    else:
        note = (
            f"auto-label: no confidence cut reaches {config.auto_label_precision:.0%} precision "
            f"on at least {AUTO_LABEL_MIN_SUPPORT} labeled items, so no item is proposed"
        )
        precision = float("nan")
    return frame, {
        "count": count,
        "precision": None if not np.isfinite(precision) else float(precision),
        "threshold": None if not np.isfinite(threshold) else float(threshold),
        "note": note,
    }


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
