"""Calibration: ECE with intervals on planted (mis)calibration, the temperature, and its use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataaudit.analyses import calibration
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import UNLABELED, AuditDataset


def calibrated_logits(n: int = 3000, k: int = 5, scale: float = 2.5, seed: int = 0):
    """Logits and labels drawn from softmax(logits): calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, size=(n, k))
    probs = _softmax(logits)
    labels = (probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return logits, np.minimum(labels, k - 1)


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def dataset(probs, labels, splits=None, classes=None) -> AuditDataset:
    n, k = probs.shape
    return AuditDataset(
        ids=np.array([f"x{i}" for i in range(n)], dtype=object),
        classes=tuple(classes or (f"c{j}" for j in range(k))),
        class_source="test",
        labels=np.asarray(labels, dtype=np.int64),
        splits=np.asarray(splits if splits is not None else ["train"] * n, dtype=object),
        metadata=pd.DataFrame(index=pd.RangeIndex(n)),
        probs=np.asarray(probs, dtype=np.float32),
    )


def run(data, **options):
    config = AuditConfig(**options)
    return calibration.run(data, AuditContext(config), config)


def test_logits_divided_by_three_give_a_clearly_higher_ece_with_separate_intervals():
    logits, labels = calibrated_logits()
    original = run(dataset(_softmax(logits), labels)).summary
    tempered = run(dataset(_softmax(logits / 3), labels)).summary
    assert tempered["ece"] > original["ece"] + 0.1
    assert tempered["ece_ci_low"] > original["ece_ci_high"]
    assert original["ece_ci_low"] <= original["ece"] <= original["ece_ci_high"]
    assert tempered["ece_ci_low"] <= tempered["ece"] <= tempered["ece_ci_high"]
    # Softened probabilities are underconfident, and the calibrating temperature sharpens them back.
    assert tempered["calibration_miscalibrated"] and not original["calibration_miscalibrated"]
    assert tempered["calibration_gap"] < -0.1
    assert tempered["temperature"] == pytest.approx(1 / 3, rel=0.15)
    assert original["temperature"] == pytest.approx(1.0, rel=0.15)
    assert tempered["ece_after_temperature_ci_high"] < tempered["ece_ci_low"]
    assert tempered["calibration_applied"] and not original["calibration_applied"]


def test_sharpened_probabilities_read_as_overconfident_with_temperature_above_one():
    logits, labels = calibrated_logits(seed=1)
    result = run(dataset(_softmax(logits * 3), labels))
    s = result.summary
    assert s["calibration_miscalibrated"] and s["calibration_gap"] > 0.05
    assert s["temperature"] == pytest.approx(3.0, rel=0.15)
    assert any("overconfident" in note for note in result.notes)
    # Most of the reliability curve of the given probabilities lies below the diagonal.
    given = result.table("bins").query("split == 'all' and probabilities == 'given'")
    assert (given["accuracy"] < given["mean_confidence"]).mean() > 0.8


def test_calibrated_probabilities_are_rarely_called_miscalibrated():
    flagged = [
        run(dataset(_softmax(lg), y), calibration_bootstrap=100).summary[
            "calibration_miscalibrated"
        ]
        for lg, y in (calibrated_logits(n=800, seed=s) for s in range(20))
    ]
    assert sum(flagged) <= 2


def test_rows_cover_all_splits_and_predicted_classes_and_counts_add_up():
    logits, labels = calibrated_logits(n=1200, k=4, seed=2)
    splits = np.where(np.arange(1200) % 3 == 0, "test", "train")
    labels = labels.copy()
    labels[:100] = UNLABELED  # unlabeled items are left out
    data = dataset(_softmax(logits), labels, splits)
    ece = run(data).table("ece")
    whole = ece[ece["predicted_class"].isna()].set_index("split")
    assert set(whole.index) == {"all", "test", "train"}
    assert whole.loc["all", "n"] == 1100 == whole.loc["test", "n"] + whole.loc["train", "n"]
    per_class = ece[ece["predicted_class"].notna()]
    assert per_class["predicted_class"].tolist() == list(data.classes)
    assert per_class["n"].sum() == 1100


def test_awkward_inputs_give_finite_overall_figures():
    rng = np.random.default_rng(3)
    # K = 2 with hard 0/1 probabilities (log 0 must not break the temperature).
    labels = rng.integers(0, 2, 300)
    hard = np.eye(2)[np.where(rng.random(300) < 0.8, labels, 1 - labels)]
    s = run(dataset(hard, labels)).summary
    assert np.isfinite([s["ece"], s["temperature"], s["ece_after_temperature"]]).all()
    assert s["ece"] == pytest.approx(0.2, abs=0.06)  # confidence 1, accuracy ~0.8
    # K = 500 with 2,000 items: most classes are predicted by fewer than 20 items and get no ECE.
    logits, labels = calibrated_logits(n=2000, k=500, scale=4, seed=4)
    result = run(dataset(_softmax(logits), labels), calibration_bootstrap=50)
    per_class = result.table("ece").dropna(subset=["predicted_class"])
    assert len(per_class) == 500 and per_class["ece"].isna().sum() > 400
    assert np.isfinite(result.summary["ece"])
    # A split whose labeled items all carry one class.
    logits, labels = calibrated_logits(n=600, k=3, seed=5)
    splits = np.where(labels == 0, "val", "train")
    whole = run(dataset(_softmax(logits), labels, splits)).table("ece")
    assert (
        whole.query("split == 'val' and predicted_class.isna()")["n"].item() == (labels == 0).sum()
    )


def test_ece_bins_are_equal_mass_even_when_confidences_tie():
    conf = np.r_[np.ones(70), np.linspace(0.3, 0.9, 30)]
    bins = calibration.equal_mass_bins(conf, 10)
    assert np.bincount(bins).tolist() == [10] * 10
    assert calibration.expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1], 2) == (
        pytest.approx(0.4)
    )


