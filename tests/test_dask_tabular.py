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
