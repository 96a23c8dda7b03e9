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

Engine form (`run_on`, any dataaudit.engine; `run` is it on an InProcessEngine): the rule and
its edges from the graph columns (similarity.rule_on / near_edges), exact groups by
engine.group_by_key, and passes over the rows the pairs name; the driver holds pairs and
grouped items, never a column of N values (see run_on). Text and image paths are read per chunk
(Chunk.column); files are hashed where the chunk is.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import UNLABELED, AuditDataset
from dataaudit.engine import Chunk, Engine, concat
from dataaudit.engine import label_names as engine_label_names
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.neighbors import hash_files, hash_rows, hash_strings, normalize
from dataaudit.problems import AuditWarning
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.similarity import (
    EXACT,
    NEAR,
    POSSIBLE,
    TIER_NAMES,
    NearDuplicateRule,
    identical,
    near_edges,
    neighbour_scales,
    rule_on,
)

# What made a pair match, in the order a reviewer trusts it most.
MATCHES = (
    "same embedding",
    "same text",
    "same file",
    "same text after normalising",
    "embedding distance",
)


# kNN pairs inside the review radius the driver collects (the closest first); beyond this a run
# on data full of copies lists the closest and says it capped.
MAX_EDGES = 1_000_000


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    """The analysis as a few engine passes; the driver holds pairs and grouped items only.

    1. the rule (`similarity.rule_on`) and the graph edges inside its review radius
       (`similarity.near_edges`, at most MAX_EDGES);
    2. exact groups by hash (embedding bytes, text, folded text, file content):
       `engine.group_by_key`, each member linked to its group's first row;
    3. the raw vectors of near-copy pairs and of folded-text pairs (a pass over wanted rows),
       so copies up to float rounding are exact and folded-text pairs get a distance;
    4. groups by union of the exact and near-duplicate pairs, on the driver;
    5. ids, splits, labels of the items named, and each member's similarity to its group's first
       member (two passes over wanted rows).
    """
    rule = rule_on(engine, ctx)
    has_text = config.columns.text is not None
    has_images = config.columns.image is not None
    with ctx.progress.step("near-duplicate pairs"):
        edges, n_candidates = near_edges(engine, rule, MAX_EDGES)
    a, b = edges["a"].to_numpy(np.int64), edges["b"].to_numpy(np.int64)
    dist = edges["distance"].to_numpy(np.float32)
    tier, score = rule.grade_for(edges["scale_a"].to_numpy(), edges["scale_b"].to_numpy(), dist)
    match = np.full(len(a), MATCHES.index("embedding distance"), dtype=np.int8)

    kinds = ["same embedding"]
    if has_text:
        kinds += ["same text", "same text after normalising"]
    if has_images:
        kinds.append("same file")
    with ctx.progress.step("exact duplicates by hash"):
        hashed = engine.group_by_key(_hash_rows, _linked_to_first, tuple(kinds))
    hashed = hashed.sort_values(["kind", "b"], kind="stable")
    folded = hashed[hashed["kind"] == MATCHES.index("same text after normalising")]
    fa, fb = folded["a"].to_numpy(np.int64), folded["b"].to_numpy(np.int64)

    # Raw vectors (and scales) of the rows step 3 needs.
    near_copy = dist <= rule.copy_distance
    wanted = np.unique(np.concatenate([a[near_copy], b[near_copy], fa, fb]))
    facts = engine.map_reduce(_facts, _concat_facts, rule, wanted, wanted)
    at = functools.partial(np.searchsorted, facts["pos"])
    vectors, scale = facts["vectors"], facts["scale"]
    same = near_copy.copy()
    if same.any():
        same[same] = identical(vectors, at(a[same]), at(b[same]))
    tier[same], score[same], match[same] = EXACT, 1.0, MATCHES.index("same embedding")
    parts = [(a, b, tier, score, match)]
    for kind in kinds:
        rows = hashed[hashed["kind"] == MATCHES.index(kind)]
        ha, hb = rows["a"].to_numpy(np.int64), rows["b"].to_numpy(np.int64)
        if kind == "same text after normalising":
            # Equal text after folding is a near-duplicate; the embeddings say how near.
            ia, ib = at(ha), at(hb)
            h_tier, h_score = rule.grade_for(
                scale[ia], scale[ib], rule.pair_distances(vectors, ia, ib)
            )
            h_tier = np.minimum(h_tier, NEAR)
            h_score = np.maximum(h_score, 0.5)
        else:
            h_tier, h_score = np.full(len(ha), EXACT, np.int8), np.ones(len(ha), np.float32)
        parts.append((ha, hb, h_tier, h_score, np.full(len(ha), MATCHES.index(kind), np.int8)))
    pairs = best_pairs(*(np.concatenate(p) for p in zip(*parts)))

    # Items named by any pair, numbered 0.. in table order (so groups number as in table order).
    nodes = np.unique(np.concatenate([pairs["a"].to_numpy(), pairs["b"].to_numpy()]))
    pairs["a"] = np.searchsorted(nodes, pairs["a"].to_numpy())
    pairs["b"] = np.searchsorted(nodes, pairs["b"].to_numpy())
    m = len(nodes)
    confident = pairs[pairs["tier"] <= NEAR]
    group = components(m, confident["a"].to_numpy(), confident["b"].to_numpy())
    exact = pairs[pairs["tier"] == EXACT]
    exact_group = components(m, exact["a"].to_numpy(), exact["b"].to_numpy())
    link = best_link(m, confident)

    grouped = np.flatnonzero(group >= 0)
    first = np.full(int(group.max() + 1) if len(grouped) else 0, -1, dtype=np.int64)
    first[group[grouped][::-1]] = grouped[::-1]
    named = engine.map_reduce(_facts, _concat_facts, rule, nodes, nodes[first])
    ids, splits, labels = named["ids"], named["splits"], named["labels"]
    similarity = np.full(m, np.nan, dtype=np.float32)
    if len(grouped):
        members = nodes[grouped]
        firsts = nodes[first[group[grouped]]]
        found = engine.map_reduce(
            _similarities, concat, rule, members, firsts, nodes[first], named["vectors"]
        ).sort_values("pos")
        similarity[grouped] = found["similarity"].to_numpy(np.float32)
    label_names = engine_label_names(engine.classes, labels)
    items, groups, leakage = describe_groups(
        group,
        exact_member=exact_group >= 0,
        ids=ids,
        splits=splits,
        labels=labels,
        label_names=label_names,
        embeddings=None,
        similarity=similarity,
        columns={
            "match_id": ids[np.maximum(link["other"], 0)],
            "tier": TIER_NAMES[link["tier"]],
            "score": link["score"],
            "match": np.asarray(MATCHES, dtype=object)[np.maximum(link["match"], 0)],
        },
    )
    review = review_pairs(
        pairs[(pairs["tier"] == POSSIBLE).to_numpy()],
        group,
        ids,
        splits,
        label_names,
        labels,
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
        + (", the same text" if has_text else "")
        + (", the same image file content" if has_images else "")
        + "."
        + (
            " Texts equal after lower-casing and replacing punctuation and runs of spaces by "
            "one space are near-duplicates."
            if has_text
            else ""
        ),
        "leakage counts duplicate groups whose members sit in two or more splits.",
    ]
    if rule.recall_at_k is not None:
        notes.append(
            f"Approximate kNN search: recall@{rule.k} {rule.recall_at_k:.3f} measured on a sample."
        )
    warnings = ()
    if n_candidates > MAX_EDGES:
        warnings = (
            AuditWarning(
                "duplicate_pairs_capped",
                f"{n_candidates:,} neighbour pairs may lie within the review radius (each "
                f"judged by its own item's scale); the {MAX_EDGES:,} closest were graded, so some "
                "near-duplicate groups may be split and some pairs to review are missing",
            ),
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
        warnings=warnings,
    )


