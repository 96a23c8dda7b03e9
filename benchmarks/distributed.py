"""The Dask engine against the in-process engine: agreement, wall time and peak memory.

For each size it builds synthetic inputs with planted label flips (benchmarks/synth.py), writes
the table once as a single Parquet file (in process) and once as Parquet part files (Dask), and
runs `dataaudit run --analyses label_errors,per_class,swapped_pairs` (the analyses that run on
both engines) in a child process: in process, and with `--engine dask --workers N`. It prints wall
time, the peak RSS of the driver (the CLI process; with Dask it hosts the scheduler too) and of
each worker (read by the workers themselves at the end of the run, saved in the report), and
whether the two reports agree: the same flagged ids, per-class table and class pairs.

    python benchmarks/distributed.py                         # 100k rows, 2 workers
    python benchmarks/distributed.py --sizes 1000000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import synth  # noqa: E402
from scale import run_child  # noqa: E402

ANALYSES = "label_errors,per_class,swapped_pairs"


def inputs(folder: Path, n: int, k: int, part_rows: int) -> dict[str, Path]:
    """Synthetic inputs (no embeddings: no ported analysis reads them), table also in parts."""
    table, probs, _, planted = synth.make(n, k, d=4)
    files = {
        "table": folder / "examples.parquet",
        "parts": folder / "examples",
        "probs": folder / "probs.npy",
        "classes": folder / "classes.txt",
    }
    table.to_parquet(files["table"], index=False)
    files["parts"].mkdir()
    for i, start in enumerate(range(0, n, part_rows)):
        table.iloc[start : start + part_rows].to_parquet(
            files["parts"] / f"part-{i:05d}.parquet", index=False
        )
    np.save(files["probs"], probs)
    files["classes"].write_text("\n".join(f"c{i}" for i in range(k)) + "\n")
    (folder / "planted.json").write_text(json.dumps({"flipped": planted.flipped.tolist()}))
    return files


def run(files: dict[str, Path], out: Path, *engine: str) -> dict:
    table = files["parts"] if engine else files["table"]
    argv = [
        sys.executable,
        "-m",
        "dataaudit",
        "run",
        "--table",
        str(table),
        "--probs",
        str(files["probs"]),
        "--analyses",
        ANALYSES,
        "--out",
        str(out),
        "-q",
        *engine,
    ]
    wall, rss, code = run_child(argv)
    if code not in (0, 1):
        raise SystemExit(f"run failed ({code}): {' '.join(argv)}")
    from dataaudit.report import AuditReport

    report = AuditReport.load(out)
    workers = report.run.get("engine", {}).get("worker_peak_rss_mb", {})
    return {
        "wall_s": wall,
        "driver_mb": rss,
        "workers_mb": list(workers.values()),
        "report": report,
    }


def agreement(a, b) -> dict[str, bool]:
    def flagged(report):
        items = report["label_errors"].table("items")
        return set(items.loc[items["is_label_error"], "id"])

    def same(x: pd.DataFrame, y: pd.DataFrame) -> bool:
        try:
            pd.testing.assert_frame_equal(x, y, check_dtype=False)
        except AssertionError:
            return False
        return True

    return {
        "flagged ids": flagged(a) == flagged(b),
        "per-class table": same(a["per_class"].table("classes"), b["per_class"].table("classes")),
        "class pairs": same(a["swapped_pairs"].table("pairs"), b["swapped_pairs"].table("pairs")),
        "summaries": all(a[n].summary == b[n].summary for n in ANALYSES.split(",")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--part-rows", type=int, default=125_000)
    parser.add_argument("--workdir", default=None, help="keep inputs and outputs here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            folder = root / f"n{n}"
            folder.mkdir(parents=True, exist_ok=True)
            files = inputs(folder, n, args.k, args.part_rows)
            here = run(files, folder / "out-inprocess")
            dask = run(
                files, folder / "out-dask", "--engine", "dask", "--workers", str(args.workers)
            )
            agree = agreement(here["report"], dask["report"])
            n_flagged = here["report"]["label_errors"].summary["n_label_errors"]
            verdict = ", ".join(k for k, v in agree.items() if v)
            if not all(agree.values()):
                verdict += " (NOT: " + ", ".join(k for k, v in agree.items() if not v) + ")"
            for name, r in (("in process", here), (f"dask, {args.workers} workers", dask)):
                rows.append(
                    {
                        "rows": f"{n:,}",
                        "engine": name,
                        "parts": "1 file" if r is here else f"{-(-n // args.part_rows)} files",
                        "wall s": f"{r['wall_s']:.1f}",
                        "driver peak MB": f"{r['driver_mb']:.0f}",
                        "worker peaks MB": " / ".join(f"{m:.0f}" for m in r["workers_mb"]) or "-",
                        "flagged": f"{n_flagged:,}",
                        "agrees": "-" if r is here else verdict,
                    }
                )
            print(json.dumps({"n": n, "agreement": agree}), file=sys.stderr)
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row[h] for h in header) + " |")


if __name__ == "__main__":
    main()
