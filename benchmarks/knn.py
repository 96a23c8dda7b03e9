"""kNN benchmark: exact and approximate self-join, against the machine's matmul limit.

Prints a markdown table. Each case runs in its own subprocess so peak RSS is per case.
Data: synthetic clustered embeddings (1,000 Gaussian clusters in a 32-d latent space, mapped
linearly to d dimensions, plus isotropic noise), which, like real embeddings, have neighbours
that mean something; uniform random vectors would make any IVF index look bad.

    python benchmarks/knn.py            # full table (several minutes on 2 cores)
    python benchmarks/knn.py --quick    # N = 10k only
    python benchmarks/knn.py --dask --sizes 200000 1000000 --workers 2
                                        # the run's graph: in process against the Dask engine

The `--dask` table builds the run's shared graph (config defaults: k=10, IVF above 50k rows) of the
same inputs twice: in process (`neighbors.build_graph`, as `shared_graph` calls it) and on a
LocalCluster of N single-threaded workers (`DaskEngine.graph`, engine/dask_graph.py; the table in
Parquet parts of 50k rows, embeddings as .npy). It prints wall time, recall@10 on the same sample,
the share of rows whose neighbour lists are identical in both, and peak RSS (the driver's, which
with Dask hosts the scheduler too, and each worker's).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

K = 10


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, 32)).astype(np.float32)
    z = centers[rng.integers(0, 1000, n)] + 0.6 * rng.standard_normal((n, 32)).astype(np.float32)
    w = rng.standard_normal((32, d)).astype(np.float32)
    return z @ w + 0.5 * rng.standard_normal((n, d)).astype(np.float32)


def matmul_limit(d: int) -> float:
    """Best GFLOP/s of torch.mm on (2048 x d) @ (d x 16384), the shape of an exact-search tile."""
    import torch

    a, b = torch.randn(2048, d), torch.randn(16384, d)
    out = torch.empty(2048, 16384)
    torch.mm(a, b.T, out=out)
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        torch.mm(a, b.T, out=out)
        best = min(best, time.perf_counter() - t)
    return 2 * 2048 * 16384 * d / best / 1e9


def numpy_knn(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain numpy: row-chunked matmul + argpartition, the obvious baseline."""
    n = len(x)
    sims = np.empty((n, k), np.float32)
    idx = np.empty((n, k), np.int64)
    for s in range(0, n, 1024):
        block = x[s : s + 1024] @ x.T
        block[np.arange(len(block)), np.arange(s, s + len(block))] = -np.inf
        part = np.argpartition(-block, k, axis=1)[:, :k]
        vals = np.take_along_axis(block, part, 1)
        order = np.argsort(-vals, axis=1)
        sims[s : s + 1024] = np.take_along_axis(vals, order, 1)
        idx[s : s + 1024] = np.take_along_axis(part, order, 1)
    return sims, idx


def run_case(method: str, n: int, d: int) -> dict:
    from dataaudit.neighbors import approx_knn, knn, normalize, recall_at_k

    x = normalize(clustered(n, d))
    t = time.perf_counter()
    if method == "torch exact":
        sims, _ = knn(x, k=K)
    elif method == "numpy matmul":
        sims, _ = numpy_knn(x, K)
    elif method == "faiss flat":
        import faiss

        index = faiss.IndexFlatIP(d)
        index.add(x)
        dist, found = index.search(x, K + 1)
        sims = _drop_self(dist, found)
    elif method == "torch IVF":
        sims, _ = approx_knn(x, k=K)
    elif method == "faiss IVF":
        import faiss

        # Same list size as dataaudit's IVF; 4 probes per query give faiss comparable recall.
        n_lists = round(n / 256)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, n_lists, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(x[rng.choice(n, size=min(n, 48 * n_lists), replace=False)])
        index.add(x)
        index.nprobe = 4
        dist, found = index.search(x, K + 1)
        sims = _drop_self(dist, found)
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - t
    recall = recall_at_k(x, None, sims.astype(np.float32), sample=1000)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"seconds": seconds, "recall": recall, "rss_mib": rss}


