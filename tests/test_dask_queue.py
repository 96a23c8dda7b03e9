"""The label-next queue, outliers and the embedding map on a Dask LocalCluster of 2 worker
processes give the in-process results: the same queue ids in order, the same auto-label list,
the same top outliers and map points. Inputs are Parquet part files (rows in table order, so the
first parts hold no unlabeled item) and .npy files written to tmp folders.

On 2-d embeddings the near-duplicate rule's own exact Euclidean graph (at most 8 dimensions) is
built on the cluster too, so the queue is de-duplicated as in process.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _planted_queue import planted_queue

import dataaudit

pytest.importorskip("distributed")

QUEUE = ("label_errors", "outliers", "label_next", "embedding_map")
# label_errors' neighbour votes need the graph on Dask; both engines run without them.
OPTIONS = {"label_error_neighbor_weight": 0.0}


@pytest.fixture(scope="module")
def client(dask_client):
    return dask_client


def _write(planted, folder, rows_per_part: int = 300, embeddings: bool = True) -> dict:
    (folder / "table").mkdir(parents=True, exist_ok=True)
    table = planted.table
    for i, start in enumerate(range(0, len(table), rows_per_part)):
        table.iloc[start : start + rows_per_part].to_parquet(
            folder / "table" / f"part-{i:03d}.parquet", index=False
        )
    np.save(folder / "probs.npy", planted.probs)
    paths = {"table": str(folder / "table"), "probs": str(folder / "probs.npy")}
    if embeddings:
        np.save(folder / "embeddings.npy", planted.embeddings)
        paths["embeddings"] = str(folder / "embeddings.npy")
    return paths


def _both(client, planted, folder, analyses, embeddings=True, **options):
    """(in-process report, Dask report) of the same inputs and options."""
    paths = _write(planted, folder, embeddings=embeddings)
    options = {**OPTIONS, "classes": planted.classes, "analyses": analyses, **options}
    reference = dataaudit.audit(
        planted.table, planted.probs, planted.embeddings if embeddings else None, **options
    )
    ours = dataaudit.audit(
        paths["table"],
        paths["probs"],
        paths.get("embeddings"),
        engine="dask",
        client=client,
        **options,
    )
    return reference, ours


def _assert_same_queue(ours, reference) -> None:
    assert set(ours.skipped) == set(reference.skipped)
    if "label_next" not in reference.results:
        return
    for table in ("queue", "auto_label", "allocation"):
        pd.testing.assert_frame_equal(
            ours["label_next"].table(table),
            reference["label_next"].table(table),
            check_dtype=False,
        )
    assert ours["label_next"].summary == reference["label_next"].summary
    assert ours["label_next"].notes == reference["label_next"].notes


def _with_a_rare_class(planted):
    """Class c3 keeps only 5 labels: the rare quota has something to find."""
    table = planted.table.copy()
    c3 = np.flatnonzero(table["label"].to_numpy() == "c3")
    table.loc[c3[5:], "label"] = "c0"
    return type(planted)(**{**planted.__dict__, "table": table})


def test_queue_without_embeddings_on_dask_equals_in_process(client, tmp_path):
    planted = _with_a_rare_class(planted_queue())
    reference, ours = _both(
        client,
        planted,
        tmp_path,
        ("label_errors", "label_next"),
        embeddings=False,
        budget=40,
        label_next_mix="uncertainty:0.8,rare:0.2",
    )
    assert not ours.failed, ours.failed
    _assert_same_queue(ours, reference)
    queue = ours["label_next"].table("queue")
    assert len(queue) == 40 and set(queue["strategy"]) == {"margin", "rare"}
    # The planted coin flips are the most uncertain items: one of each group leads the queue.
    assert queue["id"].iloc[0] in set().union(*planted.duplicate_groups)
    assert (queue.loc[queue["strategy"] == "rare", "predicted_label"] == "c3").all()


@pytest.mark.parametrize(
    ("strategy", "budget"),
    [("margin", 1000), ("random", 25), ("entropy", 7)],
)
def test_two_classes_and_numeric_ids_on_dask_give_the_same_queue(
    client, tmp_path, strategy, budget
):
    """K=2, ids that look like numbers, a budget larger than the pool (every unlabeled item
    queued once), the seeded random control."""
    planted = planted_queue(k=2, n_production=120, n_ood=10, numeric_ids=True)
    reference, ours = _both(
        client,
        planted,
        tmp_path,
        ("label_errors", "label_next"),
        embeddings=False,
        budget=budget,
        strategy=strategy,
    )
    assert not ours.failed, ours.failed
    _assert_same_queue(ours, reference)
    queue = ours["label_next"].table("queue")
    assert len(queue) == min(budget, 120)
    assert queue["id"].is_unique


def test_no_unlabeled_items_skips_the_queue_on_both_engines(client, tmp_path):
    planted = planted_queue(n_production=0, n_ood=0)
    reference, ours = _both(client, planted, tmp_path, ("label_errors", "label_next"), False)
    assert "label_next" in reference.skipped
    assert ours.skipped["label_next"] == reference.skipped["label_next"]


@pytest.mark.parametrize("kind", ["planted", "offset", "2-d", "K=2"])
def test_queue_outliers_and_map_on_dask_equal_in_process(client, tmp_path, kind):
    planted = {
        "planted": planted_queue(),
        "offset": planted_queue(offset=5.0),
        "2-d": planted_queue(d=2),
        "K=2": planted_queue(k=2, numeric_ids=True),
    }[kind]
    reference, ours = _both(
        client,
        planted,
        tmp_path,
        QUEUE,
        budget=60,
        label_next_mix="uncertainty:0.8,ood:0.1,lookalike:0.1",
        embedding_map_points=300,
    )
    assert not reference.failed, reference.failed
    top = 100
    # The same items in the same order and flags; scores within float32 rounding of the two
    # engines' similarity searches (1 - cosine is a difference of numbers near 1 in 2-d).
    pd.testing.assert_frame_equal(
        ours["outliers"].table("items").head(top),
        reference["outliers"].table("items").head(top),
        check_exact=False,
        atol=1e-6,
    )
    assert ours["outliers"].summary == reference["outliers"].summary
    assert list(ours["embedding_map"].table("items")["id"]) == list(
        reference["embedding_map"].table("items")["id"]
    )
    # With at most 8 dimensions (2-d) the near-duplicate rule has an exact Euclidean graph of
    # its own, built on the cluster too: the queue is de-duplicated as in process.
    assert not ours["label_next"].warnings
    if kind == "2-d":
        # 2-d cosine similarities of many look-alikes tie at 1.0 within the float32 rounding of
        # the two engines' searches, so tied look-alikes may be picked in another order and the
        # picks after them differ: the same allocation, de-duplicated (one per planted group).
        pd.testing.assert_frame_equal(
            ours["label_next"].table("allocation"), reference["label_next"].table("allocation")
        )
    else:
        _assert_same_queue(ours, reference)
    if kind in ("planted", "K=2", "2-d"):
        queue = ours["label_next"].table("queue")
        ids = set(queue["id"])
        assert all(len(group & ids) == 1 for group in planted.duplicate_groups)
        assert set(queue.loc[queue["strategy"] == "ood", "id"]) <= planted.ood_ids


def _with_a_committee(planted, n_models: int = 5, seed: int = 1):
    """M models' probabilities (M x N x K, as a committee or MC-dropout passes give them): the
    planted ones with each model's logits perturbed, so the models disagree where the planted
    probabilities are flat (the coin flips)."""
    rng = np.random.default_rng(seed)
    logits = np.log(np.clip(planted.probs, 1e-6, None))
    members = logits[None] + rng.normal(scale=1.5, size=(n_models, *logits.shape))
    members = np.exp(members - members.max(axis=2, keepdims=True))
    members = (members / members.sum(axis=2, keepdims=True)).astype(np.float32)
    return type(planted)(**{**planted.__dict__, "probs": members})


@pytest.mark.parametrize("strategy", ["bald", "vote_entropy", "mix"])
def test_a_committee_on_dask_gives_the_in_process_label_errors_and_queue(
    client, tmp_path, strategy
):
    planted = _with_a_committee(planted_queue())
    reference, ours = _both(
        client,
        planted,
        tmp_path,
        ("label_errors", "label_next"),
        embeddings=False,
        budget=40,
        strategy=strategy,
    )
    assert not reference.failed and not ours.failed, ours.failed
    assert ours.dataset == reference.dataset and ours.dataset["n_models"] == 5
    errors, expected = ours["label_errors"], reference["label_errors"]
    assert errors.params["n_models_averaged"] == 5
    assert errors.summary == expected.summary and errors.notes == expected.notes
    pd.testing.assert_frame_equal(errors.table("relabel"), expected.table("relabel"))
    _assert_same_queue(ours, reference)
    queue = ours["label_next"].table("queue")
    assert len(queue) == 40
    if strategy != "mix":
        assert set(queue["strategy"]) == {strategy}


def test_a_committee_model_off_the_simplex_is_named_on_dask(client, tmp_path):
    """One model's row that does not sum to 1 is a problem even where the models' mean does."""
    planted = _with_a_committee(planted_queue())
    probs = planted.probs.copy()
    probs[0, 7] *= 1.25  # model 0's row 7 sums to 1.25, the 4 others' to 0.9375: the mean to 1
    probs[1:, 7] *= 0.9375
    assert abs(probs[:, 7].mean(axis=0).sum() - 1) < 1e-6
    paths = _write(
        type(planted)(**{**planted.__dict__, "probs": probs}), tmp_path, embeddings=False
    )
    with pytest.raises(dataaudit.InputError) as caught:
        dataaudit.audit(
            paths["table"], paths["probs"], classes=planted.classes, engine="dask", client=client
        )
    problem = next(p for p in caught.value.problems if p.code == "probs_not_normalized")
    assert problem.rows == (7,) and problem.values == ("1.25",)
    assert problem.source.endswith("part-000.parquet")
