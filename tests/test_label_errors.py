from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _planted_labels import CLASSES, planted_data, planted_dataset
from cleanlab.count import get_confident_thresholds, num_label_issues
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from dataaudit.analyses import label_errors
from dataaudit.analyses.label_errors import (
    calibrated_error_count,
    class_thresholds,
    combine_flag_and_margin,
    confident_joint_counts,
    most_common_vote,
    neighbor_votes,
    pool_with_neighbors,
    relabel_candidates,
    score_chunk,
    top_flags,
)
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext


@pytest.fixture(scope="module")
def planted():
    return planted_data()


def _score(probs, labels):
    given = probs[np.arange(len(labels)), labels]
    return score_chunk(probs, labels, class_thresholds(given, labels, probs.shape[1]))


def test_planted_flips_rank_at_the_top(planted):
    scored = _score(planted.probs, planted.labels)
    n_planted = int(planted.flipped.sum())
    top = np.argsort(-scored["error_score"], kind="stable")[: 2 * n_planted]
    assert planted.flipped[top].sum() >= 0.8 * n_planted


def test_flag_equals_cleanlab_confident_learning(planted):
    rng = np.random.default_rng(1)
    noisy = rng.dirichlet(np.full(4, 0.7), size=500).astype(np.float32)
    noisy_labels = rng.integers(0, 4, size=500)
    for probs, labels in ((planted.probs, planted.labels), (noisy, noisy_labels)):
        expected = find_label_issues(labels, probs, filter_by="confident_learning")
        assert expected.any()
        np.testing.assert_array_equal(_score(probs, labels)["is_label_error"], expected)
    config = AuditConfig().replace(label_error_filter="confident_learning")
    data = planted_dataset(planted, n_unlabeled=0)
    items = label_errors.run(data, AuditContext(config), config).table("items")
    expected = find_label_issues(planted.labels, planted.probs, filter_by="confident_learning")
    np.testing.assert_array_equal(items["is_label_error"], expected)


def _noisy_inputs(n=500, k=4, seed=1):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(k, 0.7), size=n).astype(np.float32), rng.integers(0, k, size=n)


def test_calibrated_error_count_equals_cleanlab(planted):
    without_class_4 = np.where(planted.labels == 4, 3, planted.labels)
    cases = [
        (planted.probs, planted.labels),
        (planted.probs, without_class_4),
        _noisy_inputs(),
        _noisy_inputs(n=3000, k=30, seed=2),
    ]
    for probs, labels in cases:
        k = probs.shape[1]
        scored = _score(probs, labels)
        joint = confident_joint_counts(scored["confident_guess"], labels, k)
        expected = num_label_issues(labels, probs, estimation_method="off_diagonal_calibrated")
        assert calibrated_error_count(joint, np.bincount(labels, minlength=k)) == expected


def test_default_flags_the_calibrated_count_from_the_top_and_more_flips_than_plain_cl(planted):
    data = planted_dataset(planted, n_unlabeled=0)
    default = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig())
    plain_config = AuditConfig().replace(label_error_filter="confident_learning")
    plain = label_errors.run(data, AuditContext(plain_config), plain_config)
    flag = default.table("items")["is_label_error"].to_numpy(bool)
    plain_flag = plain.table("items")["is_label_error"].to_numpy(bool)

    assert plain_flag.sum() == default.summary["n_confident_learning_flags"]
    expected = num_label_issues(
        planted.labels, planted.probs, estimation_method="off_diagonal_calibrated"
    )
    assert flag.sum() == expected == default.summary["n_label_errors"]
    assert default.params["n_label_errors_estimated"] == expected
    # Planted: 52 of 60 flips among 69 plain flags; the calibrated count finds more.
    found, found_plain = (flag & planted.flipped).sum(), (plain_flag & planted.flipped).sum()
    assert found >= 0.95 * planted.flipped.sum() and found > found_plain
    assert found / flag.sum() >= 0.65
    # The flags are the top of the ranking among items the model disagrees with (no embeddings).
    items = default.table("items")
    score = items["error_score"].to_numpy()
    eligible = (items["suggested_label"] != items["given_label"]).to_numpy()
    assert flag[~eligible].sum() == 0
    assert score[flag].min() >= score[eligible & ~flag].max()
    assert any("calibrated estimate" in note for note in default.notes)


