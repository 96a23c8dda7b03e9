"""Slices, calibration and shift in engine form: in process against a LocalCluster, at sizes past
their exact forms (calibration bins above 50,000 labeled items, shift bins above 100,000 items in
the two splits, slices' numeric thresholds from a sample above 100,000 rows).

Synthetic table: 10 classes, a planted failure slice (camera = B and brightness > 0.7 errs at
50%, 10% elsewhere), overconfident probabilities, splits train / production with a moved
column, four metadata columns. The table is written as Parquet part files and audited with
label_errors, slices, calibration and shift in process and with `--engine dask --workers N`.
Prints, per size: each analysis' seconds on both engines, whether the summaries agree (equal, or
the largest relative difference of a number), and the top failure slice.

    python benchmarks/tabular_engine.py --sizes 200000 --workers 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# benchmarks/distributed.py would shadow the distributed package this script needs.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import dataaudit  # noqa: E402
from dataaudit.engine.dask_engine import start_local_cluster  # noqa: E402

ANALYSES = ("label_errors", "slices", "calibration", "shift")
CLASSES = tuple(f"c{j}" for j in range(10))


def table(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = len(CLASSES)
    labels = rng.integers(0, k, n)
    camera = rng.choice(list("ABCDEFGH"), n)
    brightness = rng.random(n)
    errors = rng.random(n) < np.where((camera == "B") & (brightness > 0.7), 0.5, 0.1)
    predicted = np.where(errors, (labels + 1) % k, labels)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), predicted] += 3
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    split = np.where(rng.random(n) < 0.7, "train", "production")
    frame = pd.DataFrame(
        {
            "id": [f"i{i:07d}" for i in range(n)],
            "label": np.asarray(CLASSES, dtype=object)[labels],
            "split": split,
            "camera": camera,
            "brightness": brightness + 0.1 * (split == "production"),
            "site": rng.integers(0, 40, n).astype(str),
            "age": rng.integers(0, 90, n).astype(float),
        }
    )
    return frame, probs.astype(np.float32)


def difference(a: dict, b: dict) -> str:
    """'equal', or the largest relative difference among the summaries' numbers."""
    worst = 0.0
    for key, value in a.items():
        other = b.get(key)
        if value == other or (value != value and other != other):
            continue
        if isinstance(value, float) and isinstance(other, float):
            worst = max(worst, abs(value - other) / max(abs(value), 1e-12))
        else:
            return f"{key}: {value!r} vs {other!r}"
    return "equal" if worst == 0 else f"max rel. diff {worst:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="200000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rows-per-part", type=int, default=100_000)
    args = parser.parse_args()
    client = start_local_cluster(args.workers)
    print(f"{'rows':>10} {'analysis':<12} {'in process s':>12} {'dask s':>8}  summaries")
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            frame, probs = table(n)
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                (folder / "table").mkdir()
                for i, start in enumerate(range(0, n, args.rows_per_part)):
                    part = frame.iloc[start : start + args.rows_per_part]
                    part.to_parquet(folder / "table" / f"part-{i:04d}.parquet", index=False)
                np.save(folder / "probs.npy", probs)
                clock = time.perf_counter()
                local = dataaudit.audit(frame, probs, classes=CLASSES, analyses=ANALYSES)
                local_s = time.perf_counter() - clock
                clock = time.perf_counter()
                ours = dataaudit.audit(
                    str(folder / "table"),
                    str(folder / "probs.npy"),
                    classes=CLASSES,
                    analyses=ANALYSES,
                    engine="dask",
                    client=client,
                )
                dask_s = time.perf_counter() - clock
            for name in ANALYSES:
                a = local.run["timings_s"].get(name, float("nan"))
                b = ours.run["timings_s"].get(name, float("nan"))
                same = difference(local[name].summary, ours[name].summary)
                print(f"{n:>10,} {name:<12} {a:>12.2f} {b:>8.2f}  {same}")
            print(f"{n:>10,} {'whole run':<12} {local_s:>12.2f} {dask_s:>8.2f}")
            top = ours["slices"].table("discovered")
            print(f"{'':>10} top failure slice: {top['slice'].iloc[0] if len(top) else '(none)'}")
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
