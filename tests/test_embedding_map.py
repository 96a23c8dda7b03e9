"""The embedding map: sampling keeps flagged items, PCA separates planted clusters."""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataaudit.analyses.embedding_map import normalise_rows, pca_2d, sample_rows, tsne_2d


def test_sample_keeps_every_flagged_item_within_half_the_budget():
    flagged = np.array([3, 500, 99_999, 42_000])
    rows, from_flags = sample_rows(100_000, flagged, budget=1000, seed=1)
    assert len(rows) == 1000
    assert np.all(np.diff(rows) > 0)  # sorted, unique
    assert set(flagged) <= set(rows.tolist())
    assert set(rows[from_flags].tolist()) == set(flagged.tolist())


def test_sample_caps_flagged_items_at_half_the_budget():
    flagged = np.arange(0, 10_000, 2)  # 5,000 flagged
    rows, from_flags = sample_rows(10_000, flagged, budget=400, seed=0)
    assert len(rows) == 400
    assert from_flags.sum() == 200
    assert np.isin(rows[~from_flags], flagged).sum() == 0  # the random half is unflagged


def test_small_datasets_are_drawn_whole():
    rows, from_flags = sample_rows(50, np.array([7]), budget=5000)
    assert rows.tolist() == list(range(50))
    assert from_flags.tolist() == [i == 7 for i in range(50)]


def test_pca_separates_two_planted_clusters_on_the_first_axis():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 0.05, size=(200, 16)) + np.eye(16)[0]
    b = rng.normal(0, 0.05, size=(200, 16)) + np.eye(16)[1]
    coords, explained = pca_2d(normalise_rows(np.vstack([a, b]).astype(np.float32)))
    assert coords.shape == (400, 2)
    first = coords[:, 0]
    # Every point of one cluster lies on one side of every point of the other.
    assert first[:200].max() < first[200:].min() or first[200:].max() < first[:200].min()
    assert explained[0] > 0.8


def test_pca_is_deterministic_and_handles_degenerate_input():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    assert np.array_equal(pca_2d(x)[0], pca_2d(x.copy())[0])
    same = np.ones((5, 4), dtype=np.float32)
    coords, explained = pca_2d(same)
    assert np.all(coords == 0) and np.all(explained == 0)


def test_tsne_keeps_planted_clusters_apart():
    rng = np.random.default_rng(2)
    centres = np.eye(12)[:3]
    points = np.vstack([c + rng.normal(0, 0.05, size=(60, 12)) for c in centres])
    coords = tsne_2d(normalise_rows(points.astype(np.float32)), seed=0)
    assert coords.shape == (180, 2)
    # Each point's nearest neighbour on the map comes from its own cluster.
    distance = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(distance, np.inf)
    cluster = np.repeat(np.arange(3), 60)
    assert (cluster[distance.argmin(axis=1)] == cluster).mean() > 0.97


def test_engine_form_sample_keeps_flagged_items_and_does_not_depend_on_the_chunking():
    from _planted_queue import planted_queue

    from dataaudit.analyses import embedding_map, outliers
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.engine.inprocess import InProcessEngine
    from dataaudit.validate import load_dataset

    planted = planted_queue(d=2)
    config = AuditConfig(classes=planted.classes, embedding_map_points=300, outlier_z=1.0)
    data = load_dataset(planted.table, planted.probs, planted.embeddings, config)
    maps = []
    for chunk_rows in (10_000, 97):
        ctx = AuditContext(config)
        engine = InProcessEngine(data, chunk_rows=chunk_rows)
        ctx.record(outliers.run_on(engine, ctx, config))
        maps.append(embedding_map.run_on(engine, ctx, config).table("items"))
    pd.testing.assert_frame_equal(maps[0], maps[1])
    items = ctx.results["outliers"].table("items")
    flagged = set(items.loc[items["is_outlier"], "id"])
    assert len(flagged) > 150  # more than half the map: a seeded half of them is kept
    kept = set(maps[0].loc[maps[0]["sampled"] == "flagged", "id"])
    assert len(kept) == 150 and kept <= flagged
    assert len(maps[0]) == 300
    rows, _ = sample_rows(len(data.ids), np.flatnonzero(np.isin(data.ids, list(flagged))), 300)
    assert list(maps[0]["id"]) == list(data.ids[rows])
