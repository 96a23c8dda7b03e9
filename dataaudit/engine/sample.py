"""Deterministic samples of rows on any engine: the k rows with the smallest hash of their position.

A bottom-k sample by hash is a reduction like top_k: each chunk keeps its k smallest hashes, and
merging two such lists keeps the k smallest of their union, so the result does not depend on
how rows are chunked or on the engine. With at most k rows it is every row (an exact statistic
on small data); above, a uniform sample without replacement, the same on every run with the same
seed. Quantile edges, fits on a subsample and the like are computed from it on the driver.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import NDArray

HASH = "_hash"


def row_hash(pos: NDArray, seed: int = 0) -> NDArray[np.uint64]:
    """splitmix64 of (position + seed): uniform 64-bit values, a pure function of the row."""
    with np.errstate(over="ignore"):
        z = np.asarray(pos, dtype=np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def smallest_hashes(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """The k rows of `frame` with the smallest (hash, pos)."""
    if len(frame) <= k:
        return frame
    order = np.lexsort((frame["pos"].to_numpy(), frame[HASH].to_numpy()))[:k]
    return frame.iloc[np.sort(order)].reset_index(drop=True)


def sample_rows(
    engine, kernel: Callable[..., pd.DataFrame], k: int, *params, seed: int = 0
) -> pd.DataFrame:
    """The k rows with the smallest hash among the frames `kernel` returns (each with a `pos`
    column), in table order, with their hash in column HASH."""

    def local(chunk, *p) -> pd.DataFrame:
        frame = kernel(chunk, *p)
        frame[HASH] = row_hash(frame["pos"].to_numpy(), seed)
        return smallest_hashes(frame, k)

    def merge(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
        return smallest_hashes(pd.concat([a, b], ignore_index=True), k)

    found = engine.map_reduce(local, merge, *params)
    return found.sort_values("pos", kind="stable").reset_index(drop=True)
