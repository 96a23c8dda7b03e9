"""Duplicates, cross-split leakage and conflicting labels.

Finds pairs of items that are the same or nearly the same, each with a tier and a score:
- exact: the same embedding bytes, or the same embedding up to float rounding, or the same text,
  or the same image file content (when those columns exist);
- near-duplicate: the same text after normalising case, punctuation and spaces, or a pair of
  the kNN graph within the near-duplicate radius the data calibrates (dataaudit/similarity.py:
  far closer than both items' k-th neighbours, or far below the median nearest-neighbour
  distance, with thresholds shrunk in few dimensions);
- possible near-duplicate: within the wider review radius; listed for review, never grouped.
A group is a connected component over exact and near-duplicate pairs, so near duplicates chain:
A~B and B~C put A, B, C in one group even if A and C are further apart.

A group *leaks* when its members sit in more than one split (train and test, say); it has
*conflicting labels* when its labeled members carry different labels.

Inputs: embeddings (text and image paths used when present).
Tables:
- "items":   one row per grouped item: group_id, id, match_id (the member it is nearest to),
             tier and score of that pair, match (what matched: embedding, text, ...), split,
             given_label, similarity (cosine to the group's first member, on centred vectors
             when the run centred them), exact (an exact copy of another member), group_size,
             leaks, conflicting_labels. Ranked by group, leaking groups first, then larger groups.
- "review":  possible near-duplicates: id, match_id, tier, score, match, split, match_split,
             given_label, match_label, leaks (the pair spans splits), conflicting_labels;
             highest score first.
- "groups":  group_id, size, first_id, n_exact, splits, labels, leaks, conflicting_labels.
- "leakage": split_a, split_b, n_groups, n_items (members of those groups in either split).
Summary: n_duplicate_groups, n_duplicate_items, n_exact_duplicate_groups, leakage (number of
groups spanning two or more splits), n_leaking_items, leakage_<a>_<b> per split pair,
n_conflicting_label_groups, n_conflicting_label_items, n_possible_duplicate_pairs.
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
)
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.similarity import EXACT, NEAR, POSSIBLE, TIER_NAMES, near_duplicate_rule

# What made a pair match, in the order a reviewer trusts it most.
MATCHES = (
    "same embedding",
    "same text",
    "same file",
    "same text after normalising",
    "embedding distance",
)


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    rule = near_duplicate_rule(data, ctx)
    emb = data.embeddings
    # kNN pairs inside the review radius; one vector up to rounding is an exact copy.
    a, b, dist = rule.edges()
    tier, score = rule.grade(a, b, dist)
    match = np.full(len(a), MATCHES.index("embedding distance"), dtype=np.int8)
    same = rule.copies(emb, a, b, dist)
    tier[same], score[same], match[same] = EXACT, 1.0, MATCHES.index("same embedding")
    parts = [(a, b, tier, score, match)]

    hashed = [("same embedding", exact_groups(hash_rows(emb)))]
    if data.text is not None:
        texts = np.asarray(data.text, dtype=object)
        hashed.append(("same text", exact_groups(hash_strings(texts), valid=~pd.isna(texts))))
        folded = normalize_text(texts)
        hashed.append(
            (
                "same text after normalising",
                exact_groups(hash_strings(folded), valid=~pd.isna(folded)),
            )
        )
    if data.image_paths is not None:
        file_hashes = hash_files(data.image_paths, progress=ctx.progress)
        hashed.append(("same file", exact_groups(file_hashes, valid=file_hashes != 0)))
    for name, groups in hashed:
        ha, hb = pairs_from_groups([groups])
        if name == "same text after normalising":
            # Equal text after folding is a near-duplicate; the embeddings say how near.
            h_tier, h_score = rule.grade(ha, hb, rule.pair_distances(emb, ha, hb))
            h_tier = np.minimum(h_tier, NEAR)
            h_score = np.maximum(h_score, 0.5)
        else:
            h_tier, h_score = np.full(len(ha), EXACT, np.int8), np.ones(len(ha), np.float32)
        parts.append((ha, hb, h_tier, h_score, np.full(len(ha), MATCHES.index(name), np.int8)))
    pairs = best_pairs(*(np.concatenate(p) for p in zip(*parts)))

    confident = pairs[pairs["tier"] <= NEAR]
    group = components(data.n, confident["a"].to_numpy(), confident["b"].to_numpy())
    exact = pairs[pairs["tier"] == EXACT]
    exact_group = components(data.n, exact["a"].to_numpy(), exact["b"].to_numpy())
    link = best_link(data.n, confident)

    splits = np.asarray(data.splits, dtype=object)
    label_names = data.label_names(data.labels)
    vectors = emb if rule.center is None else _Centred(emb, rule.center)
    items, groups, leakage = describe_groups(
        group,
        exact_member=exact_group >= 0,
        ids=data.ids,
        splits=splits,
        labels=data.labels,
        label_names=label_names,
        embeddings=vectors,
        columns={
            "match_id": data.ids[np.maximum(link["other"], 0)],
            "tier": TIER_NAMES[link["tier"]],
            "score": link["score"],
            "match": np.asarray(MATCHES, dtype=object)[np.maximum(link["match"], 0)],
        },
    )
    review = review_pairs(
        pairs[(pairs["tier"] == POSSIBLE).to_numpy()],
        group,
        data.ids,
        splits,
        label_names,
        data.labels,
    )
    summary = {
        "n_duplicate_groups": len(groups),
        "n_duplicate_items": len(items),
        "n_exact_duplicate_groups": int(exact_group.max() + 1) if len(exact_group) else 0,
        "leakage": int(groups["leaks"].sum()),
        "n_leaking_items": int(items["leaks"].sum()),
        "n_conflicting_label_groups": int(groups["conflicting_labels"].sum()),
        "n_conflicting_label_items": int(items["conflicting_labels"].sum()),
        "n_possible_duplicate_pairs": len(review),
    }
    for row in leakage.itertuples():
        summary[f"leakage_{_key(row.split_a)}_{_key(row.split_b)}"] = int(row.n_groups)
    notes = [
        (
            f"Near-duplicate rule: {rule.describe()}. Pairs are graded exact (score 1), "
            "near-duplicate (score 0.5-1) or possible near-duplicate to review (below 0.5); "
            "only the first two form groups."
        ),
        "Exact copies: the same embedding (bytes, or up to float rounding)"
        + (", the same text" if data.text is not None else "")
        + (", the same image file content" if data.image_paths is not None else "")
        + "."
        + (
            " Texts equal after lower-casing and replacing punctuation and runs of spaces by "
            "one space are near-duplicates."
            if data.text is not None
            else ""
        ),
        "leakage counts duplicate groups whose members sit in two or more splits.",
    ]
    if rule.recall_at_k is not None:
        notes.append(
            f"Approximate kNN search: recall@{rule.k} {rule.recall_at_k:.3f} measured on a sample."
        )
    return AnalysisResult(
        name="duplicates",
        tables={"items": items, "review": review, "groups": groups, "leakage": leakage},
        summary=summary,
        params={
            "knn_k": rule.k,
            "knn_method": rule.graph_method,
            "knn_recall_at_k": rule.recall_at_k,
            **rule.params(),
        },
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="duplicates",
    title="Duplicates, leakage and conflicting labels",
    run=run,
    requires=("embeddings",),
)


class _Centred:
    """Rows of an embedding array minus a centre, read on indexing (no full copy)."""

    def __init__(self, x: NDArray, center: NDArray):
        self.x, self.center = x, center

    def __getitem__(self, rows):
        return np.asarray(self.x[rows], dtype=np.float32) - self.center


# -- pure helpers on arrays ---------------------------------------------------------------------
def normalize_text(texts: NDArray) -> NDArray:
    """Lower-case, punctuation and underscores to spaces, runs of spaces to one; '' -> missing."""
    folded = (
        pd.Series(texts, dtype=object)
        .astype("string")
        .str.lower()
        .str.replace(r"[^\w\s]|_", " ", regex=True)
        .str.replace(r"\s+", " ", regex=True)
        .str.strip()
    )
    folded = folded.mask(folded == "")
    return folded.to_numpy(dtype=object, na_value=None)


def best_pairs(a, b, tier, score, match) -> pd.DataFrame:
    """One row per unordered pair (a < b): its best tier, then highest score, then match kind."""
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    frame = pd.DataFrame({"a": lo, "b": hi, "tier": tier, "score": score, "match": match}).astype(
        {"a": np.int64, "b": np.int64, "tier": np.int8, "score": np.float32}
    )
    frame = frame[frame["a"] != frame["b"]]
    frame = frame.sort_values(
        ["tier", "score", "match"], ascending=[True, False, True], kind="stable"
    )
    return frame.drop_duplicates(["a", "b"]).reset_index(drop=True)


def best_link(n: int, pairs: pd.DataFrame) -> dict[str, NDArray]:
    """Per row, its best pair (either end): the other row (-1 = none), tier, score, match."""
    both = pd.concat(
        [
            pairs.rename(columns={"a": "row", "b": "other"}),
            pairs.rename(columns={"b": "row", "a": "other"}),
        ],
        ignore_index=True,
    ).sort_values(["tier", "score", "match"], ascending=[True, False, True], kind="stable")
    first = both.drop_duplicates("row")
    rows = first["row"].to_numpy()
    out = {
        "other": np.full(n, -1, np.int64),
        "tier": np.full(n, len(TIER_NAMES) - 1, np.int8),
        "score": np.full(n, np.nan, np.float32),
        "match": np.full(n, -1, np.int8),
    }
    for key in out:
        out[key][rows] = first[key].to_numpy()
    return out


def review_pairs(
    pairs: pd.DataFrame,
    group: NDArray[np.int64],
    ids: NDArray,
    splits: NDArray,
    label_names: NDArray,
    labels: NDArray[np.int64],
) -> pd.DataFrame:
    """Possible near-duplicates not already in one group, highest score first."""
    a, b = pairs["a"].to_numpy(), pairs["b"].to_numpy()
    fresh = (group[a] < 0) | (group[a] != group[b])
    a, b, p = a[fresh], b[fresh], pairs[fresh]
    both_labeled = (labels[a] != UNLABELED) & (labels[b] != UNLABELED)
    frame = pd.DataFrame(
        {
            "id": ids[a],
            "match_id": ids[b],
            "tier": TIER_NAMES[p["tier"].to_numpy()],
            "score": p["score"].to_numpy(np.float32),
            "match": np.asarray(MATCHES, dtype=object)[p["match"].to_numpy()],
            "split": splits[a],
            "match_split": splits[b],
            "given_label": label_names[a],
            "match_label": label_names[b],
            "leaks": splits[a] != splits[b],
            "conflicting_labels": both_labeled & (labels[a] != labels[b]),
        }
    )
    return frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


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
    columns: dict[str, NDArray] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Items, groups and per-split-pair leakage tables for a group assignment (see module doc).

    `columns` are per-row arrays (length n) added to the items table after the id.
    """
    rows = np.flatnonzero(group >= 0)
    g = group[rows]
    n_groups = int(g.max() + 1) if len(g) else 0
    first = np.full(n_groups, -1, dtype=np.int64)
    first[g[::-1]] = rows[::-1]
    vectors = normalize(embeddings[rows]) if len(rows) else np.zeros((0, 1), np.float32)
    others = normalize(embeddings[first[g]]) if len(rows) else vectors
    similarity = np.einsum("ij,ij->i", vectors, others)

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
    extra = {name: np.asarray(values)[rows] for name, values in (columns or {}).items()}
    items = pd.DataFrame(
        {
            "group_id": g,
            "id": ids[rows],
            **extra,
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
