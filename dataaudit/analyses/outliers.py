"""Outliers among all items, and out-of-distribution (OOD) items measured against train.

- outlier_score: 1 - mean cosine similarity to the item's k nearest neighbours among all items
  (the run's shared kNN graph). Higher = more unusual. An item is flagged `is_outlier` when its
  score lies more than `config.outlier_z` robust standard deviations (1.4826 x MAD) above the
  median score.
- ood_score: for production and unlabeled items outside the reference set, the mean Euclidean
  distance to their k nearest neighbours in the reference set (the train split; all labeled
  items when there is no train split). Euclidean, not cosine: an encoder's vector norm often
  says how typical an input is, and cosine throws it away (on the demo's planted OOD items,
  AUROC 0.92 with cosine, 0.995 with Euclidean distance). A tight cluster of new items is each other's neighbour,
  so its outlier_score stays low, but its ood_score is high: that is what OOD is for.
  `is_ood` flags items whose ood_score exceeds the 99th percentile of the same score for
  reference items themselves (each against the others).

Inputs: embeddings.
Tables: "items": id, split, outlier_score, is_outlier, ood_score (NaN where not scored), is_ood;
ranked by ood_score then outlier_score, highest first.
Summary: n_outliers, outlier_rate, n_ood_scored, n_ood, ood_rate.

Engine form (`run_on`, any dataaudit.engine):
- outlier_score per chunk from the engine's kNN graph (`chunk.similarities`); the flag's cut
  needs the exact median and median absolute deviation over all items (similarity.medians:
  float32 bit-pattern histograms, two summed passes per statistic).
- the OOD reference is the reference items themselves when there are at most
  OOD_REFERENCE_ROWS of them (the in-process result), else a seeded uniform sample of that
  many (the first by `strategies.position_hash`, an exact top-k carrying their embeddings):
  the k-th-neighbour distances are then those within the sample, and the flag's cut is
  calibrated on the same sample, so the flag keeps its meaning. Every chunk scores its rows
  against it exactly.
- the driver keeps the top MAX_DRIVER_ROWS items of the ranking (and, when there are more
  items, the top half that many by outlier_score too); every chunk writes all its rows as
  Parquet parts (engine.write_parts, "outliers.all_items.parquet").
`outlier_scores_of(result, ...)` applies a result to any chunk (label_next's OOD quota, the
embedding map's flags) without an items table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext, Progress
from dataaudit.dataset import AuditDataset
from dataaudit.engine import MAX_DRIVER_ROWS, Chunk, Engine, add, select_top
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.neighbors import _exact, approx_knn, choose_method
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.strategies import position_hash

# Reference items sampled to calibrate the OOD flag (leave-one-out scores on train).
CALIBRATION_SAMPLE = 5000
# At most this many reference items are searched for the OOD score (a seeded sample beyond).
OOD_REFERENCE_ROWS = 20_000
ITEM_COLUMNS = ("id", "split", "outlier_score", "is_outlier", "ood_score", "is_ood")


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    graph = engine.graph(ctx)
    z = getattr(config, "outlier_z", 3.5)
    counts = engine.map_reduce(_counts, add)
    n = int(counts["n"])
    median, mad = robust_statistics(engine, n)
    outlier_cut = float(robust_cut(median, mad, z))

    reference_name, reference_kind = "the train split", "train"
    if not counts["train"]:
        reference_name, reference_kind = "labeled items", "labeled"
    n_reference = int(counts[reference_kind])
    n_scored = int(counts[f"scored_{reference_kind}"])
    notes = [
        (
            f"outlier_score: 1 - mean cosine similarity to the {graph.k} nearest items; flagged "
            f"above median + {z:g} robust SD."
        )
    ]
    ood = None
    if n_scored and n_reference > config.knn_k:
        with ctx.progress.step("OOD scores"):
            ref = reference_sample(engine, reference_kind, OOD_REFERENCE_ROWS, config.seed)
            ood = OodReference.fit(ref, config.knn_k, config.knn_device, config.seed)
        notes.append(
            f"ood_score: mean Euclidean distance to the {config.knn_k} nearest items of "
            f"{reference_name}, for production and unlabeled items; flagged above "
            f"{ood.cut:.3f}, the 99th percentile of the same score within {reference_name}."
        )
        if n_reference > len(ref):
            notes.append(
                f"ood_score is measured against a seeded uniform sample of {len(ref):,} of the "
                f"{n_reference:,} reference items (the flag's cut on the same sample)."
            )
    else:
        notes.append("No OOD scores: no production or unlabeled items outside the reference set.")
    scores = OutlierScores(outlier_cut, reference_kind, ood)
    # Later analyses of the run (label_next, embedding_map) apply the same scorer to chunks.
    ctx.cached("outlier_scores", lambda: scores)

    n_flags, items = engine.map_reduce(
        _flags_and_items, functools.partial(_merge_items, MAX_DRIVER_ROWS), scores, MAX_DRIVER_ROWS
    )
    parts = engine.write_parts(_items_kernel, "outliers.all_items.parquet", scores, False)
    if n > MAX_DRIVER_ROWS:
        notes.append(
            f"The items table here holds the {len(items):,} most out-of-distribution and most "
            "isolated items; every item is in the Parquet parts of "
            "audit/outliers.all_items.parquet/."
        )
    n_scored = n_scored if ood is not None else 0
    items = pd.DataFrame({c: items[c].to_numpy() for c in ITEM_COLUMNS})
    return AnalysisResult(
        name="outliers",
        tables={"items": items},
        summary={
            "n_outliers": int(n_flags[0]),
            "outlier_rate": float(n_flags[0] / n) if n else 0.0,
            "n_ood_scored": n_scored,
            "n_ood": int(n_flags[1]),
            "ood_rate": float(n_flags[1] / n_scored) if n_scored else 0.0,
        },
        params={
            "knn_k": graph.k,
            "outlier_z": z,
            "reference": reference_name,
            "outlier_cut": outlier_cut,
            "ood_cut": None if ood is None else float(ood.cut),
            "ood_reference_rows": None if ood is None else int(len(ood.reference)),
            "items_parts": parts,
        },
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="outliers",
    title="Outliers and out-of-distribution items",
    run=run,
    requires=("embeddings",),
)


# -- the result as a function of a chunk --------------------------------------------------------
@dataclass(frozen=True, eq=False)
class OodReference:
    """The OOD reference: its rows as augmented vectors [x, |x|^2], k, and the flag's cut."""

    reference: NDArray[np.float32]  # R x (d + 1)
    k: int
    cut: float
    device: str = "cpu"

    @classmethod
    def fit(cls, ref: NDArray[np.float32], k: int, device: str, seed: int) -> OodReference:
        """The reference of `ref` (rows in table order), its cut calibrated on a sample of it."""
        ref_aug = _augment(ref)
        rng = np.random.default_rng(seed)
        sample = np.sort(
            rng.choice(len(ref), size=min(CALIBRATION_SAMPLE, len(ref)), replace=False)
        )
        own = cls(ref_aug, k, float("nan"), device)
        cut = float(np.quantile(own.mean_distance(ref[sample], sample), 0.99))
        return cls(ref_aug, k, cut, device)

    def mean_distance(self, queries: NDArray, self_ids=None) -> NDArray[np.float32]:
        """Mean Euclidean distance of each query to its k nearest reference rows (exact)."""
        queries = np.asarray(queries, dtype=np.float32)
        sq = np.einsum("ij,ij->i", queries, queries)
        q_aug = np.hstack([2 * queries, -np.ones((len(queries), 1), dtype=np.float32)])
        products, _ = _exact(q_aug, self.reference, self.k, self_ids=self_ids, device=self.device)
        dist2 = np.maximum(sq[:, None] - products, 0)
        return np.sqrt(dist2).mean(axis=1).astype(np.float32)


