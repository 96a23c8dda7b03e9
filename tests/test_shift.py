"""Shift: planted moved columns, prior shift and embedding shift; nothing flagged without shift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataaudit.analyses import shift
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import UNLABELED, AuditDataset


def make_data(
    n: int = 4000,
    *,
    k: int = 3,
    seed: int = 0,
    move: float = 0.0,
    new_category: float = 0.0,
    current_priors=None,
    embedding_shift: float = 0.0,
    embeddings: bool = True,
    current_labeled: float = 0.5,
    splits=("train", "production"),
) -> AuditDataset:
    """Two splits; the current one may have a moved numeric column, a new category, other
    class priors (same p(x | y)) or embeddings offset along one axis."""
    rng = np.random.default_rng(seed)
    split = np.where(rng.random(n) < 0.5, splits[0], splits[1])
    cur = split == splits[1]
    priors = np.full(k, 1 / k)
    y = rng.choice(k, n, p=priors)
    if current_priors is not None:
        y[cur] = rng.choice(k, int(cur.sum()), p=current_priors)
    cats = np.array(["a", "b", "c"], dtype=object)
    category = cats[rng.integers(0, 3, n)]
    new = cur & (rng.random(n) < new_category)
    category[new] = "zz"
    metadata = pd.DataFrame(
        {
            "moved": rng.normal(0, 1, n) + move * cur,
            "unmoved": rng.normal(0, 1, n),
            "category": category,
            "flag": rng.random(n) < 0.3,
        }
    )
    # The model sees the class through a noisy signal: p(x | y) is the same in both splits.
    signal = np.eye(k)[y] * 2.0 + rng.normal(0, 1, (n, k))
    probs = np.exp(signal)
    probs /= probs.sum(axis=1, keepdims=True)
    emb = None
    if embeddings:
        emb = np.c_[signal, rng.normal(0, 1, (n, 13))]
        emb[cur, -1] += embedding_shift
    labels = np.where(cur & (rng.random(n) >= current_labeled), UNLABELED, y)
    return AuditDataset(
        ids=np.array([f"i{j}" for j in range(n)], dtype=object),
        classes=tuple(f"k{j}" for j in range(k)),
        class_source="test",
        labels=labels.astype(np.int64),
        splits=split.astype(object),
        metadata=metadata,
        probs=probs.astype(np.float32),
        embeddings=None if emb is None else emb.astype(np.float32),
    )


def run(data, **options):
    config = AuditConfig(**options)
    return shift.run(data, AuditContext(config), config)


def test_a_moved_column_is_flagged_and_the_unmoved_one_beside_it_is_not():
    result = run(make_data(move=0.4, new_category=0.08))
    columns = result.table("columns").set_index("column")
    assert list(result.table("columns").columns) == shift.COLUMN_FIELDS
    assert columns.loc["moved", "significant"] and columns.loc["moved", "test"] == "ks"
    assert columns.loc["category", "significant"]
    assert not columns.loc["unmoved", "significant"] and not columns.loc["flag", "significant"]
    assert columns.loc["moved", "q_value"] < 1e-6 < columns.loc["unmoved", "q_value"]
    assert columns.loc["moved", "effect_size"] > 3 * columns.loc["unmoved", "effect_size"]
    assert (
        "zz" in columns.loc["category", "top_changes"]
        and "new" in columns.loc["category", "top_changes"]
    )
    values = result.table("values")
    new = values[values["new"]]
    assert new[["column", "value"]].values.tolist() == [["category", "zz"]]
    assert result.summary["n_shifted_columns"] == 2 and result.summary["shift_detected"]


def test_prior_shift_is_estimated_through_the_confusion_matrix():
    truth = np.array([0.6, 0.3, 0.1])
    result = run(make_data(n=8000, current_priors=truth, current_labeled=0.3, seed=1))
    table = result.table("predictions")
    estimate = table["current_prior"].to_numpy()
    # BBSE undoes the confusion: closer to the truth than the raw predicted mix.
    assert np.abs(estimate - truth).max() < 0.04
    raw_error = np.abs(table["current_predicted_share"].to_numpy() - truth).max()
    assert np.abs(estimate - truth).max() < raw_error
    assert ((table["current_prior_low"] <= truth) & (truth <= table["current_prior_high"])).all()
    tv = 0.5 * np.abs(truth - 1 / 3).sum()
    s = result.summary
    assert s["prior_shift_tv"] == pytest.approx(tv, abs=0.04)
    assert s["prior_shift_tv_ci_low"] > 0.1 and s["shift_detected"]
    # Labels of the current split, where some exist, agree with the estimate.
    np.testing.assert_allclose(table["current_label_share"], truth, atol=0.04)


def test_embedding_shift_gives_an_auroc_above_half_and_the_gained_cluster_first():
    result = run(make_data(embedding_shift=1.5, seed=2))
    s = result.summary
    assert s["embedding_shift_auroc_ci_low"] > 0.6
    assert (
        s["embedding_shift_auroc_ci_low"]
        < s["embedding_shift_auroc"]
        < s["embedding_shift_auroc_ci_high"]
    )
    items = result.table("items")
    # The domain score ranks current items above reference items.
    top = items.head(200)
    assert (top["split"] == "production").mean() > 0.8
    clusters = result.table("clusters")
    assert clusters["change"].iloc[0] > 0 and clusters["change"].is_monotonic_decreasing


def test_no_shift_flags_nothing_and_the_auroc_interval_holds_half():
    result = run(make_data(seed=3))
    s = result.summary
    assert not s["shift_detected"] and s["n_shifted_columns"] == 0
    assert s["embedding_shift_auroc_ci_low"] < 0.5 < s["embedding_shift_auroc_ci_high"]
    assert s["prior_shift_tv_ci_low"] < 0.03


def test_domain_classifier_pvalue_is_uniform_without_shift():
    rng = np.random.default_rng(4)
    pvalues = []
    for _ in range(40):
        x = rng.normal(size=(400, 8))
        y = rng.random(400) < 0.3
        folds = shift.stratified_folds(y, shift.FOLDS, rng)
        auc, _, var0, _ = shift.fold_aurocs(shift.cross_fitted_ridge(x, y, folds), y, folds)
        pvalues.append(shift.ndtr(-(auc - 0.5) / np.sqrt(var0)))
    assert 0.2 < np.mean(pvalues) < 0.8 and np.mean(np.array(pvalues) < 0.05) <= 0.15


def test_splits_default_to_production_then_test_and_a_single_split_is_skipped():
    config = AuditConfig()
    assert shift.resolve_splits(["train", "test", "production"], config) == ("train", "production")
    assert shift.resolve_splits(["train", "test", "val"], config) == ("train", "test")
    assert shift.resolve_splits(["train", "val"], config) == ("train", "val")
    assert "one" in shift.resolve_splits(["train"], config)
    assert "--current-split" in shift.resolve_splits(["train", "a", "b"], config)
    assert "--reference-split" in shift.resolve_splits(["all"], config)
    named = AuditConfig(reference_split="val", current_split="train")
    assert shift.resolve_splits(["train", "val"], named) == ("val", "train")


def test_awkward_columns_and_inputs_do_not_break_the_table():
    data = make_data(n=1000, embeddings=False, current_labeled=0.0, seed=5, k=2)
    n = data.n
    rng = np.random.default_rng(5)
    data.metadata["constant"] = 7
    data.metadata["empty"] = np.nan
    data.metadata["id_like"] = [f"u{j}" for j in range(n)]
    data.metadata["many"] = rng.integers(0, 400, n).astype(str)  # high cardinality, not an id
    data.metadata["half_missing"] = np.where(rng.random(n) < 0.5, np.nan, rng.normal(size=n))
    data.metadata["123"] = rng.integers(0, 3, n)  # a column named like a number, few values
    result = run(data)
    columns = result.table("columns").set_index("column")
    assert columns.loc["constant", "p_value"] == 1.0 and columns.loc["constant", "effect_size"] == 0
    assert columns.loc[["empty", "id_like"], "test"].tolist() == ["none", "none"]
    assert columns.loc["half_missing", "test"] == "ks + missing rate"
    assert columns.loc["123", "test"] == "chi-square"
    assert not columns["significant"].any()
    assert np.isnan(result.summary["embedding_shift_auroc"])
    assert any("No embeddings" in note for note in result.notes)
    assert result.table("predictions")["current_label_share"].isna().all()


def test_k500_and_a_one_class_reference_run():
    data = make_data(n=3000, k=500, seed=6, embeddings=False)
    result = run(data)
    assert len(result.table("predictions")) == 500
    assert np.isfinite(result.summary["prior_shift_tv"])
    one = make_data(n=600, k=2, seed=7, embeddings=False)
    labels = one.labels.copy()
    labels[(one.splits == "train")] = 0  # the reference split holds one class
    one = AuditDataset(**{**one.__dict__, "labels": labels})
    table = run(one).table("predictions")
    assert table["current_prior"].iloc[0] == 1.0 and np.isnan(table["current_prior"].iloc[1])


def test_chi_square_pools_rare_cells_and_js_distance_is_bounded():
    stat, p, df = shift.chi_square_two_sample([50, 50, 1, 0], [50, 50, 0, 2])
    assert df == 1  # the two rare categories are pooled into the smallest cell
    assert 0 < p <= 1
    assert shift.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert shift.js_distance([3, 5], [6, 10]) == pytest.approx(0.0)


def test_shift_runs_in_the_audit_and_is_skipped_with_one_split(tmp_path):
    import dataaudit

    data = make_data(n=600, move=0.6, seed=8)
    table = pd.DataFrame(
        {
            "id": data.ids,
            "label": [data.classes[c] if c >= 0 else "" for c in data.labels],
            "split": data.splits,
            **{c: data.metadata[c] for c in data.metadata.columns},
        }
    )
    report = dataaudit.audit(table, data.probs, data.embeddings, classes=data.classes)
    assert report.metrics()["n_shifted_columns"] >= 1
    report.save(tmp_path / "out")
    saved = tmp_path / "out" / "audit" / "shift.columns.parquet"
    assert list(pd.read_parquet(saved).columns) == shift.COLUMN_FIELDS
    one = dataaudit.audit(table.assign(split="train"), data.probs, classes=data.classes)
    assert "shift" not in one.results and "second split" in one.skipped["shift"]
    with pytest.raises(dataaudit.InputError) as err:
        dataaudit.audit(table, data.probs, classes=data.classes, current_split="prod")
    assert [p.code for p in err.value.problems] == ["split_missing"]


def test_section_charts_and_tables_render_without_nan():
    from dataaudit.render.html import script_json
    from dataaudit.render.sections import shift as section

    result = run(make_data(n=1500, move=0.5, embedding_shift=1.0, seed=9))

    class Report:
        results = {"shift": result}
        config = AuditConfig()

    [view] = section.build(Report())
    charts = [b for b in view.blocks if hasattr(b, "figure")]
    assert [c.title for c in charts] == [
        "Effect size per column",
        "Class mix",
        "Where the embeddings moved",
    ]
    for chart in charts:
        script_json(chart.figure)