def test_top_flags_takes_the_highest_eligible_scores_and_no_more_than_there_are():
    score = np.array([0.1, 0.9, 0.8, 0.95, 0.7, 0.2], dtype=np.float32)
    eligible = np.array([True, True, True, False, True, True])
    np.testing.assert_array_equal(
        top_flags(score, eligible, 3), [False, True, True, False, True, False]
    )
    assert not top_flags(score, eligible, 0).any()
    np.testing.assert_array_equal(top_flags(score, eligible, 10), eligible)


def test_confident_joint_from_chunks_equals_the_whole(planted):
    probs, labels = planted.probs, planted.labels
    guess = _score(probs, labels)["confident_guess"]
    whole = confident_joint_counts(guess, labels, 5)
    parts = sum(
        confident_joint_counts(guess[s : s + 137], labels[s : s + 137], 5)
        for s in range(0, len(labels), 137)
    )
    np.testing.assert_array_equal(parts, whole)
    assert whole.sum() == (guess >= 0).sum()


def test_unknown_filter_is_a_clear_error(planted):
    config = AuditConfig().replace(label_error_filter="prune")
    data = planted_dataset(planted, n_unlabeled=0)
    with pytest.raises(ValueError, match="label_error_filter must be one of calibrated_count"):
        label_errors.run(data, AuditContext(config), config)


def test_class_thresholds_equal_cleanlab_including_a_class_without_labels(planted):
    labels = np.where(planted.labels == 4, 3, planted.labels)  # class 4 now has no labeled item
    given = planted.probs[np.arange(len(labels)), labels]
    np.testing.assert_allclose(
        class_thresholds(given, labels, 5),
        get_confident_thresholds(labels, planted.probs),
        rtol=1e-6,
    )


def test_scoring_in_chunks_equals_scoring_all_rows_at_once(planted):
    probs, labels = planted.probs, planted.labels
    thresholds = class_thresholds(probs[np.arange(len(labels)), labels], labels, probs.shape[1])
    whole = score_chunk(probs, labels, thresholds)
    parts = [
        score_chunk(probs[s : s + 137], labels[s : s + 137], thresholds)
        for s in range(0, len(labels), 137)
    ]
    for key, value in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)


def test_without_embeddings_the_default_score_is_cleanlab_self_confidence(planted):
    data = planted_dataset(planted, n_unlabeled=0)
    result = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig())
    items = result.table("items")
    quality = get_label_quality_scores(planted.labels, planted.probs, method="self_confidence")
    np.testing.assert_allclose(items["error_score"], 1 - quality, atol=1e-6)
    assert (items["n_labeled_neighbors"] == 0).all() and items["neighbor_agreement"].isna().all()
    assert (items["neighbor_label"] == "").all()
    assert result.params["label_error_neighbor_weight"] == 0.0
    quality = get_label_quality_scores(planted.labels, planted.probs, method="normalized_margin")
    np.testing.assert_allclose(items["margin_score"], 1 - quality, atol=1e-6)


def test_flagged_then_margin_puts_confident_learning_flags_first(planted):
    config = AuditConfig().replace(label_error_score="flagged_then_margin")
    data = planted_dataset(planted, n_unlabeled=0)
    result = label_errors.run(data, AuditContext(config), config)
    items = result.table("items")
    score, margin = items["error_score"].to_numpy(), items["margin_score"].to_numpy()
    cl = _score(planted.probs, planted.labels)["is_label_error"]
    assert score.min() >= 0 and score.max() <= 1
    assert score[cl].min() >= score[~cl].max()
    np.testing.assert_allclose(score, combine_flag_and_margin(cl, margin))
    # The calibrated count keeps every confident-learning flag and tops up by margin.
    flag = items["is_label_error"].to_numpy(bool)
    assert (flag >= cl).all() and flag.sum() == result.params["n_label_errors_estimated"]


