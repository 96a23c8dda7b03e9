from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs
from hypothesis.extra.numpy import arrays

from dataaudit import strategies as st


def _confident_probs(n: int, k: int, seed: int = 0) -> np.ndarray:
    """Rows that are all confidently one class (p ≈ 0.9+), random classes."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    logits[np.arange(n), rng.integers(0, k, n)] += 6.0
    p = np.exp(logits)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("scorer", [st.least_confidence, st.margin, st.entropy])
def test_uncertainty_scorers_rank_the_planted_uncertain_item_first(scorer):
    probs = _confident_probs(500, 5)
    probs[321] = [0.3, 0.29, 0.2, 0.11, 0.1]
    scores = scorer(probs)
    assert scores.dtype == np.float32
    assert int(np.argmax(scores)) == 321


def test_margin_prefers_a_near_tie_over_a_flat_but_clear_row():
    probs = np.array([[0.46, 0.44, 0.1, 0.0], [0.55, 0.15, 0.15, 0.15]], dtype=np.float32)
    assert st.margin(probs)[0] > st.margin(probs)[1]
    # least confidence sees it the other way round: the two are different strategies
    assert st.least_confidence(probs)[0] > st.least_confidence(probs)[1]


def test_entropy_is_normalised_to_unit_range():
    k = 7
    uniform = np.full((1, k), 1 / k, dtype=np.float32)
    onehot = np.eye(k, dtype=np.float32)[:1]
    assert st.entropy(uniform)[0] == pytest.approx(1.0, abs=1e-5)
    assert st.entropy(onehot)[0] == pytest.approx(0.0, abs=1e-5)


def test_scorers_are_chunk_friendly():
    probs = _confident_probs(1000, 4, seed=3)
    whole = st.margin(probs)
    chunked = np.concatenate([st.margin(probs[i : i + 137]) for i in range(0, 1000, 137)])
    np.testing.assert_array_equal(whole, chunked)


def _committee(n: int, k: int, m: int = 5, seed: int = 0) -> np.ndarray:
    base = _confident_probs(n, k, seed)
    return np.repeat(base[None], m, axis=0).copy()


@pytest.mark.parametrize("scorer", [st.vote_entropy, st.kl_to_consensus, st.bald])
def test_committee_scorers_rank_the_planted_disagreement_first(scorer):
    members = _committee(400, 4)
    # Item 77: each member is confident, but they pick different classes.
    for j in range(members.shape[0]):
        row = np.full(4, 0.02, dtype=np.float32)
        row[j % 4] = 0.94
        members[j, 77] = row
    # Item 78: every member agrees it is a coin flip: uncertain, not disagreeing.
    members[:, 78] = [0.25, 0.25, 0.25, 0.25]
    scores = scorer(members)
    assert int(np.argmax(scores)) == 77
    if scorer is not st.vote_entropy:  # ties in votes are unordered for vote entropy
        assert scores[77] > scores[78]


def test_bald_is_zero_when_members_agree():
    members = _committee(50, 3)
    np.testing.assert_allclose(st.bald(members), 0.0, atol=1e-5)


def test_agreement_counts_members_matching_the_consensus():
    members = _committee(10, 3)
    members[:, 4] = [1.0, 0.0, 0.0]
    members[0, 4] = [0.0, 0.0, 1.0]
    members[1, 4] = [0.0, 0.0, 1.0]
    consensus = members.mean(axis=0)
    agree = st.agreement(consensus, members)
    assert agree[4] == pytest.approx(0.6)
    assert agree[np.arange(10) != 4].min() == 1.0


def test_rare_prediction_ranks_items_of_the_rarest_class_first():
    # Nobody is predicted as class 3 except item 42 (strongly) and item 7 (weakly).
    probs = np.hstack([_confident_probs(300, 3, seed=5), np.zeros((300, 1), np.float32)])
    probs[42] = [0.0, 0.0, 0.02, 0.98]
    probs[7] = [0.3, 0.2, 0.1, 0.4]
    rarity = st.class_rarity([100, 120, 90, 3])
    assert rarity[3] > 0.9 and rarity[:3].max() == 0
    scores = st.rare_prediction(probs, rarity)
    assert list(np.argsort(-scores)[:2]) == [42, 7]


def test_rarity_is_zero_when_classes_are_balanced():
    np.testing.assert_array_equal(st.class_rarity([50, 52, 48]), 0.0)


def test_ood_and_lookalike_rank_the_highest_score_first_and_nan_last():
    ood = np.array([0.1, np.nan, 0.9, 0.3])
    assert list(np.argsort(-st.ood(ood))) == [2, 3, 0, 1]
    sims = np.array([[0.2, 0.1], [0.99, 0.5], [np.nan, np.nan]])
    assert int(np.argmax(st.lookalike(sims))) == 1
    assert st.lookalike(sims)[2] == -np.inf


def test_random_scores_are_seeded():
    np.testing.assert_array_equal(st.random_scores(50, seed=3), st.random_scores(50, seed=3))
    assert not np.array_equal(st.random_scores(50, seed=3), st.random_scores(50, seed=4))


def test_difficulty_buckets_follow_confidence_and_agreement():
    probs = np.array([[0.97, 0.03], [0.7, 0.3], [0.52, 0.48]], dtype=np.float32)
    assert list(st.difficulty(probs)) == ["easy", "medium", "hard"]
    probs3 = np.array([[0.4, 0.3, 0.3]], dtype=np.float32)
    assert list(st.difficulty(probs3)) == ["hard"]
    members = np.array([[[0.99, 0.01]], [[0.99, 0.01]], [[0.2, 0.8]]], dtype=np.float32)
    # Confident on average but one of three members disagrees: not easy.
    assert st.difficulty(members.mean(axis=0), members)[0] != "easy"


def test_auto_label_threshold_keeps_precision_on_labeled_items():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0.3, 1.0, 5000)
    correct = rng.random(5000) < conf  # calibrated model
    threshold, precision, support = st.auto_label_threshold(conf, correct, 0.97)
    above = conf >= threshold
    assert precision >= 0.97
    assert support == above.sum()
    assert correct[above].mean() == pytest.approx(precision)
    assert 0.9 < threshold < 1.0


def test_auto_label_threshold_refuses_when_target_is_unreachable():
    threshold, precision, support = st.auto_label_threshold([0.99] * 50, [False] * 50)
    assert threshold == float("inf") and support == 0


def test_k_center_greedy_picks_one_item_per_far_cluster_before_repeating():
    rng = np.random.default_rng(1)
    centers = np.eye(6, dtype=np.float32) * 10
    x = np.repeat(centers, 20, axis=0) + rng.normal(scale=0.3, size=(120, 6)).astype(np.float32)
    picked = st.k_center_greedy(x, 6)
    assert sorted(set(picked // 20)) == list(range(6))
    # With cluster 0..2 already labeled, the first three picks cover the other clusters.
    picked = st.k_center_greedy(x, 3, centers=centers[:3])
    assert sorted(picked // 20) == [3, 4, 5]


def test_stratified_order_takes_each_clusters_best_before_any_second():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    scores = np.array([0.9, 0.8, 0.7, 0.5, 0.95, 0.1])
    order = st.stratified_order(clusters, scores)
    assert list(order[:3]) == [4, 0, 5]
    assert list(order[3:]) == [1, 3, 2]


def test_cluster_margin_order_spreads_the_batch_over_regions():
    rng = np.random.default_rng(2)
    # 90 near-identical uncertain items in one region, 10 slightly less uncertain elsewhere.
    emb = np.vstack(
        [
            np.array([1.0, 0, 0, 0]) + rng.normal(scale=0.01, size=(90, 4)),
            np.eye(4)[rng.integers(1, 4, 10)] + rng.normal(scale=0.01, size=(10, 4)),
        ]
    ).astype(np.float32)
    scores = np.r_[np.full(90, 0.9), np.full(10, 0.8)] + rng.uniform(0, 0.01, 100)
    top = st.cluster_margin_order(scores, emb, n_clusters=4)[:4]
    assert (top >= 90).sum() >= 3
    plain_top = np.argsort(-scores)[:4]
    assert (plain_top >= 90).sum() == 0


def test_typicality_is_highest_in_dense_regions():
    sims = np.array([[0.99, 0.98, 0.97], [0.5, 0.4, 0.2]])
    assert st.typicality(sims)[0] > st.typicality(sims)[1]


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="N×K"):
        st.margin(np.zeros((2, 3, 4)))
    with pytest.raises(ValueError, match="M×N×K"):
        st.bald(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one value per class"):
        st.rare_prediction(np.zeros((2, 3)), [1, 2])


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        hs.tuples(hs.integers(1, 20), hs.integers(2, 6)),
        elements=hs.floats(0.015625, 1.0, width=32, allow_subnormal=False),
    ),
    hs.randoms(use_true_random=False),
)
def test_uncertainty_scores_are_bounded_and_ignore_class_order(raw, rnd):
    probs = raw / raw.sum(axis=1, keepdims=True)
    perm = list(range(probs.shape[1]))
    rnd.shuffle(perm)
    for scorer in (st.least_confidence, st.margin, st.entropy):
        s = scorer(probs)
        assert np.all((s >= -1e-6) & (s <= 1 + 1e-6))
        np.testing.assert_allclose(scorer(probs[:, perm]), s, atol=1e-6)