@dataclass(frozen=True, eq=False)
class OutlierScores:
    """The outliers result as a function of a chunk: small, picklable, exact (needs the
    engine's kNN graph: call engine.graph(ctx) before applying it)."""

    outlier_cut: float
    reference_kind: str  # "train" | "labeled"
    ood: OodReference | None

    def scored(self, chunk: Chunk) -> NDArray[np.bool_]:
        """Rows that get an OOD score: production or unlabeled, outside the reference."""
        splits = np.asarray(chunk.splits, dtype=object)
        reference = splits == "train" if self.reference_kind == "train" else chunk.labeled
        return ((splits == "production") | ~chunk.labeled) & ~reference

    def ood_scores(self, chunk: Chunk, rows: NDArray[np.int64]) -> NDArray[np.float32]:
        """OOD score of the chunk's `rows` (NaN where not scored)."""
        out = np.full(len(rows), np.nan, dtype=np.float32)
        if self.ood is None or not len(rows):
            return out
        scored = self.scored(chunk)[rows]
        if scored.any():
            out[scored] = self.ood.mean_distance(chunk.embeddings[rows[scored]])
        return out

    def outlier_flags(self, chunk: Chunk) -> NDArray[np.bool_]:
        return knn_distance_score(chunk.similarities) > self.outlier_cut

    def ood_flags(self, chunk: Chunk, rows, ood: NDArray[np.float32]) -> NDArray[np.bool_]:
        """is_ood of the chunk's `rows`, given their ood_scores."""
        cut = np.inf if self.ood is None else self.ood.cut
        return np.nan_to_num(ood, nan=-np.inf) > cut

    def __call__(self, chunk: Chunk) -> dict[str, NDArray]:
        outlier = knn_distance_score(chunk.similarities)
        ood = self.ood_scores(chunk, np.arange(len(chunk)))
        return {
            "outlier_score": outlier,
            "is_outlier": outlier > self.outlier_cut,
            "ood_score": ood,
            "is_ood": self.ood_flags(chunk, None, ood),
        }


