"""Duplicates on 2-d embeddings, in process against the Dask engine (the rule's exact Euclidean graph).

With at most 8 dimensions the near-duplicate rule judges on an exact Euclidean kNN graph of its
own: in process one KD-tree over every row, on Dask every partition searched in every
partition's KD-tree (P^2 searches). Synthetic 2-d embeddings with 1,000 planted near copies,
table parts of 250,000 rows, a LocalCluster of 2 single-threaded workers. Prints a table: rows,
partitions, seconds on each engine, duplicate groups, and whether the summaries are equal.

    python benchmarks/dask_low_dim.py --sizes 200000,1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import dataaudit

# This folder holds a distributed.py of its own: import the package, not it.
HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
from distributed import Client, LocalCluster  # noqa: E402

CLASSES = ["a", "b", "c"]
PART_ROWS = 250_000


def inputs(n: int, folder: Path, seed: int = 0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 2)).astype(np.float32)
    src = rng.choice(n, 2000, replace=False)
    emb[src[1000:]] = emb[src[:1000]] + 1e-5
    labels = rng.integers(0, 3, n)
    probs = np.full((n, 3), 0.1, np.float32)
    probs[np.arange(n), labels] = 0.8
    table = pd.DataFrame(
        {
            "id": np.arange(n).astype(str),
            "label": np.asarray(CLASSES, dtype=object)[labels],
            "split": np.where(np.arange(n) % 5 == 0, "test", "train"),
        }
    )
    (folder / "t").mkdir()
    for i, start in enumerate(range(0, n, PART_ROWS)):
        table.iloc[start : start + PART_ROWS].to_parquet(folder / "t" / f"p{i:03d}.parquet")
    np.save(folder / "p.npy", probs)
    np.save(folder / "e.npy", emb)
    return table, probs, emb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200000,1000000")
    args = parser.parse_args()
    client = Client(LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None))
    options = {"classes": CLASSES, "analyses": ("duplicates",)}
    print("| rows | partitions | in process s | dask, 2 workers s | groups | equal |")
    print("|---:|---:|---:|---:|---:|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            table, probs, emb = inputs(n, folder)
            start = time.perf_counter()
            reference = dataaudit.audit(table, probs, emb, **options)
            local_s = time.perf_counter() - start
            start = time.perf_counter()
            ours = dataaudit.audit(
                str(folder / "t"), str(folder / "p.npy"), str(folder / "e.npy"),
                engine="dask", client=client, **options,
            )  # fmt: skip
            dask_s = time.perf_counter() - start
        summary = reference["duplicates"].summary
        print(
            f"| {n:,} | {-(-n // PART_ROWS)} | {local_s:.1f} | {dask_s:.1f} | "
            f"{summary['n_duplicate_groups']:,} | {ours['duplicates'].summary == summary} |"
        )


if __name__ == "__main__":
    main()
