from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataaudit import slicing as sl
from dataaudit.analyses import slices
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import UNLABELED, AuditDataset
from dataaudit.result import AnalysisResult

CLASSES = ("a", "b", "c", "d")


def _dataset(
    errors: np.ndarray,
    metadata: pd.DataFrame,
    *,
    labeled: np.ndarray | None = None,
    splits: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    seed: int = 0,
) -> AuditDataset:
    """Items whose prediction differs from the given label exactly where `errors` is set."""
    rng = np.random.default_rng(seed)
    n = len(errors)
    labels = rng.integers(0, len(CLASSES), n)
    predicted = np.where(errors, (labels + 1) % len(CLASSES), labels)
    probs = np.full((n, len(CLASSES)), 0.1, dtype=np.float32)
    probs[np.arange(n), predicted] = 0.7
    if labeled is not None:
        labels = np.where(labeled, labels, UNLABELED)
    return AuditDataset(
        ids=np.array([f"item-{i}" for i in range(n)], dtype=object),
        classes=CLASSES,
        class_source="test",
        labels=labels.astype(np.int64),
        splits=np.full(n, "all", dtype=object) if splits is None else splits.astype(object),
        metadata=metadata,
        probs=probs,
        embeddings=embeddings,
    )


def _metadata(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "camera": rng.choice(list("ABCDE"), n),
            "brightness": rng.random(n),
            "site": rng.integers(0, 20, n).astype(str),
            "weather": rng.choice(["sun", "rain", None], n),
        }
    )


def _blobs(rng: np.random.Generator, n: int, n_blobs: int = 12, d: int = 16):
    """Well-separated gaussian blobs; blob 0 is the planted region (~4% of rows)."""
    centers = rng.normal(scale=4.0, size=(n_blobs, d))
    weights = np.full(n_blobs, 0.96 / (n_blobs - 1))
    weights[0] = 0.04
    blob = rng.choice(n_blobs, size=n, p=weights)
    return (centers[blob] + rng.normal(size=(n, d))).astype(np.float32), blob


def _run(data: AuditDataset, config: AuditConfig | None = None, ctx: AuditContext | None = None):
    config = config or AuditConfig()
    return slices.run(data, ctx or AuditContext(config), config)


# -- encoding -----------------------------------------------------------------------------------


def test_numeric_rules_are_complementary_thresholds_and_given_bins_partition_rows():
    rng = np.random.default_rng(0)
    x = rng.random(2000)
    x[:40] = np.nan
    col = sl.encode_numeric("x", x, bins=16, given_bins=4)
    present = ~np.isnan(x)
    for j in range(0, len(col.rule_names) - 1, 2):
        below, above = col.rule_mask(j), col.rule_mask(j + 1)
        assert not (below & above).any()
        assert ((below | above) == present).all()
        assert x[below].max() < x[above].min()
    given = np.array([col.given_mask(j) for j in range(len(col.given_names))])
    assert (given.sum(0) == 1).all()  # every row in exactly one given bin (missing included)
    assert col.given_names[-1] == "x is missing"
    assert given[-1].sum() == 40


def test_categorical_keeps_top_values_then_other_and_missing():
    values = pd.Series([f"v{i % 60}" for i in range(600)] + [None] * 7)
    col = sl.encode_categorical("c", values, top=50)
    assert len(col.rule_names) == 52
    other = col.rule_names.index("c = (other)")
    assert col.rule_mask(other).sum() == 600 - 50 * 10
    assert col.rule_mask(col.rule_names.index("c is missing")).sum() == 7


def test_id_like_and_constant_columns_are_skipped_with_a_reason():
    meta = pd.DataFrame({"name": [f"f{i}" for i in range(500)], "const": 1, "ok": [1, 2] * 250})
    columns, skipped = sl.encode_metadata(meta)
    assert [c.name for c in columns] == ["ok"]
    assert set(skipped) == {"name", "const"}


