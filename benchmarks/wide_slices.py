"""Wide tables: end-to-end `dataaudit run` and the slices analysis alone, narrow against wide.

Synthetic inputs (4 classes, 32-dim embeddings, 90% labeled, 3 splits, base error rate 10%) with
metadata of a chosen shape:
  narrow     2 columns (1 categorical, 1 numeric: the planted pair's columns)
  wide       230 columns (200 numeric, 30 categorical with 3-12 values)
  cols1000   1,000 columns (870 numeric, 130 categorical)
  awkward    wide + 20 free-text columns of all-distinct strings, 10 id-like columns, 10 text
             columns with ~2,000 distinct values, 5 constant and 5 all-missing columns
Planted (every shape but narrow also gets the single-condition plant; categoricals are cat1, cat2, ...):
  pair     `cat1 = v0 and num0 < 0.3`   (~5% of rows, error 40%)
  single   `cat2 = v1`                  (a value of a 10-value column, ~10% of rows, error 25%)
A plant counts as found when one of the top 10 discovered rules has Jaccard >= 0.5 with it.

Each measurement is a fresh child process. "run" is the wall time of `dataaudit run` (CSV load,
every analysis, report.html and the CSVs written); "slices" is `slices.run` alone, timed inside a
child that built the same AuditDataset.

    python benchmarks/wide_slices.py                       # 5,000 rows, every shape
    python benchmarks/wide_slices.py --rows 4000 --shapes narrow wide
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from slices import rule_mask  # noqa: E402

# scale.py's launcher, also reporting the child's CPU seconds: on a shared 2-core machine wall
# time includes waiting for other jobs, CPU time does not.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.buffer.write(err[-3000:])
print(json.dumps([time.perf_counter() - start, usage.ru_utime + usage.ru_stime,
                  usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)]))
"""

CLASSES = ("a", "b", "c", "d")
SHAPES = {  # numeric, categorical, awkward extras
    "narrow": (1, 1, False),
    "wide": (200, 30, False),
    "cols1000": (870, 130, False),
    "awkward": (200, 30, True),
}


def make_inputs(n: int, shape: str, seed: int = 0):
    """(table, probs, embeddings, plants) for one shape."""
    n_num, n_cat, awkward = SHAPES[shape]
    rng = np.random.default_rng(seed)
    meta: dict[str, np.ndarray] = {}
    for i in range(1, n_cat + 1):
        k = {1: 6, 2: 10}.get(i, int(rng.integers(3, 13)))
        meta[f"cat{i}"] = np.array([f"v{j}" for j in range(k)], dtype=object)[rng.integers(0, k, n)]
    for i in range(n_num):
        meta[f"num{i}"] = rng.random(n).round(4)
    if awkward:
        for i in range(20):
            meta[f"note{i}"] = np.array([f"free text {i}-{j} {rng.random():.6f}" for j in range(n)])
        for i in range(10):
            meta[f"ref{i}"] = np.array([f"R{j:06d}x{i}" for j in rng.permutation(n)])
        for i in range(10):
            meta[f"tag{i}"] = np.array([f"t{j}" for j in rng.integers(0, 2000, n)])
        for i in range(5):
            meta[f"const{i}"] = np.full(n, "same")
        for i in range(5):
            meta[f"empty{i}"] = np.full(n, np.nan)
    table = pd.DataFrame(meta)
    pair = (table["cat1"] == "v0").to_numpy() & (table["num0"] < 0.3).to_numpy()
    plants = {"pair": pair}
    p = np.full(n, 0.10)
    if n_cat > 1:
        single = (table["cat2"] == "v1").to_numpy()
        plants["single"] = single
        p[single] = 0.25
    p[pair] = 0.40
    errors = rng.random(n) < p
    labels = rng.integers(0, len(CLASSES), n)
    predicted = np.where(errors, (labels + 1 + rng.integers(0, 3, n)) % 4, labels)
    probs = np.full((n, 4), 0.1, np.float32)
    probs[np.arange(n), predicted] = 0.7
    labeled = rng.random(n) < 0.9
    label_names = np.array(CLASSES, dtype=object)[labels]
    table.insert(0, "label", np.where(labeled, label_names, None))
    table.insert(0, "split", rng.choice(np.array(["train", "val", "test"]), n))
    table.insert(0, "id", [f"item-{i}" for i in range(n)])
    centers = rng.normal(size=(40, 32)).astype(np.float32)
    emb = centers[rng.integers(0, 40, n)] + rng.normal(scale=0.3, size=(n, 32)).astype(np.float32)
    return table, probs, emb.astype(np.float32), plants


