"""A small audit's input files (a second to audit), for tests about files, folders and options."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ("cat", "dog", "fox")


def small_frame(n: int = 150, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(table, probs N x K, embeddings N x 8): 3 classes, 6 flipped labels, 20 % unlabeled."""
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    true = rng.integers(0, k, size=n)
    given = true.copy()
    flips = rng.choice(n, size=6, replace=False)
    given[flips] = (true[flips] + 1) % k
    labeled = rng.random(n) > 0.2
    labeled[flips] = True
    probs = rng.dirichlet(np.ones(k) * 0.3, size=n).astype(np.float32) * 0.2
    probs[np.arange(n), true] += 0.8
    probs /= probs.sum(axis=1, keepdims=True)
    embeddings = np.hstack([np.eye(k)[true] * 3, rng.normal(size=(n, 5))]).astype(np.float32)
    table = pd.DataFrame(
        {
            "id": [f"item-{i:04d}" for i in range(n)],
            "label": [CLASSES[g] if lab else "" for g, lab in zip(given, labeled)],
            "split": np.where(rng.random(n) < 0.7, "train", "test"),
            "site": rng.choice(["north", "south"], size=n),
        }
    )
    return table, probs, embeddings


def write_small_inputs(folder: Path, n: int = 150, seed: int = 0) -> dict[str, str]:
    """examples.csv, probs.npy and embeddings.npy in `folder`; returns their paths by role."""
    folder.mkdir(parents=True, exist_ok=True)
    table, probs, embeddings = small_frame(n, seed)
    paths = {
        "table": folder / "examples.csv",
        "probs": folder / "probs.npy",
        "embeddings": folder / "embeddings.npy",
    }
    table.to_csv(paths["table"], index=False)
    np.save(paths["probs"], probs)
    np.save(paths["embeddings"], embeddings)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return {role: str(path) for role, path in paths.items()}


def small_argv(files: dict[str, str], out, *extra: str, embeddings: bool = True) -> list[str]:
    argv = ["run", "--table", files["table"], "--probs", files["probs"], "--out", str(out)]
    if embeddings:
        argv += ["--embeddings", files["embeddings"]]
    return [*argv, *extra]