# -- discovery on planted data -----------------------------------------------------------------


def test_planted_metadata_slice_is_the_top_discovered_rule_with_its_exact_support():
    rng = np.random.default_rng(1)
    n = 6000
    meta = _metadata(rng, n)
    bad = (meta["camera"] == "B").to_numpy()
    errors = rng.random(n) < np.where(bad, 0.4, 0.1)
    result = _run(_dataset(errors, meta, labeled=rng.random(n) < 0.9))

    top = result.table("discovered").iloc[0]
    assert (top["kind"], top["slice"]) == ("rule", "camera = B")
    assert top["support"] == bad.sum()
    assert top["error_rate_low"] <= top["error_rate"] <= top["error_rate_high"]
    assert top["q_value"] < 0.05
    assert result.summary["worst_slice_error_rate"] >= top["error_rate"]
    given = result.table("given")
    assert given.iloc[0]["slice"] == "camera = B" and bool(given.iloc[0]["significant"])
    # Failures shown for the slice are errors inside it.
    examples = result.table("examples")
    shown = examples[(examples["slice_id"] == top["slice_id"]) & (examples["role"] == "failure")]
    rows = shown["id"].str.removeprefix("item-").astype(int).to_numpy()
    assert len(rows) == 5 and bad[rows].all() and errors[rows].all()


def test_planted_two_column_rule_is_found_without_its_parents():
    rng = np.random.default_rng(2)
    n = 8000
    meta = _metadata(rng, n)
    bad = (meta["camera"] == "C").to_numpy() & (meta["weather"] == "rain").to_numpy()
    errors = rng.random(n) < np.where(bad, 0.5, 0.1)
    result = _run(_dataset(errors, meta))
    discovered = result.table("discovered")
    assert discovered.iloc[0]["slice"] == "camera = C and weather = rain"
    assert discovered.iloc[0]["support"] == bad.sum()
    # Covering removed the slice's rows, so its parents are not reported on their own.
    assert not discovered["slice"].isin(["camera = C", "weather = rain"]).any()


def test_planted_embedding_region_is_the_top_discovered_cluster_with_its_support():
    rng = np.random.default_rng(3)
    n = 6000
    emb, blob = _blobs(rng, n)
    region = blob == 0
    errors = rng.random(n) < np.where(region, 0.45, 0.1)
    labeled = rng.random(n) < 0.85
    data = _dataset(errors, _metadata(rng, n), labeled=labeled, embeddings=emb)
    result = _run(data)

    clusters = result.table("discovered").query("kind == 'cluster'")
    top = clusters.iloc[0]
    assert top["support"] == region.sum()
    items = result.table("items")
    assert set(np.flatnonzero(items["failure_slice"].to_numpy() == top["slice_id"])) == set(
        np.flatnonzero(region)
    )
    # Candidates to label are unlabeled items of the same region.
    examples = result.table("examples")
    to_label = examples[
        (examples["slice_id"] == top["slice_id"]) & (examples["role"] == "to_label")
    ]
    rows = to_label["id"].str.removeprefix("item-").astype(int).to_numpy()
    assert len(rows) == 5 and region[rows].all() and not labeled[rows].any()


@pytest.mark.parametrize("seed", range(5))
def test_nothing_is_significant_when_no_slice_is_bad(seed):
    rng = np.random.default_rng(100 + seed)
    n = 5000
    emb, _ = _blobs(rng, n)
    errors = rng.random(n) < 0.12
    splits = rng.choice(np.array(["train", "val", "test"]), n)
    result = _run(_dataset(errors, _metadata(rng, n), splits=splits, embeddings=emb, seed=seed))
    assert result.summary["n_slices_tested"] > 1000
    assert result.summary["n_failure_slices"] == 0
    assert result.summary["n_given_slices_significant"] == 0
    assert result.summary["worst_slice"] == ""


# -- given slices, splits, label errors --------------------------------------------------------


