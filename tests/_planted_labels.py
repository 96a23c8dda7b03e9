"""Synthetic labeled data with planted label errors, shared by the label-error tests.

A separable gaussian mixture; out-of-sample probabilities from cross-validated logistic regression
trained on the noisy labels (as a real training run would be); random flips plus a systematic swap
of class 0 into class 1 (and a few of 1 into 0), which should come out as the most confused pair.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

CLASSES = ("ant", "bee", "cat", "dog", "eel")


@dataclass(frozen=True)
class Planted:
    probs: np.ndarray  # N x K float32
    labels: np.ndarray  # given (noisy) labels
    true_labels: np.ndarray
    flipped: np.ndarray  # bool: given != true
    swap_pair: tuple[int, int]


def planted_data(n_per_class: int = 200, seed: int = 0) -> Planted:
    rng = np.random.default_rng(seed)
    k, d = len(CLASSES), 6
    means = rng.normal(scale=3.0, size=(k, d))
    true = np.repeat(np.arange(k), n_per_class)
    x = means[true] + rng.normal(size=(len(true), d))
    labels = true.copy()

    # Systematic swap: 30 of class 0 labeled 1, 10 of class 1 labeled 0.
    swap_0 = rng.choice(np.flatnonzero(true == 0), 30, replace=False)
    swap_1 = rng.choice(np.flatnonzero(true == 1), 10, replace=False)
    labels[swap_0], labels[swap_1] = 1, 0
    # Random flips among the other classes.
    rest = rng.choice(np.flatnonzero(true >= 2), 20, replace=False)
    labels[rest] = (true[rest] + rng.integers(1, k, size=len(rest))) % k

    model = LogisticRegression(max_iter=500)
    probs = cross_val_predict(model, x, labels, cv=5, method="predict_proba").astype(np.float32)
    return Planted(probs, labels, true, labels != true, (0, 1))


def planted_dataset(planted: Planted, n_unlabeled: int = 50, member_probs=None):
    """An AuditDataset around the planted arrays: ids "item-<i>", train/test splits, and the last
    `n_unlabeled` rows unlabeled."""
    import pandas as pd

    from dataaudit.dataset import UNLABELED, AuditDataset

    n = len(planted.labels)
    labels = planted.labels.astype(np.int64).copy()
    if n_unlabeled:
        labels[-n_unlabeled:] = UNLABELED
    return AuditDataset(
        ids=np.array([f"item-{i}" for i in range(n)], dtype=object),
        classes=CLASSES,
        class_source="test",
        labels=labels,
        splits=np.where(np.arange(n) % 4 == 0, "test", "train").astype(object),
        metadata=pd.DataFrame(index=pd.RangeIndex(n)),
        probs=planted.probs,
        member_probs=member_probs,
    )


@functools.cache
def planted_audit():
    """The planted gaussian data audited end to end (no embeddings, no metadata): cheap."""
    import pandas as pd

    import dataaudit

    planted = planted_data()
    n = len(planted.labels)
    names = np.asarray(CLASSES, dtype=object)[planted.labels]
    names[-50:] = ""  # unlabeled
    table = pd.DataFrame(
        {
            "id": [f"item-{i}" for i in range(n)],
            "label": names,
            "split": np.where(np.arange(n) % 4 == 0, "test", "train"),
        }
    )
    return planted, dataaudit.audit(table, planted.probs, classes=CLASSES)
