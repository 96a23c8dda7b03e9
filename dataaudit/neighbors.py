"""Similarity search over embeddings: exact and approximate k nearest neighbours, and exact hashes.

Every search is cosine similarity on L2-normalised float32 vectors, computed tile by tile
(a block of query rows times a block of index rows), so memory is bounded by the tile size and
never grows as N x N. The exact path is a torch matmul per tile reduced at once to column-group
maxima, with one top-k per query row at the end (see `_exact`). The approximate path is an
inverted-file index (spherical k-means coarse quantizer, probing the lists nearest to each
cluster) built on the same tiles; its recall is measured on a sample against exact search.

The shared graph of a run is built once by `shared_graph` and cached in the AuditContext.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from numpy.typing import NDArray

if TYPE_CHECKING:
    from dataaudit.context import AuditContext, Progress
    from dataaudit.dataset import AuditDataset

# Similarity written where a neighbour must never be chosen (an item and itself).
_EXCLUDED = float("-inf")
# Elements per similarity tile: 8M float32 = 32 MiB, large enough that the matmul runs at full
# speed and small enough to stay far from any memory limit.
_TILE_ELEMENTS = 1 << 23
# Exact search: index columns per tile, elements per tile (128 MiB: 2,048 query rows, where
# the 2-core matmul runs at 134-161 GFLOP/s against 79-107 with 512 rows), and the cap on a
# row block's group maxima (128 MiB).
_TILE_COLUMNS = 16384
_EXACT_TILE_ELEMENTS = 1 << 25
_SLOT_ELEMENTS = 1 << 25
# Approximate search: index rows per inverted list, and nearest lists probed per query. On the
# benchmarks/knn.py data recall@10 is 0.98 at 200k and 0.998 at 1M x 128 (benchmarks/README.md).
_LIST_ROWS = 256
_N_PROBE = 2
# Above about 1M rows the lists grow instead, as 4 x sqrt(n) lists (faiss' guideline: 4 to 16 x
# sqrt(n)): filing each row under its nearest of n / 256 centroids would cost more than the
# search itself (at 10M, 39,000 centroids against 12,600).
_LISTS_PER_ROOT = 4
# Above 32 x 256 candidate rows per query on average, list unions give way to per-query probing.
_MAX_UNION = 32
# Rows the IVF k-means trains on (at least 16 per list): 4,000 lists x 48 rows cost ~10 s.
_KMEANS_SAMPLE = 100_000
# Probes per query when unions are too large and each query probes on its own.
_N_PROBE_DIFFUSE = 8
# Columns of a tile are split into this many strided groups for the exact top-k shortcut.
_GROUPS = 8
# Index rows recall_at_k normalises and searches at a time (32 MiB at d = 128).
_RECALL_BLOCK_ROWS = 1 << 16


# -- normalisation ------------------------------------------------------------------------------
def normalize(
    x: NDArray,
    chunk_rows: int | None = None,
    center: NDArray | None = None,
) -> NDArray[np.float32]:
    """Return a float32 copy of `x` with every row scaled to unit L2 norm.

    Rows are converted chunk by chunk, so a float16 memmap is never copied whole at a wider
    dtype. All-zero rows stay zero (their cosine similarity to everything is 0).

    Parameters
    ----------
    x : array of shape (n, d)
        Embeddings, any float dtype; may be a numpy memmap.
    chunk_rows : int, optional
        Rows converted at a time; default keeps each chunk near 64 MiB.
    center : array of shape (d,), optional
        Subtracted from every row before scaling (see `offset_center`).

    Returns
    -------
    ndarray of shape (n, d), float32

    Examples
    --------
    >>> normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    array([[0.6, 0.8],
           [0. , 0. ]], dtype=float32)
    """
    x = np.asarray(x) if not isinstance(x, np.memmap) else x
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-d array (n, d); got shape {x.shape}")
    n, d = x.shape
    out = np.empty((n, d), dtype=np.float32)
    step = chunk_rows or max(1, (1 << 24) // max(d, 1))
    for start in range(0, n, step):
        block = out[start : start + step]
        block[...] = x[start : start + step]
        if center is not None:
            block -= center
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        block /= np.where(norms > 0, norms, 1.0)[:, None]
    return out


class UnitRows:
    """The rows of `x` minus `center`, scaled to unit length, read on demand: bit for bit the rows
    `normalize(x, center=center)` returns, without that whole float32 copy of the embeddings.

    One chunked pass stores each row's divisor (its norm, 1 for an all-zero row); a read then
    converts, centres and divides only the rows asked for. The IVF search of the run's graph
    gathers a list's rows at a time, so at 1M x 128 this saves 512 MB of its peak.
    """

    def __init__(self, x: NDArray, center: NDArray | None = None, *, device: str = "cpu"):
        if x.ndim != 2:
            raise ValueError(f"embeddings must be a 2-d array (n, d); got shape {x.shape}")
        self.x = x
        self.shape = x.shape
        self.center = None if center is None else np.asarray(center, dtype=np.float32)
        self.device = _resolve_device(device)
        n, d = x.shape
        self.divisors = np.empty(n, dtype=np.float32)
        step = max(1, (1 << 24) // max(d, 1))  # normalize's chunks: the same sums, bit for bit
        for start in range(0, n, step):
            block = self._centred(slice(start, start + step))
            norms = np.sqrt(np.einsum("ij,ij->i", block, block))
            self.divisors[start : start + len(block)] = np.where(norms > 0, norms, 1.0)
        # torch reads the rows in place (a memmap stays on disk); it warns that it cannot
        # promise read-only tensors, and nothing here writes to them.
        raw = x if x.dtype.isnative and x.dtype in (np.float16, np.float32, np.float64) else None
        if raw is not None:
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                self._raw = torch.from_numpy(np.asarray(raw))
        else:
            self._raw = None
        self._divisors = torch.from_numpy(self.divisors)
        self._center = None if self.center is None else torch.from_numpy(self.center)

    def __len__(self) -> int:
        return self.shape[0]

    def _centred(self, rows) -> NDArray[np.float32]:
        block = np.array(self.x[rows], dtype=np.float32)  # a copy: x is never written
        if self.center is not None:
            block -= self.center
        return block

    def __getitem__(self, rows) -> NDArray[np.float32]:
        """Rows (a slice or positions) as a float32 array, as normalize returns them."""
        block = self._centred(rows)
        block /= self.divisors[rows][:, None]
        return block

    def gather(self, positions: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Rows at `positions` (an int64 tensor) as a float32 tensor on the device, into `out`."""
        cpu = positions.cpu()
        if self._raw is None:
            rows = torch.from_numpy(self[cpu.numpy()])
        else:
            rows = self._raw.index_select(0, cpu)
            rows = rows if rows.dtype == torch.float32 else rows.float()
            if self._center is not None:
                rows.sub_(self._center)
            rows.div_(self._divisors.index_select(0, cpu).unsqueeze(1))
        if out is None:
            return rows.to(self.device)
        return out.copy_(rows)


