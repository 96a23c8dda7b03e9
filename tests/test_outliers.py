from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from dataaudit.analyses.outliers import knn_distance_score, ood_scores, robust_flags
from dataaudit.neighbors import knn


def _clusters(rng, n, d, centers):
    return centers[rng.integers(0, len(centers), n)] + 0.2 * rng.standard_normal((n, d))


def test_planted_off_distribution_cluster_gets_high_ood_scores():
    rng = np.random.default_rng(0)
    d = 16
    centers = rng.standard_normal((8, d)) * 3
    train = _clusters(rng, 2000, d, centers)
    production = _clusters(rng, 300, d, centers)
    off = rng.standard_normal(d) * 3 + 0.3 * rng.standard_normal((40, d))  # a tight new cluster
    emb = np.vstack([train, production, off]).astype(np.float32)
    query_rows = np.arange(2000, len(emb))
    scores, cut = ood_scores(emb, np.arange(2000), query_rows, k=10)
    planted = np.r_[np.zeros(300, bool), np.ones(40, bool)]
    assert roc_auc_score(planted, scores) >= 0.95
    flagged = scores > cut
    assert flagged[planted].mean() >= 0.9 and flagged[~planted].mean() <= 0.05


def test_isolated_items_get_the_highest_outlier_scores():
    rng = np.random.default_rng(1)
    d = 12
    centers = rng.standard_normal((5, d)) * 3
    emb = np.vstack([_clusters(rng, 1500, d, centers), rng.standard_normal((15, d)) * 3])
    sims, _ = knn(emb, k=10)
    score = knn_distance_score(sims)
    planted = np.r_[np.zeros(1500, bool), np.ones(15, bool)]
    assert roc_auc_score(planted, score) >= 0.95
    flags = robust_flags(score, 3.5)
    assert flags[planted].mean() >= 0.8 and flags[~planted].mean() <= 0.02


def test_demo_ood_items_are_separated_and_flagged(demo_report, demo_inputs):
    result = demo_report.results["outliers"]
    items = result.table("items").dropna(subset=["ood_score"])
    planted = items["id"].isin(demo_inputs.truth.ood).to_numpy()
    assert planted.sum() == len(demo_inputs.truth.ood)
    assert roc_auc_score(planted, items["ood_score"]) >= 0.95
    assert items.loc[planted, "is_ood"].mean() >= 0.8
    assert result.summary["n_ood"] == int(items["is_ood"].sum())


def test_scores_are_bounded_and_missing_neighbours_are_ignored():
    sims = np.array([[1.0, 0.5, -np.inf], [-1.0, -1.0, -1.0]], dtype=np.float32)
    score = knn_distance_score(sims)
    np.testing.assert_allclose(score, [0.25, 2.0])


def test_approximate_ood_search_agrees_with_exact_search_on_a_large_reference():
    rng = np.random.default_rng(5)
    centers = 3 * rng.standard_normal((40, 24)).astype(np.float32)
    train = centers[rng.integers(0, 40, 6000)] + rng.standard_normal((6000, 24)).astype(np.float32)
    inside = centers[rng.integers(0, 40, 300)] + rng.standard_normal((300, 24)).astype(np.float32)
    off = 6 + rng.standard_normal((60, 24)).astype(np.float32)  # a blob away from every centre
    emb = np.vstack([train, inside, off])
    ref, queries = np.arange(6000), np.arange(6000, len(emb))
    exact, cut = ood_scores(emb, ref, queries, k=10, mode="exact")
    approx, cut_a = ood_scores(emb, ref, queries, k=10, mode="approx", approx_threshold=1000)
    assert cut_a == cut  # the threshold is calibrated by exact search on a sample either way
    truth = np.r_[np.zeros(300), np.ones(60)]
    assert roc_auc_score(truth, approx) >= 0.99
    # Approximate neighbours are never nearer than the true ones, and nearly always the same.
    assert (approx >= exact - 1e-3).all()
    assert np.median(approx - exact) < 1e-3
    assert np.corrcoef(exact, approx)[0, 1] > 0.99


def test_engine_form_flags_the_planted_ood_cluster_whatever_the_chunking():
    from _planted_queue import planted_queue

    from dataaudit.analyses import outliers
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.engine.inprocess import InProcessEngine
    from dataaudit.validate import load_dataset

    planted = planted_queue(offset=5.0)
    config = AuditConfig(classes=planted.classes)
    data = load_dataset(planted.table, planted.probs, planted.embeddings, config)
    results = []
    for chunk_rows in (10_000, 97):
        ctx = AuditContext(config)
        results.append(outliers.run_on(InProcessEngine(data, chunk_rows=chunk_rows), ctx, config))
        # The flag's cut is the in-memory robust flag over every item's score.
        graph = ctx.cached("knn_graph", lambda: None)
        expected = robust_flags(knn_distance_score(graph.similarities), config.outlier_z)
        assert results[-1].summary["n_outliers"] == int(expected.sum())
    pd.testing.assert_frame_equal(results[0].table("items"), results[1].table("items"))
    assert results[0].summary == results[1].summary
    items = results[0].table("items")
    top = set(items["id"].iloc[: len(planted.ood_ids)])
    assert top == planted.ood_ids
    assert items.loc[items["id"].isin(planted.ood_ids), "is_ood"].all()
