"""The tabular analyses (metadata slices, calibration, shift) on a Dask LocalCluster of 2 worker
processes give the in-process results; inputs are Parquet part files written to tmp folders.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataaudit.config import AuditConfig
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.pipeline import load_dataset

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client(dask_client):
    return dask_client


def _write_parts(table: pd.DataFrame, folder, rows_per_part: int, index: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, len(table), rows_per_part)):
        table.iloc[start : start + rows_per_part].to_parquet(
            folder / f"part-{i:03d}.parquet", index=index
        )


def _metadata_rows(chunk) -> pd.DataFrame:
    frame = chunk.metadata.copy()
    frame.insert(0, "pos", chunk.pos)
    return frame


def _concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([a, b], ignore_index=True)


def _collect_metadata(engine) -> pd.DataFrame:
    frame = engine.map_reduce(_metadata_rows, _concat)
    return frame.sort_values("pos").drop(columns="pos").reset_index(drop=True)


def test_chunk_metadata_is_the_validated_tables_metadata_on_both_engines(client, tmp_path):
    """Numbers, missing values, numeric-looking text, booleans; a stored pandas index and the
    role columns are not metadata; the same dtypes as the in-process validation gives."""
    from dataaudit.engine.dask_engine import DaskEngine
    from dataaudit.engine.inputs import read_partitioned

    rng = np.random.default_rng(0)
    n = 300
    table = pd.DataFrame(
        {
            "id": [f"{i:04d}" for i in range(n)],
            "label": rng.choice(["a", "b"], n),
            "split": np.where(np.arange(n) < 200, "train", "test"),
            "age": rng.integers(18, 90, n),
            "score": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "zip": [f"{z:03d}" for z in rng.integers(0, 20, n)],
            "site": np.where(rng.random(n) < 0.1, None, rng.choice(["x", "y"], n)).astype(object),
            "flag": rng.random(n) < 0.5,
        },
        index=pd.RangeIndex(1000, 1000 + n, name="row"),
    )
    p = rng.uniform(0.1, 0.9, n)
    probs = np.column_stack([p, 1 - p]).astype(np.float32)
    _write_parts(table, tmp_path / "table", 70, index=True)  # 5 parts, the last one short
    np.save(tmp_path / "probs.npy", probs)
    table.to_parquet(tmp_path / "table.parquet")

    config = AuditConfig()
    data = load_dataset(str(tmp_path / "table.parquet"), str(tmp_path / "probs.npy"), None, config)
    inputs = read_partitioned(
        str(tmp_path / "table"), str(tmp_path / "probs.npy"), None, config, client
    )
    assert inputs.metadata_columns == ["age", "score", "zip", "site", "flag"]
    assert list(data.metadata.columns) == inputs.metadata_columns

    in_process = _collect_metadata(InProcessEngine(data, chunk_rows=64))
    on_dask = _collect_metadata(DaskEngine(inputs, client))
    pd.testing.assert_frame_equal(in_process, data.metadata)
    pd.testing.assert_frame_equal(on_dask, data.metadata)


# -- calibration ----------------------------------------------------------------------------------
CAL_CLASSES = ("c0", "c1", "c2", "c3")


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _overconfident(n: int = 2400, seed: int = 0):
    """Labels drawn from softmax(logits), probabilities softmax(3 x logits): overconfident.
    Splits train / test / "clinic" (every item one class); the last 400 rows are unlabeled."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, size=(n, len(CAL_CLASSES)))
    labels = (_softmax(logits).cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(0, 3)
    split = np.where(np.arange(n) < 1500, "train", "test").astype(object)
    split[1700:2000] = "clinic"
    names = np.asarray(CAL_CLASSES, dtype=object)[labels]
    names[1700:2000] = "c2"
    names[n - 400 :] = ""
    table = pd.DataFrame({"id": [f"{i:05d}" for i in range(n)], "label": names, "split": split})
    return table, _softmax(3 * logits).astype(np.float32)


@pytest.fixture(scope="module")
def calibration_inputs(client, tmp_path_factory):
    """The data in process, and on the cluster (6 part files, the last one without labels)."""
    from dataaudit.engine.dask_engine import DaskEngine
    from dataaudit.engine.inputs import read_partitioned

    folder = tmp_path_factory.mktemp("calibration")
    table, probs = _overconfident()
    _write_parts(table, folder / "table", 400)
    np.save(folder / "probs.npy", probs)
    config = AuditConfig(classes=CAL_CLASSES)
    data = load_dataset(table, probs, None, config)
    inputs = read_partitioned(
        str(folder / "table"), str(folder / "probs.npy"), None, config, client
    )
    return data, DaskEngine(inputs, client), config, folder


def _tables_equal(ours, reference, **tolerance) -> None:
    assert set(ours.tables) == set(reference.tables)
    for name, table in reference.tables.items():
        pd.testing.assert_frame_equal(ours.table(name), table, **tolerance)


def test_calibration_on_dask_equals_in_process_on_overconfident_probabilities(
    calibration_inputs, client
):
    import dataaudit

    data, _, config, folder = calibration_inputs
    table, probs = _overconfident()
    reference = dataaudit.audit(table, probs, classes=CAL_CLASSES, analyses=("calibration",))
    ours = dataaudit.audit(
        str(folder / "table"),
        str(folder / "probs.npy"),
        classes=CAL_CLASSES,
        engine="dask",
        client=client,
        analyses=("calibration",),
    )
    ref, got = reference["calibration"], ours["calibration"]
    assert got.summary == ref.summary
    _tables_equal(got, ref)
    assert got.summary["calibration_miscalibrated"] and got.summary["calibration_applied"]
    assert got.summary["temperature"] > 2  # the planted sharpening by 3
    ece = got.table("ece")
    clinic = ece[ece["split"] == "clinic"].iloc[0]
    assert clinic["n"] == 300  # the split with one class has its own row


def test_calibration_above_the_exact_size_agrees_across_engines_and_with_the_exact_form(
    calibration_inputs,
):
    """Above exact_rows labeled items: sample quantile edges, hash folds, sums per bin."""
    from dataaudit.analyses import calibration
    from dataaudit.context import AuditContext

    data, dask_engine, config, _ = calibration_inputs
    exact = calibration.run(data, AuditContext(config), config)
    local = calibration.run_on(
        InProcessEngine(data, chunk_rows=300), AuditContext(config), config, exact_rows=500
    )
    on_dask = calibration.run_on(dask_engine, AuditContext(config), config, exact_rows=500)
    # The same numbers up to the order floating-point sums were added in.
    _tables_equal(on_dask, local, check_exact=False, rtol=1e-9)
    assert local.summary.keys() == exact.summary.keys()
    for key, value in local.summary.items():
        assert on_dask.summary[key] == pytest.approx(value, rel=1e-9), key
    assert local.summary["calibration_miscalibrated"] == exact.summary["calibration_miscalibrated"]
    assert local.summary["ece"] == pytest.approx(exact.summary["ece"], abs=0.02)
    assert local.summary["temperature"] == pytest.approx(exact.summary["temperature"], rel=0.05)
    assert any("uniform sample" in note for note in local.notes)
