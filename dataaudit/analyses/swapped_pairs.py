"""Swapped class pairs: which two classes the given labels confuse most.

Requires: probs, labels; reads the "label_errors" result (its flags and suggested labels).

The joint distribution of given and true labels is estimated as cleanlab's
`find_overlapping_classes` does (the calibrated confident joint over labeled items; equal to
cleanlab's within 1/N in a test); a pair's joint probability is the estimated
share of items whose label is one class of the pair while the item is the other, both directions
summed. Pairs are ranked by it. For each pair we also count the flagged label errors in each
direction and list example ids, the most likely errors first, so a reviewer can look at them.

Table "pairs" (one row per class pair with joint_probability > 0, at most config.swapped_pairs_top):
class_a, class_b, joint_probability, n_overlapping (cleanlab's estimated number of items),
n_given_a_suggested_b, n_given_b_suggested_a (flagged label errors), example_ids ("; "-joined ids,
up to config.examples_per_pair).
Summary: n_confused_pairs, top_pair ("a / b"), top_pair_joint_probability.

Engine form (`run_on`, any dataaudit.engine): one kernel per chunk; joint and counts are sums,
the examples exact per-pair top-k lists merged (dataaudit.engine.select_top).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.analyses.label_errors import (
    class_thresholds,
    confident_guess,
    confident_joint_counts,
)
from dataaudit.analyses.label_errors_chunks import scores_of
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, Engine, select_top
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.result import Analysis, AnalysisResult

PAIR_COLUMNS = (
    "class_a",
    "class_b",
    "joint_probability",
    "n_overlapping",
    "n_given_a_suggested_b",
    "n_given_b_suggested_a",
    "example_ids",
)

NOTE = " ".join(
    (
        "Pairs are ranked by cleanlab's estimated joint probability of given and true label,",
        "both directions summed; the counts are flagged label errors in each direction.",
    )
)


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    """One map/reduce: per chunk the confident joint (with label_errors' class thresholds), the
    label counts, the flagged (given, suggested) counts and each pair's best examples; summed,
    and the examples merged as exact per-pair top-k lists."""
    classes = engine.classes
    k = len(classes)
    label_errors = ctx.results["label_errors"]
    thresholds = np.asarray(label_errors.params["class_thresholds"], dtype=np.float64)
    scores = scores_of(label_errors, classes)
    per_pair = max(0, int(config.examples_per_pair))
    joint_counts, label_counts, flagged, examples = engine.map_reduce(
        _pair_partials, functools.partial(_combine, per_pair), scores, thresholds, k, per_pair
    )
    class_a, class_b, joint = overlapping_classes(joint_counts, label_counts)
    pairs = pairs_frame(
        class_a,
        class_b,
        joint,
        np.round(joint * int(label_counts.sum())).astype(int),
        flagged,
        _joined_examples(examples),
        classes,
        top=config.swapped_pairs_top,
    )
    top = pairs.iloc[0] if len(pairs) else None
    return AnalysisResult(
        name="swapped_pairs",
        tables={"pairs": pairs},
        summary={
            "n_confused_pairs": len(pairs),
            "top_pair": f"{top['class_a']} / {top['class_b']}" if top is not None else "",
            "top_pair_joint_probability": float(top["joint_probability"])
            if top is not None
            else 0.0,
        },
        params={
            "swapped_pairs_top": config.swapped_pairs_top,
            "examples_per_pair": config.examples_per_pair,
        },
        notes=(NOTE,),
    )


ANALYSIS = Analysis(
    name="swapped_pairs",
    title="Swapped class pairs",
    run=run,
    requires=("probs", "labels"),
    after=("label_errors",),
)


# -- kernels and their reduction ------------------------------------------------------------------
def _pair_partials(chunk: Chunk, scores, thresholds: NDArray, k: int, per_pair: int):
    s = scores(chunk)
    rows = s["rows"]
    labels = chunk.labels[rows]
    probs = np.asarray(chunk.probs[rows], dtype=np.float32)
    joint = confident_joint_counts(confident_guess(probs, thresholds), labels, k)
    flag = s["is_label_error"]
    given, suggested = labels[flag], np.asarray(s["suggested"])[flag]
    flagged = np.bincount(given * k + suggested, minlength=k * k).reshape(k, k)
    candidates = pd.DataFrame(
        {
            "pair": np.minimum(given, suggested) * k + np.maximum(given, suggested),
            "error_score": np.asarray(s["error_score"])[flag],
            "pos": chunk.pos[rows][flag],
            "id": chunk.ids[rows][flag],
        }
    )
    examples = select_top(candidates, per_pair, "error_score", group="pair")
    return joint, np.bincount(labels, minlength=k), flagged, examples


def _combine(per_pair: int, a, b):
    examples = pd.concat([a[3], b[3]], ignore_index=True)
    return (
        a[0] + b[0],
        a[1] + b[1],
        a[2] + b[2],
        select_top(examples, per_pair, "error_score", group="pair"),
    )


def _joined_examples(examples: pd.DataFrame) -> dict[int, str]:
    """pair key -> '; '-joined ids, ranked (select_top's order)."""
    return {
        int(pair): "; ".join(map(str, group["id"]))
        for pair, group in examples.groupby("pair", sort=False)
    }


# -- pure helpers ------------------------------------------------------------------------------


def pairs_frame(
    class_a: NDArray[np.int64],
    class_b: NDArray[np.int64],
    joint_probability: NDArray[np.float64],
    n_overlapping: NDArray[np.int64],
    flagged: NDArray[np.int64],
    examples: dict[int, str],
    classes: tuple[str, ...],
    *,
    top: int,
) -> pd.DataFrame:
    """The "pairs" table: pair estimates, flagged[given, suggested] counts (K x K) and example ids
    by unordered pair key min(a, b) * K + max(a, b)."""
    k = len(classes)
    order = np.argsort(-joint_probability, kind="stable")
    keep = order[joint_probability[order] > 0][:top]
    a, b = class_a[keep], class_b[keep]
    names = np.asarray(classes, dtype=object)
    keys = np.minimum(a, b) * k + np.maximum(a, b)
    pairs = pd.DataFrame(
        {
            "class_a": names[a],
            "class_b": names[b],
            "joint_probability": joint_probability[keep].astype(np.float64),
            "n_overlapping": n_overlapping[keep].astype(np.int64),
            "n_given_a_suggested_b": flagged[a, b].astype(np.int64),
            "n_given_b_suggested_a": flagged[b, a].astype(np.int64),
            "example_ids": np.array([examples.get(int(key), "") for key in keys], dtype=object),
        }
    )
    return pairs.loc[:, list(PAIR_COLUMNS)].reset_index(drop=True)


def pair_table(
    class_a: NDArray[np.int64],
    class_b: NDArray[np.int64],
    joint_probability: NDArray[np.float64],
    n_overlapping: NDArray[np.int64],
    items: pd.DataFrame,
    classes: tuple[str, ...],
    *,
    top: int,
    examples_per_pair: int,
) -> pd.DataFrame:
    """pairs_frame from a label-error items table (id, given_label, suggested_label,
    is_label_error, error_score; class names), as the in-memory result holds it."""
    k = len(classes)
    flagged = items.loc[items["is_label_error"].to_numpy(bool)].reset_index(drop=True)
    index = pd.Index(classes)
    given = index.get_indexer(flagged["given_label"].astype(str))
    suggested = index.get_indexer(flagged["suggested_label"].astype(str))
    counts = np.bincount(given * k + suggested, minlength=k * k).reshape(k, k)
    candidates = pd.DataFrame(
        {
            "pair": np.minimum(given, suggested) * k + np.maximum(given, suggested),
            "error_score": flagged["error_score"].to_numpy(),
            "pos": np.arange(len(flagged)),
            "id": flagged["id"].to_numpy(),
        }
    )
    examples = select_top(candidates, max(0, examples_per_pair), "error_score", group="pair")
    return pairs_frame(
        class_a,
        class_b,
        joint_probability,
        n_overlapping,
        counts,
        _joined_examples(examples),
        classes,
        top=top,
    )


def confident_joint(
    probs: NDArray, rows: NDArray[np.int64], labels: NDArray[np.int64], k: int
) -> NDArray[np.int64]:
    """cleanlab's (uncalibrated) confident joint of the labeled rows, from the same helpers as the
    label-error flag (equal to cleanlab.count.compute_confident_joint in a test)."""
    probs = np.asarray(probs[rows], dtype=np.float32)
    given = probs[np.arange(len(rows)), labels]
    thresholds = class_thresholds(given, labels, k)
    return confident_joint_counts(confident_guess(probs, thresholds), labels, k)


def overlapping_classes(
    confident_joint: NDArray[np.int64], label_counts: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
    """Class pairs (a < b) by estimated joint probability of swaps in either direction, largest first.

    cleanlab's find_overlapping_classes(asymmetric=False): each row of the confident joint is
    calibrated to its class's label count, the result normalised to a joint distribution, and
    the two directions of a pair summed. cleanlab also rounds the calibrated counts to integers
    first, which moves a joint by less than 1/N; importing cleanlab for that costs ~1.3 s a run.
    """
    rows = confident_joint.sum(axis=1, keepdims=True).astype(np.float64)
    calibrated = confident_joint / np.maximum(rows, 1e-12) * label_counts[:, None]
    joint = calibrated / max(calibrated.sum(), 1e-12)
    a, b = np.triu_indices(len(joint), k=1)
    both = joint[a, b] + joint[b, a]
    order = np.argsort(-both, kind="stable")
    return a[order], b[order], both[order]
