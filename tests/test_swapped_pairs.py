from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _planted_labels import CLASSES, planted_audit, planted_data, planted_dataset

from dataaudit.analyses import label_errors, swapped_pairs
from dataaudit.analyses.swapped_pairs import pair_table
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext


@pytest.fixture(scope="module")
def run_result():
    planted = planted_data()
    data = planted_dataset(planted)
    config = AuditConfig().replace(examples_per_pair=3)
    ctx = AuditContext(config)
    ctx.record(label_errors.run(data, ctx, config))
    return planted, swapped_pairs.run(data, ctx, config), ctx


def test_planted_systematic_swap_is_the_top_pair(run_result):
    planted, result, _ = run_result
    a, b = planted.swap_pair
    top = result.table("pairs").iloc[0]
    assert {top["class_a"], top["class_b"]} == {CLASSES[a], CLASSES[b]}
    assert result.summary["top_pair"] == f"{top['class_a']} / {top['class_b']}"
    joint = result.table("pairs")["joint_probability"]
    assert (joint.diff().dropna() <= 0).all() and (joint > 0).all()


def test_pair_counts_and_examples_come_from_flagged_items(run_result):
    _, result, ctx = run_result
    items = ctx.results["label_errors"].table("items")
    flagged = items[items["is_label_error"]]
    for pair in result.table("pairs").itertuples():
        a_to_b = (flagged["given_label"] == pair.class_a) & (
            flagged["suggested_label"] == pair.class_b
        )
        b_to_a = (flagged["given_label"] == pair.class_b) & (
            flagged["suggested_label"] == pair.class_a
        )
        assert pair.n_given_a_suggested_b == a_to_b.sum()
        assert pair.n_given_b_suggested_a == b_to_a.sum()
        in_pair = flagged[a_to_b | b_to_a].sort_values(
            "error_score", ascending=False, kind="stable"
        )
        expected = "; ".join(in_pair["id"].head(3))
        assert pair.example_ids == expected


def test_pairs_table_is_parquet_serialisable(run_result, tmp_path):
    _, result, _ = run_result
    pairs = result.table("pairs")
    pairs.to_parquet(tmp_path / "pairs.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "pairs.parquet"), pairs)


def test_pair_table_drops_unconfused_pairs_and_keeps_the_top_ones():
    items = pd.DataFrame(
        {
            "id": [10, 11, 12, 13],
            "given_label": ["x", "y", "x", "z"],
            "suggested_label": ["y", "x", "y", "x"],
            "is_label_error": [True, True, True, False],
            "error_score": [0.6, 0.9, 0.7, 0.4],
        }
    )
    pairs = pair_table(
        np.array([0, 0, 1]),
        np.array([1, 2, 2]),
        np.array([0.05, 0.01, 0.0]),
        np.array([5, 1, 0]),
        items,
        ("x", "y", "z"),
        top=5,
        examples_per_pair=2,
    )
    assert pairs[["class_a", "class_b"]].values.tolist() == [["x", "y"], ["x", "z"]]
    assert pairs["n_given_a_suggested_b"].tolist() == [2, 0]
    assert pairs["n_given_b_suggested_a"].tolist() == [1, 0]  # item 13 is not flagged
    assert pairs["example_ids"].tolist() == ["11; 12", ""]
    assert (
        len(
            pair_table(
                np.array([0, 0]),
                np.array([1, 2]),
                np.array([0.05, 0.01]),
                np.array([5, 1]),
                items,
                ("x", "y", "z"),
                top=1,
                examples_per_pair=2,
            )
        )
        == 1
    )


def test_heat_map_counts_flagged_items_by_given_and_suggested_label():
    _, demo_report = planted_audit()
    from dataaudit.render.html import script_json
    from dataaudit.render.sections import swapped_pairs as section

    [view] = section.build(demo_report)
    table, chart = view.blocks
    assert table.total_rows == len(demo_report["swapped_pairs"].table("pairs"))
    script_json(chart.figure)  # serialisable without NaN
    [heatmap] = chart.figure["data"]
    items = demo_report["label_errors"].table("items")
    flagged = items[items["is_label_error"]]
    z = np.asarray(heatmap["z"])
    assert z.sum() == len(flagged)
    i, j = np.unravel_index(z.argmax(), z.shape)
    given, suggested = heatmap["y"][i], heatmap["x"][j]
    expected = ((flagged["given_label"] == given) & (flagged["suggested_label"] == suggested)).sum()
    assert z[i, j] == expected


def test_confident_joint_handed_to_cleanlab_equals_the_one_it_computes_itself():
    from cleanlab.count import compute_confident_joint
    from cleanlab.dataset import find_overlapping_classes

    from dataaudit.analyses.swapped_pairs import confident_joint, overlapping_classes

    rng = np.random.default_rng(4)
    n, k = 3000, 6
    probs = rng.dirichlet(np.full(k, 0.4), n).astype(np.float32)
    labels = np.where(rng.random(n) < 0.8, probs.argmax(1), rng.integers(0, k, n))
    rows = np.arange(n)
    ours = confident_joint(probs, rows, labels, k)
    np.testing.assert_array_equal(ours, compute_confident_joint(labels, probs, calibrate=False))
    reference = find_overlapping_classes(labels=labels, pred_probs=probs)
    a, b, joint = overlapping_classes(ours, np.bincount(labels, minlength=k))
    ref = {
        (r["Class Index A"], r["Class Index B"]): r["Joint Probability"]
        for _, r in reference.iterrows()
    }
    # cleanlab rounds calibrated counts to integers first: joints agree within 1/N.
    assert len(ref) == len(joint) == k * (k - 1) // 2
    for i, j, p in zip(a, b, joint):
        assert abs(ref[(i, j)] - p) <= 1 / n
    assert (a[0], b[0]) == tuple(reference.iloc[0][["Class Index A", "Class Index B"]])
