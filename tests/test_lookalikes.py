from __future__ import annotations

import numpy as np
import pandas as pd

from dataaudit.analyses.lookalikes import failure_rows, lookalike_pairs
from dataaudit.neighbors import knn
from dataaudit.result import AnalysisResult


def test_failures_are_label_errors_first_then_misclassified_by_confidence():
    ids = np.array(["a", "b", "c", "d", "e"], dtype=object)
    labels = np.array([0, 1, 0, -1, 1])
    predicted = np.array([1, 1, 1, 0, 0])
    probs = np.array([[0.1, 0.9], [0.2, 0.8], [0.4, 0.6], [0.9, 0.1], [0.95, 0.05]])
    errors = AnalysisResult(
        "label_errors",
        tables={
            "items": pd.DataFrame(
                {
                    "id": ["c", "a", "b"],
                    "is_label_error": [True, False, False],
                    "error_score": [0.9, 0.1, 0.0],
                }
            )
        },
    )
    rows, kind = failure_rows(ids, labels, predicted, probs, errors)
    assert rows.tolist() == [2, 4, 0]  # c (flagged), then e (0.95), a (0.9); d is unlabeled
    assert kind.tolist() == ["label error", "misclassified", "misclassified"]
    rows, _ = failure_rows(ids, labels, predicted, probs, None)  # label_errors missing: still works
    assert rows.tolist() == [4, 0, 2]


def test_nearest_unlabeled_items_of_a_failure_are_its_planted_look_alikes():
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((500, 8)).astype(np.float32)
    pool = np.arange(100, 500)
    failures = np.array([3, 7])
    emb[[200, 201, 202]] = emb[3] + 0.01 * rng.standard_normal((3, 8))
    emb[[450, 451, 452]] = emb[7] + 0.01 * rng.standard_normal((3, 8))
    sims, found = knn(emb[failures], emb[pool], k=3)
    ids = np.array([f"i{i}" for i in range(500)], dtype=object)
    pairs = lookalike_pairs(
        failures,
        np.array(["label error", "misclassified"], dtype=object),
        sims,
        found,
        pool,
        ids=ids,
        given=ids,
        predicted=ids,
    )
    got = pairs.groupby("id_a")["id_b"].apply(set).to_dict()
    assert got == {"i3": {"i200", "i201", "i202"}, "i7": {"i450", "i451", "i452"}}
    assert (pairs["similarity"] > 0.99).all() and pairs["rank"].tolist() == [1, 2, 3] * 2


def test_demo_lookalikes_are_unlabeled_and_start_from_failures(demo_report, demo_inputs):
    result = demo_report.results["lookalikes"]
    pairs = result.table("pairs")
    assert len(pairs) > 0
    table = demo_inputs.table.set_index("id")
    unlabeled = table["label"].isna() | (table["label"].astype(str) == "")
    assert unlabeled.loc[pairs["id_b"]].all()
    flagged = demo_report.results["label_errors"].table("items")
    flagged_ids = set(flagged.loc[flagged["is_label_error"], "id"])
    assert flagged_ids <= set(pairs["id_a"])
    assert np.all(np.diff(pairs.groupby("id_a", sort=False)["similarity"].apply(list).iloc[0]) <= 0)


def test_lookalikes_do_not_depend_on_how_rows_are_chunked(demo_report, demo_inputs):
    from dataaudit.analyses import lookalikes
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.engine.inprocess import InProcessEngine
    from dataaudit.validate import load_dataset

    config = AuditConfig(classes=tuple(demo_inputs.classes))
    data = load_dataset(demo_inputs.table, demo_inputs.probs, demo_inputs.embeddings, config)
    ctx = AuditContext(config)
    ctx.record(demo_report.results["label_errors"])
    reference = demo_report.results["lookalikes"]
    for chunk_rows in (61, 500):
        ours = lookalikes.run_on(InProcessEngine(data, chunk_rows), ctx, config)
        assert ours.summary == reference.summary
        pd.testing.assert_frame_equal(ours.table("pairs"), reference.table("pairs"))
