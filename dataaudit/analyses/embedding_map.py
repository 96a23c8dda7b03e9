"""Embedding map: a 2-D projection of a sample of the embeddings, for the report's scatter plot.

Finds nothing by itself; it shows where flagged items sit (label errors among clean items of
another class, outliers off the main clouds, a split that occupies its own region).

Inputs: embeddings. Reads the flags of `label_errors` and `outliers` when they ran, to keep
every flagged item in the sample (up to half of it), but works without them.

Method: rows are L2-normalised (the similarity analyses use cosine similarity too), a sample of
at most `config.embedding_map_points` items is drawn (flagged items first, the rest uniformly at
random, seeded), and projected to two coordinates by `config.embedding_map_method`:
- "pca" (default): the first two principal axes; milliseconds, deterministic, faithful large-scale
  distances, but on real embeddings (dozens of directions carry the classes) classes overlap.
- "tsne" (`--embedding-map tsne`, the demo's choice): scikit-learn's t-SNE, PCA-initialised,
  seeded, 500 iterations. Classes show as islands and a mislabeled item sits inside another
  class's island; distances between islands mean little. It costs ~4 s for 2k points on an idle
  2-core machine (several times that under load), whatever N is, so it is not the default: every
  audit, test and CI run would pay it.
UMAP would look like t-SNE and be faster, but it is a heavy dependency (numba) for one picture.

Engine form (`run_on`, any dataaudit.engine): one pass keeps, per chunk, the rows with the
highest `strategies.position_hash` of their table position, separately for flagged and other
rows (an exact top-k, carrying the rows' embeddings), and counts the rows; the driver takes the
sample from the merged lists and projects it. The sample depends on positions and the seed
only, never on how the rows are chunked, so every engine draws the same one.

Output table "items": id, split, x, y, sampled ("flagged" | "random").
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, Engine, select_top
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.strategies import position_hash

DEFAULT_POINTS = 5000


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    budget = int(getattr(config, "embedding_map_points", DEFAULT_POINTS))
    flags = flag_functions(engine, ctx)
    n, candidates = engine.map_reduce(
        _sample_candidates,
        functools.partial(_merge_candidates, budget + 1),
        flags,
        budget + 1,
        config.seed,
    )
    sample = take_sample(candidates, n, budget)
    # Sorted row order reads a memory-mapped file front to back.
    vectors = normalise_rows(
        np.asarray(np.stack(sample["vector"]), dtype=np.float32)
        if len(sample)
        else np.zeros((0, 2), dtype=np.float32)
    )
    from_flags = sample["flagged"].to_numpy(bool)
    method = config.embedding_map_method
    if method == "tsne":
        coords = tsne_2d(vectors, seed=config.seed)
    elif method == "pca":
        coords, explained = pca_2d(vectors)
    else:
        raise ValueError(f"embedding_map_method must be 'tsne' or 'pca', not {method!r}")
    items = pd.DataFrame(
        {
            "id": sample["id"].to_numpy(),
            "split": sample["split"].to_numpy(),
            "x": coords[:, 0],
            "y": coords[:, 1],
            "sampled": np.where(from_flags, "flagged", "random"),
        }
    )
    n_flagged = int(from_flags.sum())
    n_rows = len(sample)
    if method == "pca":
        notes = [
            (
                f"PCA of L2-normalised embeddings on {n_rows:,} of {n:,} items; the two "
                f"axes explain {explained.sum():.0%} of the variance in the sample."
            )
        ]
    else:
        notes = [
            (
                f"t-SNE of L2-normalised embeddings on {n_rows:,} of {n:,} items: nearby "
                "points are similar items; distances between clusters and cluster sizes mean little."
            )
        ]
    if n_rows < n:
        notes.append(
            f"{n_flagged:,} flagged items (label errors, outliers) were kept first; the other "
            f"{n_rows - n_flagged:,} points are a uniform random sample (seed {config.seed})."
        )
    return AnalysisResult(
        name="embedding_map",
        tables={"items": items},
        summary={"embedding_map_points": n_rows},
        params={"method": method, "points": budget, "seed": config.seed},
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="embedding_map",
    title="Embedding map",
    run=run,
    requires=("embeddings",),
    # Reads label_errors / outliers when present; not listed in `after`, so a skipped one
    # does not skip the map.
)


def flag_functions(engine: Engine, ctx: AuditContext) -> tuple:
    """Chunk -> flagged-row mask functions for the label_errors and outliers results that ran."""
    from dataaudit.analyses.label_errors_chunks import scores_of
    from dataaudit.analyses.outliers import outlier_scores_of

    flags = []
    label_errors = ctx.results.get("label_errors")
    if label_errors is not None and "items" in label_errors.tables:
        flags.append(_LabelErrorFlags(scores_of(label_errors, engine.classes)))
    outliers = ctx.results.get("outliers")
    if outliers is not None:
        scores = outlier_scores_of(outliers, engine, ctx)
        if scores is not None:
            flags.append(scores.outlier_flags)
    return tuple(flags)


class _LabelErrorFlags:
    def __init__(self, scores):
        self.scores = scores

    def __call__(self, chunk: Chunk) -> NDArray[np.bool_]:
        s = self.scores(chunk)
        out = np.zeros(len(chunk), dtype=bool)
        out[s["rows"]] = s["is_label_error"]
        return out


def _sample_candidates(chunk: Chunk, flags: tuple, k: int, seed: int) -> tuple[int, pd.DataFrame]:
    """Kernel: the chunk's row count and its k first rows by position hash, flagged and not."""
    flagged = np.zeros(len(chunk), dtype=bool)
    for flag in flags:
        flagged |= flag(chunk)
    frame = pd.DataFrame(
        {
            "pos": chunk.pos,
            "key": position_hash(chunk.pos, seed),
            "flagged": flagged,
            "row": np.arange(len(chunk)),
        }
    )
    top = select_top(frame, k, "key", group="flagged")
    rows = top["row"].to_numpy()
    top["id"] = chunk.ids[rows]
    top["split"] = chunk.splits[rows]
    top["vector"] = list(np.asarray(chunk.embeddings[rows], dtype=np.float32))
    return len(chunk), top.drop(columns="row")


