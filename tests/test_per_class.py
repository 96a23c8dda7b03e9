from __future__ import annotations

import numpy as np
import pytest
from _planted_labels import planted_audit, planted_data, planted_dataset

from dataaudit.analyses import label_errors, per_class
from dataaudit.analyses.per_class import class_rates
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext

RATES = list(per_class.RATES)


def _run(data, config=None):
    config = config or AuditConfig()
    ctx = AuditContext(config)
    ctx.record(label_errors.run(data, ctx, config))
    return per_class.run(data, ctx, config), ctx


def test_class_rates_equal_hand_computed_counts():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 1, 0, 1, 0, 2])
    flagged = np.array([False, True, False, False, False, False])
    frame = class_rates(labels, predicted, flagged, ("a", "b", "c", "d")).set_index("class")
    assert frame["support"].tolist() == [3, 2, 1, 0]
    assert frame["n_predicted"].tolist() == [3, 2, 1, 0]
    assert frame["n_correct"].tolist() == [2, 1, 1, 0]
    np.testing.assert_allclose(frame.loc["a", RATES], [1 / 3, 2 / 3, 2 / 3, 1 / 3])
    np.testing.assert_allclose(frame.loc["b", RATES], [1 / 2, 1 / 2, 1 / 2, 0])
    np.testing.assert_allclose(frame.loc["c", RATES], [0, 1, 1, 0])
    # A class nobody labeled or predicted has no rate and no interval, not a zero.
    assert frame.loc["d", RATES + [f"{r}_low" for r in RATES]].isna().all()


def test_wilson_bounds_contain_every_rate():
    frame, _ = _run(planted_dataset(planted_data()))
    classes = frame.table("classes")
    for rate in per_class.RATES:
        assert (classes[f"{rate}_low"] <= classes[rate]).all()
        assert (classes[rate] <= classes[f"{rate}_high"]).all()
        assert (classes[f"{rate}_low"] < classes[f"{rate}_high"]).all()


def test_split_rows_add_up_to_the_all_row_and_summary_matches_by_hand():
    planted = planted_data()
    data = planted_dataset(planted, n_unlabeled=50)
    result, ctx = _run(data)
    classes = result.table("classes")
    assert set(classes["split"]) == {"all", "train", "test"}
    by_split = classes.groupby("split")[["support", "n_correct", "n_label_errors"]].sum()
    assert (by_split.loc["all"] == by_split.loc["train"] + by_split.loc["test"]).all()
    assert by_split.loc["all", "support"] == data.labeled.sum()
    assert (
        by_split.loc["all", "n_label_errors"]
        == ctx.results["label_errors"].summary["n_label_errors"]
    )

    labeled = data.labeled
    correct = data.labels[labeled] == data.predicted[labeled]
    assert result.summary["accuracy"] == pytest.approx(correct.mean())
    assert result.summary["accuracy_ci_low"] < correct.mean() < result.summary["accuracy_ci_high"]
    error_by_class = {
        name: 1 - correct[data.labels[labeled] == k].mean() for k, name in enumerate(data.classes)
    }
    worst = max(error_by_class, key=error_by_class.get)
    assert result.summary["worst_class"] == worst == "bee"  # the planted swap's target class
    assert result.summary["worst_class_error_rate"] == pytest.approx(error_by_class[worst])


def test_error_bar_chart_spans_each_wilson_interval():
    _, demo_report = planted_audit()
    from dataaudit.render.html import script_json
    from dataaudit.render.sections import per_class as section

    [view] = section.build(demo_report)
    chart, table = view.blocks
    script_json(chart.figure)  # no NaN reaches the page
    classes = demo_report["per_class"].table("classes")
    bars = {trace["name"]: trace for trace in chart.figure["data"]}
    assert set(bars) == set(classes.loc[classes["support"] > 0, "split"])
    rows = classes[(classes["split"] == "all") & (classes["support"] > 0)]
    bar = bars["all"]
    np.testing.assert_allclose(np.add(bar["y"], bar["error_y"]["array"]), rows["error_rate_high"])
    np.testing.assert_allclose(
        np.subtract(bar["y"], bar["error_y"]["arrayminus"]), rows["error_rate_low"]
    )
    assert table.total_rows == len(classes)
