"""Contract: every registered analysis gives a correct, empty answer on data with nothing to find.

Each dataset below is honest and clean in some awkward way (a model that agrees with every label,
uniform probabilities, a split holding one class, K=2, K=500, no unlabeled items, no metadata,
a handful of rows). `dataaudit run` must exit 0 with no failed analysis, write every CSV with its
header, and report zero label errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dataaudit import analyses
from dataaudit.cli import main

CSV_HEADERS = {
    "relabel.csv": ["rank", "id", "given_label", "suggested_label", "error_score", "reason"],
    "label_next.csv": ["id"],
    "slices.csv": [],
}


def _clean(
    n: int,
    k: int,
    *,
    seed: int = 0,
    uniform: bool = False,
    unlabeled: int = 0,
    metadata: bool = True,
    one_class_split: bool = False,
    embeddings: bool = True,
    models: int = 1,
    text: bool = False,
) -> dict:
    """A table whose labels the model's probabilities confirm (argmax = label, p = 0.9)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % k  # every class present
    rng.shuffle(labels)
    if uniform:
        probs = np.full((n, k), 1.0 / k)
    else:
        probs = np.full((n, k), 0.1 / (k - 1))
        probs[np.arange(n), labels] = 0.9
    # Zero-padded so sorted names are the column order (the default when no classes are given).
    names = np.array([f"class_{j:03d}" for j in range(k)], dtype=object)
    label_text = names[labels]
    if unlabeled:
        label_text[-unlabeled:] = ""
    split = np.where(np.arange(n) % 3 == 0, "test", "train").astype(object)
    if one_class_split:
        split = np.where(labels == 0, "holdout", split)
    table = {"id": [f"item-{i:05d}" for i in range(n)], "label": label_text, "split": split}
    if metadata:
        table["site"] = rng.choice(["north", "south", "east"], size=n)
        table["age"] = rng.integers(18, 90, size=n)
    if text:
        table["text"] = [f"note {i}" for i in range(n)]
    if models > 1:  # a committee that agrees with itself
        probs = np.stack([probs] * models)
    emb = rng.normal(size=(n, 16)).astype(np.float32) if embeddings else None
    return {"table": pd.DataFrame(table), "probs": probs.astype(np.float32), "emb": emb}


DATASETS = {
    "clean": lambda: _clean(400, 4, unlabeled=60, text=True),
    "committee": lambda: _clean(300, 3, unlabeled=30, models=3),
    "uniform_probs": lambda: _clean(300, 3, uniform=True, unlabeled=40),
    "one_class_split": lambda: _clean(300, 3, one_class_split=True, unlabeled=30),
    "k2": lambda: _clean(200, 2, unlabeled=20),
    "k500": lambda: _clean(1500, 500, unlabeled=100),
    "no_unlabeled": lambda: _clean(300, 3),
    "no_metadata": lambda: _clean(300, 3, metadata=False, unlabeled=30),
    "no_embeddings": lambda: _clean(300, 3, unlabeled=30, embeddings=False),
    "tiny": lambda: _clean(6, 2, unlabeled=1),
}


def _write_inputs(folder: Path, data: dict) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    data["table"].to_csv(folder / "table.csv", index=False)
    np.save(folder / "probs.npy", data["probs"])
    argv = ["--table", str(folder / "table.csv"), "--probs", str(folder / "probs.npy")]
    if "text" in data["table"].columns:
        argv += ["--text-col", "text"]
    if data["emb"] is not None:
        np.save(folder / "emb.npy", data["emb"])
        argv += ["--embeddings", str(folder / "emb.npy")]
    return argv


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_analysis_reports_nothing_on_data_with_nothing_to_find(name, tmp_path):
    data = DATASETS[name]()
    out = tmp_path / "out"
    code = main(["run", *_write_inputs(tmp_path / "in", data), "--out", str(out), "-q"])
    assert code == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == {}
    ran = set(summary["analyses"])
    skipped = set(summary["skipped"])
    # Every registered analysis either ran or was skipped for a missing input, never lost.
    assert ran | skipped == {a.name for a in analyses.ANALYSES}
    assert summary["metrics"]["n_label_errors"] == 0

    relabel = pd.read_csv(out / "relabel.csv")
    assert len(relabel) == 0
    assert list(relabel.columns[:6]) == CSV_HEADERS["relabel.csv"]
    for csv in out.glob("*.csv"):
        frame = pd.read_csv(csv)  # an empty export still has its header
        assert len(frame.columns) > 0, csv.name
    assert (out / "report.html").stat().st_size > 0


def test_analyses_that_need_unlabeled_items_are_skipped_with_the_reason(tmp_path):
    out = tmp_path / "out"
    assert (
        main(["run", *_write_inputs(tmp_path / "in", _clean(300, 3)), "--out", str(out), "-q"]) == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert "unlabeled" in summary["skipped"]["label_next"]
    assert not (out / "label_next.csv").exists()
