from __future__ import annotations

import numpy as np
import pytest
from _planted_labels import CLASSES, planted_data, planted_dataset
from cleanlab.count import get_confident_thresholds, num_label_issues
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from dataaudit.analyses import label_errors
from dataaudit.analyses.label_errors import (
    calibrated_error_count,
    class_thresholds,
    confident_joint_counts,
    score_chunk,
    top_up_flags,
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


def test_default_flags_more_planted_flips_and_keep_every_confident_learning_flag(planted):
    data = planted_dataset(planted, n_unlabeled=0)
    default = label_errors.run(data, AuditContext(AuditConfig()), AuditConfig())
    plain_config = AuditConfig().replace(label_error_filter="confident_learning")
    plain = label_errors.run(data, AuditContext(plain_config), plain_config)
    flag = default.table("items")["is_label_error"].to_numpy(bool)
    plain_flag = plain.table("items")["is_label_error"].to_numpy(bool)

    assert plain_flag.sum() == default.summary["n_confident_learning_flags"]
    assert (flag >= plain_flag).all()
    expected = num_label_issues(
        planted.labels, planted.probs, estimation_method="off_diagonal_calibrated"
    )
    assert flag.sum() == expected == default.summary["n_label_errors"]
    assert default.params["n_label_errors_estimated"] == expected
    # Planted: 52 of 60 flips among 69 plain flags; the top-up finds 59 of 60 in 86.
    found, found_plain = (flag & planted.flipped).sum(), (plain_flag & planted.flipped).sum()
    assert found >= 0.95 * planted.flipped.sum() and found > found_plain
    assert found / flag.sum() >= 0.65
    # The ranking is unchanged, and the flagged items are its top.
    score = default.table("items")["error_score"].to_numpy()
    np.testing.assert_array_equal(score, plain.table("items")["error_score"].to_numpy())
    assert score[flag].min() >= score[~flag].max()
    assert any("calibrated estimate" in note for note in default.notes)


def test_top_up_adds_eligible_items_by_margin_and_never_removes_a_flag():
    flag = np.array([True, False, False, False, False, True])
    margin = np.array([0.1, 0.9, 0.8, 0.95, 0.7, 0.2], dtype=np.float32)
    eligible = np.array([True, True, True, False, True, True])
    np.testing.assert_array_equal(
        top_up_flags(flag, margin, eligible, 4), [True, True, True, False, False, True]
    )
    np.testing.assert_array_equal(top_up_flags(flag, margin, eligible, 1), flag)
    # Not enough eligible items: all of them, no more.
    np.testing.assert_array_equal(
        top_up_flags(flag, margin, eligible, 10), [True, True, True, False, True, True]
    )


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


def test_flagged_items_outrank_unflagged_and_scores_are_bounded(planted):
    scored = _score(planted.probs, planted.labels)
    flag, score = scored["is_label_error"], scored["error_score"]
    assert score.min() >= 0 and score.max() <= 1
    assert score[flag].min() >= score[~flag].max()
    # Within each group the order is cleanlab's normalized margin, reversed.
    quality = get_label_quality_scores(planted.labels, planted.probs, method="normalized_margin")
    np.testing.assert_allclose(scored["margin_score"], 1 - quality, atol=1e-6)


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
