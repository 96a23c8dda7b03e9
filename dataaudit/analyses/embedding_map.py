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

Output table "items": id, split, x, y, sampled ("flagged" | "random").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.result import Analysis, AnalysisResult

if TYPE_CHECKING:
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.dataset import AuditDataset

DEFAULT_POINTS = 5000


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    budget = int(getattr(config, "embedding_map_points", DEFAULT_POINTS))
    flagged = flagged_rows(data, ctx)
    rows, from_flags = sample_rows(data.n, flagged, budget, seed=config.seed)
    # Sorted row order reads a memory-mapped file front to back.
    vectors = normalise_rows(np.asarray(data.embeddings[rows], dtype=np.float32))
    method = config.embedding_map_method
    if method == "tsne":
        coords = tsne_2d(vectors, seed=config.seed)
    elif method == "pca":
        coords, explained = pca_2d(vectors)
    else:
        raise ValueError(f"embedding_map_method must be 'tsne' or 'pca', not {method!r}")
    items = pd.DataFrame(
        {
            "id": data.ids[rows],
            "split": data.splits[rows],
            "x": coords[:, 0],
            "y": coords[:, 1],
            "sampled": np.where(from_flags, "flagged", "random"),
        }
    )
    n_flagged = int(from_flags.sum())
    if method == "pca":
        notes = [
            (
                f"PCA of L2-normalised embeddings on {len(rows):,} of {data.n:,} items; the two "
                f"axes explain {explained.sum():.0%} of the variance in the sample."
            )
        ]
    else:
        notes = [
            (
                f"t-SNE of L2-normalised embeddings on {len(rows):,} of {data.n:,} items: nearby "
                "points are similar items; distances between clusters and cluster sizes mean little."
            )
        ]
    if len(rows) < data.n:
        notes.append(
            f"{n_flagged:,} flagged items (label errors, outliers) were kept first; the other "
            f"{len(rows) - n_flagged:,} points are a uniform random sample (seed {config.seed})."
        )
    return AnalysisResult(
        name="embedding_map",
        tables={"items": items},
        summary={"embedding_map_points": len(rows)},
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


def flagged_rows(data: AuditDataset, ctx: AuditContext) -> NDArray[np.int64]:
    """Row positions of items flagged as label errors or outliers by analyses that ran."""
    flagged_ids = []
    for name, column in (("label_errors", "is_label_error"), ("outliers", "is_outlier")):
        result = ctx.results.get(name)
        table = result.tables.get("items") if result is not None else None
        if table is not None and column in table:
            flagged_ids.append(table.loc[table[column].astype(bool), "id"].to_numpy())
    if not flagged_ids:
        return np.zeros(0, dtype=np.int64)
    ids = pd.Index(data.ids)
    positions = ids.get_indexer(np.concatenate(flagged_ids))
    return np.unique(positions[positions >= 0]).astype(np.int64)


def sample_rows(
    n: int, flagged: NDArray[np.int64], budget: int, seed: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """Sorted row positions of the sample, and which of them came from `flagged`.

    Everything when n <= budget; else flagged rows first (at most half the budget, a random
    subset of them if there are more), filled up with a uniform random sample of the rest.
    """
    flagged = np.unique(np.asarray(flagged, dtype=np.int64))
    if n <= budget:
        rows = np.arange(n, dtype=np.int64)
        return rows, np.isin(rows, flagged)
    rng = np.random.default_rng(seed)
    keep_flagged = flagged
    if len(flagged) > budget // 2:
        keep_flagged = np.sort(rng.choice(flagged, size=budget // 2, replace=False))
    is_flagged = np.zeros(n, dtype=bool)
    is_flagged[flagged] = True  # flagged rows left out of the sample are not drawn again
    rest = np.flatnonzero(~is_flagged)
    fill = rng.choice(rest, size=min(len(rest), budget - len(keep_flagged)), replace=False)
    rows = np.sort(np.concatenate([keep_flagged, fill]).astype(np.int64))
    return rows, np.isin(rows, keep_flagged)


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
