"""Duplicates and look-alikes in engine form, in process: what the chunked passes cost after the graph.

Synthetic embeddings (64 dimensions, 1,000 planted near copies, a text column with 1 in 3 rows
equal to another up to case) at several sizes; the kNN graph is built once per size and cached,
then `duplicates.run_on` runs with chunks of --chunk-rows (several chunks, as a big table would
be read) and with one chunk. Prints a table: rows, chunks, graph seconds, duplicates seconds,
groups found, and whether the chunked run equals the one-chunk run.

    python benchmarks/duplicates_engine.py --sizes 20000,100000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _planted_labels import planted_data, planted_dataset  # noqa: E402

from dataaudit.analyses import duplicates  # noqa: E402
from dataaudit.config import AuditConfig, ColumnRoles  # noqa: E402
from dataaudit.context import AuditContext  # noqa: E402
from dataaudit.engine.inprocess import InProcessEngine  # noqa: E402
from dataaudit.neighbors import shared_graph  # noqa: E402


def dataset(n: int, d: int = 64, seed: int = 0):
    rng = np.random.default_rng(seed)
    base = planted_dataset(planted_data(n_per_class=n // 5))
    emb = rng.standard_normal((base.n, d)).astype(np.float32)
    src = rng.choice(base.n, 2000, replace=False)
    emb[src[1000:]] = emb[src[:1000]] + 1e-4 * rng.standard_normal((1000, d)).astype(np.float32)
    texts = np.array(
        [f"Text {i}" if i % 3 else f"text {i - 1}" for i in range(base.n)], dtype=object
    )
    return dataclasses.replace(base, embeddings=emb, text=texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,100000")
    parser.add_argument("--chunk-rows", type=int, default=10_000)
    args = parser.parse_args()
    print("| rows | chunks | graph s | duplicates s (chunked) | (one chunk) | groups | equal |")
    print("|---|---|---|---|---|---|---|")
    for n in (int(s) for s in args.sizes.split(",")):
        data = dataset(n)
        config = AuditConfig(columns=ColumnRoles(text="text"))
        ctx = AuditContext(config)
        start = time.perf_counter()
        shared_graph(data, ctx)
        graph_s = time.perf_counter() - start
        times, results = [], []
        for chunk_rows in (args.chunk_rows, data.n):
            engine = InProcessEngine(data, chunk_rows=chunk_rows)
            start = time.perf_counter()
            results.append(duplicates.run_on(engine, ctx, config))
            times.append(time.perf_counter() - start)
        chunked, whole = results
        equal = chunked.summary == whole.summary and all(
            chunked.table(t).equals(whole.table(t)) for t in whole.tables
        )
        chunks = -(-data.n // args.chunk_rows)
        print(
            f"| {data.n:,} | {chunks} | {graph_s:.1f} | {times[0]:.2f} | {times[1]:.2f} | "
            f"{whole.summary['n_duplicate_groups']:,} | {equal} |"
        )


if __name__ == "__main__":
    main()