def _merge_candidates(k: int, a, b):
    both = pd.concat([a[1], b[1]], ignore_index=True)
    return a[0] + b[0], select_top(both, k, "key", group="flagged")


def take_sample(candidates: pd.DataFrame, n: int, budget: int) -> pd.DataFrame:
    """The sample from the merged candidate lists (at least budget + 1 per group, ranked by
    key), in table order: every row when n <= budget; else the flagged rows (at most half the
    budget, the first by key) filled up with the first other rows by key."""
    if n > budget:
        flagged = candidates[candidates["flagged"].to_numpy(bool)]
        others = candidates[~candidates["flagged"].to_numpy(bool)]
        keep = flagged.iloc[: budget // 2] if len(flagged) > budget // 2 else flagged
        candidates = pd.concat([keep, others.iloc[: budget - len(keep)]])
    return candidates.sort_values("pos", kind="stable").reset_index(drop=True)


def sample_rows(
    n: int, flagged: NDArray[np.int64], budget: int, seed: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Sorted row positions of the sample, and which of them came from `flagged`: the engine
    form's sample (take_sample) for rows 0..n-1 in memory.

    Everything when n <= budget; else flagged rows first (at most half the budget, a random
    subset of them if there are more), filled up with a uniform random sample of the rest.
    """
    is_flagged = np.zeros(n, dtype=bool)
    is_flagged[np.asarray(flagged, dtype=np.int64)] = True
    pos = np.arange(n, dtype=np.int64)
    frame = pd.DataFrame({"pos": pos, "key": position_hash(pos, seed), "flagged": is_flagged})
    sample = take_sample(select_top(frame, budget + 1, "key", group="flagged"), n, budget)
    return sample["pos"].to_numpy(np.int64), sample["flagged"].to_numpy(bool)


def normalise_rows(vectors: NDArray[np.float32]) -> NDArray[np.float32]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def tsne_2d(vectors: NDArray[np.float32], seed: int = 0) -> NDArray[np.float32]:
    """t-SNE coordinates (PCA-initialised, seeded, 500 iterations: the layout settles by then)."""
    from sklearn.manifold import TSNE

    n = len(vectors)
    if n < 5:  # t-SNE needs perplexity < n
        return pca_2d(vectors)[0]
    tsne = TSNE(
        n_components=2,
        perplexity=float(min(30, (n - 1) / 3)),
        init="pca",
        learning_rate="auto",
        max_iter=500,
        random_state=seed,
    )
    return tsne.fit_transform(vectors).astype(np.float32)


def pca_2d(vectors: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """Coordinates on the first two principal axes, and the share of variance each explains.

    Signs are fixed (largest loading positive) so the same data always gives the same picture.
    """
    centred = vectors.astype(np.float64) - vectors.mean(axis=0, dtype=np.float64)
    if len(centred) < 2 or not np.any(centred):
        return np.zeros((len(vectors), 2), dtype=np.float32), np.zeros(2)
    _, singular, axes = np.linalg.svd(centred, full_matrices=False)
    axes = axes[:2]
    axes *= np.sign(axes[np.arange(len(axes)), np.abs(axes).argmax(axis=1)])[:, None]
    coords = centred @ axes.T
    if coords.shape[1] < 2:  # 1-D embeddings
        coords = np.column_stack([coords, np.zeros(len(coords))])
    variance = singular**2
    explained = variance[:2] / variance.sum()
    return coords.astype(np.float32), np.pad(explained, (0, 2 - len(explained)))
