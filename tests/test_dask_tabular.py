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


# -- slices ---------------------------------------------------------------------------------------
SLICE_CLASSES = ("cat", "dog", "eel")


def _planted_slice_table(n: int = 3000, seed: int = 1):
    """Errors at 8%, and at 60% where camera = B and brightness >= 0.5 (the planted slice).
    Site codes look like numbers ("007"); the first two part files hold only split "train";
    split "holdout" has one class; the last 200 rows are unlabeled."""
    rng = np.random.default_rng(seed)
    camera = rng.choice(list("ABCDE"), n)
    brightness = rng.random(n)
    bad = (camera == "B") & (brightness >= 0.5)
    errors = rng.random(n) < np.where(bad, 0.6, 0.08)
    labels = rng.integers(0, 3, n)
    split = np.where(np.arange(n) < 1000, "train", rng.choice(["train", "test", "holdout"], n))
    labels[split == "holdout"] = 0
    predicted = np.where(errors, (labels + 1) % 3, labels)
    probs = np.full((n, 3), 0.15, dtype=np.float32)
    probs[np.arange(n), predicted] = 0.7
    names = np.asarray(SLICE_CLASSES, dtype=object)[labels]
    names[n - 200 :] = ""
    centers = rng.normal(scale=4.0, size=(8, 6))
    embeddings = (centers[rng.integers(0, 8, n)] + rng.normal(size=(n, 6))).astype(np.float32)
    table = pd.DataFrame(
        {
            "id": [f"{i:05d}" for i in range(n)],
            "label": names,
            "split": split,
            "camera": camera,
            "brightness": brightness,
            "site": [f"{s:03d}" for s in rng.integers(0, 15, n)],
            "weather": np.where(rng.random(n) < 0.2, None, rng.choice(["sun", "rain"], n)),
        }
    )
    return table, probs, embeddings


def _audit_both(client, folder, table, probs, embeddings, analyses, rows_per_part, **options):
    import dataaudit

    _write_parts(table, folder / "table", rows_per_part)
    np.save(folder / "probs.npy", probs)
    if embeddings is not None:
        np.save(folder / "emb.npy", embeddings)
    reference = dataaudit.audit(table, probs, embeddings, analyses=analyses, **options)
    ours = dataaudit.audit(
        str(folder / "table"),
        str(folder / "probs.npy"),
        None if embeddings is None else str(folder / "emb.npy"),
        engine="dask",
        client=client,
        analyses=analyses,
        parts_dir=str(folder / "parts"),
        **options,
    )
    return reference, ours


def test_slices_on_dask_find_the_planted_slice_as_in_process(client, tmp_path):
    table, probs, embeddings = _planted_slice_table()
    reference, ours = _audit_both(
        client,
        tmp_path,
        table,
        probs,
        embeddings,
        ("label_errors", "slices"),
        500,
        classes=SLICE_CLASSES,
        label_error_neighbor_weight=0.0,
    )
    ref, got = reference["slices"], ours["slices"]
    assert got.summary == ref.summary
    assert got.notes == ref.notes
    for name in ("given", "discovered", "splits", "items"):
        pd.testing.assert_frame_equal(got.table(name), ref.table(name))
    # Similarities of unlabeled items to a slice's failures: float32 dot products.
    pd.testing.assert_frame_equal(got.table("examples"), ref.table("examples"), rtol=1e-5)
    top = got.table("discovered").iloc[0]
    assert top["slice"].startswith("camera = B and brightness >= 0.4")  # a quantile near 0.5
    assert top["error_rate"] > 0.4
    assert got.summary["n_failure_clusters"] >= 0 and got.params["clusters"]
    assert set(got.table("examples")["role"]) == {"failure", "to_label"}
    parts = sorted((tmp_path / "parts" / "slices.all_items.parquet").glob("part-*.parquet"))
    written = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(written, ref.table("items"), check_dtype=False)


def test_slices_on_dask_screen_a_wide_clean_table_as_in_process(client, tmp_path):
    """Nothing to find; wide enough that 2-condition rules are screened (slice_max_pairs)."""
    rng = np.random.default_rng(5)
    n = 2000
    labels = rng.integers(0, 3, n)
    errors = rng.random(n) < 0.1
    predicted = np.where(errors, (labels + 1) % 3, labels)
    probs = np.full((n, 3), 0.15, dtype=np.float32)
    probs[np.arange(n), predicted] = 0.7
    table = pd.DataFrame(
        {
            "id": np.arange(n).astype(str),
            "label": np.asarray(SLICE_CLASSES, dtype=object)[labels],
            **{f"num{i}": rng.random(n) for i in range(40)},
            **{f"cat{i}": rng.choice(list("abcdef"), n) for i in range(8)},
            "code": rng.integers(0, 6, n),  # few distinct numbers: categorical
        }
    )
    reference, ours = _audit_both(
        client,
        tmp_path,
        table,
        probs,
        None,
        ("label_errors", "slices"),
        450,
        classes=SLICE_CLASSES,
        slice_max_pairs=5_000,
    )
    ref, got = reference["slices"], ours["slices"]
    assert got.summary == ref.summary
    assert got.notes == ref.notes
    for name in ref.tables:
        pd.testing.assert_frame_equal(got.table(name), ref.table(name))
    assert got.summary["n_failure_slices"] == 0
    assert got.summary["n_slice_pairs_screened_out"] > 0