def test_slice_failing_only_in_production_is_significant_in_that_split_only():
    rng = np.random.default_rng(4)
    n = 8000
    meta = _metadata(rng, n)
    splits = rng.choice(np.array(["train", "production"]), n, p=[0.7, 0.3])
    bad = (meta["camera"] == "D").to_numpy() & (splits == "production")
    errors = rng.random(n) < np.where(bad, 0.45, 0.1)
    result = _run(_dataset(errors, meta, splits=splits))
    given = result.table("given").set_index(["slice", "split"])
    assert given.loc[("camera = D", "production"), "significant"]
    assert not given.loc[("camera = D", "train"), "significant"]
    assert given.loc[("camera = D", "production"), "support"] == bad.sum()
    top = result.table("discovered").iloc[0]
    assert top["slice"] in (
        "camera = D and split = production",
        "split = production and camera = D",
    )
    split_rows = result.table("splits").set_index("split")
    assert split_rows.loc["all", "n_labeled"] == n
    assert split_rows.loc["production", "n_errors"] == errors[splits == "production"].sum()


def test_small_slices_are_skipped_and_counted():
    rng = np.random.default_rng(5)
    n = 3000
    meta = pd.DataFrame({"camera": np.where(rng.random(n) < 0.005, "rare", "common")})
    result = _run(_dataset(rng.random(n) < 0.1, meta))
    given = result.table("given")
    assert "camera = rare" not in set(given["slice"])
    assert result.summary["n_slices_below_min_support"] == 1
    assert any("fewer and were skipped" in note for note in result.notes)


def test_label_error_rates_come_from_the_label_errors_result_by_id():
    rng = np.random.default_rng(6)
    n = 2000
    meta = pd.DataFrame({"camera": rng.choice(list("AB"), n)})
    data = _dataset(rng.random(n) < 0.1, meta)
    flagged = rng.random(n) < 0.05
    order = rng.permutation(n)  # joined by id, not by row position
    items = pd.DataFrame({"id": data.ids[order], "is_label_error": flagged[order]})
    ctx = AuditContext(AuditConfig())
    ctx.record(AnalysisResult("label_errors", tables={"items": items}))
    given = _run(data, ctx=ctx).table("given").set_index("slice")
    in_a = (meta["camera"] == "A").to_numpy()
    assert given.loc["camera = A", "n_label_errors"] == (flagged & in_a).sum()
    assert given.loc["camera = A", "label_error_rate"] == pytest.approx(
        (flagged & in_a).sum() / in_a.sum()
    )


@pytest.fixture(scope="module")
def demo():
    from dataaudit import audit
    from dataaudit.demo import make_demo_inputs

    inputs = make_demo_inputs(seed=0)
    return inputs, audit(inputs.table, inputs.probs, inputs.embeddings, classes=inputs.classes)


def test_demo_bad_scanner_is_discovered_at_the_top(demo):
    inputs, report = demo
    result = report.results["slices"]
    top = result.table("discovered").iloc[0]
    column, value = inputs.truth.bad_slice
    assert top["slice"] == f"{column} = {value}"
    assert top["support"] == len(inputs.truth.bad_slice_ids)
    clusters = result.table("discovered").query("kind == 'cluster'")
    assert f"{column} = {value}" in clusters.iloc[0]["description"]


def test_report_section_charts_discovered_slices_against_the_overall_rate(demo):
    from dataaudit.render.csv import EXPORTS
    from dataaudit.render.sections import slices as section
    from dataaudit.render.view import ChartView

    inputs, report = demo
    result = report.results["slices"]
    (view,) = section.build(report)
    chart = next(b for b in view.blocks if isinstance(b, ChartView)).figure
    bars = {x: y for trace in chart["data"] for x, y in zip(trace["x"], trace["y"], strict=True)}
    column, value = inputs.truth.bad_slice
    top = result.table("discovered").iloc[0]
    assert bars[f"R1: {column} = {value}"] == pytest.approx(top["error_rate"])
    line = chart["layout"]["shapes"][0]
    assert line["y0"] == pytest.approx(result.params["overall_error_rate"])

    exported = EXPORTS["slices.csv"](report)
    assert len(exported) == len(result.table("discovered")) + len(result.table("given"))
    first = exported.iloc[0]
    assert (first["slice_id"], first["kind"]) == ("R1", "rule")
    assert len(first["example_failures"].split()) == 5


