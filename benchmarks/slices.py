"""Slices at scale: runtime, peak memory and recall of planted failure slices.

Synthetic data per size: 20 metadata columns (10 categorical with 3-60 values, 10 numeric),
128-dim embeddings (200 gaussian blobs), 85% labeled, 4 splits, base error rate 10%. Planted:
  rule-2   `cat0 = v1 and num3 < 0.3`  (~1% of rows, error 35%)
  rule-1   `cat5 = v2`                 (a value of a 12-value column, ~8% of rows, error 20%)
  blob     an extra embedding blob     (1% of rows, error 40%, not visible in the metadata)
A plant counts as found when one of the top 10 discovered slices has Jaccard overlap >= 0.5 with
it. Null runs use the same generator without plants: any discovery there is a false one.

Each (size, seed) runs in a fresh process so peak RSS is its own; "RSS before" is the process
after generating the inputs (the 1M-row embeddings alone are 512 MB), "peak" is the maximum.
"load avg" is the machine's 1-minute load average at the end of the runs (2 cores, shared):
times above ~2 include waiting for other processes.

    python benchmarks/slices.py                # 100k x 3 seeds, 1M x 1 seed, null 100k x 3
    python benchmarks/slices.py --sizes 100000 --seeds 1
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
import pandas as pd

CLASSES = tuple(f"c{i}" for i in range(10))


def make_data(n: int, seed: int, planted: bool):
    from dataaudit.dataset import UNLABELED, AuditDataset

    rng = np.random.default_rng(seed)
    meta = {}
    for i in range(10):
        k = 12 if i == 5 else int(rng.integers(3, 61))
        meta[f"cat{i}"] = pd.Categorical.from_codes(
            rng.integers(0, k, n), [f"v{j}" for j in range(k)]
        ).astype(str)
    for i in range(10):
        meta[f"num{i}"] = rng.random(n).astype(np.float32)
    meta = pd.DataFrame(meta)

    centers = rng.normal(size=(201, 128)).astype(np.float32) * 0.5
    blob = rng.integers(0, 200, n)
    in_blob = rng.random(n) < (0.01 if planted else 0.0)
    blob[in_blob] = 200
    emb = np.empty((n, 128), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        emb[start:stop] = centers[blob[start:stop]] + rng.normal(
            scale=0.15, size=(stop - start, 128)
        ).astype(np.float32)

    rule2 = (meta["cat0"] == "v1").to_numpy() & (meta["num3"] < 0.3).to_numpy()
    rule1 = (meta["cat5"] == "v2").to_numpy()
    p = np.full(n, 0.10)
    if planted:
        p[rule1] = 0.20
        p[rule2] = 0.35
        p[in_blob] = 0.40
    errors = rng.random(n) < p
    labels = rng.integers(0, 10, n)
    predicted = np.where(errors, (labels + 1 + rng.integers(0, 9, n)) % 10, labels)
    probs = np.full((n, 10), 0.05, np.float32)
    probs[np.arange(n), predicted] = 0.55
    labeled = rng.random(n) < 0.85
    data = AuditDataset(
        ids=np.arange(n, dtype=np.int64),
        classes=CLASSES,
        class_source="benchmark",
        labels=np.where(labeled, labels, UNLABELED).astype(np.int64),
        splits=rng.choice(np.array(["train", "val", "test", "production"], dtype=object), n),
        metadata=meta,
        probs=probs,
        embeddings=emb,
    )
    plants = {"rule-2": rule2, "rule-1": rule1, "blob": in_blob} if planted else {}
    return data, plants


def rule_mask(meta: pd.DataFrame, splits: np.ndarray, rule: str) -> np.ndarray:
    """Rows a discovered rule ("a = v and b < t") selects, parsed back from its name."""
    mask = np.ones(len(meta), bool)
    for part in rule.split(" and "):
        for op in (" >= ", " < ", " = "):
            if op in part:
                column, value = part.split(op, 1)
                break
        values = splits if column == "split" else meta[column].to_numpy()
        if op == " = ":
            mask &= values.astype(str) == value
        elif op == " < ":
            mask &= values < float(value)
        else:
            mask &= values >= float(value)
    return mask


def one_run(n: int, seed: int, planted: bool) -> dict:
    from dataaudit.analyses import slices
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext

    data, plants = make_data(n, seed, planted)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    config = AuditConfig(seed=seed)
    ctx = AuditContext(config)
    start = time.perf_counter()
    result = slices.run(data, ctx, config)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    found = {}
    items = result.table("items")
    discovered = result.table("discovered").head(10)
    members = [
        rule_mask(data.metadata, data.splits, name)
        if kind == "rule"
        # A cluster's items, as far as no higher-ranked slice holds them: a lower bound.
        else items["failure_slice"].to_numpy() == sid
        for sid, kind, name in discovered[["slice_id", "kind", "slice"]].itertuples(index=False)
    ]
    for name, truth in plants.items():
        overlaps = [(m & truth).sum() / max((m | truth).sum(), 1) for m in members]
        found[name] = bool(max(overlaps, default=0.0) >= 0.5)
    return {
        "n": n,
        "seed": seed,
        "planted": planted,
        "seconds": seconds,
        "rss_before_mb": rss_before,
        "peak_mb": peak,
        "load": os.getloadavg()[0],
        "n_tested": result.summary["n_slices_tested"],
        "n_discovered": result.summary["n_failure_slices"],
        "found": found,
        "top": discovered[["slice_id", "slice", "support", "error_rate"]]
        .head(5)
        .to_dict("records"),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--seeds", type=int, default=3, help="seeds at 100k (1M runs one)")
    parser.add_argument("--null-seeds", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        n, seed, planted = int(args.child[0]), int(args.child[1]), args.child[2] == "1"
        print(json.dumps(one_run(n, seed, planted), default=str))
        return

    jobs = []
    for n in args.sizes:
        jobs += [(n, s, True) for s in range(args.seeds if n <= 100_000 else 1)]
    jobs += [(min(args.sizes), 100 + s, False) for s in range(args.null_seeds)]
    runs = []
    for n, seed, planted in jobs:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n), str(seed), "1" if planted else "0"],
            check=True,
            capture_output=True,
            text=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = runs[-1]
        print(
            f"# n={n} seed={seed} planted={planted}: {r['seconds']:.1f} s, top={r['top']}",
            file=sys.stderr,
        )

    print(
        "| rows | data | runs | analysis time (s) | load avg | RSS before / peak (MB) | slices tested | discovered | recall rule-2 | recall rule-1 | recall blob |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        for planted in (True, False):
            group = [r for r in runs if r["n"] == n and r["planted"] == planted]
            if not group:
                continue
            secs = np.mean([r["seconds"] for r in group])
            load = np.mean([r["load"] for r in group])
            before = max(r["rss_before_mb"] for r in group)
            peak = max(r["peak_mb"] for r in group)
            tested = int(np.mean([r["n_tested"] for r in group]))
            disc = "/".join(str(r["n_discovered"]) for r in group)
            if planted:
                rec = [
                    f"{np.mean([r['found'][k] for r in group]):.2f}"
                    for k in ("rule-2", "rule-1", "blob")
                ]
            else:
                rec = ["—"] * 3
            kind = "planted" if planted else "null"
            print(
                f"| {n:,} | {kind} | {len(group)} | {secs:.1f} | {load:.1f} | {before:,.0f} / {peak:,.0f} | {tested:,} | {disc} | {' | '.join(rec)} |"
            )


if __name__ == "__main__":
    main()
