from __future__ import annotations

import numpy as np
import pytest
from _planted_labels import CLASSES, planted_data, planted_dataset
from cleanlab.count import get_confident_thresholds
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from dataaudit.analyses import label_errors
from dataaudit.analyses.label_errors import class_thresholds, score_chunk
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