# -- wide tables: bounded 2-condition search, bounded given table ------------------------------


def _wide_metadata(rng: np.random.Generator, n: int, n_num: int = 200, n_cat: int = 30):
    cats = {
        f"cat{i}": np.array([f"v{j}" for j in range(k)], dtype=object)[rng.integers(0, k, n)]
        for i, k in ((i, 6 if i == 1 else int(rng.integers(3, 13))) for i in range(1, n_cat + 1))
    }
    nums = {f"num{i}": rng.random(n) for i in range(n_num)}
    return pd.DataFrame({**cats, **nums})


def test_wide_table_screens_pairs_and_still_finds_a_planted_pair():
    rng = np.random.default_rng(7)
    n = 4000
    meta = _wide_metadata(rng, n)
    bad = (meta["cat1"] == "v0").to_numpy() & (meta["num0"] < 0.3).to_numpy()
    errors = rng.random(n) < np.where(bad, 0.4, 0.1)
    config = AuditConfig()
    result = _run(_dataset(errors, meta), config)

    top = result.table("discovered").iloc[0]
    assert top["slice"].startswith("cat1 = v0 and num0 < ")
    assert abs(top["support"] - bad.sum()) < 0.1 * bad.sum()
    summary = result.summary
    assert 0 < summary["n_slice_pairs_tested"] <= config.slice_max_pairs
    assert summary["n_slice_pairs_screened_out"] > 20 * config.slice_max_pairs
    # Screened-out pairs stay in the correction's family: it is the full search's size.
    assert result.params["rule_family"] > summary["n_slice_pairs_tested"]
    assert not result.params["pairs_exhaustive"]
    assert any("2-condition rules were screened" in note for note in result.notes)
    given = result.table("given")
    assert len(given) <= config.slice_max_given
    assert (given["level"] == 1).all()  # pairs of values would not fit slice_max_pairs


@pytest.mark.parametrize("seed", range(2))
def test_screened_wide_table_has_no_discovery_when_no_slice_is_bad(seed):
    rng = np.random.default_rng(200 + seed)
    n = 3000
    meta = _wide_metadata(rng, n, n_num=60, n_cat=20)
    splits = rng.choice(np.array(["train", "val"]), n)
    config = AuditConfig(slice_max_pairs=20_000)
    result = _run(_dataset(rng.random(n) < 0.12, meta, splits=splits, seed=seed), config)
    assert result.summary["n_slice_pairs_screened_out"] > 0
    assert result.summary["n_failure_slices"] == 0
    assert result.summary["n_given_slices_significant"] == 0