def _take(rows: torch.Tensor | UnitRows, positions: torch.Tensor, out=None) -> torch.Tensor:
    """Rows of a search's vectors: a tensor's, or UnitRows' read on demand."""
    if isinstance(rows, UnitRows):
        return rows.gather(positions, out)
    if out is None:
        return rows[positions]
    return torch.index_select(rows, 0, positions, out=out)


# -- exact search -------------------------------------------------------------------------------
def knn(
    queries: NDArray,
    index: NDArray | None = None,
    k: int = 10,
    *,
    exclude_self: bool = True,
    device: str = "cpu",
    chunk_rows: int | None = None,
    progress: Progress | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact k nearest neighbours by cosine similarity.

    Parameters
    ----------
    queries : array of shape (n_q, d)
        Vectors to find neighbours for (any float dtype, memmaps fine).
    index : array of shape (n, d), optional
        Vectors to search. None means a self-join: `queries` searched against themselves.
    k : int
        Neighbours per query; capped at the number of candidates available.
    exclude_self : bool
        In a self-join, never return a row as its own neighbour (duplicates of it still count).
    device : {"cpu", "cuda", "auto"}
    chunk_rows : int, optional
        Query rows per tile; default chosen from N and d to bound tile memory to ~32 MiB.
    progress : dataaudit.context.Progress, optional
        Shows a progress bar over query chunks.

    Returns
    -------
    similarities : float32 array (n_q, k), each row sorted descending
    indices : int64 array (n_q, k), row positions in `index` (or `queries` in a self-join)

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> sims, idx = knn(x, k=1)
    >>> idx.ravel().tolist()
    [1, 0, 1]
    """
    q = normalize(queries)
    self_join = index is None
    x = q if self_join else normalize(index)
    if q.shape[1] != x.shape[1]:
        raise ValueError(
            f"queries have {q.shape[1]} dimensions but the index has {x.shape[1]}; "
            "embed both with the same model"
        )
    self_ids = np.arange(len(q)) if (self_join and exclude_self) else None
    return _exact(
        q, x, k, self_ids=self_ids, device=device, chunk_rows=chunk_rows, progress=progress
    )


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("knn device 'cuda' was asked for but torch sees no CUDA device; use 'cpu'")
    if device not in ("cpu", "cuda"):
        raise ValueError(f"knn device must be cpu, cuda or auto; got {device!r}")
    return torch.device(device)


def _exact(
    q: NDArray[np.float32],
    x: NDArray[np.float32],
    k: int,
    *,
    self_ids: NDArray[np.int64] | None,
    device: str = "cpu",
    chunk_rows: int | None = None,
    progress: Progress | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Exact top-k of normalised q against normalised x; self_ids[i] is a column row i must skip.

    A row block of queries meets the index tile by tile; each tile is reduced at once to the
    maxima of its column groups (column c of a tile of width w belongs to group c mod w/G), and
    only after the last tile does a single top-k over all group maxima pick the k best groups
    of each row. The row's top-k lies inside those groups (an element outside is beaten by k
    group maxima, each a distinct larger element), so their k x G columns are scored again and
    the top-k taken. torch's top-k costs about a microsecond per row per call, so one call per
    row instead of one per tile is what keeps the search at matmul speed.
    """
    n_q, n_x, d = len(q), len(x), q.shape[1]
    k = max(0, min(int(k), n_x - (1 if self_ids is not None else 0)))
    sims = np.empty((n_q, k), dtype=np.float32)
    idx = np.empty((n_q, k), dtype=np.int64)
    if k == 0 or n_q == 0:
        return sims, idx
    dev = _resolve_device(device)
    n_tiles = -(-n_x // _TILE_COLUMNS)
    width = -(-n_x // (n_tiles * _GROUPS)) * _GROUPS  # equal tiles, each a multiple of G
    slots = width // _GROUPS
    xt = torch.zeros((n_tiles * width, d), dtype=torch.float32, device=dev)
    xt[:n_x] = torch.from_numpy(x).to(dev)  # padding rows are masked out of every tile
    k_slots = min(k, n_tiles * slots)
    # Rescoring k x G candidates only pays when they are a small part of the row.
    direct = n_tiles == 1 and 4 * k_slots * _GROUPS > width
    rows = chunk_rows or max(
        64, min(2048, _EXACT_TILE_ELEMENTS // width, _SLOT_ELEMENTS // (n_tiles * slots))
    )
    rows = min(rows, n_q)
    tile = torch.empty((rows, width), dtype=torch.float32, device=dev)
    slot_max = torch.empty((rows, n_tiles * slots), dtype=torch.float32, device=dev)
    starts = range(0, n_q, rows)
    if progress is not None:
        starts = progress.bar(starts, total=len(starts), desc="exact kNN")
    for qs in starts:
        qe = min(qs + rows, n_q)
        b = qe - qs
        qt = torch.from_numpy(q[qs:qe]).to(dev)
        own = None if self_ids is None else torch.from_numpy(self_ids[qs:qe]).to(dev)
        for t in range(n_tiles):
            xs = t * width
            part = torch.mm(qt, xt[xs : xs + width].T, out=tile[:b])
            if xs + width > n_x:
                part[:, n_x - xs :] = _EXCLUDED
            if own is not None:
                _exclude(part, own - xs)
            if direct:  # a small index (centroids, say): its one tile holds the answer
                v, i = torch.topk(part, k, dim=1, sorted=True)
                break
            torch.amax(
                part.view(b, _GROUPS, slots), dim=1, out=slot_max[:b, t * slots : (t + 1) * slots]
            )
        if not direct:
            _, best = torch.topk(slot_max[:b], k_slots, dim=1, sorted=False)
            # slot p is column (p // slots) * width + p % slots + g * slots, g = 0..G-1
            base = (best // slots) * width + best % slots
            cols = (base.unsqueeze(2) + torch.arange(_GROUPS, device=dev) * slots).reshape(b, -1)
            v, i = _score_candidates(qt, xt, cols, k, n_x=n_x, own=own)
        sims[qs:qe] = v.cpu().numpy()
        idx[qs:qe] = i.cpu().numpy()
    return sims, idx


def _score_candidates(
    qt: torch.Tensor,
    xt: torch.Tensor,
    cols: torch.Tensor,
    k: int,
    *,
    n_x: int,
    own: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted top-k of each query row over its candidate columns, scored afresh."""
    b, m = cols.shape
    d = xt.shape[1]
    out_v = torch.empty((b, k), dtype=torch.float32, device=qt.device)
    out_i = torch.empty((b, k), dtype=torch.int64, device=qt.device)
    step = max(1, min(b, _TILE_ELEMENTS // (m * d)))  # bounds the gathered vectors
    # Preallocated: a fresh 32 MiB tensor per call costs more in page faults than the copy.
    vecs = torch.empty((step * m, d), dtype=torch.float32, device=qt.device)
    scores = torch.empty((step, m, 1), dtype=torch.float32, device=qt.device)
    for s in range(0, b, step):
        c = cols[s : s + step]
        n = len(c)
        torch.index_select(xt, 0, c.reshape(-1), out=vecs[: n * m])
        v = torch.bmm(vecs[: n * m].view(n, m, d), qt[s : s + n].unsqueeze(2), out=scores[:n])
        v = v.squeeze(2)
        v[c >= n_x] = _EXCLUDED
        if own is not None:
            v[c == own[s : s + n, None]] = _EXCLUDED
        top, j = torch.topk(v, k, dim=1, sorted=True)
        out_v[s : s + n] = top
        out_i[s : s + n] = torch.gather(c, 1, j)
    return out_v, out_i


def _exclude(tile: torch.Tensor, columns: torch.Tensor) -> None:
    """Write -inf at (row r, columns[r]) where that column lies inside the tile."""
    inside = (columns >= 0) & (columns < tile.shape[1])
    if bool(inside.any()):
        rows = torch.nonzero(inside).squeeze(1)
        tile[rows, columns[rows]] = _EXCLUDED


def _tile_topk(tile: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (unsorted) top-k of each row of a similarity tile, cheaper than torch.topk.

    Columns are split into `_GROUPS` strided groups of width w (column c belongs to slot c % w).
    The k slots with the largest maxima contain every top-k element: an element outside them is
    beaten by k slot maxima, each a distinct larger element. So a fast vectorised max over the
    groups, a top-k over w slot maxima and a top-k over k * _GROUPS gathered candidates replace
    a top-k over the whole row, which torch does slowly. Needs a contiguous tile whose width is
    a multiple of _GROUPS (callers pad); otherwise falls back to torch.topk.
    """
    n_rows, width = tile.shape
    k = min(k, width)
    slots = width // _GROUPS
    if slots < 4 * k or width % _GROUPS or not tile.is_contiguous():
        return torch.topk(tile, k, dim=1, sorted=False)
    slot_max = tile.view(n_rows, _GROUPS, slots).amax(dim=1)
    _, best_slots = torch.topk(slot_max, k, dim=1, sorted=False)
    offsets = torch.arange(0, width, slots, device=tile.device)
    cols = (best_slots.unsqueeze(2) + offsets).reshape(n_rows, k * _GROUPS)
    values = torch.gather(tile, 1, cols)
    v, j = torch.topk(values, k, dim=1, sorted=False)
    return v, torch.gather(cols, 1, j)


def _merge(
    values: list[torch.Tensor], indices: list[torch.Tensor], k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted top-k over the candidates of several tiles."""
    v = torch.cat(values, dim=1)
    i = torch.cat(indices, dim=1)
    k = min(k, v.shape[1])
    best, j = torch.topk(v, k, dim=1, sorted=True)
    return best, torch.gather(i, 1, j)


# -- approximate search -------------------------------------------------------------------------
def approx_knn(
    queries: NDArray,
    index: NDArray | None = None,
    k: int = 10,
    *,
    exclude_self: bool = True,
    n_lists: int | None = None,
    n_probe: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Approximate k nearest neighbours with an inverted-file (IVF) index, in torch.

    A spherical k-means over a sample of the index gives `n_lists` centroids; every index row
    is filed under its nearest centroid, and every query finds its `n_probe` nearest centroids
    (as in faiss IndexIVFFlat). The search is then run list by list to keep BLAS busy: the
    queries whose nearest centroid is list c are searched exactly, in one dense matmul, against
    the union of the lists any of them probes. That union contains every query's own probes,
    so recall is at least that of per-query probing, and each query needs one top-k.
    Same signature and output as `knn`; measure the recall with `recall_at_k`.

    Parameters
    ----------
    queries : array of shape (n_q, d), or UnitRows
        UnitRows (a self-join only) are read a list at a time instead of copied normalised.
    n_lists : int, optional
        Number of centroids; default `ivf_lists(len(index))`.
    n_probe : int, optional
        Nearest lists probed per query; default `_N_PROBE`.
    seed : int
        Seeds the k-means sample and initialisation, so runs are reproducible.
    """
    q = queries if isinstance(queries, UnitRows) else normalize(queries)
    self_join = index is None
    x = q if self_join else normalize(index)
    n_q, n_x = len(q), len(x)
    drop_self = self_join and exclude_self
    k = max(0, min(int(k), n_x - (1 if drop_self else 0)))
    n_lists = n_lists or ivf_lists(n_x)
    n_probe = min(n_probe or _N_PROBE, n_lists)
    if n_probe >= n_lists or k == 0:  # probing every list is exact search
        self_ids = np.arange(n_q) if drop_self else None
        q = q[:] if isinstance(q, UnitRows) else q  # a small index (n_lists <= n_probe)
        x = q if self_join else x
        return _exact(q, x, k, self_ids=self_ids, device=device, progress=progress)
    dev = _resolve_device(device)
    rng = np.random.default_rng(seed)
    with _stage(progress, "IVF: k-means centroids"):
        centroids = _spherical_kmeans(x, n_lists, rng=rng, device=device)
    with _stage(progress, "IVF: assign rows to lists"):
        wide = min(n_lists, max(n_probe, _N_PROBE_DIFFUSE))  # the per-probe plan probes more
        q_probes = _exact(q, centroids, wide, self_ids=None, device=device, progress=progress)[1]
        x_list = q_probes[:, 0] if self_join else _exact(x, centroids, 1, self_ids=None)[1][:, 0]
    q_list = q_probes[:, 0]
    x_order = np.argsort(x_list, kind="stable")
    x_bounds = np.searchsorted(x_list[x_order], np.arange(n_lists + 1))
    q_order = np.argsort(q_list, kind="stable")
    q_bounds = np.searchsorted(q_list[q_order], np.arange(n_lists + 1))
    xt = x if isinstance(x, UnitRows) else torch.from_numpy(x).to(dev)
    qt = xt if self_join else torch.from_numpy(q).to(dev)
    sims = np.full((n_q, k), _EXCLUDED, dtype=np.float32)
    idx = np.full((n_q, k), -1, dtype=np.int64)
    unions = [
        _union(q_probes[q_order[q_bounds[c] : q_bounds[c + 1]], :n_probe], c)
        for c in range(n_lists)
    ]
    sizes = np.diff(x_bounds)
    union_rows = sum(
        (q_bounds[c + 1] - q_bounds[c]) * int(sizes[u].sum()) for c, u in enumerate(unions)
    )
    if union_rows > n_q * _MAX_UNION * list_rows(n_x, n_lists):
        # Diffuse data: the queries of a list probe hundreds of lists between them.
        _search_per_probe(qt, xt, q_probes, x_order, x_bounds, sims, idx, drop_self, progress)
    else:
        _search_unions(
            qt, xt, unions, q_order, q_bounds, x_order, x_bounds, sims, idx, drop_self, progress
        )
    # Fewer than k rows in all probed lists leaves empty slots: mark them -1.
    idx[~np.isfinite(sims)] = -1
    return sims, idx


def ivf_lists(n: int) -> int:
    """Inverted lists for n index rows: one per _LIST_ROWS rows, at most 4 x sqrt(n)."""
    return max(1, min(round(n / _LIST_ROWS), round(_LISTS_PER_ROOT * np.sqrt(n))))


def list_rows(n: int, n_lists: int) -> float:
    """Rows of an average list, as the union-or-per-probe test counts them: _LIST_ROWS while the
    lists are that size, their mean size once they grow (ivf_lists)."""
    # Fewer lists than n / 256 means each holds more than 256 rows on average.
    return n / max(n_lists, 1) if n_lists < round(n / _LIST_ROWS) else float(_LIST_ROWS)


def _union(probes: NDArray[np.int64], own: int) -> NDArray[np.int64]:
    """Lists probed by any of a list's queries, the list itself first."""
    probed = np.unique(probes)
    return np.r_[own, probed[probed != own]].astype(np.int64)


def _search_unions(
    qt: torch.Tensor | UnitRows,
    xt: torch.Tensor | UnitRows,
    unions: list[NDArray[np.int64]],
    q_order: NDArray[np.int64],
    q_bounds: NDArray[np.int64],
    x_order: NDArray[np.int64],
    x_bounds: NDArray[np.int64],
    sims: NDArray[np.float32],
    idx: NDArray[np.int64],
    drop_self: bool,
    progress: Progress | None,
) -> None:
    """The queries of each list against the union of the lists they probe, in one matmul."""
    k = sims.shape[1]
    dev = xt.device
    d = xt.shape[1]
    buffer = torch.empty(_TILE_ELEMENTS, dtype=torch.float32, device=dev)
    gathered = torch.empty(0, dtype=torch.float32, device=dev)
    lists = range(len(unions))
    if progress is not None:
        lists = progress.bar(lists, total=len(unions), desc="approximate kNN")
    for c in lists:
        rows = q_order[q_bounds[c] : q_bounds[c + 1]]
        if len(rows) == 0:
            continue
        probed = unions[c]  # own list first, so a query's own column is its position in it
        cand = np.concatenate([x_order[x_bounds[p] : x_bounds[p + 1]] for p in probed])
        kk = min(k, len(cand) - (1 if drop_self else 0))
        if kk <= 0:
            continue
        pad = -len(cand) % _GROUPS  # _tile_topk wants a width that is a multiple of _GROUPS
        cand_t = torch.from_numpy(np.concatenate([cand, np.repeat(cand[:1], pad)])).to(dev)
        width = len(cand_t)
        if len(gathered) < width * d:  # reused: fresh big tensors cost page faults
            gathered = torch.empty(2 * width * d, dtype=torch.float32, device=dev)
        cand_vecs = _take(xt, cand_t, out=gathered[: width * d].view(width, d))
        step = max(1, len(buffer) // width)  # a large union is searched in row chunks
        for s in range(0, len(rows), step):
            chunk = rows[s : s + step]
            tile = buffer[: len(chunk) * width].view(len(chunk), width)
            torch.mm(_take(qt, torch.from_numpy(chunk).to(dev)), cand_vecs.T, out=tile)
            tile[:, len(cand) :] = _EXCLUDED
            if drop_self:
                r = torch.arange(len(chunk), device=dev)
                tile[r, s + r] = _EXCLUDED
            v, j = _tile_topk(tile, kk)
            v, order = torch.sort(v, dim=1, descending=True)
            sims[chunk, :kk] = v.cpu().numpy()
            idx[chunk, :kk] = cand_t[torch.gather(j, 1, order)].cpu().numpy()


def _search_per_probe(
    qt: torch.Tensor | UnitRows,
    xt: torch.Tensor | UnitRows,
    probes: NDArray[np.int64],
    x_order: NDArray[np.int64],
    x_bounds: NDArray[np.int64],
    sims: NDArray[np.float32],
    idx: NDArray[np.int64],
    drop_self: bool,
    progress: Progress | None,
    chunk_rows: int = 1 << 16,
) -> None:
    """Per-query probing (faiss IndexIVFFlat's plan), for data where list unions are large.

    Each list meets, in one matmul, every query of a chunk that probes it; each (query, list)
    pair keeps its top-k and the pairs of a query are merged. Costs a top-k call per pair, but
    reads every list once per chunk whatever the spread of the probes.
    """
    n_q, n_probe = probes.shape
    k = sims.shape[1]
    dev = xt.device
    starts = range(0, n_q, chunk_rows)
    if progress is not None:
        starts = progress.bar(starts, total=len(starts), desc="approximate kNN (per probe)")
    for qs in starts:
        qe = min(qs + chunk_rows, n_q)
        flat = probes[qs:qe].ravel()
        pair_order = np.argsort(flat, kind="stable")
        pair_bounds = np.searchsorted(flat[pair_order], np.arange(len(x_bounds)))
        found_v = torch.full((len(flat), k), _EXCLUDED, device=dev)
        found_i = torch.full((len(flat), k), -1, dtype=torch.int64, device=dev)
        for c in range(len(x_bounds) - 1):
            pairs = pair_order[pair_bounds[c] : pair_bounds[c + 1]]
            members = np.sort(x_order[x_bounds[c] : x_bounds[c + 1]])
            if len(pairs) == 0 or len(members) == 0:
                continue
            pad = -len(members) % _GROUPS
            padded = torch.from_numpy(np.r_[members, np.repeat(members[:1], pad)]).to(dev)
            rows = qs + pairs // n_probe
            tile = torch.mm(_take(qt, torch.from_numpy(rows).to(dev)), _take(xt, padded).T)
            tile[:, len(members) :] = _EXCLUDED
            if drop_self:
                pos = np.minimum(np.searchsorted(members, rows), len(members) - 1)
                pos = np.where(members[pos] == rows, pos, -1)
                _exclude(tile, torch.from_numpy(pos).to(dev))
            kk = min(k, tile.shape[1])
            v, j = _tile_topk(tile, kk)
            pairs_t = torch.from_numpy(pairs).to(dev)
            found_v[pairs_t, :kk] = v
            found_i[pairs_t, :kk] = padded[j]
        v, i = _merge([found_v.view(qe - qs, n_probe * k)], [found_i.view(qe - qs, n_probe * k)], k)
        sims[qs:qe] = v.cpu().numpy()
        idx[qs:qe] = i.cpu().numpy()


@contextmanager
def _stage(progress: Progress | None, name: str) -> Iterator[None]:
    """A timed sub-step message (verbose mode) for the parts of a search that have no bar."""
    if progress is None:
        yield
        return
    with progress.step(name):
        yield


def _spherical_kmeans(
    x: NDArray[np.float32],
    n_clusters: int,
    *,
    rng: np.random.Generator,
    device: str = "cpu",
    iterations: int = 8,
    sample_per_cluster: int = 48,
) -> NDArray[np.float32]:
    """Unit-norm centroids of k-means on cosine similarity, trained on a sample of rows."""
    rows = kmeans_sample_rows(len(x), n_clusters, rng=rng, sample_per_cluster=sample_per_cluster)
    return kmeans_on_sample(x[rows], n_clusters, rng=rng, device=device, iterations=iterations)


def kmeans_sample_rows(
    n: int, n_clusters: int, *, rng: np.random.Generator, sample_per_cluster: int = 48
) -> NDArray[np.int64]:
    """The sorted row positions _spherical_kmeans trains on (the Dask engine gathers the same)."""
    size = kmeans_sample_size(n, n_clusters, sample_per_cluster)
    return np.sort(rng.choice(n, size=size, replace=False))


def kmeans_sample_size(n: int, n_clusters: int, sample_per_cluster: int = 48) -> int:
    """Rows the IVF k-means trains on: 16 to `sample_per_cluster` per list, _KMEANS_SAMPLE cap
    unless 16 per list need more."""
    return min(n, max(n_clusters * 16, min(n_clusters * sample_per_cluster, _KMEANS_SAMPLE)))


def kmeans_on_sample(
    sample: NDArray[np.float32],
    n_clusters: int,
    *,
    rng: np.random.Generator,
    device: str = "cpu",
    iterations: int = 8,
) -> NDArray[np.float32]:
    """Spherical k-means of the sample rows, `rng` continuing after kmeans_sample_rows."""
    centroids = sample[rng.choice(len(sample), size=n_clusters, replace=False)].copy()
    for _ in range(iterations):
        _, nearest = _exact(sample, centroids, 1, self_ids=None, device=device)
        nearest = nearest[:, 0]
        sums = np.zeros_like(centroids)
        torch.from_numpy(sums).index_add_(0, torch.from_numpy(nearest), torch.from_numpy(sample))
        empty = np.bincount(nearest, minlength=n_clusters) == 0
        # An empty cluster restarts at a random sample row rather than dying.
        sums[empty] = sample[rng.choice(len(sample), size=int(empty.sum()), replace=False)]
        centroids = normalize(sums)
    return centroids


def recall_at_k(
    queries: NDArray,
    index: NDArray | None,
    found_sims: NDArray[np.float32],
    *,
    sample: int = 1000,
    exclude_self: bool = True,
    device: str = "cpu",
    seed: int = 0,
) -> float:
    """Share of true top-k neighbours an approximate search found, on a random sample of queries.

    A found neighbour counts when its similarity reaches the true k-th similarity (so ties between
    exact duplicates are not counted as misses). Exact search on the sample costs sample x N x d.
    """
    n_q, k = found_sims.shape
    if k == 0 or n_q == 0:
        return 1.0
    rows = recall_sample_rows(n_q, sample, seed)
    unit = isinstance(queries, UnitRows) and index is None  # rows come normalised
    q = queries[rows] if unit else normalize(np.asarray(queries[rows]))
    x = queries if index is None else index
    # The index is read and normalised a block at a time: a whole copy (or two, with _exact's
    # padded one) was the largest allocation of an in-process audit at 1M rows.
    found_v, found_i = [], []
    for start in range(0, len(x), _RECALL_BLOCK_ROWS):
        block = x[start : start + _RECALL_BLOCK_ROWS]
        block = block if unit else normalize(block)
        own = rows - start if (index is None and exclude_self) else None
        v, i = _exact(q, block, min(k, len(block)), self_ids=own, device=device)
        found_v.append(torch.from_numpy(v))
        found_i.append(torch.from_numpy(i + start))
    true_sims = _merge(found_v, found_i, k)[0].numpy()
    kth = true_sims[:, -1:]
    hits = (found_sims[rows] >= kth - 1e-6).sum(axis=1)
    return float(np.minimum(hits, k).sum() / (len(rows) * k))


def recall_sample_rows(n: int, sample: int, seed: int) -> NDArray[np.int64]:
    """The sorted query positions recall_at_k checks (the Dask engine checks the same)."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(sample, n), replace=False))


# -- the run's shared graph ---------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class KnnGraph:
    """The k nearest neighbours of every item among all items (self excluded).

    similarities : float32 (N, k), cosine, each row descending
    indices      : int64 (N, k), row positions of the neighbours; -1 where none was found
    method       : "exact" or "approx-ivf"
    recall_at_k  : measured on a sample against exact search (None for exact search)
    center       : the mean subtracted before the cosine (None: raw vectors; see offset_center)
    """

    similarities: NDArray[np.float32]
    indices: NDArray[np.int64]
    k: int
    method: str
    recall_at_k: float | None = None
    center: NDArray[np.float32] | None = None


def choose_method(n: int, mode: str, threshold: int) -> str:
    """exact | approx from config.knn_mode; auto switches to approx above `threshold` rows."""
    if mode not in ("exact", "approx", "auto"):
        raise ValueError(f"knn mode must be exact, approx or auto; got {mode!r}")
    if mode == "auto":
        return "approx" if n > threshold else "exact"
    return mode


def build_graph(
    embeddings: NDArray,
    k: int,
    *,
    mode: str = "auto",
    threshold: int = 50_000,
    device: str = "cpu",
    recall_sample: int = 1000,
    seed: int = 0,
    center: NDArray | None = None,
    progress: Progress | None = None,
) -> KnnGraph:
    """Self-join kNN graph of `embeddings` (minus `center`) by the method `mode` selects."""
    method = choose_method(len(embeddings), mode, threshold)
    if method == "exact":
        x = normalize(embeddings, center=center)
        own = np.arange(len(x))
        sims, idx = _exact(x, x, k, self_ids=own, device=device, progress=progress)
        return KnnGraph(sims, idx, sims.shape[1], "exact", None, center)
    # The search reads normalised rows as it needs them: no whole copy of the embeddings.
    x = UnitRows(embeddings, center, device=device)
    sims, idx = approx_knn(x, k=k, device=device, seed=seed, progress=progress)
    recall = recall_at_k(x, None, sims, sample=recall_sample, device=device, seed=seed)
    return KnnGraph(sims, idx, sims.shape[1], "approx-ivf", recall, center)


# Centre the vectors when their mean carries more than this share of their mean squared norm:
# then the mean dominates every cosine (post-ReLU features, abs(normal) + 5: random pairs at
# cosine 0.99), while below it centring moves cosines by little (sms-spam: 0.03, cosines of
# random pairs 0.04 -> 0.00; roman-numerals MobileNet features: 0.67, 0.69 -> -0.03).
OFFSET_SHARE = 0.1


def offset_center(x: NDArray, chunk_rows: int | None = None) -> NDArray[np.float32] | None:
    """The mean row when it carries more than OFFSET_SHARE of the mean squared norm, else None.

    One chunked pass in float64 (a float16 memmap is never copied whole).
    """
    n = len(x)
    if n < 2 or x.ndim != 2:
        return None
    step = chunk_rows or max(1, (1 << 22) // max(x.shape[1], 1))  # 32 MiB blocks of float64
    total = np.zeros(x.shape[1], dtype=np.float64)
    squares = 0.0
    for start in range(0, n, step):
        block = np.asarray(x[start : start + step], dtype=np.float64)
        total += block.sum(axis=0)
        squares += float(np.einsum("ij,ij->", block, block))
    mean = total / n
    if squares <= 0 or float(mean @ mean) <= OFFSET_SHARE * squares / n:
        return None
    return mean.astype(np.float32)


def shared_graph(data: AuditDataset, ctx: AuditContext) -> KnnGraph:
    """The run's kNN graph over all items, computed once and cached in the context."""
    config = ctx.config
    if data.embeddings is None:
        raise ValueError("the kNN graph needs embeddings; pass --embeddings")

    def compute() -> KnnGraph:
        with ctx.progress.step("kNN graph"):
            return build_graph(
                data.embeddings,
                config.knn_k,
                mode=config.knn_mode,
                threshold=config.knn_approx_threshold,
                device=config.knn_device,
                recall_sample=config.knn_recall_sample,
                seed=config.seed,
                center=offset_center(data.embeddings),
                progress=ctx.progress,
            )

    return ctx.cached("knn_graph", compute)


# -- exact duplicates by hashing ----------------------------------------------------------------
_MIX = np.uint64(0x9E3779B97F4A7C15)


def hash_rows(x: NDArray, chunk_rows: int | None = None) -> NDArray[np.uint64]:
    """A 64-bit hash of each row's bytes (as stored, any dtype), computed chunk by chunk.

    Equal rows get equal hashes; different rows collide with probability ~2**-64 per pair.
    """
    n = len(x)
    out = np.empty(n, dtype=np.uint64)
    row_bytes = x.shape[1] * x.dtype.itemsize if x.ndim == 2 else x.dtype.itemsize
    step = chunk_rows or max(1, (1 << 24) // max(row_bytes, 1))
    words = -(-row_bytes // 8)
    for start in range(0, n, step):
        block = np.ascontiguousarray(x[start : start + step]).view(np.uint8).reshape(-1, row_bytes)
        if row_bytes % 8:
            block = np.pad(block, ((0, 0), (0, words * 8 - row_bytes)))
        w = block.view(np.uint64)
        h = np.full(len(w), np.uint64(row_bytes), dtype=np.uint64)
        for j in range(words):  # a loop over columns (<= d/2), vectorised over rows
            h ^= w[:, j]
            h *= _MIX
            h ^= h >> np.uint64(31)
        out[start : start + len(w)] = h
    return out


def hash_strings(values: NDArray) -> NDArray[np.uint64]:
    """A 64-bit hash of each string (pandas' vectorised hash); missing values hash to 0."""
    import pandas as pd

    values = np.asarray(values, dtype=object)
    missing = pd.isna(values)
    out = pd.util.hash_array(np.where(missing, "", values).astype(object), categorize=False)
    out = out.astype(np.uint64)
    out[missing] = 0
    return out


def hash_files(paths: NDArray, progress: Progress | None = None) -> NDArray[np.uint64]:
    """A 64-bit hash of each file's content; 0 where the path is missing or unreadable.

    Only regular files up to files.MAX_USER_FILE_BYTES are read (a FIFO would hang the run).
    One Python step per file: reading the files dominates, so vectorising would gain nothing.
    """
    from dataaudit.files import open_regular

    out = np.zeros(len(paths), dtype=np.uint64)
    items = enumerate(paths)
    if progress is not None:
        items = progress.bar(items, total=len(paths), desc="hashing files")
    for i, path in items:
        if not isinstance(path, str) or not path:
            continue
        digest = hashlib.blake2b(digest_size=8)
        try:
            with open_regular(path) as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        except OSError:
            continue
        out[i] = np.frombuffer(digest.digest(), dtype=np.uint64)[0]
    return out


def exact_groups(
    hashes: NDArray[np.uint64], valid: NDArray[np.bool_] | None = None
) -> NDArray[np.int64]:
    """Group number per row for rows sharing a hash with another row; -1 for unique rows.

    Groups are numbered 0.. in order of their first row. `valid` marks rows that may group
    (e.g. rows with text); the others get -1.
    """
    n = len(hashes)
    valid = np.ones(n, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    groups = np.full(n, -1, dtype=np.int64)
    rows = np.flatnonzero(valid)
    if len(rows) == 0:
        return groups
    _, first, inverse, counts = np.unique(
        hashes[rows], return_index=True, return_inverse=True, return_counts=True
    )
    shared = counts[inverse] > 1
    # Renumber groups by their first row, so numbering follows the table order.
    order = np.argsort(first[counts > 1], kind="stable")
    number = np.full(len(counts), -1, dtype=np.int64)
    number[np.flatnonzero(counts > 1)[order]] = np.arange(len(order))
    groups[rows[shared]] = number[inverse[shared]]
    return groups