def write_inputs(folder: Path, n: int, shape: str) -> None:
    table, probs, emb, _ = make_inputs(n, shape)
    table.to_csv(folder / "table.csv", index=False)
    np.save(folder / "probs.npy", probs)
    np.save(folder / "emb.npy", emb)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")


def slices_only(n: int, shape: str) -> dict:
    """Child: build the dataset as `dataaudit run` would, then time slices.run alone."""
    from dataaudit.analyses import slices
    from dataaudit.config import AuditConfig
    from dataaudit.context import AuditContext
    from dataaudit.validate import load_dataset

    table, probs, emb, plants = make_inputs(n, shape)
    config = AuditConfig(classes=CLASSES)
    data = load_dataset(table, probs, emb, config)
    start, cpu = time.perf_counter(), time.process_time()
    result = slices.run(data, AuditContext(config), config)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rules = result.table("discovered").query("kind == 'rule'").head(10)
    masks = [rule_mask(table, table["split"].to_numpy(), name) for name in rules["slice"]]
    found = {
        name: bool(max(((m & t).sum() / max((m | t).sum(), 1) for m in masks), default=0.0) >= 0.5)
        for name, t in plants.items()
    }
    return {
        "seconds": seconds,
        "cpu": cpu,
        "summary": {k: v for k, v in result.summary.items() if not isinstance(v, float)},
        "found": found,
        "given_rows": len(result.table("given")),
        "top": rules["slice"].head(3).tolist(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="*", default=[5000])
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--no-run", action="store_true", help="time the slices analysis only")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(slices_only(int(args.child[0]), args.child[1]), default=str))
        return

    rows = []
    for n in args.rows:
        for shape in args.shapes:
            out = subprocess.run(
                [sys.executable, __file__, "--child", str(n), shape],
                check=True,
                capture_output=True,
                text=True,
            )
            alone = json.loads(out.stdout.strip().splitlines()[-1])
            run = {"wall": float("nan"), "cpu": float("nan"), "rss": float("nan")}
            run["csv_mb"] = float("nan")
            if not args.no_run:
                with tempfile.TemporaryDirectory() as tmp:
                    folder = Path(tmp)
                    write_inputs(folder, n, shape)
                    argv = [
                        *("dataaudit", "run", "--table", str(folder / "table.csv")),
                        *("--probs", str(folder / "probs.npy")),
                        *("--embeddings", str(folder / "emb.npy"), "--out", str(folder / "out")),
                        "-q",
                    ]
                    done = subprocess.run(
                        [sys.executable, "-c", LAUNCHER, *argv],
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    wall, cpu, rss, code = json.loads(done.stdout.strip().splitlines()[-1])
                    if code not in (0, 1):
                        print(done.stderr[-3000:], file=sys.stderr)
                    csv = folder / "out" / "slices.csv"
                    size = csv.stat().st_size / 1e6 if csv.exists() else float("nan")
                    run = {"wall": wall, "cpu": cpu, "rss": rss, "csv_mb": size, "code": code}
            rows.append((n, shape, alone, run))
            print(f"# {n} {shape}: {alone} {run}", file=sys.stderr)

    print(
        "| rows | metadata | `dataaudit run` wall / CPU (s) | peak RSS (MB) | slices.run wall / CPU (s) "
        "| slices.csv (MB) | given rows kept | slices tested | pairs tested / screened out "
        "| recall pair | recall single | load avg |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    load = os.getloadavg()[0]
    for n, shape, alone, run in rows:
        found, summary = alone["found"], alone["summary"]
        single = f"{found['single']:.0f}" if "single" in found else "—"
        print(
            f"| {n:,} | {shape} | {run['wall']:.1f} / {run['cpu']:.1f} | {run['rss']:,.0f} "
            f"| {alone['seconds']:.2f} / {alone['cpu']:.2f} | {run['csv_mb']:.2f} "
            f"| {alone['given_rows']:,} | {summary['n_slices_tested']:,} "
            f"| {summary.get('n_slice_pairs_tested', '?'):,} / "
            f"{summary.get('n_slice_pairs_screened_out', '?'):,} "
            f"| {found['pair']:.0f} | {single} | {load:.1f} |"
        )


if __name__ == "__main__":
    main()