def test_run_scores_only_labeled_items_and_reports_a_wilson_interval(planted):
    data = planted_dataset(planted, n_unlabeled=50)
    result = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig())
    items = result.table("items")
    assert len(items) == data.labeled.sum() == result.summary["n_labeled"]
    assert set(items["id"]) == set(data.ids[data.labeled])
    flagged = items[items["is_label_error"]]
    assert result.summary["n_label_errors"] == len(flagged)
    assert (flagged["suggested_label"] != flagged["given_label"]).all()
    assert set(items["given_label"]) <= set(CLASSES)
    rate = result.summary["label_error_rate"]
    assert rate == pytest.approx(len(flagged) / len(items))
    assert (
        result.summary["label_error_rate_ci_low"]
        < rate
        < result.summary["label_error_rate_ci_high"]
    )
    # The planted flips that are still labeled are found.
    ids_flipped = set(data.ids[planted.flipped & data.labeled])
    found = set(flagged["id"]) & ids_flipped
    assert len(found) >= 0.7 * len(ids_flipped)
    assert not any("averaged" in note for note in result.notes)


def test_run_says_when_probabilities_of_several_models_were_averaged(planted):
    members = np.stack([planted.probs, planted.probs])
    data = planted_dataset(planted, n_unlabeled=0, member_probs=members)
    result = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig())
    assert any("2 models were averaged" in note for note in result.notes)


def test_run_can_rank_by_a_cleanlab_method_instead(planted):
    config = AuditConfig().replace(label_error_score="self_confidence")
    data = planted_dataset(planted, n_unlabeled=0)
    items = label_errors.run(data, AuditContext(config), config).table("items")
    expected = 1 - get_label_quality_scores(planted.labels, planted.probs, method="self_confidence")
    np.testing.assert_allclose(items["error_score"], expected, atol=1e-6)


def test_unknown_score_method_is_a_clear_error(planted):
    config = AuditConfig().replace(label_error_score="entropy?")
    data = planted_dataset(planted, n_unlabeled=0)
    with pytest.raises(ValueError, match="label_error_score must be"):
        label_errors.run(data, AuditContext(config), config)


def test_relabel_candidates_are_the_flagged_items_ranked_top_down(planted):
    data = planted_dataset(planted, n_unlabeled=0)
    items = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig()).table("items")
    table = label_errors.relabel_candidates(items)
    assert list(table.columns[:6]) == [
        "rank",
        "id",
        "given_label",
        "suggested_label",
        "error_score",
        "reason",
    ]
    assert table["rank"].tolist() == list(range(1, items["is_label_error"].sum() + 1))
    assert set(table["id"]) == set(items.loc[items["is_label_error"], "id"])
    assert (table["error_score"].diff().dropna() <= 0).all()
    first = items.set_index("id").loc[table["id"].iloc[0]]
    assert table["reason"].iloc[0] == (
        f"model gives '{first['suggested_label']}' {first['suggested_label_prob']:.2f}, "
        f"label '{first['given_label']}' gets {first['given_label_prob']:.2f}"
    )


def test_planted_demo_flips_rank_at_the_top_of_the_audit(demo_inputs, demo_report):
    items = demo_report["label_errors"].table("items")
    planted = set(demo_inputs.truth.flipped)
    ranked = items.sort_values("error_score", ascending=False)["id"]
    assert len(planted & set(ranked.head(2 * len(planted)))) >= 0.8 * len(planted)
    assert any("3 models were averaged" in note for note in demo_report["label_errors"].notes)


def test_section_table_and_relabel_export_list_the_same_ranked_items(demo_report, tmp_path):
    import pandas as pd

    from dataaudit.render.csv import write_exports
    from dataaudit.render.sections import label_errors as section

    [view] = section.build(demo_report)
    [table] = view.blocks
    assert table.export == "relabel.csv"
    assert table.total_rows == demo_report.metrics()["n_label_errors"]
    assert next(c for c in table.columns if c.key == "id").kind == "item"
    write_exports(demo_report, tmp_path)
    exported = pd.read_csv(tmp_path / "relabel.csv", dtype={"id": str})
    assert list(exported.columns[:6]) == [
        "rank",
        "id",
        "given_label",
        "suggested_label",
        "error_score",
        "reason",
    ]
    assert exported["id"].head(len(table.frame)).tolist() == table.frame["id"].astype(str).tolist()


