from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataaudit.analyses.duplicates import components, describe_groups, near_pairs


def _pairs_found(items, pairs):
    group = dict(zip(items["id"], items["group_id"]))
    return sum(1 for a, b in pairs if a in group and b in group and group[a] == group[b])


def test_planted_exact_and_near_duplicates_are_grouped_with_high_precision(
    demo_report, demo_inputs
):
    truth = demo_inputs.truth
    items = demo_report.results["duplicates"].table("items")
    planted = truth.exact_duplicates + truth.near_duplicates
    assert _pairs_found(items, truth.exact_duplicates) == len(truth.exact_duplicates)
    assert _pairs_found(items, truth.near_duplicates) == len(truth.near_duplicates)
    planted_ids = {i for pair in planted for i in pair}
    precision = items["id"].isin(planted_ids).mean()
    assert precision >= 0.9
    exact = items.loc[items["id"].isin({b for _, b in truth.exact_duplicates})]
    assert exact["exact"].all()


def test_cross_split_leaks_and_conflicting_labels_are_reported(demo_report, demo_inputs):
    truth = demo_inputs.truth
    result = demo_report.results["duplicates"]
    items = result.table("items")
    leaking = items.loc[items["leaks"]]
    assert _pairs_found(leaking, truth.leaked) == len(truth.leaked)
    conflicting = items.loc[items["conflicting_labels"]]
    assert _pairs_found(conflicting, truth.conflicting) == len(truth.conflicting)
    assert result.summary["leakage"] >= len(truth.leaked)
    assert result.summary["n_conflicting_label_groups"] >= len(truth.conflicting)
    leakage = result.table("leakage")
    assert leakage["n_groups"].sum() >= result.summary["leakage"]
    # Leaking groups come first: a team reads the CSV top-down.
    assert items["leaks"].iloc[: int(items["leaks"].sum())].all()


def test_leakage_is_counted_per_split_pair():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((8, 4)).astype(np.float32)
    group = np.array([0, 0, 1, 1, 1, 2, 2, -1])
    splits = np.array(
        ["train", "test", "train", "val", "test", "train", "train", "test"], dtype=object
    )
    labels = np.array([0, 1, 2, 2, -1, 1, 1, 0])
    names = np.array(["a", "b", "c", "c", "", "b", "b", "a"], dtype=object)
    items, groups, leakage = describe_groups(
        group,
        exact_member=np.zeros(8, bool),
        ids=np.array([f"x{i}" for i in range(8)], dtype=object),
        splits=splits,
        labels=labels,
        label_names=names,
        embeddings=emb,
    )
    pairs = {(r.split_a, r.split_b): (r.n_groups, r.n_items) for r in leakage.itertuples()}
    assert pairs == {("train", "test"): (2, 4), ("train", "val"): (1, 2), ("test", "val"): (1, 2)}
    by_group = groups.set_index("group_id")
    assert by_group.loc[0, "conflicting_labels"] and not by_group.loc[1, "conflicting_labels"]
    assert by_group.loc[0, "leaks"] and not by_group.loc[2, "leaks"]
    assert len(items) == 7
    first = items.loc[items["id"] == "x2", "similarity"].item()
    assert abs(first - 1.0) < 1e-5


def test_near_pairs_chain_into_one_group_and_respect_the_threshold():
    sims = np.array([[0.99, 0.5], [0.99, 0.985], [0.985, 0.2], [0.97, 0.1]], dtype=np.float32)
    idx = np.array([[1, 3], [0, 2], [1, 0], [0, 1]])
    a, b = near_pairs(sims, idx, 0.98)
    group = components(4, a, b)
    assert group[0] == group[1] == group[2] == 0
    assert group[3] == -1


def test_duplicates_csv_lists_every_grouped_item_leaking_groups_first(demo_report):
    from dataaudit.render.csv import EXPORTS
    from dataaudit.render.sections.duplicates import build

    frame = EXPORTS["duplicates.csv"](demo_report)
    result = demo_report.results["duplicates"]
    assert list(frame.columns[:5]) == ["group_id", "id", "split", "given_label", "similarity"]
    n_items = result.summary["n_duplicate_items"]
    assert len(frame) == n_items + result.summary["n_possible_duplicate_pairs"]
    # Grouped items first (leaking groups first), then the pairs to review.
    grouped = frame.iloc[:n_items]
    assert grouped["group_id"].notna().all() and frame.iloc[n_items:]["group_id"].isna().all()
    leaks = grouped["leaks"].to_numpy(bool)
    assert leaks[: leaks.sum()].all()
    assert set(frame["tier"]) <= {"exact", "near-duplicate", "possible near-duplicate"}
    sections = build(demo_report)
    assert sections[0].cards[1].value == f"{result.summary['leakage']:,}"


