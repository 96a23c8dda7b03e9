from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataaudit.analyses.label_next import allocate, parse_mix, select_queue

THRESHOLD = 0.98


def _pool(n: int = 600, k: int = 4, d: int = 32, n_labeled: int = 200, seed: int = 0):
    """Clustered embeddings, probabilities that follow them, the first `n_labeled` rows labeled."""
    rng = np.random.default_rng(seed)
    # Spread so that no two rows are near-duplicates (max cosine ~0.85) unless planted.
    centers = rng.normal(size=(k, d))
    y = rng.integers(0, k, n)
    emb = (centers[y] + rng.normal(size=(n, d))).astype(np.float32)
    logits = -((emb[:, None, :] - centers[None]) ** 2).sum(axis=2) / 8
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)
    labels = np.full(n, -1, dtype=np.int64)
    labels[:n_labeled] = y[:n_labeled]
    return probs, labels, emb


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return a @ b.T


def _plant_tie(probs: np.ndarray, row: int) -> None:
    probs[row] = 0.0
    probs[row, :2] = [0.5, 0.5]


SINGLE = ["margin", "entropy", "least_confidence", "rare", "random", "diversity", "mix"]


@pytest.mark.parametrize("strategy", SINGLE)
@pytest.mark.parametrize("budget", [1, 37])
def test_budget_is_respected_exactly(strategy, budget):
    probs, labels, emb = _pool()
    queue = select_queue(probs, labels, budget=budget, strategy=strategy, embeddings=emb)
    assert len(queue.rows) == budget
    assert len(set(queue.rows.tolist())) == budget
    assert len(queue.strategy) == len(queue.score) == budget


def test_budget_larger_than_the_pool_queues_every_unlabeled_item_once():
    probs, labels, emb = _pool(n=120, n_labeled=100)
    queue = select_queue(probs, labels, budget=500, embeddings=emb)
    assert sorted(queue.rows.tolist()) == list(range(100, 120))


@pytest.mark.parametrize("strategy", SINGLE)
def test_queue_never_contains_a_labeled_item_or_a_copy_of_one(strategy):
    probs, labels, emb = _pool()
    # Rows 300..309: near-copies of labeled rows 0..9, made the most uncertain of the pool.
    rng = np.random.default_rng(1)
    emb[300:310] = emb[:10] + rng.normal(scale=1e-3, size=(10, emb.shape[1]))
    for row in range(300, 310):
        _plant_tie(probs, row)
    queue = select_queue(probs, labels, budget=60, strategy=strategy, embeddings=emb)
    assert (labels[queue.rows] == -1).all()
    assert not set(range(300, 310)) & set(queue.rows.tolist())
    assert _cos(emb[queue.rows], emb[labels >= 0]).max() < THRESHOLD


@pytest.mark.parametrize("strategy", SINGLE)
def test_queue_never_contains_two_near_duplicates(strategy):
    probs, labels, emb = _pool()
    rng = np.random.default_rng(2)
    # 15 near-copies of row 400 (more than any neighbour list is long), all maximally uncertain,
    # and 3 exact copies of row 450.
    emb[401:416] = emb[400] + rng.normal(scale=1e-3, size=(15, emb.shape[1]))
    emb[451:454] = emb[450]
    for row in [*range(400, 416), *range(450, 454)]:
        _plant_tie(probs, row)
    queue = select_queue(probs, labels, budget=80, strategy=strategy, embeddings=emb)
    sims = _cos(emb[queue.rows], emb[queue.rows])
    np.fill_diagonal(sims, -1)
    assert sims.max() < THRESHOLD
    if strategy in ("margin", "entropy", "least_confidence", "mix"):
        # The group is worth one label: exactly one of each planted group is queued.
        assert len(set(queue.rows.tolist()) & set(range(400, 416))) == 1
        assert len(set(queue.rows.tolist()) & set(range(450, 454))) == 1


@pytest.mark.parametrize("strategy", ["margin", "entropy", "least_confidence", "mix"])
def test_planted_most_uncertain_item_is_queued_first(strategy):
    probs, labels, emb = _pool()
    probs[:] = 0.0
    probs[:, 0] = 0.97
    probs[:, 1:] = 0.01
    probs[:, 1] = np.linspace(0.01, 0.02, len(probs))  # a gentle, strict order
    probs[:, 0] = 1 - probs[:, 1:].sum(axis=1)
    probs[333] = [0.34, 0.33, 0.33, 0.0]
    queue = select_queue(probs, labels, budget=10, strategy=strategy, embeddings=emb)
    assert queue.rows[0] == 333