class _TableOutliers:
    """Per-chunk view of an in-memory items table, joined by id (NaN / False where absent)."""

    def __init__(self, items: pd.DataFrame):
        self.index = pd.Index(items["id"])
        self.items = items

    def _column(self, chunk: Chunk, name: str, fill):
        at = self.index.get_indexer(chunk.ids)
        if name not in self.items.columns:
            return np.full(len(chunk), fill)
        values = self.items[name].to_numpy()
        return (
            np.where(at >= 0, values[np.maximum(at, 0)], fill)
            if len(values)
            else np.full(len(chunk), fill)
        )

    def ood_scores(self, chunk: Chunk, rows: NDArray[np.int64]) -> NDArray[np.float32]:
        return self._column(chunk, "ood_score", np.nan).astype(np.float32)[rows]

    def outlier_flags(self, chunk: Chunk) -> NDArray[np.bool_]:
        return self._column(chunk, "is_outlier", False).astype(bool)

    def ood_flags(self, chunk: Chunk, rows, ood=None) -> NDArray[np.bool_]:
        return self._column(chunk, "is_ood", False).astype(bool)[rows]

    def __call__(self, chunk: Chunk) -> dict[str, NDArray]:
        return {
            "outlier_score": self._column(chunk, "outlier_score", np.nan).astype(np.float32),
            "is_outlier": self._column(chunk, "is_outlier", False).astype(bool),
            "ood_score": self._column(chunk, "ood_score", np.nan).astype(np.float32),
            "is_ood": self._column(chunk, "is_ood", False).astype(bool),
        }


def outlier_scores_of(result: AnalysisResult, engine: Engine, ctx: AuditContext):
    """A chunk -> {outlier_score, is_outlier, ood_score, is_ood} function for an outliers
    result: from its parameters when it came from run_on (the engine's kNN graph is built
    first), else looked up by id in its items table; None without either."""
    params = result.params
    if "outlier_cut" in params:
        engine.graph(ctx)
        return ctx.cached("outlier_scores", lambda: _rebuild(result, engine, ctx))
    items = result.tables.get("items")
    if items is None or "id" not in items.columns:
        return None
    return _TableOutliers(items)


# -- kernels ------------------------------------------------------------------------------------
def _counts(chunk: Chunk) -> dict[str, int]:
    splits = np.asarray(chunk.splits, dtype=object)
    train = splits == "train"
    outside = (splits == "production") | ~chunk.labeled
    return {
        "n": len(chunk),
        "train": int(train.sum()),
        "labeled": int(chunk.labeled.sum()),
        "scored_train": int((outside & ~train).sum()),
        "scored_labeled": int((outside & ~chunk.labeled).sum()),
    }


