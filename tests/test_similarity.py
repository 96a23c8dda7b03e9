"""Near-duplicates that mean the same on every embedding: traps a fixed cosine cut falls into."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dataaudit
from dataaudit.analyses.label_next import select_queue
from dataaudit.config import AuditConfig
from dataaudit.similarity import calibrate, fit_rule


def _plant(emb: np.ndarray, rng, n_exact: int = 5, n_near: int = 5) -> list[tuple[int, int]]:
    """Rows overwritten by copies of others: exact, and with noise 1e-3 of the spread."""
    rows = rng.choice(len(emb), 2 * (n_exact + n_near), replace=False)
    spread = np.linalg.norm(emb - emb.mean(0), axis=1).mean()
    pairs = []
    for j in range(n_exact + n_near):
        src, dst = int(rows[2 * j]), int(rows[2 * j + 1])
        emb[dst] = emb[src]
        if j >= n_exact:
            noise = rng.standard_normal(emb.shape[1])
            emb[dst] += 1e-3 * spread * noise / np.linalg.norm(noise)
        pairs.append((src, dst))
    return pairs


def _audit(emb: np.ndarray, rng, n_labeled: int | None = None, split=None, **options):
    """Audit `emb` with 3 classes from a linear rule; the first n_labeled rows labeled."""
    n = len(emb)
    logits = (emb - emb.mean(0)) @ rng.standard_normal((emb.shape[1], 3))
    logits /= logits.std()
    probs = np.exp(2 * logits)
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    labels = logits.argmax(1).astype(object)
    if n_labeled is not None:
        labels[n_labeled:] = None
    table = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "label": labels,
            "split": split if split is not None else np.where(np.arange(n) % 2, "train", "test"),
        }
    )
    return dataaudit.audit(table, probs, emb.astype(np.float32), classes=[0, 1, 2], **options)


def _grouped(report) -> dict:
    items = report.results["duplicates"].table("items")
    return dict(zip(items["id"], items["group_id"]))


def _found(group: dict, pairs) -> int:
    return sum(group.get(f"r{a}", -1) == group.get(f"r{b}", -2) for a, b in pairs)


def _unplanted(group: dict, pairs) -> int:
    planted = {f"r{i}" for pair in pairs for i in pair}
    return len(set(group) - planted)


@pytest.mark.parametrize(
    "kind",
    ["offset", "low-dimensional", "anisotropic"],
)
def test_only_planted_copies_are_grouped_on_awkward_embeddings(kind):
    rng = np.random.default_rng(0)
    n = 1000
    if kind == "offset":  # non-negative features with a large mean: raw cosine ~0.99
        emb = np.abs(rng.standard_normal((n, 32))) + 5
    elif kind == "low-dimensional":  # standardized tabular features passed as embeddings
        emb = rng.standard_normal((n, 2))
    else:  # 32 dimensions, of which two carry nearly all the variance
        emb = rng.standard_normal((n, 32)) * np.r_[1.0, 1.0, np.full(30, 0.01)]
    pairs = _plant(emb, rng)
    report = _audit(emb, rng)
    group = _grouped(report)
    assert _found(group, pairs) == len(pairs)
    assert _unplanted(group, pairs) < 0.01 * n
    # Leakage is counted on real groups only: at most the planted pairs leak.
    assert report.results["duplicates"].summary["leakage"] <= len(pairs)


def test_a_tight_novel_cluster_is_not_a_duplicate_group_and_gets_its_share_of_the_queue():
    rng = np.random.default_rng(1)
    base = np.abs(rng.standard_normal((2000, 32))) + 5
    shift = rng.standard_normal(32)
    centre = base.mean(0) + 8 * shift / np.linalg.norm(shift)
    cluster = centre + 0.25 * np.abs(rng.standard_normal((80, 32)))
    emb = np.vstack([base, cluster])
    split = np.r_[np.full(800, "train"), np.full(1200, "unlabeled"), np.full(80, "production")]
    budget = 100
    report = _audit(emb, rng, n_labeled=800, split=split, budget=budget)
    group = _grouped(report)
    cluster_ids = {f"r{i}" for i in range(2000, 2080)}
    assert not cluster_ids & set(group)
    queue = report.results["label_next"].table("queue")
    assert len(queue) == budget
    random_share = 80 / 1280 * budget
    picked = queue.loc[queue["id"].isin(cluster_ids)]
    assert len(picked) >= random_share
    assert picked["reason"].str.contains("share of the queue").any()


def test_the_queue_is_full_on_two_dimensional_embeddings():
    rng = np.random.default_rng(2)
    emb = rng.standard_normal((1500, 2))
    for strategy in ("mix", "margin", "random"):
        report = _audit(emb, rng, n_labeled=500, budget=200, strategy=strategy)
        assert len(report.results["label_next"].table("queue")) == 200


def test_queue_skips_copies_by_the_same_rule_on_offset_features():
    rng = np.random.default_rng(3)
    n = 600
    emb = (np.abs(rng.standard_normal((n, 32))) + 5).astype(np.float32)
    labels = np.full(n, -1)
    labels[:200] = rng.integers(0, 2, 200)
    probs = np.full((n, 2), 0.5, dtype=np.float32)
    probs[:, 0] = np.linspace(0.5, 0.99, n)[rng.permutation(n)]
    probs[:, 1] = 1 - probs[:, 0]
    emb[300:305] = emb[0]  # copies of a labeled item
    emb[400:404] = emb[450]  # copies among the pool
    probs[[*range(300, 305), *range(400, 404), 450]] = [0.5, 0.5]
    queue = select_queue(probs, labels, budget=150, strategy="margin", embeddings=emb)
    rows = set(queue.rows.tolist())
    assert len(rows) == 150
    assert not rows & set(range(300, 305))
    assert len(rows & {*range(400, 404), 450}) == 1


def test_ood_quota_gets_the_flagged_share_spread_over_the_region():
    rng = np.random.default_rng(4)
    n = 1200
    emb = rng.standard_normal((n, 16)).astype(np.float32)
    flagged = np.zeros(n, dtype=bool)
    # Two OOD regions: a tight one of 100 items, a looser one of 20.
    emb[1000:1100] = 6 + 0.3 * rng.standard_normal((100, 16))
    emb[1100:1120] = -6 + rng.standard_normal((20, 16))
    flagged[1000:1120] = True
    labels = np.full(n, -1)
    labels[:400] = rng.integers(0, 2, 400)
    probs = np.tile(np.float32([0.7, 0.3]), (n, 1))
    ood = np.where(flagged, 1.0 + rng.random(n), rng.random(n) * 0.5).astype(np.float32)
    ood[:400] = np.nan
    # The tight region holds the highest OOD scores: plain top-k would take only it.
    ood[1000:1100] += 1.0
    mix = {"uncertainty": 0.97, "ood": 0.03}
    queue = select_queue(
        probs, labels, budget=100, mix=mix, embeddings=emb, ood_score=ood, ood_flag=flagged
    )
    share = 120 / 800
    picked = queue.rows[queue.strategy == "ood"]
    assert len(picked) >= np.ceil(share * 100)
    assert (picked >= 1100).sum() >= 1  # the smaller region is not left out
    assert any("raised" in note for note in queue.notes)


def test_text_equal_after_normalising_is_a_near_duplicate_even_when_embeddings_differ():
    rng = np.random.default_rng(5)
    n = 300
    emb = rng.standard_normal((n, 24)).astype(np.float32)
    text = [f"message number {i} about topic {i % 7}" for i in range(n)]
    text[10] = "Call me LATER, ok?"
    text[20] = "call me later ok"
    text[30] = "Call me LATER, ok?"
    table = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "label": 0, "split": "train"})
    table["label"] = rng.integers(0, 2, n)
    table["text"] = text
    probs = np.full((n, 2), 0.5, dtype=np.float32)
    report = dataaudit.audit(table, probs, emb, classes=[0, 1], text_col="text")
    items = report.results["duplicates"].table("items").set_index("id")
    assert (
        items.loc["r10", "group_id"] == items.loc["r20", "group_id"] == items.loc["r30", "group_id"]
    )
    assert items.loc["r10", "tier"] == "exact" and items.loc["r10", "match_id"] == "r30"
    assert items.loc["r20", "tier"] == "near-duplicate"
    assert items.loc["r20", "match"] == "same text after normalising"
    assert 0.5 <= items.loc["r20", "score"] < 1.0


def test_pairs_carry_tiers_and_scores_that_sort_by_tier(demo_report):
    result = demo_report.results["duplicates"]
    items, review = result.table("items"), result.table("review")
    assert set(items["tier"]) <= {"exact", "near-duplicate"}
    assert (items.loc[items["tier"] == "exact", "score"] == 1).all()
    near = items.loc[items["tier"] == "near-duplicate", "score"]
    assert ((near >= 0.5) & (near < 1)).all()
    assert ((review["score"] > 0) & (review["score"] < 0.5)).all()
    assert (review["tier"] == "possible near-duplicate").all()
    # The report says which rule ran and what it calibrated.
    assert result.params["near_duplicate_metric"] == "cosine"
    assert 0 < result.params["near_duplicate_local"] <= 0.3
    assert "Near-duplicate rule" in result.notes[0]


@pytest.mark.parametrize("d", [2, 8])
def test_calibration_estimates_the_dimension_and_shrinks_thresholds_in_few(d):
    rng = np.random.default_rng(6)
    x = rng.random((4000, d)).astype(np.float32)
    rule = fit_rule(x, AuditConfig())
    assert rule.metric == "euclidean"
    assert 0.75 * d <= rule.dimension <= 1.25 * d
    # On uniform data the near-duplicate rule passes about a share `tail` of items by chance.
    a, b, dist = rule.edges()
    tier, _ = rule.grade(a, b, dist)
    flagged = np.unique(np.r_[a[tier <= 1], b[tier <= 1]])
    assert len(flagged) <= 0.01 * len(x)
    if d == 2:
        assert rule.local[0] < 0.05 and rule.global_[0] < 0.05


def test_calibration_ignores_copies_and_keeps_caps_in_many_dimensions():
    rng = np.random.default_rng(7)
    dist = np.sort(rng.uniform(0.8, 1.0, (500, 10)), axis=1).astype(np.float32)
    dist[:100, 0] = 0.0  # copies: left out of the median and the dimension
    scale, median_nn, dimension, local, glob = calibrate(
        dist, tail=0.001, caps=(0.3, 0.05, 0.5, 0.08)
    )
    assert 0.8 <= median_nn <= 0.9
    assert dimension > 10  # d1/dk ~0.83: far from uniform in few dimensions
    assert local == (0.3, 0.5) and glob == (0.05, 0.08)
    np.testing.assert_allclose(scale, dist[:, -1])


@pytest.mark.parametrize("d", [2, 16])
def test_a_single_item_has_no_pairs_and_two_items_are_judged(d):
    one = fit_rule(np.ones((1, d), np.float32), AuditConfig())
    assert len(one.edges()[0]) == 0
    two = fit_rule(np.r_[np.ones((1, d)), np.ones((1, d))].astype(np.float32), AuditConfig())
    assert two.k == 1 and two.distances.shape == (2, 1)


def _dataset_with(emb: np.ndarray):
    import dataclasses

    from _planted_labels import planted_data, planted_dataset

    data = planted_dataset(planted_data())
    return dataclasses.replace(data, embeddings=emb[: data.n].astype(np.float32))


@pytest.mark.parametrize("kind", ["planted copies", "offset", "2-d", "clean", "all copies"])
def test_the_engine_calibration_equals_the_rule_fitted_on_all_rows(kind):
    from dataaudit.context import AuditContext
    from dataaudit.engine.inprocess import InProcessEngine
    from dataaudit.neighbors import shared_graph
    from dataaudit.similarity import medians, rule_on

    rng = np.random.default_rng(11)
    emb = rng.standard_normal((1000, 2 if kind == "2-d" else 24))
    if kind == "offset":
        emb = np.abs(emb) + 5
    if kind in ("planted copies", "2-d", "offset"):
        _plant(emb, rng, n_exact=30, n_near=30)
    if kind == "all copies":
        emb = np.repeat(emb[:10], 100, axis=0)
    data = _dataset_with(emb)
    config = AuditConfig()
    ctx = AuditContext(config)
    if data.embeddings.shape[1] <= 8:
        reference = fit_rule(data.embeddings, config)
    else:
        graph = shared_graph(data, ctx)
        reference = fit_rule(
            data.embeddings,
            config,
            similarities=graph.similarities,
            indices=graph.indices,
            center=graph.center,
        )
    for chunk_rows in (64, 333, 5000):
        ours = rule_on(InProcessEngine(data, chunk_rows=chunk_rows), AuditContext(config))
        assert ours.params() == reference.params(), chunk_rows
        assert ours.median_scale == float(np.median(reference.scale))
        assert ours.k == reference.k
    # The medians are np.median's values exactly, on odd and even counts and negative values.
    engine = InProcessEngine(data, chunk_rows=97)
    values = rng.standard_normal(data.n).astype(np.float32)
    for rows in (data.n, data.n - 1, 1):
        found = medians(engine, _some_values, values, rows)["v"]
        assert found == (np.median(values[:rows]), rows)


def _some_values(chunk, values, rows):
    return {"v": values[chunk.pos[chunk.pos < rows]]}


@pytest.mark.parametrize("d", [2, 24])
def test_near_edges_over_chunks_are_the_rule_edges_of_all_rows(d):
    from dataaudit.context import AuditContext
    from dataaudit.engine.inprocess import InProcessEngine
    from dataaudit.similarity import near_duplicate_rule, near_edges, rule_on

    rng = np.random.default_rng(12)
    emb = np.abs(rng.standard_normal((1000, d))) + 3
    _plant(emb, rng, n_exact=20, n_near=20)
    data = _dataset_with(emb)
    ctx = AuditContext(AuditConfig())
    full = near_duplicate_rule(data, ctx)
    a, b, dist = full.edges()
    assert len(a) >= 40
    for chunk_rows in (50, 5000):
        engine = InProcessEngine(data, chunk_rows)
        edges, n_candidates = near_edges(engine, rule_on(engine, ctx), 10**6)
        assert edges["a"].tolist() == a.tolist() and edges["b"].tolist() == b.tolist()
        np.testing.assert_array_equal(edges["distance"].to_numpy(), dist)
        np.testing.assert_array_equal(edges["scale_b"].to_numpy(), full.scale[b])
        assert n_candidates >= len(a)
    engine = InProcessEngine(data, 50)
    capped, n_candidates = near_edges(engine, rule_on(engine, ctx), 10)
    assert len(capped) <= 10 < n_candidates