def test_planted_ood_item_is_queued_first_and_fills_the_ood_quota_in_mix():
    probs, labels, emb = _pool()
    ood = np.random.default_rng(3).uniform(0, 0.3, len(probs)).astype(np.float32)
    ood[:200] = np.nan  # labeled rows get no OOD score
    ood[[250, 520, 590]] = [0.99, 0.97, 0.95]
    queue = select_queue(probs, labels, budget=20, strategy="ood", embeddings=emb, ood_score=ood)
    assert list(queue.rows[:3]) == [250, 520, 590]
    mix = parse_mix("uncertainty:0.85,ood:0.15")
    queue = select_queue(probs, labels, budget=20, mix=mix, embeddings=emb, ood_score=ood)
    assert set(queue.rows[queue.strategy == "ood"].tolist()) == {250, 520, 590}
    assert len(queue.rows) == 20


def test_planted_disagreement_is_queued_first_by_committee_strategies():
    probs, labels, emb = _pool()
    members = np.repeat(probs[None], 4, axis=0).copy()
    for j in range(4):
        row = np.full(4, 0.01, dtype=np.float32)
        row[j] = 0.97
        members[j, 444] = row
    mean = members.mean(axis=0)
    for strategy in ("bald", "vote_entropy", "kl"):
        queue = select_queue(
            mean, labels, budget=5, strategy=strategy, member_probs=members, embeddings=emb
        )
        assert queue.rows[0] == 444, strategy
    # mix ranks by the margin of the members' mean, which the disagreement flattens
    queue = select_queue(mean, labels, budget=5, member_probs=members, embeddings=emb)
    assert 444 in queue.rows and set(queue.strategy) == {"cluster_margin"}


def test_committee_strategy_without_a_committee_names_what_is_missing():
    probs, labels, emb = _pool()
    with pytest.raises(ValueError, match="several models"):
        select_queue(probs, labels, budget=5, strategy="bald", embeddings=emb)


def test_mix_moves_quotas_without_inputs_to_uncertainty_and_says_so():
    probs, labels, emb = _pool()
    mix = parse_mix("uncertainty:0.8,ood:0.1,lookalike:0.1")
    queue = select_queue(probs, labels, budget=30, mix=mix, embeddings=emb)
    assert len(queue.rows) == 30
    assert set(queue.strategy) == {"cluster_margin"}
    assert any("ood quota (3) went to uncertainty" in n for n in queue.notes)


def test_mix_rare_quota_picks_predictions_of_a_class_rare_among_labels():
    probs, labels, emb = _pool()
    labels[labels == 3] = -1  # class 3 now has no labels
    mix = parse_mix("uncertainty:0.8,rare:0.2")
    queue = select_queue(probs, labels, budget=20, mix=mix, embeddings=emb)
    rare = queue.rows[queue.strategy == "rare"]
    assert len(rare) == 4
    assert (probs[rare].argmax(axis=1) == 3).all()
    # interleaved: the first quarter of the queue already holds a rare pick
    assert "rare" in set(queue.strategy[:5])


def test_cold_start_picks_typical_items_from_different_clusters():
    probs, labels, emb = _pool(n_labeled=4)
    queue = select_queue(probs, labels, budget=8, embeddings=emb)
    assert set(queue.strategy) == {"typicality"}
    assert any("cold start" in n for n in queue.notes)


def test_without_embeddings_the_queue_is_plain_margin_and_says_it_is_not_deduplicated():
    probs, labels, _ = _pool()
    _plant_tie(probs, 555)
    queue = select_queue(probs, labels, budget=10)
    assert queue.rows[0] == 555 and set(queue.strategy) == {"margin"}
    assert any("not de-duplicated" in n for n in queue.notes)


def test_random_queue_is_seeded():
    probs, labels, emb = _pool()
    a = select_queue(probs, labels, budget=10, strategy="random", embeddings=emb, seed=1)
    b = select_queue(probs, labels, budget=10, strategy="random", embeddings=emb, seed=1)
    c = select_queue(probs, labels, budget=10, strategy="random", embeddings=emb, seed=2)
    assert list(a.rows) == list(b.rows) != list(c.rows)


def test_allocation_sums_exactly_to_the_budget():
    weights = parse_mix("uncertainty:0.9,rare:0.04,ood:0.03,lookalike:0.03")
    for budget in (0, 1, 7, 33, 100, 501):
        assert sum(allocate(budget, weights).values()) == budget


@pytest.mark.parametrize("spec", ["uncertainty", "bogus:1", "uncertainty:-1", "rare:x", "ood:0"])
def test_bad_mix_spec_is_a_clear_error(spec):
    with pytest.raises(ValueError, match="label_next_mix"):
        parse_mix(spec)


def test_unknown_strategy_lists_the_choices():
    probs, labels, _ = _pool()
    with pytest.raises(ValueError, match="choose one of mix, margin"):
        select_queue(probs, labels, budget=5, strategy="smart")


