"""The shared kNN graph as an engine service: chunks carry each row's neighbours, their
similarities, labels and splits, equal to neighbors.shared_graph's."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd
import pytest
from _planted_labels import planted_data, planted_dataset

from dataaudit.analyses import label_errors, label_errors_chunks
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


# -- label errors with neighbour votes, in engine form ----------------------------------------
@pytest.mark.parametrize(("offset", "d"), [(0.0, 16), (5.0, 16), (0.0, 2)])
def test_label_errors_engine_form_votes_with_the_graph_as_in_process(offset, d):
    data = _data(offset=offset, d=d)
    config = AuditConfig()
    reference = label_errors.run(data, AuditContext(config), config)
    assert reference.params["knn_k"] == 10
    expected = (
        reference.table("items")
        .sort_values("error_score", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    for chunk_rows in (97, 10_000):
        ours = label_errors_chunks.run_on(
            InProcessEngine(data, chunk_rows=chunk_rows), AuditContext(config), config
        )
        assert ours.summary == reference.summary
        assert ours.params["knn_k"] == 10 and ours.params["label_error_neighbor_weight"] == 0.15
        pd.testing.assert_frame_equal(ours.table("items"), expected)
        assert ours.notes == reference.notes


# -- the graph on the Dask engine ---------------------------------------------------------------
def _write_inputs(data, folder, rows_per_part: int = 300):
    """The dataset as Parquet part files plus .npy probabilities and embeddings."""
    folder.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(
        {"id": data.ids, "label": data.label_names(data.labels), "split": data.splits}
    )
    (folder / "table").mkdir()
    for i, start in enumerate(range(0, data.n, rows_per_part)):
        table.iloc[start : start + rows_per_part].to_parquet(
            folder / "table" / f"part-{i:03d}.parquet", index=False
        )
    np.save(folder / "probs.npy", data.probs)
    np.save(folder / "embeddings.npy", data.embeddings)
    return table, {name: str(folder / name) for name in ("table", "probs.npy", "embeddings.npy")}


def _dask_graph(data, folder, client, config, rows_per_part: int = 300):
    from dataaudit.engine.dask_engine import DaskEngine
    from dataaudit.engine.inputs import read_partitioned

    _, paths = _write_inputs(data, folder, rows_per_part)
    inputs = read_partitioned(
        paths["table"], paths["probs.npy"], paths["embeddings.npy"], config, client
    )
    engine = DaskEngine(inputs, client)
    info, cols = _graph_columns(engine, AuditContext(config))
    order = np.argsort(cols["pos"])
    return info, {key: value[order] for key, value in cols.items()}


def _assert_same_graph(ours, reference, tolerance: float = 1e-5):
    np.testing.assert_allclose(ours["similarities"], reference["similarities"], atol=tolerance)
    # Neighbour positions agree except where two candidates tie to float tolerance.
    differ = ours["neighbors"] != reference["neighbors"]
    sims = reference["similarities"]
    assert differ.mean() < 0.01
    rows, cols = np.nonzero(differ)
    for r, c in zip(rows, cols):
        tied = np.abs(sims[r] - sims[r, c]) <= tolerance
        assert tied.sum() >= 2, (r, c)
    same = ~differ
    np.testing.assert_array_equal(ours["neighbor_labels"][same], reference["neighbor_labels"][same])
    np.testing.assert_array_equal(ours["neighbor_splits"][same], reference["neighbor_splits"][same])


@pytest.mark.parametrize(
    ("mode", "offset", "d"),
    [("exact", 0.0, 16), ("exact", 5.0, 16), ("exact", 0.0, 2), ("approx", 0.0, 16)],
)
def test_dask_graph_equals_the_in_process_graph(dask_client, tmp_path, mode, offset, d):
    data = _data(offset=offset, d=d)
    config = AuditConfig(knn_mode=mode, classes=data.classes)
    reference_info, reference = _graph_columns(
        InProcessEngine(data, chunk_rows=400), AuditContext(config)
    )
    info, ours = _dask_graph(data, tmp_path, dask_client, config)
    assert (info.k, info.method, info.splits) == (10, reference_info.method, ("test", "train"))
    assert info.recall == reference_info.recall
    if offset:
        np.testing.assert_allclose(info.center, reference_info.center, rtol=1e-6)
    else:
        assert info.center is None
    _assert_same_graph(ours, reference)
    assert ours["neighbors"][ORIGINAL, 0].tolist() == TWIN.tolist()


def test_dask_ivf_with_grown_lists_equals_the_in_process_graph(dask_client, tmp_path, monkeypatch):
    # Above ~1M rows lists grow past 256 rows (neighbors.ivf_lists); here the cap is lowered so
    # 3,000 rows get 5 lists of ~600 instead of 12 of 256, on both engines.
    import dataaudit.neighbors as nb

    monkeypatch.setattr(nb, "_LISTS_PER_ROOT", 0.1)
    assert nb.ivf_lists(3000) == 5 < round(3000 / nb._LIST_ROWS)
    data = _data()
    config = AuditConfig(knn_mode="approx", classes=data.classes)
    reference_info, reference = _graph_columns(InProcessEngine(data), AuditContext(config))
    info, ours = _dask_graph(data, tmp_path, dask_client, config)
    assert info.method == reference_info.method == "approx-ivf"
    assert info.recall == reference_info.recall
    _assert_same_graph(ours, reference)


def test_dask_engine_releases_the_input_partitions_once_the_graph_holds_the_rows(
    dask_client, tmp_path
):
    import time

    from dataaudit.engine.dask_engine import DaskEngine
    from dataaudit.engine.inputs import read_partitioned

    data = _data()
    config = AuditConfig(knn_mode="approx", classes=data.classes)
    _, paths = _write_inputs(data, tmp_path)
    inputs = read_partitioned(
        paths["table"], paths["probs.npy"], paths["embeddings.npy"], config, dask_client
    )
    keys = list(inputs.frame.__dask_keys__())
    assert all(dask_client.who_has(keys).values())  # persisted on the workers
    engine = DaskEngine(inputs, dask_client)
    assert inputs.frame is None  # the engine owns the partitions now
    info, cols = _graph_columns(engine, AuditContext(config))
    assert len(cols["pos"]) == data.n
    deadline = time.monotonic() + 10
    while any(dask_client.who_has(keys).values()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(dask_client.who_has(keys).values())  # one copy of the rows, not two


def test_dask_ivf_probes_per_query_on_diffuse_data_as_in_process(dask_client, tmp_path):
    # Uniform 8-d vectors: list unions grow so large that approx_knn probes per query.
    data = planted_dataset(planted_data(n_per_class=2400))
    x = np.random.default_rng(3).normal(size=(data.n, 8)).astype(np.float32)
    data = dataclasses.replace(data, embeddings=x)
    config = AuditConfig(knn_mode="approx", classes=data.classes)
    reference_info, reference = _graph_columns(InProcessEngine(data), AuditContext(config))
    info, ours = _dask_graph(data, tmp_path, dask_client, config, rows_per_part=3000)
    assert info.method == reference_info.method == "approx-ivf"
    assert info.recall == reference_info.recall
    _assert_same_graph(ours, reference)


def _boundary_ties(data) -> np.ndarray:
    """Ids whose k-th and (k+1)-th nearest neighbours tie in float32: which of them is in the
    graph is the search's choice (2-d embeddings have many), so their votes may differ."""
    from dataaudit.neighbors import knn

    sims, _ = knn(data.embeddings, k=11)
    return data.ids[sims[:, 9] - sims[:, 10] <= 1e-6]