# -- the neighbours' evidence (embeddings given) ----------------------------------------------


def _clustered(
    k=5, n_per_class=120, model_signal=1.0, neighbors_informative=True, spread=0.8, seed=0
):
    """Labels with 10% random flips; embeddings in tight class clusters (or unrelated noise);
    model probabilities softmax(model_signal * onehot(true class) + noise)."""
    from dataaudit.dataset import AuditDataset

    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(k), n_per_class)
    n = len(true)
    labels = true.copy()
    flipped = rng.random(n) < 0.1
    labels[flipped] = (true[flipped] + rng.integers(1, k, flipped.sum())) % k
    d = 16
    centers = rng.normal(size=(k, d)) * spread
    if neighbors_informative:
        embeddings = centers[true] + rng.normal(size=(n, d))
    else:
        embeddings = rng.normal(size=(n, d))
    logits = model_signal * np.eye(k)[true] + rng.normal(size=(n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    data = AuditDataset(
        ids=np.array([f"x{i}" for i in range(n)], dtype=object),
        classes=tuple(f"c{j}" for j in range(k)),
        class_source="test",
        labels=labels.astype(np.int64),
        splits=np.full(n, "train", dtype=object),
        metadata=pd.DataFrame(index=pd.RangeIndex(n)),
        probs=probs.astype(np.float32),
        embeddings=embeddings.astype(np.float32),
    )
    return data, flipped


def _aurocs(data, flipped):
    from sklearn.metrics import roc_auc_score

    config = AuditConfig()
    items = label_errors.run(data, AuditContext(config), config).table("items")
    model_only = 1 - items["given_label_prob"].to_numpy()
    neighbors_only = 1 - items["neighbor_agreement"].to_numpy()
    return items, {
        name: roc_auc_score(flipped, score)
        for name, score in (
            ("combined", items["error_score"].to_numpy()),
            ("model", model_only),
            ("neighbors", neighbors_only),
        )
    }


def test_when_both_pieces_are_informative_the_pool_beats_each():
    # Model AUROC ~0.90, neighbours ~0.86 on their own (pool ~0.92; +0.016 to +0.026 over seeds).
    data, flipped = _clustered(model_signal=1.5, spread=0.5)
    items, auc = _aurocs(data, flipped)
    assert auc["combined"] > auc["model"] + 0.01
    assert auc["combined"] > auc["neighbors"] + 0.01
    # The planted flips come first: well over half of the top 10% are flips.
    top = np.argsort(-items["error_score"].to_numpy(), kind="stable")[: flipped.sum()]
    assert flipped[top].mean() >= 0.6


def test_informative_neighbours_lift_a_weak_model():
    # Model AUROC ~0.80, neighbours ~0.93: the pool sits between the two.
    data, flipped = _clustered(model_signal=1.0, spread=0.6)
    _, auc = _aurocs(data, flipped)
    assert auc["combined"] > auc["model"] + 0.05


def test_uninformative_neighbours_barely_move_a_strong_model():
    data, flipped = _clustered(model_signal=4.0, neighbors_informative=False)
    _, auc = _aurocs(data, flipped)
    assert auc["neighbors"] < 0.65
    assert auc["combined"] >= auc["model"] - 0.02
    assert auc["combined"] > auc["neighbors"] + 0.2


def test_the_pooled_score_is_bounded_and_monotone_in_each_piece_of_evidence():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    k = 4

    @settings(max_examples=200, deadline=None)
    @given(
        probs=st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k),
        votes=st.lists(st.integers(-1, k - 1), min_size=6, max_size=6),
        sims=st.lists(st.floats(-1.0, 1.0), min_size=6, max_size=6),
        shift=st.floats(0.0, 1.0),
    )
    def check(probs, votes, sims, shift):
        p = np.array([probs], dtype=np.float32)
        p /= p.sum()
        labels = np.array([0])
        prior = np.full(k, 1 / k)
        v = np.array([votes], dtype=np.int64)
        w = np.where(v >= 0, np.clip(sims, 0, None), 0).astype(np.float32)

        def score(p, v, w):
            pooled, agreement = pool_with_neighbors(p, labels, NeighborVotes(v, w), prior, 0.25)
            assert 0 <= agreement[0] <= 1
            np.testing.assert_allclose(pooled.sum(axis=1), 1, atol=1e-5)
            return 1 - pooled[0, 0]

        base = score(p, v, w)
        assert -1e-6 <= base <= 1 + 1e-6
        # More model probability on the given label (taken from class 1): lower score.
        moved = p.copy()
        delta = shift * moved[0, 1]
        moved[0, 1] -= delta
        moved[0, 0] += delta
        assert score(moved, v, w) <= base + 1e-6
        # A neighbour that voted for another class now votes for the given label: lower score.
        other = np.flatnonzero(v[0] != 0)
        if len(other):
            agreeing = v.copy()
            agreeing[0, other[0]] = 0
            w2 = w.copy()
            w2[0, other[0]] = max(w2[0, other[0]], 0.5)
            w_same = w.copy()
            w_same[0, other[0]] = w2[0, other[0]]
            assert score(p, agreeing, w2) <= score(p, np.where(v >= 0, v, 1), w_same) + 1e-6

    from dataaudit.analyses.label_errors import NeighborVotes

    check()


def test_pooling_equals_a_dense_mixture_with_the_prior_pseudo_vote():
    rng = np.random.default_rng(3)
    n, k, nn = 50, 6, 7
    probs = rng.dirichlet(np.ones(k), size=n).astype(np.float32)
    labels = rng.integers(0, k, n)
    all_labels = np.concatenate([labels, np.full(10, -1)])  # 10 unlabeled items
    indices = rng.integers(-1, n + 10, size=(n, nn))
    sims = rng.uniform(-0.2, 1.0, size=(n, nn)).astype(np.float32)
    votes = neighbor_votes(sims, indices, all_labels)
    assert (votes.weights[(indices < 0) | (all_labels[indices] < 0)] == 0).all()
    assert (votes.weights >= 0).all()
    prior = np.bincount(labels, minlength=k) / n
    pooled, agreement = pool_with_neighbors(probs, labels, votes, prior, 0.25)
    dense = np.tile(prior, (n, 1))
    for i in range(n):
        for j in range(nn):
            if votes.labels[i, j] >= 0:
                dense[i, votes.labels[i, j]] += votes.weights[i, j]
    q = dense / dense.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(pooled, 0.75 * probs + 0.25 * q, atol=1e-6)
    np.testing.assert_allclose(agreement, q[np.arange(n), labels], atol=1e-6)


def test_most_common_vote_ignores_unlabeled_and_breaks_ties_by_class():
    votes = np.array([[2, 1, 2, -1], [3, 1, -1, -1], [-1, -1, -1, -1], [0, 0, 4, 4]])
    top, count = most_common_vote(votes)
    np.testing.assert_array_equal(top, [2, 1, -1, 0])
    np.testing.assert_array_equal(count, [2, 1, 0, 2])
    top, count = most_common_vote(np.zeros((3, 0), dtype=np.int64))
    np.testing.assert_array_equal(top, [-1, -1, -1])


def test_scoring_with_neighbours_in_chunks_equals_all_rows_at_once():
    data, _ = _clustered()
    from dataaudit.neighbors import build_graph

    graph = build_graph(data.embeddings, 10, mode="exact")
    labels = data.labels
    thresholds = class_thresholds(data.probs[np.arange(len(labels)), labels], labels, data.k)
    prior = np.bincount(labels, minlength=data.k) / len(labels)

    def score(rows):
        votes = neighbor_votes(graph.similarities[rows], graph.indices[rows], labels)
        return score_chunk(
            data.probs[rows],
            labels[rows],
            thresholds,
            votes=votes,
            prior=prior,
            neighbor_weight=0.25,
        )

    whole = score(np.arange(len(labels)))
    parts = [score(np.arange(s, min(s + 97, len(labels)))) for s in range(0, len(labels), 97)]
    for key, value in whole.items():
        np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), value)


