"""Planted-problem data built from scikit-learn's bundled handwritten digits (no download).

The same generator feeds `dataaudit demo` and the tests, so what the demo shows is what the tests
assert: planted label flips, exact and near duplicates (some leaking across splits, some with
conflicting labels), a degraded "scanner" slice, off-distribution production items, and an
unlabeled pool.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

# What write_demo_inputs writes (in the demo's inputs/ folder).
DEMO_FILES = ("examples.csv", "probs.npy", "embeddings.npy", "classes.txt", "planted.json")
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class PlantedTruth:
    """What was planted, by id, so tests can score what the audit finds."""

    flipped: dict[str, tuple[str, str]]  # id -> (true label, given label)
    exact_duplicates: list[tuple[str, str]]  # (original id, copy id)
    near_duplicates: list[tuple[str, str]]
    leaked: list[tuple[str, str]]  # duplicate pairs whose members sit in different splits
    conflicting: list[tuple[str, str]]  # duplicate pairs with different given labels
    ood: list[str]  # off-distribution production items
    bad_slice: tuple[str, str] = ("scanner", "C")  # column, value whose images are degraded
    bad_slice_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DemoInputs:
    table: pd.DataFrame
    probs: NDArray[np.float32]  # M x N x K: a small committee
    embeddings: NDArray[np.float32]
    classes: tuple[str, ...]
    truth: PlantedTruth


def make_demo_inputs(
    seed: int = 0,
    n_flips: int = 40,
    n_exact: int = 12,
    n_near: int = 12,
    n_ood: int = 25,
    n_models: int = 3,
) -> DemoInputs:
    """Build the planted digits dataset and out-of-sample committee probabilities."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(seed)
    digits = load_digits()
    pixels = digits.data.astype(np.float32)  # 0..16
    true = digits.target.astype(np.int64)
    n = len(true)

    split = rng.choice(["train", "val", "test", "production"], size=n, p=[0.62, 0.12, 0.12, 0.14])
    scanner = rng.choice(["A", "B", "C"], size=n, p=[0.45, 0.4, 0.15])
    # The bad slice: scanner C blurs and speckles its images, so the model fails more there.
    bad = scanner == "C"
    pixels[bad] = _degrade(pixels[bad], rng)
    labeled = split != "production"
    pool = labeled & (split == "train") & (rng.random(n) < 0.15)  # unlabeled pool inside train
    labeled &= ~pool

    given = true.copy()
    ids = np.array([f"img-{i:05d}" for i in range(n)], dtype=object)
    flip_rows = rng.choice(np.flatnonzero(labeled & ~bad), size=n_flips, replace=False)
    for row in flip_rows:
        given[row] = rng.choice([c for c in range(10) if c != true[row]])

    rows = {
        "id": list(ids),
        "label": [CLASS_NAMES[g] if lab else "" for g, lab in zip(given, labeled)],
        "split": list(split),
        "scanner": list(scanner),
        "ink": list(np.round(pixels.mean(axis=1) / 16, 3)),
        "_true": list(true),
        "_pixels": list(pixels),
    }
    table = pd.DataFrame(rows)
    clean = ~bad & labeled & ~np.isin(np.arange(n), flip_rows)

    extra = []
    exact_pairs, near_pairs, leaked, conflicting = [], [], [], []
    sources = rng.choice(np.flatnonzero(clean), size=n_exact + n_near, replace=False)
    for j, row in enumerate(sources):
        is_exact = j < n_exact
        copy_id = f"{'dup' if is_exact else 'near'}-{j:03d}"
        copy_split = "test" if j % 3 == 0 else split[row]  # every third copy leaks into test
        copy_label = CLASS_NAMES[given[row]]
        if j % 4 == 1:  # every fourth copy carries a conflicting label
            copy_label = CLASS_NAMES[(given[row] + 1) % 10]
        copy_pixels = pixels[row].copy()
        if not is_exact:
            copy_pixels = np.clip(copy_pixels + rng.normal(0, 0.35, size=64), 0, 16)
        extra.append(
            {
                "id": copy_id,
                "label": copy_label,
                "split": copy_split,
                "scanner": scanner[row],
                "ink": round(float(copy_pixels.mean() / 16), 3),
                "_true": true[row],
                "_pixels": copy_pixels.astype(np.float32),
            }
        )
        pair = (ids[row], copy_id)
        (exact_pairs if is_exact else near_pairs).append(pair)
        if copy_split != split[row]:
            leaked.append(pair)
        if copy_label != CLASS_NAMES[given[row]]:
            conflicting.append(pair)

    ood_ids = []
    for j in range(n_ood):  # pixel-shuffled digits: same ink, no digit shape
        base = pixels[rng.integers(n)]
        ood_ids.append(f"ood-{j:03d}")
        extra.append(
            {
                "id": ood_ids[-1],
                "label": "",
                "split": "production",
                "scanner": rng.choice(["A", "B"]),
                "ink": round(float(base.mean() / 16), 3),
                "_true": -1,
                "_pixels": rng.permutation(base).astype(np.float32),
            }
        )

    table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
    table = table.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    features = np.stack(table.pop("_pixels").to_numpy()).astype(np.float32)
    table.pop("_true")

    probs = committee_probabilities(features, table["label"].to_numpy(), n_models, seed)
    embeddings = embed(features, seed)
    flipped = {ids[r]: (CLASS_NAMES[true[r]], CLASS_NAMES[given[r]]) for r in flip_rows}
    truth = PlantedTruth(
        flipped=flipped,
        exact_duplicates=exact_pairs,
        near_duplicates=near_pairs,
        leaked=leaked,
        conflicting=conflicting,
        ood=ood_ids,
        bad_slice_ids=[i for i, s in zip(table["id"], table["scanner"]) if s == "C"],
    )
    return DemoInputs(table, probs, embeddings, CLASS_NAMES, truth)


