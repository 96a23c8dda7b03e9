"""Engines: where an analysis' chunk kernels run. In this process over chunks of rows, or on Dask.

The protocol (the only thing an engine-form analysis knows about where it runs):

- A **chunk** (`Chunk`) is a block of rows as numpy arrays: `pos` (the row's position in the
  table: global row order, and the tie-break of every ranking), `ids`, `labels` (class indices,
  -1 = unlabeled), `splits`, `probs` (n x K float32), `embeddings` (n x d) and `metadata` (a
  pandas DataFrame of the metadata columns, RangeIndex); the last three are read on first use.
  In process a chunk is a slice of the (memory-mapped) AuditDataset; on Dask it is one partition
  of the joined table, converted on the worker.
- A **kernel** is a pure function `kernel(chunk, *params) -> partial`: numpy in, a small value
  out (class counts, a K x K joint, a short candidate table). `params` are small and picklable
  (thresholds, a cut-off), computed by the driver from earlier reductions.
- A **reduction** `combine(a, b) -> partial` is associative, so partials combine in a tree in any
  grouping. `add` sums arrays and dicts of arrays; `top_k` builds on it (below).
- `engine.map_reduce(kernel, combine, *params)` runs the kernel on every chunk and reduces the
  partials; it is the one way an analysis reads the data. An analysis is a short sequence of such
  passes: sufficient statistics (pass 1) -> small parameters on the driver -> scoring (pass 2) ...
- **Selections are exact**: `top_k(engine, kernel, k, score)` keeps each chunk's k best rows by
  (score descending, pos ascending), and merging two such lists keeps the k best of their union.
  Every row of the global top k is among its own chunk's top k, so the merged list is the global
  top k, with ties broken by table order exactly as a stable sort over all rows would. Per-group
  selections (examples per class pair) are the same with a group key.
- **Exact groups** (rows sharing a hash) use `engine.group_by_key(emit, reduce_group, *params)`:
  `emit(chunk, *params)` returns a frame with a `key` column (int64 / uint64) and `pos`; rows
  with equal keys are brought together (on Dask a shuffle on `key`), and `reduce_group(frame)`,
  given whole groups of some keys, keeps those it wants (the keys with two rows or more) as a
  small frame; the driver receives their concatenation, in no particular order.
- **Per-item tables** are never collected: `engine.write_parts(kernel, name, *params)` has every
  chunk write its rows as one Parquet file `<parts_dir>/<name>/part-00042.parquet` (on Dask the
  worker writes it, to any fsspec URL the workers can reach); the driver receives row counts.
  The CLI moves them into the output folder: `OUT/audit/<analysis>.all_<table>.parquet/`, a
  partitioned dataset pandas and Dask read as one table.
- **The driver never holds O(N) data**: what comes back are partials (O(K^2), O(k)), and the
  report keeps capped, ranked tables (at most MAX_DRIVER_ROWS rows each).
- **The shared kNN graph** is an engine service: `engine.graph(ctx) -> GraphInfo` builds the
  run's graph of embeddings once (cached on the engine; later calls return the same facts) and
  returns the driver-side facts `k`, `method` ("exact" or "approx-ivf", as neighbors.KnnGraph),
  `recall` (recall@k measured on a sample, None for exact search), `center` (the offset centre
  subtracted before the cosine, or None; neighbors.offset_center) and `splits` (the split names
  that `neighbor_splits` codes index, sorted). After that call every chunk a kernel receives
  also has, read on first use like `probs`: `neighbors` (n x k int64, table positions `pos` of
  each row's nearest other rows, best first, -1 = none), `similarities` (n x k float32, their
  cosine similarities as neighbors.shared_graph: centred when offset, L2-normalised),
  `neighbor_labels` (n x k int64 class index of each neighbour, -1 = unlabeled or none) and
  `neighbor_splits` (n x k int32 codes into GraphInfo.splits, -1 = none). In process these are
  slices of `neighbors.shared_graph` (the same graph the in-process analyses read); on Dask the
  workers build the graph and keep its columns with the partitions.
- **The near-duplicate rule's Euclidean graph** (embeddings of at most similarity.LOW_DIM
  dimensions, where a direction says little): in process the rule holds every row's arrays; the
  Dask engine's `euclidean_graph(ctx)` builds it exact on the cluster (every partition searched
  in every partition's KD-tree) and returns only the centre and k, and from then on each chunk
  carries its rows' `euclidean` (distances, neighbour positions).

No analysis imports dask: an engine-form analysis module defines `run_on(engine, ctx, config)`
and its kernels; `InProcessEngine` (engine/inprocess.py) and `DaskEngine` (engine/dask_engine.py) run
them. Analyses without an engine form run only in process; the Dask engine refuses them by name
(`analysis_not_on_dask`) unless the run selects the others (`analyses=` / `--analyses`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
from numpy.typing import NDArray

T = TypeVar("T")

# Staging folder of per-item parts inside the output folder; an interrupted run's is removed by
# the next run (outputs.py removes every `.dataaudit-staging-*`).
PARTS_PREFIX = ".dataaudit-staging-parts-"
# Rows a per-item table may have on the driver (the report's and CSVs' capped, ranked lists).
MAX_DRIVER_ROWS = 100_000


class GraphNotAvailable(RuntimeError):
    """This engine cannot build the graph an analysis needs yet ("graph not available on dask")."""


@dataclass(frozen=True, eq=False)
class GraphInfo:
    """Driver-side facts of the run's kNN graph (see the module docstring)."""

    k: int
    method: str  # "exact" | "approx-ivf"
    recall: float | None
    center: NDArray[np.float32] | None
    splits: tuple[str, ...]


