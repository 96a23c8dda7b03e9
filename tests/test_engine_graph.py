"""The shared kNN graph as an engine service: chunks carry each row's neighbours, their
similarities, labels and splits, equal to neighbors.shared_graph's."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
from _planted_labels import planted_data, planted_dataset

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.engine import add
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.neighbors import shared_graph

# Planted near-duplicates: row TWIN[i] is row ORIGINAL[i] plus tiny noise.
ORIGINAL = np.array([3, 150, 420, 777])
TWIN = np.array([900, 10, 600, 951])


def _embeddings(n: int, d: int = 16, offset: float = 0.0, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[TWIN] = x[ORIGINAL] + 1e-3 * rng.normal(size=(len(TWIN), d)).astype(np.float32)
    return x + np.float32(offset)


@functools.cache
def _data(offset: float = 0.0, d: int = 16):
    data = planted_dataset(planted_data())
    return dataclasses.replace(data, embeddings=_embeddings(data.n, d, offset))


def _collect(chunk):
    return {
        "pos": chunk.pos,
        "neighbors": chunk.neighbors,
        "similarities": chunk.similarities,
        "neighbor_labels": chunk.neighbor_labels,
        "neighbor_splits": chunk.neighbor_splits,
    }


def _concat(a, b):
    return {key: np.concatenate([a[key], b[key]]) for key in a}


def _graph_columns(engine, ctx):
    info = engine.graph(ctx)
    return info, engine.map_reduce(_collect, _concat)


@pytest.mark.parametrize("chunk_rows", [97, 10_000])
def test_chunks_carry_slices_of_the_shared_graph(chunk_rows):
    data = _data()
    ctx = AuditContext(AuditConfig())
    info, cols = _graph_columns(InProcessEngine(data, chunk_rows=chunk_rows), ctx)
    graph = shared_graph(data, ctx)
    assert (info.k, info.method, info.recall, info.center) == (10, "exact", None, None)
    assert info.splits == ("test", "train")
    assert cols["pos"].tolist() == list(range(data.n))
    np.testing.assert_array_equal(cols["neighbors"], graph.indices)
    np.testing.assert_array_equal(cols["similarities"], graph.similarities)
    assert cols["neighbors"].dtype == np.int64 and cols["similarities"].dtype == np.float32
    # Labels and splits of the neighbours, looked up by their table positions.
    np.testing.assert_array_equal(cols["neighbor_labels"], data.labels[graph.indices])
    names = np.array(info.splits)[cols["neighbor_splits"]]
    np.testing.assert_array_equal(names, data.splits[graph.indices])
    assert (data.labels[graph.indices] == -1).any()  # unlabeled neighbours are -1 too


def test_planted_twins_are_each_others_nearest_neighbour():
    data = _data()
    info, cols = _graph_columns(InProcessEngine(data, chunk_rows=200), AuditContext(AuditConfig()))
    assert cols["neighbors"][ORIGINAL, 0].tolist() == TWIN.tolist()
    assert cols["neighbors"][TWIN, 0].tolist() == ORIGINAL.tolist()
    assert (cols["similarities"][ORIGINAL, 0] > 0.999).all()
    assert cols["neighbor_labels"][ORIGINAL, 0].tolist() == data.labels[TWIN].tolist()
    split_of_twin = np.array(info.splits)[cols["neighbor_splits"][ORIGINAL, 0]]
    assert split_of_twin.tolist() == data.splits[TWIN].tolist()
    # Never a row's own position.
    assert not (cols["neighbors"] == cols["pos"][:, None]).any()


def test_offset_embeddings_report_the_centre_the_cosines_use():
    data = _data(offset=5.0)
    ctx = AuditContext(AuditConfig())
    info, cols = _graph_columns(InProcessEngine(data, chunk_rows=300), ctx)
    assert info.center is not None
    np.testing.assert_allclose(info.center, data.embeddings.mean(axis=0), atol=1e-4)
    # Centred: random pairs are near 0, not near 1 as the raw offset vectors would be.
    assert np.median(cols["similarities"][:, -1]) < 0.6
    assert cols["neighbors"][ORIGINAL, 0].tolist() == TWIN.tolist()


def test_approximate_graph_reports_its_measured_recall():
    data = _data()
    config = AuditConfig(knn_mode="approx")
    info = InProcessEngine(data).graph(AuditContext(config))
    assert info.method == "approx-ivf"
    assert 0.5 <= info.recall <= 1.0


def test_the_graph_is_built_once_per_engine():
    data = _data()
    ctx = AuditContext(AuditConfig())
    engine = InProcessEngine(data, chunk_rows=500)
    assert engine.graph(ctx) is engine.graph(ctx)


def test_chunks_before_the_graph_is_built_say_so():
    engine = InProcessEngine(_data())
    with pytest.raises(ValueError, match="engine.graph"):
        engine.map_reduce(lambda chunk: chunk.neighbors.sum(), add)