def _reference_candidates(chunk: Chunk, kind: str, k: int, seed: int) -> pd.DataFrame:
    splits = np.asarray(chunk.splits, dtype=object)
    rows = np.flatnonzero(splits == "train" if kind == "train" else chunk.labeled)
    frame = pd.DataFrame(
        {"pos": chunk.pos[rows], "key": position_hash(chunk.pos[rows], seed), "row": rows}
    )
    top = select_top(frame, k, "key")
    top["vector"] = list(np.asarray(chunk.embeddings[top["row"].to_numpy()], dtype=np.float32))
    return top.drop(columns="row")


def _rebuild(result: AnalysisResult, engine: Engine, ctx: AuditContext) -> OutlierScores:
    """The scorer of a run_on result from its parameters (the same sample, the same cut)."""
    params, config = result.params, ctx.config
    kind = "train" if params["reference"] == "the train split" else "labeled"
    ood = None
    if params.get("ood_cut") is not None:
        ref = reference_sample(engine, kind, OOD_REFERENCE_ROWS, config.seed)
        ood = OodReference.fit(ref, config.knn_k, config.knn_device, config.seed)
    return OutlierScores(float(params["outlier_cut"]), kind, ood)


def reference_sample(engine: Engine, kind: str, k: int, seed: int) -> NDArray[np.float32]:
    """Embeddings of the reference rows (at most k, the first by position hash), table order."""

    def merge(a, b):
        return select_top(pd.concat([a, b], ignore_index=True), k, "key")

    top = engine.map_reduce(_reference_candidates, merge, kind, k, seed)
    top = top.sort_values("pos", kind="stable")
    return np.asarray(np.stack(top["vector"]), dtype=np.float32)


def _ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """The items table's order: ood_score, then outlier_score, highest first (NaN last); ties
    by table position."""
    ood = np.nan_to_num(frame["ood_score"].to_numpy(np.float64), nan=-np.inf)
    order = np.lexsort(
        (frame["pos"].to_numpy(), -frame["outlier_score"].to_numpy(np.float64), -ood)
    )
    return frame.iloc[order].reset_index(drop=True)


def _items_kernel(chunk: Chunk, scores: OutlierScores, with_pos: bool = True) -> pd.DataFrame:
    s = scores(chunk)
    frame = pd.DataFrame(
        {
            "id": chunk.ids,
            "split": np.asarray(chunk.splits, dtype=object),
            "outlier_score": s["outlier_score"],
            "is_outlier": s["is_outlier"],
            "ood_score": s["ood_score"],
            "is_ood": s["is_ood"],
        }
    )
    if with_pos:
        frame.insert(0, "pos", chunk.pos)
    return frame


