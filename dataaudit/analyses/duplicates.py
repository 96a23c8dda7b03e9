"""Duplicates, cross-split leakage and conflicting labels.

Finds groups of items that are the same or nearly the same:
- exact duplicates share a 64-bit hash of their embedding bytes, or of their text, or of their
  image file's content (when those columns exist), or have embeddings equal up to float32
  rounding (cosine >= 1 - 1e-6 in the kNN graph: the same input embedded in another batch);
- near duplicates are pairs in the run's shared kNN graph whose cosine similarity is at least
  `config.near_duplicate_similarity` (default 0.98).
A group is a connected component over all those pairs, so near duplicates chain: A~B and B~C
put A, B, C in one group even if A and C are less similar. Each item sees only its k nearest
neighbours (`config.knn_k`), which is enough to link every member of a larger group by chaining.

A group *leaks* when its members sit in more than one split (train and test, say); it has
*conflicting labels* when its labeled members carry different labels.

Inputs: embeddings (text and image paths used when present).
Tables:
- "items":   one row per grouped item: group_id, id, split, given_label, similarity (cosine to
             the group's first member), exact (shares a hash with another member), group_size,
             leaks, conflicting_labels. Ranked by group size, leaking groups first.
- "groups":  group_id, size, first_id, n_exact, splits, labels, leaks, conflicting_labels.
- "leakage": split_a, split_b, n_groups, n_items (members of those groups in either split).
Summary: n_duplicate_groups, n_duplicate_items, n_exact_duplicate_groups, leakage (number of
groups spanning two or more splits), n_leaking_items, leakage_<a>_<b> per split pair,
n_conflicting_label_groups, n_conflicting_label_items.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import UNLABELED, AuditDataset
from dataaudit.neighbors import (
    exact_groups,
    hash_files,
    hash_rows,
    hash_strings,
    normalize,
    shared_graph,
)
from dataaudit.result import Analysis, AnalysisResult

# Cosine at or above which two embeddings are the same vector up to float32 rounding.
IDENTICAL_SIMILARITY = 1 - 1e-6


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    graph = shared_graph(data, ctx)
    exact = [exact_groups(hash_rows(data.embeddings))]
    if data.text is not None:
        texts = np.asarray(data.text, dtype=object)
        exact.append(exact_groups(hash_strings(texts), valid=~pd.isna(texts)))
    if data.image_paths is not None:
        file_hashes = hash_files(data.image_paths, progress=ctx.progress)
        exact.append(exact_groups(file_hashes, valid=file_hashes != 0))
    near_a, near_b = near_pairs(graph.similarities, graph.indices, config.near_duplicate_similarity)
    exact_a, exact_b = pairs_from_groups(exact)
    # Embeddings of one input computed in different batches or rows differ in the last bits
    # (BLAS kernels block rows differently), so equal bytes alone would miss such copies.
    same_a, same_b = near_pairs(graph.similarities, graph.indices, IDENTICAL_SIMILARITY)
    exact_a, exact_b = np.r_[exact_a, same_a], np.r_[exact_b, same_b]
    group = components(data.n, np.r_[exact_a, near_a], np.r_[exact_b, near_b])
    exact_group = components(data.n, exact_a, exact_b)

    items, groups, leakage = describe_groups(
        group,
        exact_member=exact_group >= 0,
        ids=data.ids,
        splits=np.asarray(data.splits, dtype=object),
        labels=data.labels,
        label_names=data.label_names(data.labels),
        embeddings=data.embeddings,
    )
    summary = {
        "n_duplicate_groups": len(groups),
        "n_duplicate_items": len(items),
        "n_exact_duplicate_groups": int(exact_group.max() + 1) if len(exact_group) else 0,
        "leakage": int(groups["leaks"].sum()),
        "n_leaking_items": int(items["leaks"].sum()),
        "n_conflicting_label_groups": int(groups["conflicting_labels"].sum()),
        "n_conflicting_label_items": int(items["conflicting_labels"].sum()),
    }
    for row in leakage.itertuples():
        summary[f"leakage_{_key(row.split_a)}_{_key(row.split_b)}"] = int(row.n_groups)
    notes = [
        f"Near duplicates: cosine similarity >= {config.near_duplicate_similarity:g} between an "
        f"item and one of its {graph.k} nearest neighbours ({graph.method} search); groups chain "
        "such pairs. Exact duplicates: equal embeddings (same bytes, or cosine >= 1 - 1e-6, "
        "which is float rounding)"
        + (", equal text" if data.text is not None else "")
        + (", equal image file content" if data.image_paths is not None else "")
        + ".",
        "leakage counts duplicate groups whose members sit in two or more splits.",
    ]
    if graph.recall_at_k is not None:
        notes.append(
            f"Approximate kNN search: recall@{graph.k} {graph.recall_at_k:.3f} measured on a sample."
        )
    return AnalysisResult(
        name="duplicates",
        tables={"items": items, "groups": groups, "leakage": leakage},
        summary=summary,
        params={
            "near_duplicate_similarity": config.near_duplicate_similarity,
            "knn_k": graph.k,
            "knn_method": graph.method,
            "knn_recall_at_k": graph.recall_at_k,
        },
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="duplicates",
    title="Duplicates, leakage and conflicting labels",
    run=run,
    requires=("embeddings",),
)


# -- pure helpers on arrays ---------------------------------------------------------------------
def near_pairs(
    similarities: NDArray[np.float32], indices: NDArray[np.int64], threshold: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """(row a, row b) for every kNN edge with similarity >= threshold (each edge once, a < b)."""
    rows, slot = np.nonzero((similarities >= threshold) & (indices >= 0))
    a, b = rows.astype(np.int64), indices[rows, slot]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    return lo[keep], hi[keep]


def pairs_from_groups(
    group_arrays: list[NDArray[np.int64]],
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Edges linking every member of each hash group to the group's first row."""
    a_parts, b_parts = [], []
    for groups in group_arrays:
        rows = np.flatnonzero(groups >= 0)
        if len(rows) == 0:
            continue
        first = np.full(groups.max() + 1, -1, dtype=np.int64)
        first[groups[rows][::-1]] = rows[::-1]  # the smallest row of each group wins
        a_parts.append(first[groups[rows]])
        b_parts.append(rows)
    if not a_parts:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(a_parts), np.concatenate(b_parts)