def _drop_self(dist: np.ndarray, found: np.ndarray) -> np.ndarray:
    rows = np.arange(len(found))[:, None]
    is_self = found == rows
    # Keep the first K entries that are not the row itself.
    order = np.argsort(is_self, axis=1, kind="stable")[:, :K]
    return np.take_along_axis(dist, order, 1)


def _dask_inputs(folder, n: int, d: int, part_rows: int = 50_000) -> None:
    """Clustered embeddings with a table (id, label, split) in parts and .npy probs/embeddings."""
    import pandas as pd

    x = clustered(n, d)
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(10), n).astype(np.float32)
    labels = probs.argmax(axis=1)
    parts = folder / "table"
    parts.mkdir(parents=True)
    for i, start in enumerate(range(0, n, part_rows)):
        stop = min(n, start + part_rows)
        pd.DataFrame(
            {
                "id": [f"r{j}" for j in range(start, stop)],
                "label": [f"c{c}" for c in labels[start:stop]],
                "split": np.where(np.arange(start, stop) % 5 == 0, "test", "train"),
            }
        ).to_parquet(parts / f"part-{i:05d}.parquet", index=False)
    np.save(folder / "probs.npy", probs)
    np.save(folder / "embeddings.npy", x)
    (folder / "classes.txt").write_text("".join(f"c{i}\n" for i in range(10)))


def _neighbours(chunk):
    return chunk.pos, chunk.neighbors


def _cat(a, b):
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])


def _hwm_mib() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it does not carry over the
    parent's peak into a process started by fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_dask_case(step: str, folder: str, n: int, d: int, workers: int, limit: str | None) -> dict:
    """One child process per step, so each peak is its own: "inputs" writes the inputs,
    "inprocess" builds the graph as shared_graph does (and saves its neighbours), "dask" builds
    it on a LocalCluster and compares."""
    from pathlib import Path

    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.neighbors import build_graph, offset_center

    folder = Path(folder)
    files = {
        "table": str(folder / "table"),
        "probs": str(folder / "probs.npy"),
        "emb": str(folder / "embeddings.npy"),
    }
    config = AuditConfig()
    if step == "inputs":
        _dask_inputs(folder, n, d)
        return {}
    if step == "inprocess":
        x = np.load(files["emb"], mmap_mode="r")
        t = time.perf_counter()
        graph = build_graph(
            x,
            config.knn_k,
            mode=config.knn_mode,
            threshold=config.knn_approx_threshold,
            center=offset_center(x),
        )
        seconds = time.perf_counter() - t
        np.save(folder / "inprocess_neighbors.npy", graph.indices)
        return {"seconds": seconds, "recall": graph.recall_at_k, "rss_mib": _hwm_mib()}
    from dataaudit.engine.dask_engine import DaskEngine, start_local_cluster
    from dataaudit.engine.inputs import read_partitioned

    out = {}
    client = start_local_cluster(workers, limit)
    try:
        t = time.perf_counter()
        inputs = read_partitioned(files["table"], files["probs"], files["emb"], config, client)
        out["read_s"] = time.perf_counter() - t
        engine = DaskEngine(inputs, client)
        t = time.perf_counter()
        info = engine.graph(AuditContext(config))
        out["seconds"] = time.perf_counter() - t
        out["recall"] = info.recall
        out["method"] = info.method
        out["partitions"] = len(engine.partitions)
        reference = folder / "inprocess_neighbors.npy"
        if reference.exists():
            pos, found = engine.map_reduce(_neighbours, _cat)
            found = np.sort(found[np.argsort(pos)], axis=1)
            same = (found == np.sort(np.load(reference), axis=1)).all(axis=1)
            out["same_rows"] = float(same.mean())
        out["worker_rss_mib"] = sorted(client.run(_hwm_mib).values())
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    out["rss_mib"] = _hwm_mib()
    return out