# -- the analysis, end to end ------------------------------------------------------------------


@pytest.fixture(scope="module")
def audited():
    import dataaudit

    probs, labels, emb = _pool(n=500, n_labeled=300, seed=4)
    classes = ["cat", "dog", "fox", "owl"]
    _plant_tie(probs, 420)  # cat/dog coin flip
    emb[421] = emb[420]  # and its exact copy
    _plant_tie(probs, 421)
    emb[430] = emb[5]  # an unlabeled copy of a labeled item, just as uncertain
    _plant_tie(probs, 430)
    # A label error (item 10 labeled as the wrong class) and an unlabeled look-alike of it.
    labels[10] = (probs[10].argmax() + 1) % 4
    rng = np.random.default_rng(9)
    emb[440] = emb[10] + rng.normal(scale=0.4, size=emb.shape[1])
    probs[440] = probs[10]
    table = pd.DataFrame(
        {
            "id": [f"item-{i}" for i in range(len(labels))],
            "label": [classes[c] if c >= 0 else "" for c in labels],
            "split": np.where(labels >= 0, "train", "production"),
        }
    )
    report = dataaudit.audit(table, probs, emb, budget=25, classes=classes)
    return report, table


def test_analysis_writes_a_ranked_queue_with_reasons(audited):
    report, table = audited
    result = report.results["label_next"]
    queue = result.tables["queue"]
    assert list(queue.columns[:4]) == ["rank", "id", "priority", "reason"]
    assert {"predicted_label", "predicted_prob", "strategy", "difficulty"} <= set(queue.columns)
    assert len(queue) == 25 and list(queue["rank"]) == list(range(1, 26))
    assert queue["priority"].is_monotonic_decreasing
    labeled_ids = set(table.loc[table["label"] != "", "id"])
    assert not labeled_ids & set(queue["id"])
    assert len({"item-420", "item-421"} & set(queue["id"])) == 1
    assert "item-430" not in set(queue["id"])
    row = queue[queue["id"].isin(["item-420", "item-421"])].iloc[0]
    assert row["reason"] == "margin 0.00 between cat/dog"
    assert row["difficulty"] == "hard"
    assert result.summary["label_next_budget"] == 25
    assert result.summary["label_next_count"] == 25


def test_auto_label_candidates_are_confident_unlabeled_items_with_estimated_precision(audited):
    report, table = audited
    result = report.results["label_next"]
    auto = result.tables["auto_label"]
    queue_ids = set(result.tables["queue"]["id"])
    labeled_ids = set(table.loc[table["label"] != "", "id"])
    assert result.summary["auto_label_count"] == len(auto) > 0
    assert not (set(auto["id"]) & (queue_ids | labeled_ids))
    assert auto["predicted_prob"].min() >= result.params["auto_label_threshold"]
    assert result.summary["auto_label_estimated_precision"] >= report.config.auto_label_precision


def test_label_next_csv_starts_with_rank_id_priority_reason(audited, tmp_path):
    from dataaudit.render.csv import EXPORTS, write_csv

    report, _ = audited
    for name in ("label_next.csv", "auto_label.csv"):
        write_csv(EXPORTS[name](report), tmp_path / name)
    header = (tmp_path / "label_next.csv").read_text().splitlines()[0].split(",")
    assert header[:8] == [
        "rank",
        "id",
        "priority",
        "reason",
        "predicted_label",
        "predicted_prob",
        "strategy",
        "difficulty",
    ]
    auto = pd.read_csv(tmp_path / "auto_label.csv")
    assert list(auto["rank"]) == list(range(1, len(auto) + 1))


def test_mix_queues_the_look_alike_of_a_label_error_and_names_it(audited):
    report, _ = audited
    queue = report.results["label_next"].tables["queue"]
    row = queue[queue["strategy"] == "lookalike"]
    assert list(row["id"]) == ["item-440"]
    assert row["reason"].iloc[0].startswith("near label error #item-10 (similarity 0.9")


def test_report_section_shows_the_budget_split_and_the_queue_items(audited):
    from dataaudit.render.sections.label_next import build

    report, _ = audited
    (section,) = build(report)
    tables = {b.title: b for b in section.blocks if hasattr(b, "export")}
    assert tables["Queue"].export == "label_next.csv"
    assert tables["Queue"].total_rows == 25
    assert any(c.key == "id" and c.kind == "item" for c in tables["Queue"].columns)
    assert tables["Auto-label candidates"].export == "auto_label.csv"
    assert any("mix weights" in n for n in section.notes)


