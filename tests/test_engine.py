"""The engine protocol: exact top-k merges, and analyses that do not depend on how rows are chunked."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pandas as pd
import pytest
from _planted_labels import planted_data, planted_dataset

from dataaudit.analyses import label_errors, label_errors_chunks, per_class, swapped_pairs
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.engine import add, top_k
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.neighbors import exact_groups, hash_rows


@functools.cache
def _planted():
    return planted_dataset(planted_data())


def _scores(chunk):
    # Few distinct values: many ties, which must break by table position.
    return pd.DataFrame(
        {
            "pos": chunk.pos,
            "score": np.round(chunk.probs[:, 0], 1),
            "group": chunk.labels % 3,
        }
    )


@pytest.mark.parametrize("chunk_rows", [7, 64, 5000])
def test_top_k_over_chunks_equals_a_stable_sort_of_all_rows(chunk_rows):
    data = _planted()
    engine = InProcessEngine(data, chunk_rows=chunk_rows)
    score = np.round(data.probs[:, 0], 1)
    expected = np.argsort(-score.astype(np.float64), kind="stable")[:25]
    found = top_k(engine, _scores, 25, "score")
    assert found["pos"].tolist() == expected.tolist()

    per_group = top_k(engine, _scores, 4, "score", group="group")
    for g, rows in per_group.groupby("group"):
        in_group = np.flatnonzero(data.labels % 3 == g)
        best = in_group[np.argsort(-score[in_group].astype(np.float64), kind="stable")[:4]]
        assert rows["pos"].tolist() == best.tolist()


def test_add_sums_tuples_and_dicts_elementwise():
    a = (np.array([1, 2]), {"x": 1, "y": np.array([1])})
    b = (np.array([3, 4]), {"y": np.array([2]), "z": 5})
    total = add(a, b)
    assert total[0].tolist() == [4, 6]
    assert total[1]["x"] == 1 and total[1]["y"].tolist() == [3] and total[1]["z"] == 5


def _engine_form_run(data, chunk_rows, config):
    ctx = AuditContext(config)
    engine = InProcessEngine(data, chunk_rows=chunk_rows)
    results = {}
    for module in (label_errors_chunks, per_class, swapped_pairs):
        result = module.run_on(engine, ctx, config)
        ctx.record(result)
        results[result.name] = result
    return results


@pytest.mark.parametrize(
    ("label_error_score", "label_error_filter"),
    [
        ("confidence_and_neighbors", "calibrated_count"),
        ("confidence_and_neighbors", "confident_learning"),
        ("flagged_then_margin", "calibrated_count"),
    ],
)
def test_engine_forms_equal_the_in_process_analyses_whatever_the_chunking(
    label_error_score, label_error_filter
):
    data = _planted()
    config = AuditConfig(label_error_score=label_error_score, label_error_filter=label_error_filter)
    ctx = AuditContext(config)
    reference = {}
    for module in (label_errors, per_class, swapped_pairs):
        result = module.run(data, ctx, config)
        ctx.record(result)
        reference[result.name] = result
    assert reference["label_errors"].summary["n_label_errors"] > 0
    items = (
        reference["label_errors"]
        .table("items")
        .sort_values("error_score", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    for chunk_rows in (97, 400, 10_000):
        ours = _engine_form_run(data, chunk_rows, config)
        for name, result in reference.items():
            assert ours[name].summary == result.summary, (name, chunk_rows)
        pd.testing.assert_frame_equal(ours["label_errors"].table("items"), items)
        for name, table in (("per_class", "classes"), ("swapped_pairs", "pairs")):
            pd.testing.assert_frame_equal(ours[name].table(table), reference[name].table(table))


def test_engine_form_refuses_cleanlab_filters_it_cannot_chunk():
    data = _planted()
    config = AuditConfig(label_error_filter="prune_by_noise_rate")
    assert "prune_by_noise_rate" in label_errors_chunks.unsupported(config)
    with pytest.raises(ValueError, match="prune_by_noise_rate"):
        label_errors_chunks.run_on(InProcessEngine(data), AuditContext(config), config)


def _rounded_probs_key(chunk):
    # Rounded probabilities: many rows share a key, across chunk boundaries.
    return pd.DataFrame(
        {"key": hash_rows(np.round(chunk.probs[:, :2], 1)), "pos": chunk.pos, "x": 1}
    )


def _shared_keys(frame):
    shared = frame[frame.duplicated("key", keep=False)]
    return shared.groupby("key", as_index=False).agg(first=("pos", "min"), size=("pos", "size"))


@pytest.mark.parametrize("chunk_rows", [7, 64, 5000])
def test_group_by_key_brings_equal_keys_together_whatever_the_chunking(chunk_rows):
    data = _planted()
    engine = InProcessEngine(data, chunk_rows=chunk_rows)
    found = engine.group_by_key(_rounded_probs_key, _shared_keys).sort_values("first")
    groups = exact_groups(hash_rows(np.round(data.probs[:, :2], 1)))
    rows = np.flatnonzero(groups >= 0)
    assert len(found) == groups.max() + 1 > 5
    assert found["size"].tolist() == np.bincount(groups[rows]).tolist()
    assert found["first"].tolist() == [rows[groups[rows] == g][0] for g in range(len(found))]


def test_chunks_read_the_text_column_by_role():
    data = dataclasses.replace(_planted(), text=np.array([f"t{i}" for i in range(1000)], object))
    texts = InProcessEngine(data, chunk_rows=300).map_reduce(
        lambda chunk: list(chunk.column("text")), lambda a, b: a + b
    )
    assert texts == [f"t{i}" for i in range(1000)]
    assert next(InProcessEngine(data).chunks()).column("image") is None
