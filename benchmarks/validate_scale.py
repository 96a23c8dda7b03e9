"""Bad input at scale: a 1M-row audit with a few hundred bad rows must fail fast, naming them.

Builds a clean table (CSV and Parquet), probabilities (N x 10 float32 .npy, classes.txt beside)
and embeddings (N x 128 float32 .npy), then copies with planted problems:
300 duplicate ids, 200 unknown labels, 100 probability rows that do not sum to 1, 50 NaN
embedding rows, and all four at once. Each case runs `dataaudit run` in a child process; the
table shows wall seconds until the error exit, peak RSS of the child, the exit code, and whether
the message names each planted problem (its file, column, and the first 5 bad rows). Clean
inputs are timed through `load_dataset` alone for reference, next to a child that only reads
the table, so the cost of validation itself shows.

    python benchmarks/validate_scale.py                  # N = 1,000,000, CSV and Parquet
    python benchmarks/validate_scale.py --n 100000 --formats parquet
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

import numpy as np

K, D = 10, 128
CLASSES = [f"c{i}" for i in range(K)]
N_DUP_IDS, N_UNKNOWN_LABELS, N_BAD_SUMS, N_NAN_EMB = 300, 200, 100, 50


@dataclass
class Planted:
    code: str  # the problem code the error message must carry
    file: str  # the file it must name
    column: str | None  # the column it must name (table problems)
    rows: np.ndarray  # every row the check should flag, sorted


@dataclass
class Case:
    name: str
    table: Path
    probs: Path
    embeddings: Path
    planted: list[Planted] = field(default_factory=list)


def build_clean(folder: Path, n: int, seed: int = 0) -> tuple[pd.DataFrame, Path, Path]:
    import pandas as pd

    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    labels = np.array(CLASSES, dtype=object)[y]
    labels[rng.random(n) < 0.1] = None  # an unlabeled pool
    table = pd.DataFrame(
        {
            "id": np.char.add("s", np.char.zfill(np.arange(n).astype(str), 7)).astype(object),
            "label": labels,
            "split": rng.choice(np.array(["train", "val", "test", "production"]), n),
            "camera": rng.choice(np.array([f"cam{i}" for i in range(8)]), n),
            "hour": rng.integers(0, 24, n),
            "brightness": rng.random(n).round(3),
        }
    )
    logits = rng.normal(size=(n, K)).astype(np.float32)
    logits[np.arange(n), y] += 2
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    probs_path = folder / "probs.npy"
    np.save(probs_path, probs.astype(np.float32))
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    del logits, probs
    emb_path = folder / "embeddings.npy"
    emb = np.lib.format.open_memmap(emb_path, mode="w+", dtype=np.float32, shape=(n, D))
    for start in range(0, n, 100_000):  # written in chunks: the parent stays small
        stop = min(start + 100_000, n)
        emb[start:stop] = rng.normal(scale=0.1, size=(stop - start, D))
    emb.flush()
    del emb
    return table, probs_path, emb_path


def write_table(table: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".csv":
        table.to_csv(path, index=False)
    else:
        table.to_parquet(path, index=False)
    return path


def copy_array(src: Path, dst_folder: Path, plant) -> Path:
    """A copy of an .npy file with `plant(memmap)` applied in place (no full load)."""
    dst_folder.mkdir(parents=True, exist_ok=True)
    dst = dst_folder / src.name
    shutil.copyfile(src, dst)
    if (src.parent / "classes.txt").exists():
        shutil.copyfile(src.parent / "classes.txt", dst_folder / "classes.txt")
    array = np.load(dst, mmap_mode="r+")
    plant(array)
    array.flush()
    del array
    return dst


def plant_duplicate_ids(table: pd.DataFrame, rng) -> np.ndarray:
    rows = rng.choice(len(table), 2 * N_DUP_IDS, replace=False)
    copies, sources = rows[:N_DUP_IDS], rows[N_DUP_IDS:]
    table.loc[copies, "id"] = table["id"].to_numpy()[sources]
    return np.sort(rows)  # both the copy and the row it copies share an id


def plant_unknown_labels(table: pd.DataFrame, rng, avoid: np.ndarray) -> np.ndarray:
    free = np.setdiff1d(np.arange(len(table)), avoid)
    rows = np.sort(rng.choice(free, N_UNKNOWN_LABELS, replace=False))
    table.loc[rows, "label"] = "c1O"  # a typo: letter O for zero
    return rows


def build_cases(work: Path, n: int, formats: list[str]) -> tuple[list[Case], dict]:
    rng = np.random.default_rng(1)
    clean = work / "clean"
    clean.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    table, probs, emb = build_clean(clean, n)

    bad_sum_rows = np.sort(rng.choice(n, N_BAD_SUMS, replace=False))
    nan_rows = np.sort(rng.choice(n, N_NAN_EMB, replace=False))

    def scale_rows(array):
        array[bad_sum_rows] *= 1.5

    def nan_out(array):
        array[nan_rows] = np.nan

    bad_probs = copy_array(probs, work / "bad_probs", scale_rows)
    bad_emb = copy_array(emb, work / "bad_embeddings", nan_out)

    dup_table = table.copy()
    dup_rows = plant_duplicate_ids(dup_table, rng)
    unknown_table = table.copy()
    unknown_rows = plant_unknown_labels(unknown_table, rng, avoid=np.array([], dtype=np.int64))
    all_table = dup_table.copy()
    all_unknown = plant_unknown_labels(all_table, rng, avoid=dup_rows)

    def planted_dup(path):
        return Planted("duplicate_ids", path.name, "id", dup_rows)

    def planted_unknown(path, rows):
        return Planted("unknown_labels", path.name, "label", rows)

    sums = Planted("probs_not_normalized", bad_probs.name, None, bad_sum_rows)
    nans = Planted("embeddings_not_finite", bad_emb.name, None, nan_rows)

    cases = []
    paths = {}
    for fmt in formats:
        ext = ".csv" if fmt == "csv" else ".parquet"
        clean_path = write_table(table, clean / f"examples{ext}")
        paths[fmt] = clean_path
        dup_path = write_table(dup_table, work / f"dup_ids{ext}")
        unknown_path = write_table(unknown_table, work / f"unknown_labels{ext}")
        all_path = write_table(all_table, work / f"all_bad{ext}")
        cases += [
            Case(f"{N_DUP_IDS} duplicate ids", dup_path, probs, emb, [planted_dup(dup_path)]),
            Case(
                f"{N_UNKNOWN_LABELS} unknown labels",
                unknown_path,
                probs,
                emb,
                [planted_unknown(unknown_path, unknown_rows)],
            ),
            Case(f"{N_BAD_SUMS} probs rows not summing to 1", clean_path, bad_probs, emb, [sums]),
            Case(f"{N_NAN_EMB} NaN embedding rows", clean_path, probs, bad_emb, [nans]),
            Case(
                "all four at once",
                all_path,
                bad_probs,
                bad_emb,
                [planted_dup(all_path), planted_unknown(all_path, all_unknown), sums, nans],
            ),
        ]
    build_s = time.perf_counter() - t0
    return cases, {"clean_tables": paths, "probs": probs, "embeddings": emb, "build_s": build_s}


def run_median(argv: list[str], repeat: int) -> tuple[float, float, int, str, str]:
    """run_child `repeat` times: the median wall time (the machine is shared), the largest RSS."""
    runs = sorted((run_child(argv) for _ in range(repeat)), key=lambda run: run[0])
    wall, _, code, out, err = runs[len(runs) // 2]
    return wall, max(run[1] for run in runs), code, out, err


def run_child(argv: list[str]) -> tuple[float, float, int, str, str]:
    """(wall seconds, peak RSS in MB of the child, exit code, stdout, stderr)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        texts = [f.read().decode(errors="replace") for f in (out, err)]
    return wall, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), *texts