def test_cli_budget_and_strategy_reach_the_config():
    from dataaudit.cli import _config_options, build_parser

    args = build_parser().parse_args(
        ["demo", "--budget", "7", "--strategy", "entropy", "--label-next-mix", "uncertainty:1"]
    )
    options = _config_options(args)
    assert options["budget"] == 7 and options["strategy"] == "entropy"
    assert options["label_next_mix"] == "uncertainty:1"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--strategy", "smart"])


def test_analysis_fills_the_ood_quota_from_the_outliers_result():
    from dataaudit.analyses import label_next
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.result import AnalysisResult
    from dataaudit.validate import load_dataset

    probs, labels, emb = _pool(n=400, n_labeled=250, seed=6)
    classes = ["cat", "dog", "fox", "owl"]
    ids = [f"item-{i}" for i in range(len(labels))]
    table = pd.DataFrame(
        {
            "id": ids,
            "label": [classes[c] if c >= 0 else "" for c in labels],
            "split": np.where(labels >= 0, "train", "production"),
        }
    )
    config = AuditConfig(
        classes=tuple(classes), budget=40, label_next_mix="uncertainty:0.9,ood:0.1"
    )
    data = load_dataset(table, probs, emb, config)
    ood = np.random.default_rng(0).uniform(0, 0.2, 150)
    ood[[7, 70]] = [0.99, 0.95]  # production rows 257 and 320
    ctx = AuditContext(config)
    ctx.record(
        AnalysisResult(
            "outliers", tables={"items": pd.DataFrame({"id": ids[250:], "ood_score": ood})}
        )
    )
    result = label_next.run(data, ctx, config)
    queue = result.tables["queue"]
    picked = queue[queue["strategy"] == "ood"]
    assert len(picked) == 4
    assert {"item-257", "item-320"} <= set(picked["id"])
    assert picked.set_index("id").loc["item-257", "reason"] == "OOD vs train (score 0.99)"
    assert len(queue) == 40


# -- the engine form -----------------------------------------------------------------------------


def _engine_results(planted, chunk_rows: int, **options) -> dict:
    """label_errors in process, then outliers, label_next and the embedding map in engine form
    over chunks of `chunk_rows` rows."""
    from dataaudit.analyses import embedding_map, label_errors, label_next, outliers
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.engine.inprocess import InProcessEngine
    from dataaudit.validate import load_dataset

    config = AuditConfig(classes=planted.classes, **options)
    data = load_dataset(planted.table, planted.probs, planted.embeddings, config)
    ctx = AuditContext(config)
    ctx.record(label_errors.run(data, ctx, config))
    for module in (outliers, label_next, embedding_map):
        ctx.record(module.run_on(InProcessEngine(data, chunk_rows=chunk_rows), ctx, config))
    return ctx.results


def test_engine_form_queue_finds_the_planted_items_whatever_the_chunking():
    from _planted_queue import planted_queue

    planted = planted_queue()
    options = dict(budget=60, label_next_mix="uncertainty:0.8,ood:0.1,lookalike:0.1")
    reference = _engine_results(planted, 100_000, **options)
    queue = reference["label_next"].table("queue")
    assert len(queue) == 60
    ids = set(queue["id"])
    for group in planted.duplicate_groups:
        assert len(group & ids) == 1  # each near-duplicate group is worth one label
    ood = queue[queue["strategy"] == "ood"]
    assert len(ood) >= 6 and set(ood["id"]) <= planted.ood_ids
    look = queue[queue["strategy"] == "lookalike"]
    assert planted.lookalike_id in set(look["id"])
    assert (
        look.set_index("id").loc[planted.lookalike_id, "reason"].startswith("near label error #q-3")
    )
    for chunk_rows in (97, 1000):
        ours = _engine_results(planted, chunk_rows, **options)
        for name, table in (("label_next", "queue"), ("label_next", "auto_label")):
            pd.testing.assert_frame_equal(ours[name].table(table), reference[name].table(table))
        assert ours["label_next"].summary == reference["label_next"].summary


def test_a_pool_exhausted_by_near_duplicates_is_fetched_again(monkeypatch):
    from dataaudit.analyses import label_next_select

    probs, labels, emb = _pool()
    # 40 copies of row 300, all more uncertain than anything else: more than the first pool.
    emb[301:340] = emb[300]
    for row in range(300, 340):
        _plant_tie(probs, row)
    queue = select_queue(probs, labels, budget=5, strategy="margin", embeddings=emb)
    assert label_next_select.POOL_FACTOR * 5 + 8 < 40
    assert len(queue.rows) == 5 and len(set(queue.rows.tolist()) & set(range(300, 340))) == 1
    monkeypatch.setattr(label_next_select, "POOL_FACTOR", 1000)
    whole = select_queue(probs, labels, budget=5, strategy="margin", embeddings=emb)
    assert whole.rows.tolist() == queue.rows.tolist()