def _assert_same_items(ours: pd.DataFrame, reference, data) -> None:
    expected = (
        reference["label_errors"]
        .table("items")
        .sort_values("error_score", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    tied = _boundary_ties(data)
    assert len(tied) < 0.05 * data.n
    if len(tied) == 0:
        pd.testing.assert_frame_equal(ours, expected)
        return
    flagged = ours.loc[ours["is_label_error"], "id"]
    assert set(flagged) == set(expected.loc[expected["is_label_error"], "id"])

    def untied(frame):
        keep = frame[~frame["id"].isin(tied)]
        return keep.sort_values("id").reset_index(drop=True)

    pd.testing.assert_frame_equal(untied(ours), untied(expected))


def test_dask_audit_with_embeddings_equals_in_process(dask_client, tmp_path):
    import dataaudit

    ported = ("label_errors", "per_class", "swapped_pairs")
    for offset, d in ((0.0, 16), (5.0, 16), (0.0, 2)):
        data = _data(offset=offset, d=d)
        folder = tmp_path / f"{offset}-{d}"
        table, paths = _write_inputs(data, folder)
        reference = dataaudit.audit(
            table, data.probs, data.embeddings, classes=data.classes, analyses=ported
        )
        ours = dataaudit.audit(
            paths["table"],
            paths["probs.npy"],
            paths["embeddings.npy"],
            classes=data.classes,
            engine="dask",
            client=dask_client,
            analyses=ported,
        )
        for name in ported:
            assert ours[name].summary == reference[name].summary, (name, offset, d)
        _assert_same_items(ours["label_errors"].table("items"), reference, data)
        assert ours["label_errors"].params["knn_k"] == 10
        assert ours.run["engine"]["knn"] == {
            "k": 10,
            "method": "exact",
            "recall_at_k": None,
            "offset_centered": bool(offset),
        }
        for name, key in (("per_class", "classes"), ("swapped_pairs", "pairs")):
            pd.testing.assert_frame_equal(ours[name].table(key), reference[name].table(key))


@pytest.mark.parametrize("part_rows", [7, 64, 1000])
@pytest.mark.parametrize("copies", [False, True])
def test_the_euclidean_graph_by_partitions_is_the_in_process_one(part_rows, copies):
    """The Dask engine's kernels for the near-duplicate rule's Euclidean graph (few dimensions):
    every partition searched in every partition's rows, the k nearest kept, ties by position,
    give similarity.euclidean_graph's graph; with exact copies (ties at distance 0, whose order
    a KD-tree leaves open) the same distances and the same neighbours below the k-th distance."""
    pytest.importorskip("dask")
    from dataaudit.engine.dask_graph import _nearest_of, _search_rows
    from dataaudit.similarity import euclidean_graph

    rng = np.random.default_rng(part_rows)
    x = rng.normal(size=(600, 2)).astype(np.float32)
    if copies:
        x[300:340] = x[:40]
        x[500:510] = x[0]
    k = 10
    dist, idx = euclidean_graph(x, k)
    parts = [
        (np.arange(s, min(s + part_rows, len(x))), x[s : s + part_rows])
        for s in range(0, len(x), part_rows)
    ]
    found = [_nearest_of(q, k, *[_search_rows(p, q, k) for p in parts]) for q in parts]
    ours_dist = np.concatenate([d for d, _ in found])
    ours_idx = np.concatenate([i for _, i in found])
    np.testing.assert_array_equal(ours_dist, dist)
    if not copies:
        np.testing.assert_array_equal(ours_idx, idx)
    for row in range(len(x)):
        below = dist[row] < dist[row, -1]
        assert set(ours_idx[row][below]) == set(idx[row][below])
        assert row not in set(ours_idx[row])
