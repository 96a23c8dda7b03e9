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
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.analyses.label_errors import (
    class_thresholds,
    confident_guess,
    confident_joint_counts,
)
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
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
    labeled = np.flatnonzero(data.labeled)
    labels = data.labels[labeled]
    k = len(data.classes)
    class_a, class_b, joint = overlapping_classes(
        confident_joint(data.probs, labeled, labels, k), np.bincount(labels, minlength=k)
    )
    items = ctx.results["label_errors"].table("items")
    pairs = pair_table(
        class_a,
        class_b,
        joint,
        np.round(joint * len(labeled)).astype(int),
        items,
        data.classes,
        top=config.swapped_pairs_top,
        examples_per_pair=config.examples_per_pair,
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


# -- pure helpers ------------------------------------------------------------------------------


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
    """The "pairs" table from cleanlab's pair estimates and the label-error items table.

    `items` needs id, given_label, suggested_label, is_label_error, error_score (class names).
    """
    order = np.argsort(-joint_probability, kind="stable")
    keep = order[joint_probability[order] > 0][:top]
    names = np.asarray(classes, dtype=object)
    pairs = pd.DataFrame(
        {
            "class_a": names[class_a[keep]],
            "class_b": names[class_b[keep]],
            "joint_probability": joint_probability[keep].astype(np.float64),
            "n_overlapping": n_overlapping[keep].astype(np.int64),
        }
    )
    flagged = items.loc[items["is_label_error"].to_numpy(bool)]
    counts = flagged.groupby(["given_label", "suggested_label"]).size()
    pairs["n_given_a_suggested_b"] = _lookup(counts, pairs["class_a"], pairs["class_b"])
    pairs["n_given_b_suggested_a"] = _lookup(counts, pairs["class_b"], pairs["class_a"])
    examples = example_ids(flagged, examples_per_pair)
    keys = _pair_key(pairs["class_a"], pairs["class_b"])
    # As object first: with no flagged items `examples` is empty and map() returns floats, which
    # pandas will refuse to fill with "".
    pairs["example_ids"] = keys.map(examples).astype(object).fillna("").astype(str).to_numpy()
    return pairs.loc[:, list(PAIR_COLUMNS)].reset_index(drop=True)


def example_ids(flagged: pd.DataFrame, per_pair: int) -> pd.Series:
    """'; '-joined ids of the most likely errors per unordered (given, suggested) pair."""
    if flagged.empty or per_pair <= 0:
        return pd.Series(dtype=object)
    ranked = flagged.assign(
        _key=_pair_key(flagged["given_label"], flagged["suggested_label"]).to_numpy()
    ).sort_values("error_score", ascending=False, kind="stable")
    top = ranked.groupby("_key", sort=False).head(per_pair)
    return top.groupby("_key", sort=False)["id"].agg(lambda ids: "; ".join(map(str, ids)))


def _pair_key(a: pd.Series, b: pd.Series) -> pd.Series:
    a, b = a.astype(str).to_numpy(), b.astype(str).to_numpy()
    # A separator no class name is likely to contain; order-free so both directions share a key.
    return pd.Series(np.where(a < b, a + "\x1f" + b, b + "\x1f" + a), dtype=object)


def _lookup(counts: pd.Series, given: pd.Series, suggested: pd.Series) -> NDArray[np.int64]:
    index = pd.MultiIndex.from_arrays([given.to_numpy(), suggested.to_numpy()])
    return counts.reindex(index, fill_value=0).to_numpy(dtype=np.int64)


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
