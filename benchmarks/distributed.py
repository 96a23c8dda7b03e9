"""The Dask engine against the in-process engine: agreement, wall time, peak memory, scaling.

For each size it builds synthetic inputs with planted problems (benchmarks/synth.py, generated in
blocks of 1M rows so 10M rows never sit in memory at once): the table as Parquet part files (and,
for the in-process run, as one file), probabilities and embeddings as .npy files. Then it runs
`dataaudit run --analyses A` in a child process, A being every analysis with an engine form
(dataaudit.analyses.engine_forms(), so the benchmark follows what has been ported): in process,
and with `--engine dask --workers N` for each N of --workers. It prints wall time, the peak RSS of
the driver (the CLI process; with a LocalCluster it hosts the scheduler too) and of each worker
(read by the workers themselves at the end of the run, saved in the report), and whether the two
reports agree analysis by analysis (the same summary and the same tables).

    python benchmarks/distributed.py                                  # 100k rows, 2 workers
    python benchmarks/distributed.py --sizes 1000000 --workers 1,2    # scaling 1 -> 2 workers
    python benchmarks/distributed.py --sizes 10000000 --no-inprocess --worker-memory 8GB

The projection (--project-rows, --project-workers) extrapolates the largest Dask run: its wall
time per row per worker (the kernels are per-partition, so the work is linear in rows and splits
over workers) plus the measured per-run fixed cost, and the shuffle volume (the graph's shuffles
move each row's embedding a bounded number of times) per worker.
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

BLOCK_ROWS = 1_000_000


def ported(with_embeddings: bool) -> list[str]:
    from dataaudit import analyses

    forms = list(analyses.engine_forms())
    needs = {a.name: a.requires for a in analyses.ANALYSES}
    if not with_embeddings:
        forms = [f for f in forms if "embeddings" not in needs.get(f, ())]
    return forms


def inputs(folder: Path, n: int, k: int, d: int, part_rows: int, one_file: bool) -> dict:
    """Synthetic inputs written block by block: table parts (+ one file), probs and embeddings."""
    files = {
        "parts": folder / "examples",
        "table": folder / "examples.parquet",
        "probs": folder / "probs.npy",
        "embeddings": folder / "embeddings.npy",
        "classes": folder / "classes.txt",
    }
    if (folder / "done").exists():
        return files
    files["parts"].mkdir(parents=True, exist_ok=True)
    probs = np.lib.format.open_memmap(files["probs"], "w+", np.float32, (n, k))
    emb = np.lib.format.open_memmap(files["embeddings"], "w+", np.float32, (n, d)) if d else None
    flipped, tables, part = [], [], 0
    for block, start in enumerate(range(0, n, BLOCK_ROWS)):
        rows = min(BLOCK_ROWS, n - start)
        table, p, e, planted = synth.make(rows, k, d or 4, seed=block)
        prefix = f"b{block:03d}-"
        table["id"] = prefix + table["id"].astype(str)
        flipped += [prefix + i for i in planted.flipped]
        probs[start : start + rows] = p
        if emb is not None:
            emb[start : start + rows] = e
        for s in range(0, rows, part_rows):
            table.iloc[s : s + part_rows].to_parquet(
                files["parts"] / f"part-{part:05d}.parquet", index=False
            )
            part += 1
        if one_file:
            tables.append(table)
    probs.flush()
    if emb is not None:
        emb.flush()
    if one_file:
        pd.concat(tables, ignore_index=True).to_parquet(files["table"], index=False)
    files["classes"].write_text("\n".join(f"c{i}" for i in range(k)) + "\n")
    (folder / "planted.json").write_text(json.dumps({"flipped": flipped}))
    (folder / "done").write_text("")
    return files


def run(files: dict, out: Path, analyses: list[str], with_embeddings: bool, *engine: str) -> dict:
    table = files["parts"] if engine else files["table"]
    argv = [sys.executable, "-m", "dataaudit", "run", "--table", str(table)]
    argv += ["--probs", str(files["probs"]), "--analyses", ",".join(analyses)]
    if with_embeddings:
        argv += ["--embeddings", str(files["embeddings"])]
    argv += ["--out", str(out), "--force", "-q", *engine]
    wall, rss, code = run_child(argv)
    if code not in (0, 1):
        raise SystemExit(f"run failed ({code}): {' '.join(argv)}")
    from dataaudit.report import AuditReport

    report = AuditReport.load(out)
    workers = report.run.get("engine", {}).get("worker_peak_rss_mb", {})
    # The CLI process's own peak, as it recorded it: the child's RSS as the launcher sees it
    # counts the LocalCluster's worker processes too.
    own = report.run.get("peak_rss_mb_after", {}).values()
    return {
        "wall_s": wall,
        "driver_mb": max(own) if own else rss,
        "workers_mb": list(workers.values()),
        "report": report,
    }


def agreement(a, b, analyses: list[str]) -> dict[str, str]:
    """Per analysis: "same" (summary and every table equal), "same up to ties" (a table's rows
    equal once ordered by id: rows whose scores differ in the last float bits), "same up to
    float rounding" (numbers equal to 1e-4 relative: sums and matrix products taken in another
    order), "skipped" (in both), or what differs, with the share of rows that differ."""

    def same(x: pd.DataFrame, y: pd.DataFrame, **tolerance) -> bool:
        try:
            pd.testing.assert_frame_equal(
                x.reset_index(drop=True), y.reset_index(drop=True), check_dtype=False, **tolerance
            )
        except AssertionError:
            return False
        return True

    def by_id(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.drop(columns=[c for c in ("rank",) if c in frame])
        return frame.sort_values("id", kind="stable") if "id" in frame else frame

    def rows_differing(x: pd.DataFrame, y: pd.DataFrame) -> str:
        if len(x) != len(y) or list(x.columns) != list(y.columns):
            return f"{len(x):,} vs {len(y):,} rows"
        x, y = by_id(x).reset_index(drop=True), by_id(y).reset_index(drop=True)
        bad = np.zeros(len(x), dtype=bool)
        cols = []
        for c in x.columns:
            u, v = x[c], y[c]
            if pd.api.types.is_numeric_dtype(u) and pd.api.types.is_numeric_dtype(v):
                off = ~np.isclose(
                    u.to_numpy(float), v.to_numpy(float), rtol=1e-4, atol=1e-6, equal_nan=True
                )
            else:
                off = u.astype(str).to_numpy() != v.astype(str).to_numpy()
            if off.any():
                cols.append(c)
                bad |= off
        return f"{int(bad.sum()):,} of {len(x):,} rows ({', '.join(cols)})"

    loose = {"rtol": 1e-4, "atol": 1e-6}
    verdict = {}
    for name in analyses:
        if name not in a.results and name not in b.results:
            verdict[name] = "skipped"
            continue
        if name not in a.results or name not in b.results:
            verdict[name] = "ran on one engine only"
            continue
        x, y = a[name], b[name]
        tables = dict(x.tables)
        if name == "label_errors":  # in process: every labeled item; Dask: the ranked top rows
            items = tables["items"].sort_values("error_score", ascending=False, kind="stable")
            tables["items"] = items.head(len(y.tables["items"]))
        differs, ties, rounding = [], [], []
        for key in x.summary:
            u, v = x.summary[key], y.summary.get(key)
            if u == v:
                continue
            close = isinstance(u, float) and isinstance(v, float) and np.isclose(u, v, **loose)
            (rounding if close else differs).append(key)
        for t, frame in tables.items():
            if t not in y.tables:
                differs.append(f"table {t}")
            elif same(frame, y.tables[t]):
                continue
            elif same(by_id(frame), by_id(y.tables[t])):
                ties.append(t)
            elif same(by_id(frame), by_id(y.tables[t]), **loose):
                rounding.append(t)
            else:
                differs.append(f"{t}: {rows_differing(frame, y.tables[t])}")
        notes = []
        if ties:
            notes.append(f"up to ties ({', '.join(ties)})")
        if rounding:
            notes.append(f"up to float rounding ({', '.join(rounding)})")
        verdict[name] = (
            "differs: " + "; ".join(differs)
            if differs
            else "same " + ", ".join(notes)
            if notes
            else "same"
        ).strip()
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--d", type=int, default=128, help="embedding width (0: none)")
    parser.add_argument("--workers", default="2", help="comma-separated worker counts")
    parser.add_argument("--worker-memory", default=None, help="e.g. 8GB (default: auto)")
    parser.add_argument("--part-rows", type=int, default=250_000)
    parser.add_argument("--no-inprocess", action="store_true")
    parser.add_argument("--project-rows", type=int, default=100_000_000)
    parser.add_argument("--project-workers", type=int, default=32)
    parser.add_argument("--workdir", default=None, help="keep inputs and outputs here")
    args = parser.parse_args()
    with_embeddings = args.d > 0
    analyses = ported(with_embeddings)
    print(f"analyses with an engine form: {', '.join(analyses)}", file=sys.stderr)
    rows, last = [], None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            folder = root / f"n{n}-k{args.k}-d{args.d}"
            folder.mkdir(parents=True, exist_ok=True)
            files = inputs(folder, n, args.k, args.d, args.part_rows, not args.no_inprocess)
            here = None
            if not args.no_inprocess:
                here = run(files, folder / "out-inprocess", analyses, with_embeddings)
                rows.append(_row(n, "in process", "1 file", here, "-"))
            for w in (int(x) for x in args.workers.split(",")):
                engine = ["--engine", "dask", "--workers", str(w)]
                if args.worker_memory:
                    engine += ["--worker-memory", args.worker_memory]
                dask = run(files, folder / f"out-dask-{w}", analyses, with_embeddings, *engine)
                verdict = "-"
                if here is not None:
                    agree = agreement(here["report"], dask["report"], analyses)
                    print(json.dumps({"n": n, "workers": w, "agreement": agree}), file=sys.stderr)
                    bad = {k: v for k, v in agree.items() if not v.startswith(("same", "skip"))}
                    verdict = "all" if not bad else "; ".join(f"{k} {v}" for k, v in bad.items())
                parts = f"{-(-n // args.part_rows)} files"
                rows.append(_row(n, f"dask, {w} workers", parts, dask, verdict))
                last = (n, w, dask)
    _print(rows)
    if last is not None:
        _project(*last, args.project_rows, args.project_workers)


def _row(n: int, engine: str, parts: str, r: dict, verdict: str) -> dict:
    timings = r["report"].run.get("timings_s", {})
    return {
        "rows": f"{n:,}",
        "engine": engine,
        "parts": parts,
        "wall s": f"{r['wall_s']:.1f}",
        "driver peak MB": f"{r['driver_mb']:.0f}",
        "worker peaks MB": " / ".join(f"{m:.0f}" for m in r["workers_mb"]) or "-",
        "slowest steps": ", ".join(
            f"{k} {v:.0f}s" for k, v in sorted(timings.items(), key=lambda kv: -kv[1])[:3]
        ),
        "agrees with in process": verdict,
    }


def _print(rows: list[dict]) -> None:
    if not rows:
        return
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row[h] for h in header) + " |")


def _project(n: int, workers: int, run: dict, target_rows: int, target_workers: int) -> None:
    """Linear projection of the measured run to target_rows on target_workers (see docstring)."""
    per_row_worker = run["wall_s"] * workers / n  # fixed costs included: a pessimistic slope
    wall = per_row_worker * target_rows / target_workers
    peak = max(run["workers_mb"] or [0])
    print(
        f"\nprojection: {target_rows:,} rows on {target_workers} workers ~ {wall / 60:.0f} min "
        f"(measured {run['wall_s']:.0f} s for {n:,} rows on {workers} workers = "
        f"{per_row_worker * 1e6:.1f} worker-us per row, linear in rows / workers); "
        f"worker peak {peak:.0f} MB at {n / workers:,.0f} rows per worker"
    )


if __name__ == "__main__":
    main()