ANALYSIS = Analysis(
    name="duplicates",
    title="Duplicates, leakage and conflicting labels",
    run=run,
    requires=("embeddings",),
)


# -- kernels --------------------------------------------------------------------------------------
def _hash_rows(chunk: Chunk, kinds: tuple[str, ...]) -> pd.DataFrame:
    """(kind, key, pos) for every row and hash kind (rows without text or file left out)."""
    frames = []
    for kind in kinds:
        if kind == "same embedding":
            keys, valid = hash_rows(chunk.embeddings), None
        elif kind == "same file":
            keys = hash_files(chunk.column("image"))
            valid = keys != 0
        else:
            texts = chunk.column("text")
            if kind == "same text after normalising":
                texts = normalize_text(texts)
            keys, valid = hash_strings(texts), ~pd.isna(texts)
        pos = chunk.pos if valid is None else chunk.pos[valid]
        keys = keys if valid is None else keys[valid]
        frames.append(
            pd.DataFrame(
                {
                    "kind": np.full(len(pos), MATCHES.index(kind), dtype=np.int8),
                    "key": keys.astype(np.uint64),
                    "pos": pos.astype(np.int64),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def _linked_to_first(frame: pd.DataFrame) -> pd.DataFrame:
    """Whole hash groups in, (kind, a, b) out: each member b linked to its group's first row a."""
    shared = frame[frame.duplicated(["kind", "key"], keep=False)]
    first = shared.groupby(["kind", "key"])["pos"].transform("min")
    out = pd.DataFrame(
        {
            "kind": shared["kind"].to_numpy(np.int8),
            "a": first.to_numpy(np.int64),
            "b": shared["pos"].to_numpy(np.int64),
        }
    )
    return out[out["a"] != out["b"]].reset_index(drop=True)


def _facts(chunk: Chunk, rule: NearDuplicateRule, wanted, with_vectors) -> dict:
    """Id, split, label and scale of the `wanted` rows; raw float32 vectors of `with_vectors`."""
    rows = np.flatnonzero(np.isin(chunk.pos, wanted))
    at = np.flatnonzero(np.isin(chunk.pos, with_vectors))
    d = 0 if chunk.embeddings is None else chunk.embeddings.shape[1]
    scale = neighbour_scales(rule.chunk_graph(chunk)[0][rows])[0]
    return {
        "pos": chunk.pos[rows],
        "ids": np.asarray(chunk.ids[rows], dtype=object),
        "splits": np.asarray(chunk.splits[rows], dtype=object),
        "labels": np.asarray(chunk.labels[rows], dtype=np.int64),
        "scale": scale,
        "vector_pos": chunk.pos[at],
        "vectors": chunk.embeddings[at] if len(at) else np.zeros((0, d), np.float32),
    }


def _concat_facts(x: dict, y: dict) -> dict:
    out = {key: np.concatenate([x[key], y[key]]) for key in x}
    order, vec_order = np.argsort(out["pos"], kind="stable"), np.argsort(out["vector_pos"])
    for key in ("pos", "ids", "splits", "labels", "scale"):
        out[key] = out[key][order]
    out["vector_pos"], out["vectors"] = out["vector_pos"][vec_order], out["vectors"][vec_order]
    return out


def _similarities(chunk: Chunk, rule, members, firsts, first_pos, first_vectors) -> pd.DataFrame:
    """Cosine of each member row to its group's first member (centred vectors when the rule
    centres them)."""
    rows = np.flatnonzero(np.isin(chunk.pos, members))
    if len(rows) == 0:
        return pd.DataFrame({"pos": np.zeros(0, np.int64), "similarity": np.zeros(0, np.float32)})
    own = normalize(chunk.embeddings[rows], center=rule.center)
    first = firsts[np.searchsorted(members, chunk.pos[rows])]
    other = normalize(first_vectors[np.searchsorted(first_pos, first)], center=rule.center)
    return pd.DataFrame({"pos": chunk.pos[rows], "similarity": np.einsum("ij,ij->i", own, other)})


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
    """Per row, its best pair (either end): the other row (-1 = none), tier, score, match.
    Among equally good partners (copies of one text, say) the first in table order, so the
    choice does not depend on the order the pairs were found in (it differs by engine)."""
    both = pd.concat(
        [
            pairs.rename(columns={"a": "row", "b": "other"}),
            pairs.rename(columns={"b": "row", "a": "other"}),
        ],
        ignore_index=True,
    ).sort_values(
        ["tier", "score", "match", "other"], ascending=[True, False, True, True], kind="stable"
    )
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
    embeddings: NDArray | None,
    columns: dict[str, NDArray] | None = None,
    similarity: NDArray[np.float32] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Items, groups and per-split-pair leakage tables for a group assignment (see module doc).

    `columns` are per-row arrays (length n) added to the items table after the id; `similarity`
    (per row, to the group's first member) replaces computing it from `embeddings`.
    """
    rows = np.flatnonzero(group >= 0)
    g = group[rows]
    n_groups = int(g.max() + 1) if len(g) else 0
    first = np.full(n_groups, -1, dtype=np.int64)
    first[g[::-1]] = rows[::-1]
    if similarity is not None:
        similarity = np.asarray(similarity, dtype=np.float32)[rows]
    else:
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