def named(message: str, planted: Planted) -> tuple[bool, str]:
    """Does one line of the message carry the code, file, column and first 5 planted rows?"""
    lines = [line for line in message.splitlines() if f"[{planted.code}]" in line]
    if not lines:
        return False, "no line"
    line = lines[0]
    missing = []
    if planted.file not in line:
        missing.append("file")
    if planted.column and f"column {planted.column!r}" not in line:
        missing.append("column")
    first = ", ".join(str(r) for r in planted.rows[:5])
    if not re.search(rf"rows {re.escape(first)}\b", line):
        missing.append("rows")
    return not missing, "ok" if not missing else "missing " + "+".join(missing)


LOAD_CHILD = """
import sys, time
from dataaudit.validate import load_dataset
from dataaudit.load import read_table
mode, table, probs, emb = sys.argv[1:5]
start = time.perf_counter()
if mode == "read":
    raw, problems = read_table(table, ("id", "label"))
    assert not problems, problems
else:
    data = load_dataset(table, probs, emb)
    assert data.n > 0
print(time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--formats", default="parquet,csv")
    parser.add_argument("--workdir", default=None, help="keep inputs here (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case (median shown)")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dataaudit-validate-"))
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    saved = work / f"cases-{args.n}-{'-'.join(formats)}.pkl"
    if args.build_only:
        saved.write_bytes(pickle.dumps(build_cases(work, args.n, formats)))
        return
    if not saved.exists():  # else kept from an earlier run with the same --workdir
        # Built in a child: a child's peak RSS includes its parent's at fork (Linux carries the
        # high-water mark across exec), so the measuring process must stay small.
        argv = [sys.executable, __file__, "--n", str(args.n), "--formats", args.formats]
        subprocess.run([*argv, "--workdir", str(work), "--build-only"], check=True)
    cases, inputs = pickle.loads(saved.read_bytes())
    print(f"<!-- inputs for N = {args.n:,} built in {inputs['build_s']:.0f} s in {work} -->")

    rows = []
    for fmt, table in inputs["clean_tables"].items():
        for mode in ("read", "validate"):
            argv = [sys.executable, "-c", LOAD_CHILD, mode, str(table)]
            argv += [str(inputs["probs"]), str(inputs["embeddings"])]
            wall, rss, code, out, err = run_median(argv, args.repeat)
            if code:
                print(err, file=sys.stderr)
            what = "clean, read the table only" if mode == "read" else "clean, load_dataset"
            inside = f"{float(out):.1f} s of it in the call" if not code else "failed"
            rows.append((f"{what} ({fmt})", wall, rss, code, inside))
            print(rows[-1], file=sys.stderr, flush=True)

    for case in cases:
        out = work / "out"
        argv = [sys.executable, "-m", "dataaudit", "run", "--table", str(case.table)]
        argv += ["--probs", str(case.probs), "--embeddings", str(case.embeddings)]
        argv += ["--out", str(out), "--force", "-q"]
        wall, rss, code, _, err = run_median(argv, args.repeat)
        verdicts = [named(err, p) for p in case.planted]
        shown = "; ".join(
            f"{p.code}: {'yes' if ok else 'NO (' + why + ')'}"
            for p, (ok, why) in zip(case.planted, verdicts)
        )
        fmt = case.table.suffix.lstrip(".")
        rows.append((f"{case.name} ({fmt})", wall, rss, code, shown))
        print(rows[-1], file=sys.stderr, flush=True)
        if not all(ok for ok, _ in verdicts):
            print(err, file=sys.stderr)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"<!-- load average at the end (1, 5, 15 min): {load}; the machine has {os.cpu_count()} cores -->"
    )
    print(f"<!-- wall s: median of {args.repeat} runs; peak RSS: the largest -->")
    print(
        f"| case (N = {args.n:,}) | wall s | peak RSS MB | exit | message names file, column, first rows |"
    )
    print("|---|---:|---:|---:|---|")
    for name, wall, rss, code, shown in rows:
        print(f"| {name} | {wall:.1f} | {rss:.0f} | {code} | {shown} |")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