def test_copies_whose_embeddings_differ_only_in_the_last_bits_are_exact_duplicates():
    import pandas as pd

    import dataaudit

    rng = np.random.default_rng(3)
    n = 200
    emb = rng.standard_normal((n, 16)).astype(np.float32)
    emb[1] = np.nextafter(emb[0], np.float32(np.inf))  # same input, another batch: last bit off
    emb[2] = emb[0] * np.float32(1.05)  # a different item pointing the same way is not exact
    emb[2] += 0.05 * rng.standard_normal(16).astype(np.float32)
    labels = rng.integers(0, 2, n)
    probs = np.full((n, 2), 0.1, dtype=np.float32)
    probs[np.arange(n), labels] = 0.9
    table = pd.DataFrame({"id": [f"i{j}" for j in range(n)], "label": labels, "split": "train"})
    report = dataaudit.audit(table, probs, emb, classes=[0, 1])
    items = report.results["duplicates"].table("items").set_index("id")
    assert items.loc[["i0", "i1"], "exact"].all()
    assert items.loc["i0", "group_id"] == items.loc["i1", "group_id"]
    assert "i2" not in items.index or not items.loc["i2", "exact"]


def _planted_copies(d: int = 20, offset: float = 4.0, n: int = 1200, seed: int = 5):
    """An AuditDataset with 30 exact and 30 near copies (train and test rows), text whose
    case and punctuation differ, missing text, and image paths to a few equal files."""
    import dataclasses

    from _planted_labels import planted_data, planted_dataset

    rng = np.random.default_rng(seed)
    data = planted_dataset(planted_data(n_per_class=n // 5))
    emb = np.abs(rng.standard_normal((data.n, d))) + offset
    src = rng.choice(data.n, 120, replace=False)
    emb[src[60:90]] = emb[src[:30]]
    emb[src[90:]] = emb[src[30:60]] + 1e-4 * rng.standard_normal((30, d))
    texts = np.array(
        [f"Item number {i % 500}!" if i % 3 else f"item NUMBER {i % 500}" for i in range(data.n)],
        dtype=object,
    )
    texts[::50] = None
    return dataclasses.replace(data, embeddings=emb.astype(np.float32), text=texts)


@pytest.mark.parametrize("kind", ["offset", "2-d", "clean"])
def test_duplicates_do_not_depend_on_how_rows_are_chunked(kind):
    import dataclasses

    from dataaudit.analyses import duplicates
    from dataaudit.config import AuditConfig, ColumnRoles
    from dataaudit.context import AuditContext
    from dataaudit.engine.inprocess import InProcessEngine

    data = _planted_copies(d=2 if kind == "2-d" else 20)
    config = AuditConfig(columns=ColumnRoles(text="text"))
    if kind == "clean":
        rng = np.random.default_rng(1)
        emb = rng.standard_normal((data.n, 20)).astype(np.float32)
        data, config = dataclasses.replace(data, embeddings=emb, text=None), AuditConfig()
    reference = duplicates.run(data, AuditContext(config), config)
    if kind == "clean":
        assert reference.summary["n_duplicate_groups"] == 0
    else:
        assert reference.summary["leakage"] > 10
        assert reference.summary["n_conflicting_label_groups"] > 5
    for chunk_rows in (97, 400):
        ours = duplicates.run_on(InProcessEngine(data, chunk_rows), AuditContext(config), config)
        assert ours.summary == reference.summary, chunk_rows
        for name, table in reference.tables.items():
            pd.testing.assert_frame_equal(ours.table(name), table, obj=name)


def test_the_named_match_among_equal_partners_does_not_depend_on_pair_order():
    """Row 0 has three copies (1, 2, 3) as good as each other: match_id names the first in
    table order however the pairs were found (the engines find them in different orders)."""
    from dataaudit.analyses.duplicates import best_link

    pairs = pd.DataFrame(
        {
            "a": [0, 0, 0, 1],
            "b": [3, 1, 2, 4],
            "tier": np.zeros(4, np.int8),
            "score": np.ones(4, np.float32),
            "match": np.zeros(4, np.int8),
        }
    )
    links = [
        best_link(5, pairs.iloc[order]) for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1])
    ]
    for link in links:
        assert link["other"].tolist() == [1, 0, 0, 0, 1]