def test_the_run_reuses_the_shared_knn_graph():
    from dataaudit.neighbors import shared_graph

    data, _ = _clustered()
    ctx = AuditContext(AuditConfig())
    result = label_errors.run(data, ctx, AuditConfig())
    graph = shared_graph(data, ctx)
    assert ctx.cached("knn_graph", lambda: None) is graph
    assert result.params["knn_k"] == graph.k == AuditConfig().knn_k
    assert (
        result.params["label_error_neighbor_weight"]
        == AuditConfig().label_error_neighbor_weight
        > 0
    )
    assert any("nearest neighbours" in note for note in result.notes)


def test_relabel_reason_names_the_neighbours_when_they_disagree():
    data, flipped = _clustered(model_signal=1.5, spread=0.6)
    items = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig()).table("items")
    table = relabel_candidates(items).set_index("id")
    by_id = items.set_index("id")
    said = [i for i in table.index if "nearest labeled neighbours" in table.loc[i, "reason"]]
    assert len(said) >= 0.4 * len(table)
    row = by_id.loc[said[0]]
    assert table.loc[said[0], "reason"].endswith(
        f"; {row['neighbor_label_count']} of its {row['n_labeled_neighbors']} nearest labeled"
        f" neighbours are labeled '{row['neighbor_label']}'"
    )
    agreeing = by_id.index[by_id["neighbor_label"] == by_id["given_label"]]
    for item in set(agreeing) & set(table.index):
        assert "neighbour" not in table.loc[item, "reason"]


