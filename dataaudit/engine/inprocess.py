"""The in-process engine: kernels over consecutive chunks of rows of an AuditDataset.

Chunks are slices, so a memory-mapped .npy is paged in one chunk at a time and no kernel sees
more than CHUNK_ROWS rows; partials are reduced left to right as they come. The kNN graph is
neighbors.shared_graph (cached in the run's AuditContext), so in-process analyses that read it
directly and engine forms that read `chunk.neighbors` see the same graph.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, GraphInfo

T = TypeVar("T")

CHUNK_ROWS = 200_000


class InProcessEngine:
    name = "inprocess"

    def __init__(
        self,
        data: AuditDataset,
        chunk_rows: int = CHUNK_ROWS,
        parts_dir: str | Path | None = None,
    ):
        self.data = data
        self.chunk_rows = max(1, int(chunk_rows))
        self.parts_dir = parts_dir
        self.classes = data.classes
        self.has_embeddings = data.embeddings is not None
        self.verdicts = data.verdicts  # the ledger's latest verdicts (small), or None
        self.embedding_dim = 0 if data.embeddings is None else int(data.embeddings.shape[1])
        self.n_models = data.n_models  # chunks carry member_probs when several
        self._graph = None  # (KnnGraph, GraphInfo, split codes of every row) once built

    @property
    def n_chunks(self) -> int:
        return -(-self.data.n // self.chunk_rows)

    def chunks(self) -> Iterator[Chunk]:
        data = self.data
        for start in range(0, data.n, self.chunk_rows):
            rows = slice(start, min(start + self.chunk_rows, data.n))
            emb = data.embeddings
            graph = None if self._graph is None else functools.partial(self._graph_rows, rows)
            yield Chunk(
                pos=np.arange(rows.start, rows.stop, dtype=np.int64),
                ids=data.ids[rows],
                labels=data.labels[rows],
                splits=data.splits[rows],
                probs=functools.partial(_rows, data.probs, rows),
                embeddings=None if emb is None else functools.partial(_rows, emb, rows),
                graph=graph,
                metadata=functools.partial(_metadata_rows, data.metadata, rows),
                columns=functools.partial(_column, data, rows),
                member_probs=None
                if data.member_probs is None
                else functools.partial(_members, data.member_probs, rows),
            )

    def graph(self, ctx) -> GraphInfo:
        """The run's kNN graph (neighbors.shared_graph); chunks carry its rows from now on."""
        if self._graph is None:
            from dataaudit.neighbors import shared_graph

            knn = shared_graph(self.data, ctx)
            names, codes = np.unique(self.data.splits.astype(str), return_inverse=True)
            info = GraphInfo(
                k=knn.k,
                method=knn.method,
                recall=knn.recall_at_k,
                center=knn.center,
                splits=tuple(str(n) for n in names),
            )
            self._graph = (knn, info, codes.astype(np.int32))
        return self._graph[1]

    def _graph_rows(self, rows: slice):
        knn, _, split_codes = self._graph
        idx = knn.indices[rows]
        found = idx >= 0
        at = np.where(found, idx, 0)
        return (
            idx,
            knn.similarities[rows],
            np.where(found, self.data.labels[at], -1).astype(np.int64),
            np.where(found, split_codes[at], -1).astype(np.int32),
        )

    def map_reduce(self, kernel: Callable[..., T], combine: Callable[[T, T], T], *params) -> T:
        return functools.reduce(combine, (kernel(chunk, *params) for chunk in self.chunks()))

    def write_parts(self, kernel: Callable[..., pd.DataFrame], name: str, *params) -> str | None:
        """Each chunk's rows as one Parquet part under parts_dir/name (nothing without parts_dir)."""
        if self.parts_dir is None:
            return None
        folder = Path(self.parts_dir) / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, chunk in enumerate(self.chunks()):
            kernel(chunk, *params).to_parquet(folder / f"part-{i:05d}.parquet", index=False)
        return str(folder)

    def group_by_key(
        self,
        emit: Callable[..., pd.DataFrame],
        reduce_group: Callable[[pd.DataFrame], pd.DataFrame],
        *params,
    ) -> pd.DataFrame:
        """Every chunk's keyed rows in one frame (a few small columns per row), reduced at once."""
        frames = [emit(chunk, *params) for chunk in self.chunks()]
        return reduce_group(pd.concat(frames, ignore_index=True))


def _column(data: AuditDataset, rows: slice, role: str) -> np.ndarray | None:
    values = {"text": data.text, "image": data.image_paths}.get(role)
    return None if values is None else np.asarray(values[rows], dtype=object)


def _members(array, rows: slice) -> np.ndarray:
    return np.asarray(array[:, rows], dtype=np.float32)


def _rows(array, rows: slice) -> np.ndarray:
    return np.asarray(array[rows], dtype=np.float32)


def _metadata_rows(metadata: pd.DataFrame, rows: slice) -> pd.DataFrame:
    return metadata.iloc[rows].reset_index(drop=True)
