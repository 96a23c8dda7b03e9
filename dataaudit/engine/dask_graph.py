"""The shared kNN graph on the Dask engine: neighbors.shared_graph's graph, built by the workers.

The method, k, the offset centre and the recall sample follow neighbors.build_graph and
config (knn_k, knn_mode, knn_approx_threshold, knn_recall_sample, seed), and every search is one
of neighbors.py's tile kernels, run by the workers on numpy blocks:

- **centre**: neighbors.offset_center's rule, from float64 sums over the partitions.
- **exact** (auto mode at or below knn_approx_threshold rows, or knn_mode "exact"): every
  partition's rows against every partition's rows, one neighbors._exact per pair (P^2 tasks,
  meant for small data); each row's candidate lists are merged to the top k by (similarity
  descending, position ascending). The in-process graph, up to exact ties.
- **IVF** (neighbors.approx_knn, distributed): the driver draws the positions in-process k-means
  trains on (neighbors.kmeans_sample_rows, the same seed), the workers send those rows and the
  driver trains the same centroids (neighbors.kmeans_on_sample). Each worker files its rows under
  their nearest centroid and keeps their n_probe nearest. The lists are grouped into buckets of
  about equal rows, neighbouring lists together (their centroids clustered once more; at least
  two buckets per worker), and the rows' search arrays (position, vector, nearest lists; never
  the table row) are shuffled to their list's bucket, with copies of the rows of lists outside
  the bucket that its rows probe; each bucket sends its results back to the rows' own
  partitions. Each bucket runs approx_knn's kernel on its rows: neighbors.
  _search_unions (the rows of each list against the union of the lists they probe), or on
  diffuse data, where those unions grow large (approx_knn's test, on the same global counts),
  neighbors._search_per_probe over each row's 8 nearest lists. A row meets the same candidates
  as in process, so the graph is the in-process IVF graph up to exact ties.
  Recall is measured as neighbors.recall_at_k, on the same sample positions, by exact search of
  the sample against every partition.
- **neighbour labels and splits**: a join by position. Positions are cut into ranges; each range
  holds its rows' labels and split codes densely in one task, and every bucket sends each range
  the neighbour positions that fall in it.

The result replaces the engine's partitions: each is a `GraphPart`, the partition's rows plus
their graph arrays (neighbours int64, similarities float32, labels int32, split codes int16),
persisted on the workers, so later kernels read the graph without recomputing it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import dask
import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from dataaudit import neighbors as nb
from dataaudit.engine import GraphInfo
from dataaudit.engine.inputs import LABEL, POS, n_workers

_NONE = np.iinfo(np.int64).max  # sorts a missing neighbour (-1) after every position


@dataclass(eq=False)
class GraphPart:
    """One partition after the graph: its rows and their graph arrays, stored compactly."""

    frame: pd.DataFrame
    neighbors: NDArray[np.int64]
    similarities: NDArray[np.float32]
    neighbor_labels: NDArray[np.int32] | None = None
    neighbor_splits: NDArray[np.int16] | None = None

    def columns(self) -> tuple[NDArray, NDArray, NDArray, NDArray]:
        """The four GRAPH_COLUMNS of a Chunk, at the dtypes the protocol promises."""
        return (
            self.neighbors,
            self.similarities,
            self.neighbor_labels.astype(np.int64),
            self.neighbor_splits.astype(np.int32),
        )


def build_graph(engine, ctx) -> tuple[GraphInfo, list]:
    """(GraphInfo, the engine's new partitions: delayed GraphParts, persisted)."""
    from distributed import wait

    config = ctx.config
    client = engine.client
    inputs = engine.inputs
    parts = engine.partitions
    n = inputs.n
    emb_cols = list(inputs.layout.embeddings)
    if not emb_cols:
        raise ValueError("the kNN graph needs embeddings; pass --embeddings")
    split_names = tuple(sorted(inputs.split_counts))
    device = config.knn_device
    k = max(0, min(int(config.knn_k), n - 1))
    method = nb.choose_method(n, config.knn_mode, config.knn_approx_threshold)
    center = _center(engine)
    approx = method == "approx"
    n_lists = nb.ivf_lists(n)
    n_probe = min(nb._N_PROBE, n_lists)
    ivf = approx and n_probe < n_lists and k > 0
    wide = min(n_lists, max(n_probe, nb._N_PROBE_DIFFUSE))  # probes of the per-probe plan

    centroids = None
    if ivf:
        rng = np.random.default_rng(config.seed)
        rows = nb.kmeans_sample_rows(n, n_lists, rng=rng)
        sample = _gather(client, [_normalised_rows(p, emb_cols, center, rows) for p in parts])
        centroids = nb.kmeans_on_sample(sample, n_lists, rng=rng, device=device)
    prepared = client.persist(
        [dask.delayed(_prepare)(p, emb_cols, center, split_names, centroids, wide) for p in parts]
    )
    if ivf:
        searched = _ivf_buckets(
            client, parts, prepared, centroids, n_probe, k, n, config.seed, device
        )
    else:
        searched = [_exact_rows(prepared, i, k, device, frame=part) for i, part in enumerate(parts)]
    final = client.persist(_with_labels(prepared, searched, n))
    wait(final)
    recall = None
    if approx:
        recall = _recall(
            client, prepared, final, n, k, config.knn_recall_sample, config.seed, device
        )
    info = GraphInfo(
        k=k,
        method="approx-ivf" if approx else "exact",
        recall=recall,
        center=center,
        splits=split_names,
    )
    return info, final


# -- centre and per-partition preparation ---------------------------------------------------------
def _moments(chunk) -> tuple[NDArray[np.float64], float, int]:
    block = np.asarray(chunk.embeddings, dtype=np.float64)
    return block.sum(axis=0), float(np.einsum("ij,ij->", block, block)), len(block)


def _center(engine) -> NDArray[np.float32] | None:
    """neighbors.offset_center, from partition sums."""
    from dataaudit.engine import add

    total, squares, n = engine.map_reduce(_moments, add)
    if n < 2:
        return None
    mean = total / n
    if squares <= 0 or float(mean @ mean) <= nb.OFFSET_SHARE * squares / n:
        return None
    return mean.astype(np.float32)


def _vectors(frame: pd.DataFrame, emb_cols, center) -> NDArray[np.float32]:
    return nb.normalize(frame[emb_cols].to_numpy(dtype=np.float32), center=center)


def _normalised_rows(part, emb_cols, center, rows):
    """(positions, vectors) of the partition's rows among the sorted positions `rows`."""

    def pick(frame: pd.DataFrame):
        pos = frame[POS].to_numpy(dtype=np.int64)
        keep = np.isin(pos, rows)
        return pos[keep], _vectors(frame[keep], emb_cols, center)

    return dask.delayed(pick)(part)


def _gather(client, pieces) -> NDArray[np.float32]:
    """The vectors of the pieces, in position order (a sample: small)."""
    found = client.gather(client.compute(pieces))
    pos = np.concatenate([p for p, _ in found])
    x = np.concatenate([v for _, v in found])
    return x[np.argsort(pos, kind="stable")]


def _prepare(frame, emb_cols, center, split_names, centroids, wide) -> dict:
    """Positions, normalised vectors, labels, split codes (and nearest lists, for IVF)."""
    x = _vectors(frame, emb_cols, center)
    codes = pd.Index(split_names).get_indexer(frame["split"].astype(str).to_numpy())
    out = {
        "pos": frame[POS].to_numpy(dtype=np.int64),
        "x": x,
        "labels": frame[LABEL].to_numpy(dtype=np.int32),
        "splits": codes.astype(np.int16 if len(split_names) < 2**15 else np.int32),
    }
    if centroids is not None:
        out["probes"] = nb._exact(x, centroids, wide, self_ids=None)[1]
    return out


# -- exact: blockwise all pairs -------------------------------------------------------------------
def _pair_topk(q: NDArray, own: NDArray | None, index: dict, k: int, device: str):
    """Top-k of q against one partition's vectors, as (similarities, positions), k wide."""
    sims, idx = nb._exact(q, index["x"], k, self_ids=own, device=device)
    return _pad(sims, np.where(idx >= 0, index["pos"][np.maximum(idx, 0)], -1), k)


def _pad(sims: NDArray, pos: NDArray, k: int):
    short = k - sims.shape[1]
    if short > 0:
        sims = np.pad(sims, ((0, 0), (0, short)), constant_values=-np.inf)
        pos = np.pad(pos, ((0, 0), (0, short)), constant_values=-1)
    return sims.astype(np.float32), pos.astype(np.int64)


def merge_topk(a, b, k: int):
    """The k best of two candidate lists per row: similarity descending, then position."""
    sims = np.concatenate([a[0], b[0]], axis=1)
    pos = np.concatenate([a[1], b[1]], axis=1)
    order = np.lexsort((np.where(pos < 0, _NONE, pos), -sims.astype(np.float64)), axis=-1)[:, :k]
    return np.take_along_axis(sims, order, 1), np.take_along_axis(pos, order, 1)


def _pair(prepared_q: dict, index: dict, same: bool, k: int, device: str):
    own = np.arange(len(prepared_q["pos"])) if same else None
    return _pair_topk(prepared_q["x"], own, index, k, device)


def _exact_rows(prepared: list, i: int, k: int, device: str, frame):
    """The partition i's rows against every partition, merged: a delayed GraphPart."""

    pairs = [
        dask.delayed(_pair)(prepared[i], index, i == j, k, device)
        for j, index in enumerate(prepared)
    ]
    best = delayed_tree(pairs, functools.partial(merge_topk, k=k))
    return dask.delayed(_searched_part)(frame, best)


def _searched_part(frame: pd.DataFrame, best) -> GraphPart:
    sims, pos = best
    return GraphPart(frame, pos, sims)


# -- IVF: lists, buckets, and the in-process search per bucket ------------------------------------
def _pairs(probes: NDArray[np.int64], n_lists: int) -> NDArray[np.int64]:
    """The distinct (own list, other probed list) pairs of these rows, coded own * L + other."""
    own = probes[:, :1]
    other = probes[:, 1:]
    return np.unique((np.broadcast_to(own, other.shape) * n_lists + other)[other != own])


def _list_facts(prep: dict, n_lists: int, n_probe: int):
    """Rows per list, and the coded list pairs of the union plan (n_probe probes) and of the
    per-probe plan (every probe kept)."""
    probes = prep["probes"]
    return (
        np.bincount(probes[:, 0], minlength=n_lists),
        _pairs(probes[:, :n_probe], n_lists),
        _pairs(probes, n_lists),
    )


def _merge_facts(a, b):
    return a[0] + b[0], np.union1d(a[1], b[1]), np.union1d(a[2], b[2])


def _union_rows(sizes: NDArray[np.int64], pairs: NDArray[np.int64], n_lists: int) -> int:
    """Candidate rows of approx_knn's union plan: each list's rows times its union's rows."""
    own, probed = pairs // n_lists, pairs % n_lists
    union = sizes + np.bincount(own, weights=sizes[probed], minlength=n_lists).astype(np.int64)
    return int((sizes * union).sum())


def _ivf_buckets(client, parts, prepared, centroids, n_probe, k, n, seed, device) -> list:

    n_lists = len(centroids)
    facts = [dask.delayed(_list_facts)(p, n_lists, n_probe) for p in prepared]
    sizes, union_pairs, wide_pairs = client.compute(delayed_tree(facts, _merge_facts)).result()
    # approx_knn's choice of plan, on the same numbers: diffuse data probes per query.
    limit = n * nb._MAX_UNION * nb.list_rows(n, n_lists)
    per_probe = _union_rows(sizes, union_pairs, n_lists) > limit
    pairs = wide_pairs if per_probe else union_pairs
    # At least two buckets per worker, so a table in few files still spreads the search.
    bucket_of = _buckets(centroids, sizes, n, max(len(parts), 2 * n_workers(client)), seed)
    n_buckets = int(bucket_of.max()) + 1
    # Lists each bucket must import: probed by its rows, filed in another bucket.
    own, probed = pairs // n_lists, pairs % n_lists
    outside = bucket_of[own] != bucket_of[probed]
    wanted = np.zeros((n_buckets, n_lists), dtype=bool)
    wanted[bucket_of[own[outside]], probed[outside]] = True
    # Only the search arrays travel: each partition's rows (the whole table row, embeddings and
    # metadata) stay where they are, and each bucket sends every partition its rows' results.
    split = [
        dask.delayed(_to_buckets, nout=n_buckets)(prep, bucket_of, wanted) for prep in prepared
    ]
    n_parts = len(parts)
    searched = [
        dask.delayed(_search_bucket, nout=n_parts)(
            k, n_lists, n_probe, per_probe, device, *[s[b] for s in split]
        )
        for b in range(n_buckets)
    ]
    return [
        dask.delayed(_gathered_part)(
            frame, prep, bucket_of, k, *[searched[b][j] for b in range(n_buckets)]
        )
        for j, (frame, prep) in enumerate(zip(parts, prepared, strict=True))
    ]


def _buckets(centroids, sizes, n: int, n_buckets: int, seed: int) -> NDArray[np.int64]:
    """Bucket of each list: contiguous runs of about n / B rows, in an order that keeps
    neighbouring lists together (lists sorted by the nearest of B centroids of the centroids)."""
    n_lists = len(centroids)
    n_buckets = max(1, min(n_buckets, n_lists))
    if n_buckets == 1:
        return np.zeros(n_lists, dtype=np.int64)
    rng = np.random.default_rng(seed + 1)
    groups = nb.kmeans_on_sample(centroids, n_buckets, rng=rng)
    group = nb._exact(centroids, groups, 1, self_ids=None)[1][:, 0]
    order = np.lexsort((np.arange(n_lists), group))
    before = np.cumsum(sizes[order]) - sizes[order]
    bucket = np.empty(n_lists, dtype=np.int64)
    bucket[order] = np.minimum(before * n_buckets // max(n, 1), n_buckets - 1)
    return bucket


def _to_buckets(prep: dict, bucket_of, wanted) -> list:
    """Per bucket: (the search arrays of this partition's rows filed there, rows to import)."""
    lists = prep["probes"][:, 0]
    home = bucket_of[lists]
    out = []
    for b in range(len(wanted)):
        mine = home == b
        imp = wanted[b, lists]
        out.append(
            (
                {key: prep[key][mine] for key in ("pos", "x", "probes")},
                {"pos": prep["pos"][imp], "x": prep["x"][imp], "list": lists[imp]},
            )
        )
    return out


def _search_bucket(
    k: int, n_lists: int, n_probe: int, per_probe: bool, device: str, *pieces
) -> list[tuple[NDArray[np.int64], NDArray[np.float32]]]:
    """approx_knn's search over one bucket (neighbors._search_unions, or _search_per_probe on
    diffuse data): its rows as queries, its rows and imports as the index (own rows first, so
    a query's own column sits where the kernels expect it). Returns, per source partition,
    (neighbour positions, similarities) of its rows filed here, in that partition's order."""
    own = {key: np.concatenate([p[0][key] for p in pieces]) for key in pieces[0][0]}
    imp = {key: np.concatenate([p[1][key] for p in pieces]) for key in pieces[0][1]}
    n_own = len(own["pos"])
    pos = np.r_[own["pos"], imp["pos"]]
    x = np.concatenate([own["x"], imp["x"]])
    x_list = np.r_[own["probes"][:, 0], imp["list"]]
    probes = own["probes"]  # the per-probe plan's `wide` nearest lists
    q_list = probes[:, 0]
    x_order = np.argsort(x_list, kind="stable")
    x_bounds = np.searchsorted(x_list[x_order], np.arange(n_lists + 1))
    q_order = np.argsort(q_list, kind="stable")
    q_bounds = np.searchsorted(q_list[q_order], np.arange(n_lists + 1))
    dev = nb._resolve_device(device)
    xt = torch.from_numpy(x).to(dev)
    sims = np.full((n_own, k), nb._EXCLUDED, dtype=np.float32)
    idx = np.full((n_own, k), -1, dtype=np.int64)
    if per_probe:
        nb._search_per_probe(xt[:n_own], xt, probes, x_order, x_bounds, sims, idx, True, None)
    else:
        unions = [
            nb._union(probes[q_order[q_bounds[c] : q_bounds[c + 1]], :n_probe], c)
            if q_bounds[c + 1] > q_bounds[c]
            else None
            for c in range(n_lists)
        ]
        nb._search_unions(
            xt[:n_own], xt, unions, q_order, q_bounds, x_order, x_bounds, sims, idx, True, None
        )
    idx[~np.isfinite(sims)] = -1
    neighbors = np.where(idx >= 0, pos[np.maximum(idx, 0)], -1)
    bounds = np.cumsum([0, *(len(p[0]["pos"]) for p in pieces)])
    return [(neighbors[a:b], sims[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def _gathered_part(frame: pd.DataFrame, prep: dict, bucket_of, k: int, *found) -> GraphPart:
    """A partition's GraphPart from its rows' results, one piece per bucket: the rows of
    bucket b are those _to_buckets filed there, in partition order."""
    home = bucket_of[prep["probes"][:, 0]]
    neighbors = np.full((len(home), k), -1, dtype=np.int64)
    sims = np.full((len(home), k), nb._EXCLUDED, dtype=np.float32)
    for b, (bucket_neighbors, bucket_sims) in enumerate(found):
        mine = home == b
        neighbors[mine] = bucket_neighbors
        sims[mine] = bucket_sims
    return GraphPart(frame, neighbors, sims)


# -- neighbour labels and splits: a join by position ----------------------------------------------
def _with_labels(prepared: list, searched: list, n: int) -> list:
    """Delayed GraphParts with neighbour labels and split codes, joined by position ranges."""
    n_ranges = max(1, len(prepared))
    bounds = np.linspace(0, n, n_ranges + 1).astype(np.int64)
    by_range = [dask.delayed(_by_range, nout=n_ranges)(p, bounds) for p in prepared]
    tables = [
        dask.delayed(_dense_range)(int(bounds[r]), int(bounds[r + 1]), *[s[r] for s in by_range])
        for r in range(n_ranges)
    ]
    out = []
    for part in searched:
        asked = dask.delayed(_asked, nout=n_ranges)(part, bounds)
        found = [dask.delayed(_lookup)(asked[r], tables[r]) for r in range(n_ranges)]
        out.append(dask.delayed(_attach)(part, bounds, *found))
    return out


def _range_of(pos: NDArray[np.int64], bounds: NDArray[np.int64]) -> NDArray[np.int64]:
    return np.searchsorted(bounds, pos, side="right") - 1


def _by_range(prep: dict, bounds) -> list:
    r = _range_of(prep["pos"], bounds)
    return [
        (prep["pos"][r == i], prep["labels"][r == i], prep["splits"][r == i])
        for i in range(len(bounds) - 1)
    ]


def _dense_range(start: int, stop: int, *pieces):
    labels = np.full(stop - start, -1, dtype=np.int32)
    splits = np.full(stop - start, -1, dtype=pieces[0][2].dtype if pieces else np.int16)
    for pos, lab, spl in pieces:
        labels[pos - start] = lab
        splits[pos - start] = spl
    return start, labels, splits


def _asked(part: GraphPart, bounds) -> list:
    flat = part.neighbors.ravel()
    r = np.where(flat >= 0, _range_of(flat, bounds), -1)
    return [flat[r == i] for i in range(len(bounds) - 1)]


def _lookup(positions: NDArray[np.int64], table):
    start, labels, splits = table
    return labels[positions - start], splits[positions - start]


def _attach(part: GraphPart, bounds, *found) -> GraphPart:
    flat = part.neighbors.ravel()
    r = np.where(flat >= 0, _range_of(flat, bounds), -1)
    dtype = found[0][1].dtype if found else np.int16
    labels = np.full(len(flat), -1, dtype=np.int32)
    splits = np.full(len(flat), -1, dtype=dtype)
    for i, (lab, spl) in enumerate(found):
        at = r == i
        labels[at] = lab
        splits[at] = spl
    shape = part.neighbors.shape
    return GraphPart(
        part.frame, part.neighbors, part.similarities, labels.reshape(shape), splits.reshape(shape)
    )


# -- recall ---------------------------------------------------------------------------------------
def _recall(client, prepared, final, n, k, sample, seed, device) -> float:
    """neighbors.recall_at_k on the same sample positions: exact search of the sample's vectors
    against every partition, compared with the similarities the graph found for them."""

    if k == 0 or n == 0:
        return 1.0
    rows = nb.recall_sample_rows(n, sample, seed)
    queries = _gather(client, [dask.delayed(_sample_of)(p, rows) for p in prepared])
    exact = [dask.delayed(_sample_pair)(queries, rows, p, k, device) for p in prepared]
    true_sims, _ = client.compute(delayed_tree(exact, functools.partial(merge_topk, k=k))).result()
    found = client.gather(client.compute([dask.delayed(_found_of)(p, rows) for p in final]))
    pos = np.concatenate([f[0] for f in found])
    found_sims = np.concatenate([f[1] for f in found])[np.argsort(pos, kind="stable")]
    kth = true_sims[:, -1:]
    hits = (found_sims >= kth - 1e-6).sum(axis=1)
    return float(np.minimum(hits, k).sum() / (len(rows) * k))


def _sample_of(prep: dict, rows):
    keep = np.isin(prep["pos"], rows)
    return prep["pos"][keep], prep["x"][keep]


def _sample_pair(queries, rows, index: dict, k: int, device: str):
    # A sample row's own column in this partition, or -1 when it lives elsewhere.
    at = pd.Index(index["pos"]).get_indexer(rows)
    return _pair_topk(queries, at.astype(np.int64), index, k, device)


def _found_of(part: GraphPart, rows):
    keep = np.isin(part.frame[POS].to_numpy(), rows)
    return part.frame[POS].to_numpy()[keep], part.similarities[keep]


def delayed_tree(values: list, combine: Callable):
    """Pairwise reduction of delayed values, log2(P) levels deep."""
    while len(values) > 1:
        values = [
            dask.delayed(combine)(values[i], values[i + 1]) if i + 1 < len(values) else values[i]
            for i in range(0, len(values), 2)
        ]
    return values[0]


# -- the near-duplicate rule's exact Euclidean graph (few dimensions) -----------------------------
def build_euclidean(engine, ctx):
    """(EuclideanGraph with the centre and k, one persisted (distances, positions) per partition):
    similarity.euclidean_graph's graph, exact, on the cluster. Each partition's rows are searched
    in every partition's KD-tree and the k nearest of all kept, ties by position: P^2 small
    searches, fine in the few dimensions this graph is for (a KD-tree query is ~log n there).
    Each search builds its tree: a KD-tree shipped between workers is unpickled on the comm
    thread, and that import of sklearn raced the task thread's (an import deadlock)."""
    from distributed import wait

    from dataaudit.engine import add
    from dataaudit.similarity import EuclideanGraph

    client = engine.client
    emb_cols = list(engine.inputs.layout.embeddings)
    total, _, n = engine.map_reduce(_moments, add)
    center = (total / max(n, 1)).astype(np.float32)
    k = max(0, min(int(ctx.config.knn_k), n - 1))
    rows = client.persist(
        [dask.delayed(_centred_rows)(p, emb_cols, center) for p in engine.partitions]
    )
    graphs = []
    for query in rows:
        found = [dask.delayed(_search_rows)(index, query, k) for index in rows]
        graphs.append(dask.delayed(_nearest_of)(query, k, *found))
    graphs = client.persist(graphs)
    wait(graphs)
    return EuclideanGraph(center, None, None, n_neighbors=k), graphs


def _centred_rows(part, emb_cols, center) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    frame = part.frame if isinstance(part, GraphPart) else part
    x = frame[emb_cols].to_numpy(dtype=np.float32) - center
    return frame[POS].to_numpy(dtype=np.int64), x


def _search_rows(index, query, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The k + 1 nearest `index` rows (the row itself may be among them) of each query row."""
    from sklearn.neighbors import KDTree

    index_pos, index_x = index
    _, x = query
    if not len(index_x) or k == 0 or not len(x):
        return np.zeros((len(x), 0), np.float32), np.zeros((len(x), 0), np.int64)
    dist, idx = KDTree(index_x).query(x, k=min(k + 1, len(index_pos)))
    return dist.astype(np.float32), index_pos[idx]


def _nearest_of(query, k: int, *found) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """The k nearest other rows among every tree's candidates, nearest first, ties by position
    (a row's copies tie with it at distance 0: the row itself is dropped wherever it sits)."""
    pos, _ = query
    dist = np.concatenate([d for d, _ in found], axis=1)
    idx = np.concatenate([i for _, i in found], axis=1)
    dist = np.where(idx == pos[:, None], np.inf, dist)  # the row itself
    order = np.lexsort((idx, dist), axis=1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(idx, order, axis=1)