def components(n: int, a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
    """Group number per row (connected components of the pairs); -1 for rows in no pair.

    Groups are numbered 0.. by their first row.
    """
    out = np.full(n, -1, dtype=np.int64)
    if len(a) == 0:
        return out
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    sizes = np.bincount(comp)
    grouped = sizes[comp] > 1
    rows = np.flatnonzero(grouped)
    _, first_pos, inverse = np.unique(comp[rows], return_index=True, return_inverse=True)
    rank = np.empty(len(first_pos), dtype=np.int64)
    rank[np.argsort(first_pos, kind="stable")] = np.arange(len(first_pos))
    out[rows] = rank[inverse]
    return out


def describe_groups(
    group: NDArray[np.int64],
    *,
    exact_member: NDArray[np.bool_],
    ids: NDArray,
    splits: NDArray,
    labels: NDArray[np.int64],
    label_names: NDArray,
    embeddings: NDArray,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Items, groups and per-split-pair leakage tables for a group assignment (see module doc)."""
    rows = np.flatnonzero(group >= 0)
    g = group[rows]
    n_groups = int(g.max() + 1) if len(g) else 0
    first = np.full(n_groups, -1, dtype=np.int64)
    first[g[::-1]] = rows[::-1]
    vectors = normalize(embeddings[rows])
    similarity = np.einsum("ij,ij->i", vectors, normalize(embeddings[first[g]]))

    split_codes, split_names = pd.factorize(pd.Series(splits[rows], dtype=object), sort=True)
    per_split = np.zeros((n_groups, len(split_names)), dtype=np.int64)
    np.add.at(per_split, (g, split_codes), 1)
    leaks = (per_split > 0).sum(axis=1) > 1

    lab = labels[rows]
    labeled = lab != UNLABELED
    # Distinct labels per group: count unique (group, label) pairs among labeled members.
    pairs = np.unique(np.stack([g[labeled], lab[labeled]], axis=1), axis=0)
    n_labels = (
        np.bincount(pairs[:, 0], minlength=n_groups) if len(pairs) else np.zeros(n_groups, np.int64)
    )
    conflicting = n_labels > 1

    size = np.bincount(g, minlength=n_groups)
    items = pd.DataFrame(
        {
            "group_id": g,
            "id": ids[rows],
            "split": splits[rows],
            "given_label": label_names[rows],
            "similarity": np.clip(similarity, -1, 1).astype(np.float32),
            "exact": exact_member[rows],
            "group_size": size[g],
            "leaks": leaks[g],
            "conflicting_labels": conflicting[g],
        }
    )
    items["_first"] = rows == first[g]
    items = items.sort_values(
        ["leaks", "group_size", "group_id", "_first", "similarity"],
        ascending=[False, False, True, False, False],
        kind="stable",
    ).drop(columns="_first")
    items = items.reset_index(drop=True)

    group_labels = (
        pd.DataFrame({"g": g[labeled], "label": label_names[rows][labeled]})
        .drop_duplicates()
        .sort_values(["g", "label"])
        .groupby("g")["label"]
        .agg(", ".join)
        .reindex(range(n_groups), fill_value="")
    )
    names = np.asarray(split_names, dtype=object)
    split_text = [", ".join(names[per_split[i] > 0]) for i in range(n_groups)]
    groups = pd.DataFrame(
        {
            "group_id": np.arange(n_groups),
            "size": size,
            "first_id": ids[first] if n_groups else np.empty(0, dtype=ids.dtype),
            "n_exact": np.bincount(g, weights=exact_member[rows], minlength=n_groups).astype(
                np.int64
            ),
            "splits": split_text,
            "labels": group_labels.to_numpy(dtype=object),
            "leaks": leaks,
            "conflicting_labels": conflicting,
        }
    ).sort_values(["leaks", "size", "group_id"], ascending=[False, False, True], kind="stable")

    leak_rows = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            both = (per_split[:, i] > 0) & (per_split[:, j] > 0)
            if both.any():
                leak_rows.append(
                    {
                        "split_a": names[i],
                        "split_b": names[j],
                        "n_groups": int(both.sum()),
                        "n_items": int((per_split[both, i] + per_split[both, j]).sum()),
                    }
                )
    leakage = pd.DataFrame(leak_rows, columns=["split_a", "split_b", "n_groups", "n_items"])
    # Train first in each pair, as people read it ("train <-> test").
    swap = (leakage["split_b"] == "train") & (leakage["split_a"] != "train")
    leakage.loc[swap, ["split_a", "split_b"]] = leakage.loc[swap, ["split_b", "split_a"]].to_numpy()
    leakage = leakage.sort_values("n_groups", ascending=False, kind="stable").reset_index(drop=True)
    return items, groups.reset_index(drop=True), leakage


def _key(name: object) -> str:
    """A split name as a snake_case fragment of a summary key."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_") or "blank"