@pytest.mark.parametrize("k", [2, 500])
def test_two_and_five_hundred_classes_with_embeddings(k):
    n_per_class = 300 if k == 2 else 4
    data, flipped = _clustered(k=k, n_per_class=n_per_class, model_signal=2.0)
    result = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig())
    items = result.table("items")
    score = items["error_score"].to_numpy()
    assert len(items) == len(flipped) and np.isfinite(score).all()
    assert score.min() >= 0 and score.max() <= 1
    assert (items["n_labeled_neighbors"] == 10).all()
    assert (items["neighbor_label_count"] <= items["n_labeled_neighbors"]).all()
    flagged = items[items["is_label_error"]]
    assert (flagged["suggested_label"] != flagged["given_label"]).all()
    if k == 2:
        top = np.argsort(-score, kind="stable")[: flipped.sum()]
        assert flipped[top].mean() >= 0.8


def test_clean_data_where_every_label_agrees_flags_nothing():
    from dataaudit.dataset import AuditDataset

    k, n_per_class = 3, 50
    true = np.repeat(np.arange(k), n_per_class)
    rng = np.random.default_rng(0)
    probs = np.full((len(true), k), 0.02, dtype=np.float32)
    probs[np.arange(len(true)), true] = 0.96
    data = AuditDataset(
        ids=np.array(
            [str(i) for i in range(len(true))], dtype=object
        ),  # ids that look like numbers
        classes=("0", "1", "2"),
        class_source="test",
        labels=true.astype(np.int64),
        splits=np.full(len(true), "train", dtype=object),
        metadata=pd.DataFrame(index=pd.RangeIndex(len(true))),
        probs=probs,
        embeddings=(np.eye(k)[true] * 5 + rng.normal(size=(len(true), k)) + 100).astype(np.float32),
    )
    result = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig())
    items = result.table("items")
    assert result.summary["n_label_errors"] == 0 and not items["is_label_error"].any()
    assert (items["neighbor_label"] == items["given_label"]).all()
    assert items["error_score"].max() < 0.1
    table = relabel_candidates(items)
    assert len(table) == 0 and "reason" in table.columns