def test_screened_pairs_have_the_exhaustive_counts_of_the_same_rule():
    rng = np.random.default_rng(8)
    n = 3000
    meta = _wide_metadata(rng, n, n_num=6, n_cat=4)
    errors = rng.random(n) < np.where((meta["cat1"] == "v0").to_numpy(), 0.3, 0.1)
    outcome = sl.outcome_codes(np.ones(n, bool), errors, None)
    columns, _ = sl.encode_metadata(meta)
    groups = rng.integers(0, 2, n).astype(np.int32)
    group_col = sl.encode_groups(groups, ["a", "b"])
    kwargs = dict(min_support=30, group_column=group_col)
    full = sl.enumerate_slices(columns, outcome, groups, 2, **kwargs)
    screened = sl.enumerate_slices(columns, outcome, groups, 2, max_pairs=3000, **kwargs)
    assert full.screening.exhaustive and not screened.screening.exhaustive
    assert 0 < screened.screening.n_pairs_tested <= 3000
    assert screened.screening.n_anchors >= 1

    def keyed(s):
        keys = zip(s.col_a, s.pred_a, s.col_b, s.pred_b, strict=True)
        return {k: tuple(c) for k, c in zip(keys, s.counts.tolist(), strict=True)}

    full_rules, screened_rules = keyed(full.rules), keyed(screened.rules)
    assert set(screened_rules) < set(full_rules)
    assert all(full_rules[k] == c for k, c in screened_rules.items())
    # Single conditions are never screened; the split reads first in a pair, as exhaustively.
    n_single = sum(1 for k in full_rules if k[2] < 0)
    assert sum(1 for k in screened_rules if k[2] < 0) == n_single == screened.screening.n_single
    assert full.screening.rule_family == len(full.rules)
    assert screened.screening.rule_family == n_single + screened.screening.n_pairs_possible
    assert screened.screening.n_pairs_possible >= full.screening.n_pairs_tested


def test_bh_family_counts_untested_hypotheses_as_p_one():
    from dataaudit.stats import benjamini_hochberg

    p = np.array([1e-6, 0.002, 0.03, np.nan, 0.5])
    padded = benjamini_hochberg(np.r_[p, np.ones(95)])[: len(p)]
    np.testing.assert_allclose(benjamini_hochberg(p, family=99), padded, equal_nan=True)
    np.testing.assert_allclose(benjamini_hochberg(p, family=2), benjamini_hochberg(p))


def test_given_table_keeps_significant_slices_and_the_worst_per_column_within_the_cap():
    rng = np.random.default_rng(9)
    n = 6000
    meta = _metadata(rng, n)
    meta["zone"] = rng.integers(0, 40, n).astype(str)
    bad = (meta["camera"] == "B").to_numpy()
    errors = rng.random(n) < np.where(bad, 0.35, 0.1)
    splits = rng.choice(np.array(["train", "val", "test"]), n)
    full = _run(_dataset(errors, meta, splits=splits)).table("given")
    config = AuditConfig(slice_max_given=300, slice_given_per_column=3)
    result = _run(_dataset(errors, meta, splits=splits), config)
    kept = result.table("given")
    assert len(full) > 300 >= len(kept)
    assert set(full.loc[full["significant"], "slice"]) <= set(kept["slice"])
    involved = full["columns"].str.split(" x ")
    for column in meta.columns:
        worst = full[involved.map(lambda cols, c=column: c in cols)].head(3)
        assert set(zip(worst["slice"], worst["split"])) <= set(zip(kept["slice"], kept["split"]))
    assert result.summary["n_given_slices_not_listed"] == len(full) - len(kept)
    assert (
        result.summary["n_slices_tested"]
        == _run(_dataset(errors, meta, splits=splits)).summary["n_slices_tested"]
    )
    assert any(
        "keeps 300 of the" in note or f"keeps {len(kept)} of" in note for note in result.notes
    )


def test_text_id_constant_and_empty_columns_are_skipped_and_grouped_in_notes():
    rng = np.random.default_rng(10)
    n = 2000
    meta = _metadata(rng, n)
    for i in range(8):
        meta[f"note{i}"] = [f"free text {i} {j}" for j in rng.permutation(n)]
    meta["const"] = "same"
    meta["empty"] = np.nan
    result = _run(_dataset(rng.random(n) < 0.1, meta))
    assert result.summary["n_slice_columns_skipped"] == 10
    assert set(result.params["skipped_columns"]) == {
        *(f"note{i}" for i in range(8)),
        "const",
        "empty",
    }
    grouped = [note for note in result.notes if note.startswith("8 metadata columns")]
    assert len(grouped) == 1 and "'note0'" in grouped[0] and "3 more" in grouped[0]
    assert not any(c.startswith("note") for c in result.table("given")["columns"])