# The graph columns of a chunk (see the module docstring), in this order.
GRAPH_COLUMNS = ("neighbors", "similarities", "neighbor_labels", "neighbor_splits")


class Chunk:
    """A block of rows, numpy in. `probs`, `embeddings` and `metadata` may be given as
    zero-argument callables: they are then read on first use, so a kernel that needs only labels
    never converts them.

    `graph` (once engine.graph has run): a zero-argument callable returning the four arrays of
    GRAPH_COLUMNS for these rows, read on first use of any of them.

    `columns(role)` reads a table column by role ("text", "image": absolute paths) on first use
    of `column(role)`; None when the run has no such column. `member_probs` (M x n x K, several
    models' probabilities; None for one model) is read on first use too. `euclidean` (an engine
    that keeps the near-duplicate rule's exact Euclidean graph per partition): the rows'
    (distances, neighbour positions), n x k.
    """

    def __init__(
        self,
        pos: NDArray[np.int64],
        ids: NDArray,
        labels: NDArray[np.int64],
        splits: NDArray,
        probs: NDArray | Callable[[], NDArray],
        embeddings: NDArray | Callable[[], NDArray] | None = None,
        graph: Callable[[], tuple[NDArray, NDArray, NDArray, NDArray]] | None = None,
        metadata: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
        columns: Callable[[str], NDArray | None] | None = None,
        member_probs: NDArray | Callable[[], NDArray] | None = None,
        euclidean: tuple[NDArray, NDArray] | None = None,
    ):
        self.pos = pos
        self.ids = ids
        self.labels = labels
        self.splits = splits
        self._probs = probs
        self._embeddings = embeddings
        self._graph = graph
        self._metadata = metadata
        self._columns = columns
        self._read: dict[str, NDArray | None] = {}
        self._member_probs = member_probs
        self._euclidean = euclidean

    def __len__(self) -> int:
        return len(self.pos)

    @property
    def probs(self) -> NDArray[np.float32]:
        if callable(self._probs):
            self._probs = self._probs()
        return self._probs

    @property
    def embeddings(self) -> NDArray | None:
        if callable(self._embeddings):
            self._embeddings = self._embeddings()
        return self._embeddings

    def column(self, role: str) -> NDArray | None:
        """The rows' values of the table column with this role (object array), or None."""
        if role not in self._read:
            self._read[role] = None if self._columns is None else self._columns(role)
        return self._read[role]

    @property
    def metadata(self) -> pd.DataFrame:
        """The metadata columns of the chunk's rows (no columns when there are none)."""
        if callable(self._metadata):
            self._metadata = self._metadata()
        if self._metadata is None:
            self._metadata = pd.DataFrame(index=pd.RangeIndex(len(self.pos)))
        return self._metadata

    @property
    def member_probs(self) -> NDArray | None:
        if callable(self._member_probs):
            self._member_probs = self._member_probs()
        return self._member_probs

    @property
    def euclidean(self) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        if self._euclidean is None:
            raise ValueError("this chunk has no Euclidean graph; call engine.euclidean_graph first")
        return self._euclidean

    @property
    def labeled(self) -> NDArray[np.bool_]:
        return self.labels >= 0

    def _graph_column(self, i: int) -> NDArray:
        if self._graph is None:
            raise ValueError("this chunk has no kNN graph; call engine.graph(ctx) first")
        if callable(self._graph):
            self._graph = tuple(self._graph())
        return self._graph[i]

    @property
    def neighbors(self) -> NDArray[np.int64]:
        return self._graph_column(0)

    @property
    def similarities(self) -> NDArray[np.float32]:
        return self._graph_column(1)

    @property
    def neighbor_labels(self) -> NDArray[np.int64]:
        return self._graph_column(2)

    @property
    def neighbor_splits(self) -> NDArray[np.int32]:
        return self._graph_column(3)


