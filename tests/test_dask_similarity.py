"""The similarity family on a LocalCluster of 2 worker processes gives the in-process results:
exact groups by hash (shuffled on the key), duplicate groups, leakage, conflicting labels and
look-alikes.

Inputs are Parquet part files (the table, with a text column) and .npy arrays, as a user would
hand them to the cluster; the session cluster is `dask_client` (conftest.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dataaudit
from dataaudit.config import AuditConfig, ColumnRoles

pytest.importorskip("distributed")

CLASSES = ("ant", "bee", "cat")


def _planted(kind: str, n: int = 1200, seed: int = 5):
    """(table, probs, embeddings): 30 exact and 30 near copies spread over train and test, text
    equal up to case and punctuation, missing text, and labels that disagree within copies."""
    rng = np.random.default_rng(seed)
    d = 2 if kind == "2-d" else 20
    emb = rng.standard_normal((n, d))
    if kind == "offset":
        emb = np.abs(emb) + 4
    if kind != "clean":
        src = rng.choice(n, 120, replace=False)
        emb[src[60:90]] = emb[src[:30]]
        emb[src[90:]] = emb[src[30:60]] + 1e-4 * rng.standard_normal((30, d))
    labels = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.1, dtype=np.float32)
    probs[np.arange(n), labels] = 0.8
    names = np.asarray(CLASSES, dtype=object)[labels]
    names[-40:] = None  # unlabeled
    texts = np.array(
        [f"Item number {i % 500}!" if i % 3 else f"item NUMBER {i % 500}" for i in range(n)],
        dtype=object,
    )
    texts[::50] = None
    table = pd.DataFrame(
        {
            "id": [f"{i:05d}" for i in range(n)],  # ids that look like numbers
            "label": names,
            "split": np.where(np.arange(n) % 3 == 0, "test", "train"),
        }
    )
    if kind != "clean":
        table["text"] = texts
    return table, probs, emb.astype(np.float32)


def _write(table, probs, emb, folder, rows_per_part=300):
    (folder / "table").mkdir(parents=True)
    for i, start in enumerate(range(0, len(table), rows_per_part)):
        table.iloc[start : start + rows_per_part].to_parquet(
            folder / "table" / f"part-{i:03d}.parquet", index=False
        )
    np.save(folder / "probs.npy", probs)
    np.save(folder / "emb.npy", emb)


def test_exact_groups_by_hash_on_the_cluster_equal_in_process(dask_client, tmp_path):
    from dataaudit.analyses.duplicates import _hash_rows, _linked_to_first
    from dataaudit.engine.dask_engine import DaskEngine
    from dataaudit.engine.inprocess import InProcessEngine
    from dataaudit.engine.inputs import read_partitioned
    from dataaudit.validate import load_dataset

    table, probs, emb = _planted("offset")
    _write(table, probs, emb, tmp_path)
    config = AuditConfig(classes=CLASSES, columns=ColumnRoles(text="text"))
    kinds = ("same embedding", "same text", "same text after normalising")
    inputs = read_partitioned(
        str(tmp_path / "table"),
        str(tmp_path / "probs.npy"),
        str(tmp_path / "emb.npy"),
        config,
        dask_client,
    )
    ours = DaskEngine(inputs, dask_client).group_by_key(_hash_rows, _linked_to_first, kinds)
    data = load_dataset(table, probs, emb, config)
    reference = InProcessEngine(data).group_by_key(_hash_rows, _linked_to_first, kinds)

    def ranked(frame):
        return frame.sort_values(["kind", "b"]).reset_index(drop=True)

    pd.testing.assert_frame_equal(ranked(ours), ranked(reference))
    assert (ours["kind"] == 0).sum() == 30  # the exact embedding copies
    assert (ours["kind"] == 3).sum() > (ours["kind"] == 1).sum() > 100  # folded text groups more


def _image_files(folder, n: int) -> np.ndarray:
    """Absolute paths of n image files; every tenth row shares its content with the row before."""
    folder.mkdir()
    paths = []
    for i in range(n):
        path = folder / f"{i}.png"
        path.write_bytes(f"pixels {i - 1 if i % 10 == 1 else i}".encode())
        paths.append(str(path))
    return np.array(paths, dtype=object)


@pytest.mark.parametrize("kind", ["offset", "clean", "2-d"])
def test_duplicates_on_the_cluster_equal_in_process(dask_client, tmp_path, kind):
    """2-d: at most 8 dimensions, the rule's own exact Euclidean graph, built on the cluster."""
    table, probs, emb = _planted(kind)
    options = {"classes": CLASSES, "analyses": ("duplicates",)}
    if kind != "clean":
        table["image"] = _image_files(tmp_path / "img", len(table))
        options.update(text_col="text", image_col="image")
    _write(table, probs, emb, tmp_path)
    reference = dataaudit.audit(table, probs, emb, **options)
    ours = dataaudit.audit(
        str(tmp_path / "table"),
        str(tmp_path / "probs.npy"),
        str(tmp_path / "emb.npy"),
        engine="dask",
        client=dask_client,
        **options,
    )
    expected = reference["duplicates"]
    if kind == "clean":
        assert expected.summary["n_duplicate_groups"] == 0
    else:
        assert expected.summary["leakage"] > 10
        assert expected.summary["n_conflicting_label_groups"] > 5
        assert (expected.table("items")["match"] == "same file").sum() > 50
    assert ours["duplicates"].summary == expected.summary
    for name, frame in expected.tables.items():
        pd.testing.assert_frame_equal(ours["duplicates"].table(name), frame, obj=name)


def test_lookalikes_on_the_cluster_equal_in_process(dask_client, tmp_path):
    """Failures (label errors, then misclassified) and their nearest unlabeled rows; a partition
    holds no unlabeled rows at all (the last 40 rows are the unlabeled ones)."""
    table, probs, emb = _planted("offset")
    rng = np.random.default_rng(2)
    wrong = rng.choice(len(table) - 40, 60, replace=False)
    probs[wrong] = np.roll(probs[wrong], 1, axis=1)  # the model disagrees with these labels
    unlabeled = np.arange(len(table) - 40, len(table))
    emb[unlabeled[:20]] = emb[wrong[:20]] + 0.01  # look-alikes of some failures
    _write(table, probs, emb, tmp_path)
    options = {"classes": CLASSES, "analyses": ("label_errors", "lookalikes")}
    reference = dataaudit.audit(table, probs, emb, **options)
    ours = dataaudit.audit(
        str(tmp_path / "table"),
        str(tmp_path / "probs.npy"),
        str(tmp_path / "emb.npy"),
        engine="dask",
        client=dask_client,
        **options,
    )
    expected = reference["lookalikes"]
    assert expected.summary["n_lookalike_queries"] >= 60
    pairs = expected.table("pairs")
    first = pairs[pairs["rank"] == 1].set_index("id_a")["id_b"]
    planted = {table["id"][w]: table["id"][u] for w, u in zip(wrong[:20], unlabeled[:20])}
    assert all(first.get(a) == b for a, b in planted.items())
    assert ours["lookalikes"].summary == expected.summary
    pd.testing.assert_frame_equal(ours["lookalikes"].table("pairs"), pairs)
