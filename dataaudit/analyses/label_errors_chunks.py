"""Label errors as chunk kernels and reductions: the engine form of analyses/label_errors.py.

The same flags, scores and summary as `label_errors.run` for the scores "confidence_and_neighbors"
(with embeddings the neighbour votes come from the engine's kNN graph, `engine.graph`: each
chunk's neighbour labels and similarities, as label_errors.neighbor_votes reads them from
neighbors.shared_graph) and "flagged_then_margin", filters "calibrated_count" (the default) and
"confident_learning". Built from label_errors' own helpers (score_chunk, votes_of,
confident_joint_counts, calibrated_error_count); it runs on any engine (dataaudit.engine) in
four passes:

1. class thresholds and class shares (the vote's prior): per chunk, sums of p(given label) and
   counts per class; the driver divides.
2. per chunk scoring with the thresholds: the confident joint and its off-diagonal flags, summed;
   the driver computes cleanlab's calibrated count of label errors.
3. the flags: the items with the highest error_score among those whose evidence points to
   another class, as many as that count, as an exact top-k (ties by table order, as
   label_errors.top_flags). Its last member is the cut: an item is flagged when its
   (error_score, position) ranks at or above it, a test every chunk can apply on its own.
4. the number of flags and the items table: the driver keeps the top MAX_DRIVER_ROWS items by
   error_score; every chunk writes all its rows as Parquet parts (engine.write_parts).

`LabelErrorScores` applies the result to any chunk, so later analyses (per_class, swapped_pairs)
read the flags on the cluster without an items table. Lives beside label_errors.py until that
module is rebuilt on it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.analyses import label_errors as le
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.engine import MAX_DRIVER_ROWS, Chunk, Engine, add, label_names, select_top, top_k
from dataaudit.result import AnalysisResult
from dataaudit.stats import wilson_interval

SCORES = (le.DEFAULT_SCORE, le.FLAG_THEN_MARGIN)
FILTERS = (le.DEFAULT_FILTER, "confident_learning")


def unsupported(config: AuditConfig, with_embeddings: bool = False) -> str | None:
    """Why this config cannot run chunk by chunk, or None. cleanlab's other filters and scores
    need every row at once."""
    if config.label_error_score not in SCORES:
        return f"label_error_score {config.label_error_score!r} (only {' or '.join(SCORES)})"
    if config.label_error_filter not in FILTERS:
        return f"label_error_filter {config.label_error_filter!r} (only {' or '.join(FILTERS)})"
    return None


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    why = unsupported(config, getattr(engine, "has_embeddings", False))
    if why is not None:
        raise ValueError(f"label errors by chunks do not support {why}")
    classes = engine.classes
    k = len(classes)
    method, filter_by = config.label_error_score, config.label_error_filter
    sums, counts = engine.map_reduce(_threshold_partials, add, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), le._UNREACHABLE)
    thresholds = np.clip(means, le._THRESHOLD_FLOOR, None)
    weight = config.label_error_neighbor_weight
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"label_error_neighbor_weight must be in [0, 1]; got {weight!r}")
    graph = None
    if method == le.DEFAULT_SCORE and getattr(engine, "has_embeddings", False) and weight > 0:
        graph = engine.graph(ctx)
    prior = tuple(float(p) for p in counts / max(int(counts.sum()), 1))

    joint, n_confident = engine.map_reduce(_joint_partials, add, thresholds, k)
    n_labeled = int(counts.sum())
    unflagged = LabelErrorScores(
        tuple(float(t) for t in thresholds),
        method,
        filter_by,
        prior=prior if graph is not None else None,
        neighbor_weight=weight if graph is not None else 0.0,
    )
    cut = None
    n_estimated = None
    if filter_by == le.DEFAULT_FILTER:
        n_estimated = le.calibrated_error_count(joint, counts.astype(np.int64))
        if n_estimated > 0:
            chosen = top_k(engine, _flag_candidates, n_estimated, "error_score", unflagged)
            if len(chosen):
                last = chosen.iloc[-1]
                cut = (float(last["error_score"]), int(last["pos"]))
    scores = dataclasses.replace(unflagged, flag_cut=cut)

    # One pass: the number of flags and the capped items table.
    n_errors, items = engine.map_reduce(_flags_and_items, _merge_flags_and_items, scores, classes)
    items = _as_built_in_memory(items.drop(columns="pos"))
    parts = engine.write_parts(
        _items_kernel, "label_errors.all_items.parquet", scores, classes, False
    )
    low, high = wilson_interval(n_errors, n_labeled, config.confidence_level)
    if filter_by == le.DEFAULT_FILTER:
        flagged = (
            f"Flagged: the top {n_estimated:,} of the ranking among items whose evidence points"
            " to another class; that count is cleanlab's calibrated estimate of the number of"
            f" label errors ({int(n_confident):,} items lie off the diagonal of its confident"
            " joint)."
        )
    else:
        flagged = "Flagged by confident learning: off the diagonal of cleanlab's confident joint."
    notes = [flagged, f"Ranked by {le._describe(method, filter_by, graph, weight)}."]
    n_models = getattr(engine, "n_models", 1)
    if n_models > 1:
        notes.append(
            f"The probabilities of {n_models} models were averaged before finding label errors."
        )
    if n_labeled > MAX_DRIVER_ROWS:
        notes.append(
            f"The items table here holds the {MAX_DRIVER_ROWS:,} items most likely mislabeled;"
            " every labeled item is in the Parquet parts of audit/label_errors.all_items.parquet/."
        )
    return AnalysisResult(
        name="label_errors",
        tables={"items": items, "relabel": le.relabel_candidates(items)},
        summary={
            "n_labeled": n_labeled,
            "n_label_errors": n_errors,
            "label_error_rate": n_errors / n_labeled if n_labeled else float("nan"),
            "label_error_rate_ci_low": float(low),
            "label_error_rate_ci_high": float(high),
            "n_confident_learning_flags": int(n_confident),
        },
        params={
            "label_error_score": method,
            "label_error_filter": filter_by,
            "label_error_neighbor_weight": scores.neighbor_weight,
            "knn_k": graph.k if graph is not None else None,
            "confidence_level": config.confidence_level,
            "n_models_averaged": n_models,
            "class_thresholds": [float(t) for t in thresholds],
            "n_label_errors_estimated": n_estimated,
            # (error_score, table position) of the last flagged item; None = no flags
            "flag_cut": None if cut is None else list(cut),
            # the neighbour vote's pseudo-vote (labeled share per class); None without votes
            "class_prior": None if scores.prior is None else list(scores.prior),
            "items_parts": parts,
        },
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class LabelErrorScores:
    """The label_errors result as a function of a chunk: small, picklable, exact.

    thresholds: the K class thresholds; flag_cut: (error_score, pos) of the last flagged item
    under the calibrated count (None: nothing flagged, or the confident-learning filter);
    prior and neighbor_weight: the neighbour vote (label_errors.pool_with_neighbors), read from
    the chunks' kNN graph; weight 0 = the model alone.
    """

    thresholds: tuple[float, ...]
    score: str = le.DEFAULT_SCORE
    filter_by: str = le.DEFAULT_FILTER
    flag_cut: tuple[float, int] | None = None
    prior: tuple[float, ...] | None = None
    neighbor_weight: float = 0.0

    def __call__(self, chunk: Chunk) -> dict[str, NDArray]:
        """label_errors.score_chunk's arrays for the chunk's labeled rows with this result's
        error_score and final is_label_error, and `rows` (positions within the chunk)."""
        rows = np.flatnonzero(chunk.labeled)
        votes = None
        if self.neighbor_weight > 0:
            votes = le.votes_of(chunk.similarities[rows], chunk.neighbor_labels[rows])
        scored = le.score_chunk(
            np.asarray(chunk.probs[rows], dtype=np.float32),
            chunk.labels[rows],
            np.asarray(self.thresholds),
            votes=votes,
            prior=None if self.prior is None else np.asarray(self.prior),
            neighbor_weight=self.neighbor_weight,
        )
        if self.score == le.FLAG_THEN_MARGIN:
            scored["error_score"] = le.combine_flag_and_margin(
                scored["is_label_error"], scored["margin_score"]
            )
        if self.filter_by == le.DEFAULT_FILTER:
            flag = np.zeros(len(rows), dtype=bool)
            if self.flag_cut is not None:
                cut, pos = self.flag_cut
                e = scored["error_score"]
                at_or_above = (e > np.float32(cut)) | (
                    (e == np.float32(cut)) & (chunk.pos[rows] <= pos)
                )
                flag = scored["evidence_disagrees"] & at_or_above
            scored["is_label_error"] = flag
        scored["rows"] = rows
        return scored


def scores_of(result: AnalysisResult, classes: tuple[str, ...]):
    """A chunk -> {rows, is_label_error, error_score, suggested} function for a label_errors
    result: computed from its parameters when it came from run_on, else looked up by id in its
    items table (in process, any filter or score)."""
    params = result.params
    if "flag_cut" in params:
        cut = params["flag_cut"]
        prior = params.get("class_prior")
        return LabelErrorScores(
            tuple(params["class_thresholds"]),
            params["label_error_score"],
            params["label_error_filter"],
            None if cut is None else (cut[0], int(cut[1])),
            prior=None if prior is None else tuple(prior),
            neighbor_weight=params["label_error_neighbor_weight"] if prior is not None else 0.0,
        )
    return _TableScores(result.table("items"), classes)


class _TableScores:
    """Per-chunk view of an in-memory items table (joined by id, never by row position)."""

    def __init__(self, items: pd.DataFrame, classes: tuple[str, ...]):
        self.index = pd.Index(items["id"])
        self.flag = items["is_label_error"].to_numpy(bool)
        self.score = items["error_score"].to_numpy(np.float32)
        self.suggested = pd.Index(classes).get_indexer(items["suggested_label"].astype(str))

    def __call__(self, chunk: Chunk) -> dict[str, NDArray]:
        rows = np.flatnonzero(chunk.labeled)
        at = self.index.get_indexer(chunk.ids[rows])
        if (at < 0).any():
            raise ValueError(
                "label_errors result lacks some labeled ids; it must run on the same data"
            )
        return {
            "rows": rows,
            "is_label_error": self.flag[at],
            "error_score": self.score[at],
            "suggested": self.suggested[at],
        }


def _as_built_in_memory(frame: pd.DataFrame) -> pd.DataFrame:
    """Column dtypes as a frame built from whole arrays gets them (pandas infers str for text;
    merged candidate lists that met an empty chunk hold object)."""
    return pd.DataFrame({c: frame[c].to_numpy() for c in frame.columns})


# -- kernels ------------------------------------------------------------------------------------
def _threshold_partials(chunk: Chunk, k: int) -> tuple[NDArray, NDArray]:
    rows = np.flatnonzero(chunk.labeled)
    labels = chunk.labels[rows]
    given = np.asarray(chunk.probs[rows, labels], dtype=np.float64)
    return (
        np.bincount(labels, weights=given, minlength=k),
        np.bincount(labels, minlength=k),
    )


def _joint_partials(chunk: Chunk, thresholds: NDArray, k: int) -> tuple[NDArray, int]:
    rows = np.flatnonzero(chunk.labeled)
    labels = chunk.labels[rows]
    probs = np.asarray(chunk.probs[rows], dtype=np.float32)
    guess = le.confident_guess(probs, thresholds)
    flag = (guess >= 0) & (guess != labels) & le.model_disagrees(probs, labels)
    return le.confident_joint_counts(guess, labels, k), int(flag.sum())


def _flag_candidates(chunk: Chunk, scores: LabelErrorScores) -> pd.DataFrame:
    scored = scores(chunk)
    eligible = scored["evidence_disagrees"]
    return pd.DataFrame(
        {
            "pos": chunk.pos[scored["rows"][eligible]],
            "error_score": scored["error_score"][eligible],
        }
    )


def _flags_and_items(chunk: Chunk, scores: LabelErrorScores, classes) -> tuple[int, pd.DataFrame]:
    items = _items_kernel(chunk, scores, classes)
    top = select_top(items, MAX_DRIVER_ROWS, "error_score")
    return int(items["is_label_error"].sum()), top


def _merge_flags_and_items(a, b) -> tuple[int, pd.DataFrame]:
    both = pd.concat([a[1], b[1]], ignore_index=True)
    return a[0] + b[0], select_top(both, MAX_DRIVER_ROWS, "error_score")


def _items_kernel(
    chunk: Chunk, scores: LabelErrorScores, classes: tuple[str, ...], with_pos: bool = True
) -> pd.DataFrame:
    """label_errors' "items" rows of the chunk (its labeled rows), with `pos` for ranking."""
    s = scores(chunk)
    rows = s["rows"]
    frame = pd.DataFrame(
        {
            "id": chunk.ids[rows],
            "given_label": label_names(classes, chunk.labels[rows]),
            "suggested_label": label_names(classes, s["suggested"]),
            "suggested_label_prob": s["suggested_prob"],
            "given_label_prob": s["given_prob"],
            "margin_score": s["margin_score"],
            "neighbor_label": label_names(classes, s["neighbor_label"]),
            "neighbor_label_count": s["neighbor_label_count"],
            "n_labeled_neighbors": s["n_labeled_neighbors"],
            "neighbor_agreement": s["neighbor_agreement"],
            "is_label_error": s["is_label_error"],
            "error_score": s["error_score"].astype(np.float32),
        }
    )
    if with_pos:
        frame.insert(0, "pos", chunk.pos[rows])
    return frame
