"""Realistic synthetic audit inputs at any size, with planted problems whose ids are known.

Vectorised throughout so 1M rows build in seconds. Used by benchmarks/scale.py.

Planted: label flips (2% of labeled items), exact and near duplicates (0.5% of rows, a third
copied into another split = leakage, some with conflicting labels), a bad slice (camera == "cam7",
predictions degraded), off-distribution production items (0.2% of rows), an unlabeled pool.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass
class Planted:
    flipped: np.ndarray  # ids
    exact_pairs: np.ndarray  # (n, 2) ids
    near_pairs: np.ndarray
    leaked_pairs: np.ndarray
    ood: np.ndarray
    bad_slice: tuple[str, str] = ("camera", "cam7")

    def to_json(self) -> dict:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()
        }


def make(n: int, k: int = 10, d: int = 128, seed: int = 0, mode_rows: int = 0):
    """Returns table (DataFrame), probs (N x K float32), embeddings (N x d float32), Planted.

    mode_rows > 0: within each class the embeddings gather in tight modes of about that many
    rows (as a trained network's features of similar images do) instead of one Gaussian ball,
    where every row is about as far from every other and nearest neighbours are ill defined.
    """
    rng = np.random.default_rng(seed)
    n_dup = max(2, n // 200)
    n_base = n - n_dup
    y = rng.integers(0, k, n_base)
    centers = rng.normal(size=(k, d)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    # Class signal dominates the noise (as in a trained network's features).
    emb = centers[y] + rng.normal(scale=0.6 / np.sqrt(d), size=(n_base, d)).astype(np.float32)
    if mode_rows:
        n_modes = max(1, n_base // mode_rows)
        modes = rng.normal(scale=0.6 / np.sqrt(d), size=(n_modes, d)).astype(np.float32)
        spread = rng.normal(scale=0.15 / np.sqrt(d), size=(n_base, d)).astype(np.float32)
        emb = centers[y] + modes[rng.integers(0, n_modes, n_base)] + spread
    emb = emb.astype(np.float32)

    split = rng.choice(
        np.array(["train", "val", "test", "production"]), n_base, p=[0.7, 0.1, 0.1, 0.1]
    )
    camera = rng.choice(
        np.array([f"cam{i}" for i in range(8)]),
        n_base,
        p=[0.2, 0.2, 0.15, 0.15, 0.1, 0.1, 0.05, 0.05],
    )
    metadata = {
        "camera": camera,
        "site": rng.choice(np.array([f"site{i:02d}" for i in range(20)]), n_base),
        "hour": rng.integers(0, 24, n_base),
        "brightness": rng.random(n_base).round(3),
    }
    for j in range(6):  # columns that carry no signal
        metadata[f"noise{j}"] = rng.choice(np.array(list("abcde")), n_base)

    # The model: a softmax over similarity to class centres, imperfect, worse on cam7.
    logits = (emb @ centers.T) * 4.0 + rng.normal(scale=1.0, size=(n_base, k)).astype(np.float32)
    bad = camera == "cam7"
    logits[bad] = logits[bad] * 0.35 + rng.normal(scale=1.2, size=(int(bad.sum()), k))

    # Off-distribution production items: far from every class, flat-ish predictions.
    production = np.flatnonzero(split == "production")
    ood_rows = rng.choice(production, max(1, n // 500), replace=False)
    # Each one points its own way, far from every class (a tight clump would look typical to kNN).
    far = rng.normal(size=(len(ood_rows), d)).astype(np.float32)
    emb[ood_rows] = far / np.linalg.norm(far, axis=1, keepdims=True)
    logits[ood_rows] = rng.normal(scale=0.5, size=(len(ood_rows), k))

    probs = np.exp(logits - logits.max(axis=1, keepdims=True)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)

    labeled = (split != "production") & ~((split == "train") & (rng.random(n_base) < 0.1))
    given = y.copy()
    candidates = np.flatnonzero(labeled & ~bad)
    flip_rows = rng.choice(candidates, int(0.02 * labeled.sum()), replace=False)
    given[flip_rows] = (y[flip_rows] + rng.integers(1, k, len(flip_rows))) % k

    ids = np.array([f"s{i:07d}" for i in range(n)], dtype=object)
    # Duplicates: copies of clean labeled rows, exact or with tiny noise; a third move split.
    sources = rng.choice(
        np.flatnonzero(labeled & ~bad & ~np.isin(np.arange(n_base), flip_rows)),
        n_dup,
        replace=False,
    )
    exact = np.arange(n_dup) % 2 == 0
    dup_emb = emb[sources].copy()
    dup_emb[~exact] += rng.normal(scale=0.02 / np.sqrt(d), size=(int((~exact).sum()), d))
    dup_split = split[sources].copy()
    moved = np.arange(n_dup) % 3 == 0
    dup_split[moved] = np.where(dup_split[moved] == "test", "train", "test")

    emb_all = np.concatenate([emb, dup_emb]).astype(np.float32)
    probs_all = np.concatenate([probs, probs[sources]])
    labels_all = np.concatenate([given, given[sources]])
    labeled_all = np.concatenate([labeled, np.ones(n_dup, bool)])
    split_all = np.concatenate([split, dup_split])
    table = pd.DataFrame({"id": ids, "split": split_all})
    names = np.array([f"c{i}" for i in range(k)], dtype=object)
    table["label"] = np.where(labeled_all, names[labels_all], None)
    for column, values in metadata.items():
        table[column] = np.concatenate([values, values[sources]])

    dup_ids = ids[n_base:]
    pairs = np.stack([ids[sources], dup_ids], axis=1)
    planted = Planted(
        flipped=ids[flip_rows],
        exact_pairs=pairs[exact],
        near_pairs=pairs[~exact],
        leaked_pairs=pairs[moved],
        ood=ids[ood_rows],
    )
    return table, probs_all, emb_all, planted


def paths(folder: Path) -> dict[str, Path]:
    """Where `write` puts each input."""
    folder = Path(folder)
    return {
        "table": folder / "examples.parquet",
        "probs": folder / "probs.npy",
        "embeddings": folder / "embeddings.npy",
        "planted": folder / "planted.json",
    }


def write(folder: Path, n: int, k: int, d: int, seed: int = 0) -> dict[str, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table, probs, emb, planted = make(n, k, d, seed)
    files = paths(folder)
    table.to_parquet(files["table"], index=False)
    np.save(files["probs"], probs)
    np.save(files["embeddings"], emb)
    (folder / "classes.txt").write_text("\n".join(f"c{i}" for i in range(k)) + "\n")
    files["planted"].write_text(json.dumps(planted.to_json()))
    return files