def _degrade(pixels: NDArray, rng: np.random.Generator) -> NDArray:
    images = pixels.reshape(-1, 8, 8)
    blurred = images.copy()
    blurred[:, 1:, :] += images[:, :-1, :]
    blurred[:, :, 1:] += images[:, :, :-1]
    blurred /= 3
    speckle = rng.random(blurred.shape) < 0.25
    blurred[speckle] = rng.uniform(0, 16, size=int(speckle.sum()))
    return np.clip(blurred, 0, 16).reshape(-1, 64)


def committee_probabilities(
    features: NDArray, labels: NDArray, n_models: int, seed: int
) -> NDArray[np.float32]:
    """Out-of-sample probabilities from a committee of logistic regressions.

    Labeled items get 5-fold cross-validated predictions; unlabeled items get predictions from
    models fit on all labeled items. Members differ by bootstrap resample.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labeled = labels != ""
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    y = np.array([index.get(v, -1) for v in labels])
    out = np.zeros((n_models, len(labels), len(CLASS_NAMES)), dtype=np.float32)
    rng = np.random.default_rng(seed + 1)

    def fit(rows: NDArray) -> object:
        sample = rng.choice(rows, size=len(rows), replace=True) if n_models > 1 else rows
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=300))
        return model.fit(features[sample], y[sample])

    def predict(model, rows: NDArray) -> NDArray:
        full = np.zeros((len(rows), len(CLASS_NAMES)), dtype=np.float32)
        full[:, model.classes_] = model.predict_proba(features[rows])
        return full

    labeled_rows = np.flatnonzero(labeled)
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    for m in range(n_models):
        for fit_idx, pred_idx in folds.split(labeled_rows, y[labeled_rows]):
            model = fit(labeled_rows[fit_idx])
            out[m, labeled_rows[pred_idx]] = predict(model, labeled_rows[pred_idx])
        unlabeled_rows = np.flatnonzero(~labeled)
        if len(unlabeled_rows):
            out[m, unlabeled_rows] = predict(fit(labeled_rows), unlabeled_rows)
    out /= out.sum(axis=2, keepdims=True)
    return out if n_models > 1 else out[0]


def embed(features: NDArray, seed: int, dim: int = 32) -> NDArray[np.float32]:
    """A simple embedding: PCA of the pixels (whitened), as a stand-in for a network's features."""
    from sklearn.decomposition import PCA

    return PCA(dim, whiten=True, random_state=seed).fit_transform(features).astype(np.float32)


def write_demo_inputs(folder, seed: int = 0) -> dict[str, object]:
    """Save the demo inputs as a user would give them: examples.csv, probs.npy (M x N x K),
    classes.txt, embeddings.npy, plus planted.json saying what was planted."""
    import json
    from pathlib import Path

    from dataaudit.files import atomic_write, atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = make_demo_inputs(seed=seed)
    paths = {
        "table": folder / "examples.csv",
        "probs": folder / "probs.npy",
        "embeddings": folder / "embeddings.npy",
    }
    atomic_write(paths["table"], lambda h: inputs.table.to_csv(h, index=False))
    atomic_write(paths["probs"], lambda h: np.save(h, inputs.probs), mode="wb")
    atomic_write(paths["embeddings"], lambda h: np.save(h, inputs.embeddings), mode="wb")
    atomic_write_text(folder / "classes.txt", "\n".join(inputs.classes) + "\n")
    truth = inputs.truth
    atomic_write_text(
        folder / "planted.json",
        json.dumps(
            {
                "flipped": truth.flipped,
                "exact_duplicates": truth.exact_duplicates,
                "near_duplicates": truth.near_duplicates,
                "leaked": truth.leaked,
                "conflicting": truth.conflicting,
                "ood": truth.ood,
                "bad_slice": list(truth.bad_slice),
            },
            indent=1,
        ),
    )
    return paths
