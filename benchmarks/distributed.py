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

The projection (--project-rows, --project-workers) scales the last Dask run's measured task
costs (run.engine.task_costs: compute, transfer and spill seconds per task name) and the bytes
its workers sent, as `_project` says; `--project-from OUT` reads them from an earlier run's
output folder instead of running.
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


def inputs(
    folder: Path, n: int, k: int, d: int, part_rows: int, one_file: bool, mode_rows: int = 0
) -> dict:
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
        table, p, e, planted = synth.make(rows, k, d or 4, seed=block, mode_rows=mode_rows)
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
    parser.add_argument(
        "--mode-rows",
        type=int,
        default=250,
        help="embeddings in tight modes of this many rows (synth.make); 0: one ball per class",
    )
    parser.add_argument("--no-inprocess", action="store_true")
    parser.add_argument("--project-rows", type=int, default=100_000_000)
    parser.add_argument("--project-workers", type=int, default=32)
    parser.add_argument("--workdir", default=None, help="keep inputs and outputs here")
    parser.add_argument(
        "--project-from", default=None, help="project from this Dask run's output folder only"
    )
    args = parser.parse_args()
    if args.project_from:
        from dataaudit.report import AuditReport

        report = AuditReport.load(Path(args.project_from))
        peaks = list(report.run["engine"].get("worker_peak_rss_mb", {}).values())
        measured = {"wall_s": report.run["duration_s"], "workers_mb": peaks, "report": report}
        n = report.dataset["n_items"]
        _project(n, len(peaks), measured, args.project_rows, args.project_workers)
        return
    with_embeddings = args.d > 0
    analyses = ported(with_embeddings)
    print(f"analyses with an engine form: {', '.join(analyses)}", file=sys.stderr)
    rows, last = [], None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.workdir or tmp)
        for n in (int(s) for s in args.sizes.split(",")):
            modes = f"-m{args.mode_rows}" if args.mode_rows else ""
            folder = root / f"n{n}-k{args.k}-d{args.d}{modes}"
            folder.mkdir(parents=True, exist_ok=True)
            files = inputs(
                folder, n, args.k, args.d, args.part_rows, not args.no_inprocess, args.mode_rows
            )
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


# Tasks whose cost per row grows with the IVF lists (neighbors.ivf_lists): filing rows under
# their nearest centroids (cost ~ rows x lists) and the search (cost ~ rows x list size).
_PER_LIST = "prepare"  # task names: the function, leading underscores dropped
_PER_LIST_ROW = "search_bucket"
# The 2-core matmul speed neighbors.py measured (GFLOP/s), for the driver's k-means.
_DRIVER_GFLOPS = 134.0
# Per worker network bandwidth assumed for the shuffles (10 GbE), bytes / s.
_NETWORK = 1.2e9


def _project(n: int, workers: int, run: dict, target_rows: int, target_workers: int) -> None:
    """Project the measured Dask run to target_rows on target_workers, from its task costs.

    Every task's measured compute, transfer and spill seconds are scaled to the target size:
    by rows for per-partition kernels; by rows x lists for filing rows under centroids and by
    rows x list size for the IVF search (lists grow as 4 x sqrt(n) above 1M rows). Their sum
    is shared by the workers. The driver's k-means (sample rows x lists x d x 8 iterations) is
    added at the measured matmul speed, and the workers' bytes sent (the shuffles and partials)
    at _NETWORK per worker. What the measured wall time holds beyond compute / workers (the
    scheduler, the driver's steps, waiting) is added scaled by rows per worker: pessimistic.
    """
    from dataaudit import neighbors as nb

    report = run["report"]
    engine = report.run.get("engine", {})
    costs = engine.get("task_costs", {})
    if not costs:
        print("\nprojection: the run recorded no task costs")
        return
    d = int(report.dataset.get("embedding_dim") or 0)
    rows = target_rows / n

    def scale(name: str) -> float:
        if name == _PER_LIST:
            return rows * nb.ivf_lists(target_rows) / nb.ivf_lists(n)
        if name == _PER_LIST_ROW:
            return rows * (target_rows / nb.ivf_lists(target_rows)) / (n / nb.ivf_lists(n))
        return rows

    def kmeans_s(m: int) -> float:
        if not d:
            return 0.0
        k = nb.ivf_lists(m)
        return 2.0 * nb.kmeans_sample_size(m, k) * k * d * 8 / (_DRIVER_GFLOPS * 1e9)

    work = {name: c["compute_s"] + c["transfer_s"] + c["spill_s"] for name, c in costs.items()}
    measured_work = sum(work.values())
    other = max(0.0, run["wall_s"] - measured_work / workers - kmeans_s(n))
    target_work = sum(w * scale(name) for name, w in work.items())
    network = engine.get("bytes_sent_by_workers", 0) * rows / target_workers / _NETWORK
    per_worker_rows = (target_rows / target_workers) / (n / workers)
    wall = target_work / target_workers + kmeans_s(target_rows) + network + other * per_worker_rows
    print(
        f"\nprojection: {target_rows:,} rows on {target_workers} workers ~ {wall / 60:.0f} min "
        f"(from {n:,} rows on {workers} workers in {run['wall_s']:.0f} s: task work "
        f"{measured_work:.0f} s -> {target_work:.0f} s, i.e. {target_work / target_workers:.0f} s "
        f"per worker; driver k-means {kmeans_s(n):.0f} s -> {kmeans_s(target_rows):.0f} s; "
        f"shuffles and partials {engine.get('bytes_sent_by_workers', 0) / 1e9:.1f} GB -> "
        f"{network:.0f} s at {_NETWORK / 1e9:.1f} GB/s per worker; the rest {other:.0f} s -> "
        f"{other * per_worker_rows:.0f} s). Rows per worker {target_rows / target_workers:,.0f} "
        f"against {n / workers:,.0f} measured (worker peak {max(run['workers_mb'] or [0]):.0f} MB)."
    )
    print(
        "costliest tasks (measured): "
        + ", ".join(
            f"{name} {w:.0f} s" for name, w in sorted(work.items(), key=lambda kv: -kv[1])[:6]
        )
    )


if __name__ == "__main__":
    main()
