"""kNN benchmark: exact and approximate self-join, against the machine's matmul limit.

Prints a markdown table. Each case runs in its own subprocess so peak RSS is per case.
Data: synthetic clustered embeddings (1,000 Gaussian clusters in a 32-d latent space, mapped
linearly to d dimensions, plus isotropic noise), which, like real embeddings, have neighbours
that mean something; uniform random vectors would make any IVF index look bad.

    python benchmarks/knn.py            # full table (several minutes on 2 cores)
    python benchmarks/knn.py --quick    # N = 10k only
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--case", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
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