class Engine(Protocol):
    """Runs kernels over every chunk of one dataset (see the module docstring)."""

    name: str
    classes: tuple[str, ...]  # class names in probability-column order
    verdicts: pd.DataFrame | None  # the reviewers' latest verdicts (--verdicts; small), or None

    def map_reduce(self, kernel: Callable[..., T], combine: Callable[[T, T], T], *params) -> T: ...

    def write_parts(
        self, kernel: Callable[..., pd.DataFrame], name: str, *params
    ) -> str | None: ...

    def graph(self, ctx: Any) -> GraphInfo: ...

    def group_by_key(
        self,
        emit: Callable[..., pd.DataFrame],
        reduce_group: Callable[[pd.DataFrame], pd.DataFrame],
        *params,
    ) -> pd.DataFrame: ...


# -- reductions -------------------------------------------------------------------------------
def add(a: Any, b: Any) -> Any:
    """Sum of two partials: numbers, arrays, tuples or dicts of them (elementwise; dict keys
    missing on one side are kept)."""
    if isinstance(a, tuple):
        return tuple(add(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, Mapping):
        out = dict(a)
        for key, value in b.items():
            out[key] = add(out[key], value) if key in out else value
        return out
    return a + b


def concat(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """The rows of two partial frames, one after the other (a reduction for short candidate
    tables: what comes back must be small)."""
    return pd.concat([a, b], ignore_index=True)


def select_top(frame: pd.DataFrame, k: int, score: str, group: str | None = None) -> pd.DataFrame:
    """The k rows with the highest `score` (ties: lowest `pos` first), per `group` if given."""
    keys = [frame["pos"].to_numpy(), -frame[score].to_numpy(dtype=np.float64)]
    if group is not None:
        keys.append(frame[group].to_numpy())
    ranked = frame.iloc[np.lexsort(keys)]
    if group is None:
        return ranked.iloc[:k].reset_index(drop=True)
    return ranked.groupby(group, sort=False).head(k).reset_index(drop=True)


def top_k(
    engine: Engine,
    kernel: Callable[..., pd.DataFrame],
    k: int,
    score: str,
    *params,
    group: str | None = None,
) -> pd.DataFrame:
    """The exact top k rows over all chunks of the candidate frames `kernel` returns.

    Each frame needs a `pos` column and the `score` column; the result is ranked.
    """

    def local(chunk: Chunk, *p) -> pd.DataFrame:
        return select_top(kernel(chunk, *p), k, score, group)

    def merge(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        return select_top(pd.concat([a, b], ignore_index=True), k, score, group)

    return engine.map_reduce(local, merge, *params)


def label_names(classes: tuple[str, ...], indices: NDArray) -> NDArray:
    """Class names for class indices; "" for -1 (as AuditDataset.label_names)."""
    names = np.array(list(classes) + [""], dtype=object)
    idx = np.asarray(indices)
    return names[np.where(idx < 0, len(classes), idx)]