def test_large_groups_resample_bins_like_the_item_bootstrap():
    rng = np.random.default_rng(6)
    n = calibration.EXACT_ROWS
    conf = rng.uniform(0.4, 1, n)
    correct = rng.random(n) < conf - 0.03
    bins = calibration.equal_mass_bins(conf, 15)
    exact = calibration.bootstrap_ece(conf, correct, bins, 15, 300, rng)
    doubled = np.r_[conf, conf], np.r_[correct, correct]  # above EXACT_ROWS: the normal limit
    bins2 = calibration.equal_mass_bins(doubled[0], 15)
    approx = calibration.bootstrap_ece(*doubled, bins2, 15, 300, rng)
    # The same ECE; twice the items shrink the spread by sqrt(2).
    assert approx.mean() == pytest.approx(exact.mean(), rel=0.05)
    assert approx.std() * np.sqrt(2) == pytest.approx(exact.std(), rel=0.25)


def test_label_next_uses_the_temperature_only_when_calibration_says_so():
    from dataaudit.analyses import label_next

    logits, labels = calibrated_logits(n=1500, seed=7)
    labels = labels.copy()
    labels[1000:] = UNLABELED
    for factor, applied in ((1.0, False), (3.0, True)):
        data = dataset(_softmax(logits * factor), labels)
        config = AuditConfig(budget=50)
        ctx = AuditContext(config)
        ctx.record(calibration.run(data, ctx, config))
        assert ctx.results["calibration"].summary["calibration_applied"] is applied
        scaled, note = calibration.decision_probs(data, ctx)
        assert (note is not None) is applied
        result = label_next.run(data, ctx, config)
        queue = result.table("queue").set_index("id")
        rows = pd.Index(data.ids).get_indexer(queue.index)
        np.testing.assert_allclose(
            queue["predicted_prob"], scaled.probs[rows].max(axis=1), rtol=1e-5
        )
        assert any("temperature-scaled" in n for n in result.notes) is applied
        if applied:  # overconfident probabilities are softened before the queue reads them
            assert (queue["predicted_prob"] < data.probs[rows].max(axis=1) + 1e-6).all()


def test_section_draws_the_reliability_diagram_for_given_and_scaled_probabilities():
    from dataaudit.render.html import script_json
    from dataaudit.render.sections import calibration as section

    logits, labels = calibrated_logits(n=1000, seed=8)
    data = dataset(_softmax(logits / 3), labels)
    result = run(data)

    class Report:  # the section reads only results and config
        results = {"calibration": result}
        config = AuditConfig()

    [view] = section.build(Report())
    chart = view.blocks[0]
    names = [trace["name"] for trace in chart.figure["data"]]
    assert names == [
        "perfect calibration",
        "given probabilities",
        "temperature-scaled probabilities",
    ]
    script_json(chart.figure)  # no NaN reaches the page
    assert view.cards[0].tone == "bad"