def _keep(frame: pd.DataFrame, m: int) -> pd.DataFrame:
    """The top m of the ranking, with the top m // 2 by outlier_score when that cuts rows."""
    ranked = _ranked(frame)
    if len(ranked) <= m:
        return ranked
    isolated = select_top(frame, m // 2, "outlier_score")
    return _ranked(pd.concat([ranked.iloc[:m], isolated]).drop_duplicates("pos"))


def _flags_and_items(chunk: Chunk, scores: OutlierScores, m: int):
    items = _items_kernel(chunk, scores)
    flags = np.array([items["is_outlier"].sum(), items["is_ood"].sum()], dtype=np.int64)
    return flags, _keep(items, m)


def _merge_items(m: int, a, b):
    return a[0] + b[0], _keep(pd.concat([a[1], b[1]], ignore_index=True), m)


def robust_statistics(engine: Engine, n: int) -> tuple[np.float32, np.float32]:
    """(median, median absolute deviation) of outlier_score over every item, exactly as
    np.median gives them (similarity.medians: bit-pattern histograms, two passes each)."""
    from dataaudit.similarity import medians

    if n == 0:
        return np.float32(0), np.float32(0)
    ((median, _),) = medians(engine, _outlier_values).values()
    ((mad, _),) = medians(engine, _deviation_values, np.float32(median)).values()
    return np.float32(median), np.float32(mad)


def _outlier_values(chunk: Chunk) -> dict[str, NDArray[np.float32]]:
    return {"score": knn_distance_score(chunk.similarities)}


def _deviation_values(chunk: Chunk, median: np.float32) -> dict[str, NDArray[np.float32]]:
    return {"deviation": np.abs(knn_distance_score(chunk.similarities) - median)}


# -- pure helpers on arrays ---------------------------------------------------------------------
def knn_distance_score(similarities: NDArray[np.float32]) -> NDArray[np.float32]:
    """1 - mean similarity over the found neighbours of each row (missing slots ignored)."""
    sims = np.where(np.isfinite(similarities), similarities, np.nan)
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(sims, axis=1) if sims.shape[1] else np.full(len(sims), np.nan)
    return (1.0 - np.nan_to_num(mean, nan=0.0)).astype(np.float32)


def robust_cut(median, mad, z: float):
    """The outlier flag's cut: median + z robust SDs (1.4826 x MAD), or the median when the
    MAD is 0."""
    spread = 1.4826 * mad
    if spread <= 0:
        return median
    return median + z * spread


def robust_flags(scores: NDArray[np.float32], z: float) -> NDArray[np.bool_]:
    """Scores more than z robust standard deviations above the median."""
    if len(scores) == 0:
        return np.zeros(0, dtype=bool)
    median = np.median(scores)
    return scores > robust_cut(median, np.median(np.abs(scores - median)), z)


def _augment(ref: NDArray[np.float32]) -> NDArray[np.float32]:
    ref = np.asarray(ref, dtype=np.float32)
    return np.hstack([ref, np.einsum("ij,ij->i", ref, ref)[:, None]])


def ood_scores(
    embeddings: NDArray,
    reference_rows: NDArray[np.int64],
    query_rows: NDArray[np.int64],
    *,
    k: int = 10,
    device: str = "cpu",
    seed: int = 0,
    mode: str = "exact",
    approx_threshold: int = 200_000,
    progress: Progress | None = None,
) -> tuple[NDArray[np.float32], float]:
    """(OOD score of each query row against the reference rows, flag threshold).

    The score is the mean Euclidean distance to the k nearest reference rows, found exactly with
    the chunked engine on augmented vectors: [2q, -1] . [x, |x|^2] = |q|^2 - |q - x|^2, so the
    largest products are the nearest rows. The threshold is the 99th percentile of leave-one-out
    scores of a sample of reference rows.
    """
    reference = OodReference.fit(
        np.asarray(embeddings[reference_rows], dtype=np.float32), k, device, seed
    )
    queries = np.asarray(embeddings[query_rows], dtype=np.float32)
    if choose_method(len(reference_rows), mode, approx_threshold) != "approx":
        return reference.mean_distance(queries), reference.cut
    # The approximate search: candidates by cosine, their distances exact.
    sq = np.einsum("ij,ij->i", queries, queries)
    q_aug = np.hstack([2 * queries, -np.ones((len(queries), 1), dtype=np.float32)])
    products = _approx_products(
        q_aug, reference.reference, k, device=device, seed=seed, progress=progress
    )
    dist2 = np.maximum(sq[:, None] - products, 0)
    return np.sqrt(dist2).mean(axis=1).astype(np.float32), reference.cut


def _approx_products(
    q_aug: NDArray[np.float32],
    ref_aug: NDArray[np.float32],
    k: int,
    *,
    device: str,
    seed: int,
    progress: Progress | None,
) -> NDArray[np.float32]:
    """The k largest products q_aug . ref_aug (the k nearest reference rows), approximately.

    Candidates are the 4k nearest reference rows by cosine (the approximate IVF search); their
    products are then computed exactly and the k largest kept. Nearest by cosine and nearest
    by distance agree where norms vary little, which is what 4k candidates cover.
    """
    queries, ref = q_aug[:, :-1] / 2, ref_aug[:, :-1]
    n_cand = min(4 * k, len(ref))
    _, cand = approx_knn(
        queries, ref, n_cand, exclude_self=False, device=device, seed=seed, progress=progress
    )
    out = np.empty((len(queries), k), dtype=np.float32)
    step = max(1, (1 << 22) // (n_cand * ref.shape[1]))
    for start in range(0, len(queries), step):  # chunks bound the gathered candidate rows
        c = cand[start : start + step]
        found = c >= 0
        rows = torch.from_numpy(ref_aug[np.where(found, c, 0)])
        q = torch.from_numpy(q_aug[start : start + step]).unsqueeze(2)
        products = torch.bmm(rows, q).squeeze(2).numpy()
        products[~found] = -np.inf
        out[start : start + step] = -np.sort(-products, axis=1)[:, :k]
    return out
