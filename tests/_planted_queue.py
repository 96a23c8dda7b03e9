"""Planted data for the label-next queue, outliers and the embedding map on both engines.

Gaussian classes in d dimensions with probabilities that follow them; a labeled train and test
split and an unlabeled production split. Planted in production: a tight novel cluster far from
every class (OOD), groups of near-duplicate unlabeled items made the most uncertain of the pool,
and a look-alike of a labeled item whose label is wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PlantedQueue:
    table: pd.DataFrame
    probs: np.ndarray
    embeddings: np.ndarray
    classes: tuple[str, ...]
    ood_ids: frozenset
    duplicate_groups: tuple[frozenset, ...]
    lookalike_id: str


def planted_queue(
    k: int = 4,
    d: int = 16,
    n_train: int = 500,
    n_test: int = 100,
    n_production: int = 600,
    n_ood: int = 40,
    offset: float = 0.0,
    seed: int = 0,
    numeric_ids: bool = False,
) -> PlantedQueue:
    rng = np.random.default_rng(seed)
    n = n_train + n_test + n_production
    centers = 3.0 * rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    emb = centers[y] + rng.normal(size=(n, d))
    logits = -((emb[:, None, :] - centers[None]) ** 2).sum(axis=2) / 8
    ood = np.arange(n - n_ood, n)  # the last production rows
    far = centers.mean(axis=0) + 12.0 * np.eye(d)[0]
    emb[ood] = far + 0.3 * rng.normal(size=(n_ood, d))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    # Near-duplicate groups of 4 among production rows, each a coin flip between two classes.
    groups = []
    start = n_train + n_test
    for g in range(5 if n_production >= 110 else 0):
        rows = np.arange(start + 10 * g, start + 10 * g + 4)
        emb[rows[1:]] = emb[rows[0]] + 1e-4 * rng.normal(size=(3, d))
        probs[rows] = 0.0
        probs[rows, g % k] = probs[rows, (g + 1) % k] = 0.5
        groups.append(rows)
    # A label error (row 3 labeled as another class) and an unlabeled look-alike of it.
    labels = y.copy()
    labels[3] = (np.argmax(probs[3]) + 1) % k
    look = start + 100 if n_production >= 110 else 3
    emb[look] = emb[3] + 0.6 * rng.normal(size=d)  # near, not a near-duplicate
    probs[look] = probs[3]
    emb = (emb + offset).astype(np.float32)
    probs = probs.astype(np.float32)
    classes = tuple(f"c{i}" for i in range(k))
    names = np.asarray(classes, dtype=object)[labels]
    names[start:] = ""
    ids = [str(1000 + i) if numeric_ids else f"q-{i}" for i in range(n)]
    split = np.r_[
        np.full(n_train, "train"), np.full(n_test, "test"), np.full(n_production, "production")
    ]
    table = pd.DataFrame({"id": ids, "label": names, "split": split})
    id_of = np.asarray(ids, dtype=object)
    return PlantedQueue(
        table,
        probs,
        emb,
        classes,
        frozenset(id_of[ood]),
        tuple(frozenset(id_of[g]) for g in groups),
        str(id_of[look]),
    )