# -- shift ----------------------------------------------------------------------------------------
SHIFT_CLASSES = ("k0", "k1", "k2")


def _shift_table(n: int = 3000, seed: int = 2, shifted: bool = True):
    """Splits train / production (the first 1,000 rows only train, so part files hold no
    production rows); production moves 'moved' by 0.4, gains category 'zz', offsets one
    embedding axis, and has other class priors; 'zip' codes look like numbers."""
    rng = np.random.default_rng(seed)
    split = np.where((np.arange(n) >= 1000) & (rng.random(n) < 0.6), "production", "train")
    cur = split == "production"
    y = rng.integers(0, 3, n)
    if shifted:
        y[cur] = rng.choice(3, int(cur.sum()), p=[0.6, 0.3, 0.1])
    signal = np.eye(3)[y] * 2.0 + rng.normal(0, 1, (n, 3))
    probs = np.exp(signal) / np.exp(signal).sum(axis=1, keepdims=True)
    category = np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, n)]
    emb = np.c_[signal, rng.normal(0, 1, (n, 5))].astype(np.float32)
    moved = rng.normal(0, 1, n)
    if shifted:
        category[cur & (rng.random(n) < 0.1)] = "zz"
        emb[cur, -1] += 1.0
        moved = moved + 0.4 * cur
    labels = np.asarray(SHIFT_CLASSES, dtype=object)[y]
    labels[cur & (rng.random(n) < 0.5)] = ""
    table = pd.DataFrame(
        {
            "id": [f"{i:05d}" for i in range(n)],
            "label": labels,
            "split": split,
            "moved": np.where(rng.random(n) < 0.05, np.nan, moved),
            "unmoved": rng.normal(0, 1, n),
            "category": category,
            "zip": [f"{z:03d}" for z in rng.integers(0, 8, n)],
            "flag": rng.random(n) < 0.3,
        }
    )
    return table, probs.astype(np.float32), emb


def test_shift_on_dask_equals_in_process_on_planted_shift(client, tmp_path):
    table, probs, emb = _shift_table()
    reference, ours = _audit_both(
        client, tmp_path, table, probs, emb, ("shift",), 500, classes=SHIFT_CLASSES
    )
    ref, got = reference["shift"], ours["shift"]
    assert got.summary == ref.summary
    assert got.notes == ref.notes
    _tables_equal(got, ref)
    shifted = set(got.table("columns").query("significant")["column"])
    assert {"moved", "category"} <= shifted and not {"unmoved", "flag"} & shifted
    assert got.summary["embedding_shift_auroc"] > 0.6
    assert got.summary["prior_shift_tv"] > 0.15


def test_shift_above_the_exact_size_agrees_across_engines_and_with_the_exact_form(client, tmp_path):
    """Above exact_rows items: categorical counts, numeric columns binned at sample quantiles."""
    from dataaudit.analyses import shift
    from dataaudit.context import AuditContext
    from dataaudit.engine.dask_engine import DaskEngine
    from dataaudit.engine.inputs import read_partitioned

    table, probs, emb = _shift_table()
    _write_parts(table, tmp_path / "table", 500)
    np.save(tmp_path / "probs.npy", probs)
    config = AuditConfig(classes=SHIFT_CLASSES)
    data = load_dataset(table, probs, None, config)
    inputs = read_partitioned(
        str(tmp_path / "table"), str(tmp_path / "probs.npy"), None, config, client
    )
    exact = shift.run(data, AuditContext(config), config)
    local = shift.run_on(InProcessEngine(data, chunk_rows=700), AuditContext(config), config, 500)
    on_dask = shift.run_on(DaskEngine(inputs, client), AuditContext(config), config, 500)
    _tables_equal(on_dask, local, check_exact=False, rtol=1e-9)
    assert on_dask.summary == pytest.approx(local.summary, rel=1e-9, nan_ok=True)
    columns = local.table("columns").set_index("column")
    expected = exact.table("columns").set_index("column")
    assert columns["significant"].to_dict() == expected["significant"].to_dict()
    pd.testing.assert_series_equal(columns["test"], expected["test"].loc[columns.index])
    assert (columns["effect_size"] - expected["effect_size"].loc[columns.index]).abs().max() < 0.02
    assert any("uniform sample" in note for note in local.notes)


def test_shift_on_dask_finds_nothing_on_clean_data_and_skips_one_split(client, tmp_path):
    import dataaudit

    table, probs, emb = _shift_table(n=2000, seed=4, shifted=False)
    reference, ours = _audit_both(
        client, tmp_path, table, probs, emb, ("shift",), 400, classes=SHIFT_CLASSES
    )
    assert ours["shift"].summary == reference["shift"].summary
    assert not ours["shift"].summary["shift_detected"]
    _tables_equal(ours["shift"], reference["shift"])

    one = table.assign(split="train")
    _write_parts(one, tmp_path / "one", 400)
    single = dataaudit.audit(
        str(tmp_path / "one"),
        str(tmp_path / "probs.npy"),
        classes=SHIFT_CLASSES,
        engine="dask",
        client=client,
        analyses=("shift",),
    )
    assert "second split" in single.skipped["shift"]