def dask_table(sizes, d: int, workers: int, limit: str | None, inprocess_up_to: int) -> None:
    import shutil
    import tempfile

    print(f"k={K}, d={d}; Dask: LocalCluster of {workers} single-threaded workers\n")
    print(
        "| N | method | in process s | recall@10 | peak RSS MiB | Dask read s | Dask graph s "
        "| recall@10 | rows with the same neighbours | driver peak MiB | worker peaks MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for n in sizes:
        folder = tempfile.mkdtemp(prefix="knn-dask-")
        results = {}
        steps = ["inputs", "inprocess", "dask"] if n <= inprocess_up_to else ["inputs", "dask"]
        for step in steps:
            argv = [sys.executable, __file__, "--dask-case", step, folder, str(n), str(d)]
            argv += [str(workers)] + ([limit] if limit else [])
            done = subprocess.run(argv, capture_output=True, text=True, env=env, check=True)
            results[step] = json.loads(done.stdout.strip().splitlines()[-1])
        shutil.rmtree(folder, ignore_errors=True)
        mine, theirs = results["dask"], results.get("inprocess", {})

        def f(r, key, fmt):
            return format(r[key], fmt) if r.get(key) is not None else "n/a"

        print(
            f"| {n:,} | {mine['method']} | {f(theirs, 'seconds', '.1f')}"
            f" | {f(theirs, 'recall', '.3f')} | {f(theirs, 'rss_mib', '.0f')}"
            f" | {mine['read_s']:.1f} | {mine['seconds']:.1f} | {f(mine, 'recall', '.3f')}"
            f" | {f(mine, 'same_rows', '.4f')} | {mine['rss_mib']:.0f}"
            f" | {', '.join(f'{m:.0f}' for m in mine['worker_rss_mib'])} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--dask", action="store_true", help="the run's graph, in process and on Dask"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--memory-limit", default=None, help="per worker, e.g. 6GB (spills past it)"
    )
    parser.add_argument(
        "--inprocess-up-to", type=int, default=2_000_000, help="in-process reference up to N"
    )
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--dask-case", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.dask_case:
        # benchmarks/distributed.py would shadow the distributed package.
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
        step, folder, n, d, workers, *limit = args.dask_case
        out = run_dask_case(step, folder, int(n), int(d), int(workers), limit[0] if limit else None)
        print(json.dumps(out))
        return
    if args.dask:
        dask_table(args.sizes, args.dim, args.workers, args.memory_limit, args.inprocess_up_to)
        return
    if args.case:
        method, n, d = args.case
        print(json.dumps(run_case(method, int(n), int(d))))
        return
    try:
        import faiss  # noqa: F401

        has_faiss = True
    except ImportError:
        has_faiss = False
    import torch

    cases = []
    for n in (10_000,) if args.quick else (10_000, 100_000):
        for d in (128, 384):
            for method in ("torch exact", "numpy matmul") + (("faiss flat",) if has_faiss else ()):
                cases.append((method, n, d))
    if not args.quick:
        cases += [("torch IVF", 1_000_000, 128)] + (
            [("faiss IVF", 1_000_000, 128)] if has_faiss else []
        )

    limits = {d: matmul_limit(d) for d in (128, 384)}
    print(
        f"threads: {torch.get_num_threads()}, cores: {os.cpu_count()}; matmul limit (torch.mm "
        + ", ".join(f"d={d}: {g:.0f} GFLOP/s" for d, g in limits.items())
        + f"); k={K}; self-join\n"
    )
    print("| method | N | d | wall s | GFLOP/s | x matmul limit | peak RSS MiB | recall@10 |")
    print("|---|---|---|---|---|---|---|---|")
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for method, n, d in cases:
        out = subprocess.run(
            [sys.executable, __file__, "--case", method, str(n), str(d)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        exact = "IVF" not in method
        gflops = 2 * n * n * d / r["seconds"] / 1e9 if exact else float("nan")
        ratio = f"{limits[d] / gflops:.2f}" if exact else "n/a"
        gf = f"{gflops:.0f}" if exact else "n/a"
        print(
            f"| {method} | {n:,} | {d} | {r['seconds']:.1f} | {gf} | {ratio} | "
            f"{r['rss_mib']:.0f} | {r['recall']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
