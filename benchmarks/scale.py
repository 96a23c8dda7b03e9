"""Full audit at 10k / 100k / 1M rows, side by side with cleanlab's Datalab.

For each size it builds synthetic inputs with planted problems (benchmarks/synth.py), runs
`dataaudit run` in a child process (all analyses, report and exports written) and prints wall
time per analysis and in total, peak RSS of the child, report size, recall of each planted
problem, and precision of the flagged label errors (planted flips among the flagged labeled items;
the JSON lines also give F1). Up to --datalab-max rows it also runs cleanlab's Datalab.find_issues
(label, outlier, near_duplicate, underperforming_group) on the same inputs in a child process.

    python benchmarks/scale.py                       # 10k, 100k, 1M at K=10, d=128
    python benchmarks/scale.py --sizes 100000 --k 100 --d 384
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


# Linux counts a forked child's peak RSS from the parent's pages at fork time, even after exec,
# so a parent holding a loaded report would inflate every later child's figure. Children are
# therefore started by this small launcher, itself a fresh process, which reports the peak.
LAUNCHER = """
import json, os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = proc.stderr.read()
_, status, usage = os.wait4(proc.pid, 0)
sys.stderr.buffer.write(err[-3000:])
print(json.dumps([time.perf_counter() - start, usage.ru_maxrss / 1024,
                  os.waitstatus_to_exitcode(status)]))
"""


def run_child(argv: list[str]) -> tuple[float, float, int]:
    """Run a command; returns (wall seconds, peak RSS in MB of that child, exit code)."""
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, *argv], capture_output=True, text=True, check=True
    )
    wall, rss, code = json.loads(done.stdout.strip().splitlines()[-1])
    if code not in (0, 1):
        print(done.stderr[-3000:], file=sys.stderr)
    return wall, rss, code


def flip_scores(flagged: set, planted: dict) -> dict[str, float]:
    """Recall, precision and F1 of planted flips among the flagged ids of labeled items."""
    found = sum(i in flagged for i in planted["flipped"])
    recall = found / len(planted["flipped"])
    precision = found / len(flagged) if flagged else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if found else 0.0
    return {"recall": recall, "precision": precision, "f1": f1, "n_flagged": len(flagged)}


def recall_dataaudit(out: Path, planted: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(recall of each planted problem, flip scores)."""
    from dataaudit.report import AuditReport

    report = AuditReport.load(out)
    recall: dict[str, float] = {}
    flips: dict[str, float] = {}
    if "label_errors" in report.results:
        items = report["label_errors"].tables["items"]
        flips = flip_scores(set(items.loc[items["is_label_error"], "id"]), planted)
        recall["flips"] = flips["recall"]
    if "duplicates" in report.results:
        groups = _duplicate_groups(report["duplicates"])
        recall["exact_dups"] = _pair_recall(planted["exact_pairs"], groups)
        recall["near_dups"] = _pair_recall(planted["near_pairs"], groups)
        recall["leaks"] = _pair_recall(planted["leaked_pairs"], groups)
    if "outliers" in report.results:
        items = report["outliers"].tables["items"]
        column = "ood_score" if "ood_score" in items else "outlier_score"
        scored = items.dropna(subset=[column]).sort_values(column, ascending=False)
        top = set(scored["id"].head(2 * len(planted["ood"])))
        recall["ood@2x"] = np.mean([i in top for i in planted["ood"]])
    if "slices" in report.results:
        recall["bad_slice_top3"] = float(_slice_found(report["slices"], planted["bad_slice"]))
    return recall, flips


def _duplicate_groups(result) -> dict[str, object]:
    for frame in result.tables.values():
        group_col = next((c for c in ("group_id", "group") if c in frame), None)
        if group_col and "id" in frame:
            return dict(zip(frame["id"], frame[group_col]))
    return {}


def _pair_recall(pairs, groups) -> float:
    if not len(pairs):
        return float("nan")
    return float(np.mean([a in groups and groups.get(a) == groups.get(b) for a, b in pairs]))


def _slice_found(result, bad_slice) -> bool:
    column, value = bad_slice
    for name, frame in result.tables.items():
        if "discovered" not in name and "failure" not in name:
            continue
        text_col = next((c for c in ("slice", "description", "name", "rule") if c in frame), None)
        if text_col is None:
            continue
        top = frame[text_col].astype(str).head(3).tolist()
        return any(column in t and value in t for t in top)
    return False


def recall_datalab(
    path: Path, planted: dict, id_order: list[str], labeled: np.ndarray
) -> tuple[dict[str, float], dict[str, float]]:
    """(recall of each planted problem, flip scores). Datalab saw the unlabeled rows with the
    model's label; its flips are scored on the labeled rows, as dataaudit's are."""
    issues = json.loads(path.read_text())
    position = {i: r for r, i in enumerate(id_order)}
    recall = {}
    flagged = np.asarray(issues["label"], dtype=np.int64)
    flips = flip_scores({id_order[r] for r in flagged[labeled[flagged]]}, planted)
    flips["n_flagged_unlabeled"] = int((~labeled[flagged]).sum())
    recall["flips"] = flips["recall"]
    near = issues["near_duplicate_sets"]

    def found(pairs):
        hits = [
            position.get(b) in set(near.get(str(position.get(a)), []))
            for a, b in pairs
            if a in position and b in position
        ]
        return float(np.mean(hits)) if hits else float("nan")

    recall["exact_dups"] = found(planted["exact_pairs"])
    recall["near_dups"] = found(planted["near_pairs"])
    recall["leaks"] = found(planted["leaked_pairs"])
    top = set(issues["outlier_top"])
    recall["ood@2x"] = np.mean([position[i] in top for i in planted["ood"] if i in position])
    recall["bad_slice_top3"] = float("nan")
    return recall, flips


DATALAB_CHILD = r"""
import json, sys, numpy as np, pandas as pd
from cleanlab import Datalab
table = pd.read_parquet(sys.argv[1]); probs = np.load(sys.argv[2]); emb = np.load(sys.argv[3])
n_ood = int(sys.argv[5])
# Datalab needs a label for every row: give it every row, unlabeled ones with the model's guess,
# so it searches the same items (duplicates and OOD live among the unlabeled).
classes = [f"c{i}" for i in range(probs.shape[1])]
labels = table["label"].fillna(pd.Series(np.array(classes)[probs.argmax(1)], index=table.index))
lab = Datalab(data={"label": labels.to_numpy()}, label_name="label", verbosity=0)
lab.find_issues(pred_probs=probs, features=emb, issue_types={
    "label": {}, "outlier": {}, "near_duplicate": {}, "underperforming_group": {}})
label = lab.get_issues("label"); outlier = lab.get_issues("outlier")
near = lab.get_issues("near_duplicate")
out = {
    "label": np.flatnonzero(label["is_label_issue"].to_numpy()).tolist(),
    "outlier_top": np.argsort(outlier["outlier_score"].to_numpy())[: 2 * n_ood].tolist(),
    "near_duplicate_sets": {str(i): list(map(int, s)) for i, s in
                            enumerate(near["near_duplicate_sets"]) if len(s)},
}
json.dump(out, open(sys.argv[4], "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--datalab-max", type=int, default=100_000)
    parser.add_argument("--workdir", default=None, help="keep inputs and outputs here")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="dataaudit-scale-"))
    import synth

    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        folder = work / f"n{n}-k{args.k}-d{args.d}"
        t0 = time.perf_counter()
        # Built in a child so the arrays never sit in this process (see LAUNCHER).
        code = f"import synth; synth.write({str(folder / 'inputs')!r}, {n}, {args.k}, {args.d})"
        subprocess.run([sys.executable, "-c", code], cwd=HERE, check=True)
        paths = synth.paths(folder / "inputs")
        build = time.perf_counter() - t0
        planted = json.loads(paths["planted"].read_text())
        out = folder / "out"
        wall, rss, code = run_child(
            [
                sys.executable,
                "-m",
                "dataaudit",
                "run",
                "--table",
                str(paths["table"]),
                "--probs",
                str(paths["probs"]),
                "--embeddings",
                str(paths["embeddings"]),
                "--out",
                str(out),
                "--force",
                "-q",
            ]
        )
        from dataaudit.report import AuditReport

        report = AuditReport.load(out)
        recall, flips = recall_dataaudit(out, planted)
        row = {
            "tool": "dataaudit",
            "n": n,
            "k": args.k,
            "d": args.d,
            "wall_s": wall,
            "peak_rss_mb": rss,
            "exit": code,
            "report_mb": (out / "report.html").stat().st_size / 2**20,
            "timings": report.run.get("timings_s", {}),
            "failed": list(report.failed),
            "recall": recall,
            "flips": flips,
            "inputs_build_s": build,
        }
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
        if n <= args.datalab_max:
            issues = folder / "datalab.json"
            script = folder / "datalab_child.py"
            script.write_text(DATALAB_CHILD)
            wall_dl, rss_dl, code_dl = run_child(
                [
                    sys.executable,
                    str(script),
                    str(paths["table"]),
                    str(paths["probs"]),
                    str(paths["embeddings"]),
                    str(issues),
                    str(len(planted["ood"])),
                ]
            )
            import pandas as pd

            table = pd.read_parquet(paths["table"], columns=["id", "label"])
            recall, flips = (
                recall_datalab(
                    issues, planted, table["id"].tolist(), table["label"].notna().to_numpy()
                )
                if code_dl == 0
                else ({}, {})
            )
            dl = {
                "tool": "datalab",
                "n": n,
                "k": args.k,
                "d": args.d,
                "wall_s": wall_dl,
                "peak_rss_mb": rss_dl,
                "exit": code_dl,
                "recall": recall,
                "flips": flips,
            }
            rows.append(dl)
            print(json.dumps(dl, default=float), flush=True)

    print()
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    keys = ["flips", "exact_dups", "near_dups", "leaks", "ood@2x", "bad_slice_top3"]
    headers = [f"recall {k}" for k in keys]
    headers.insert(1, "precision flips")
    print("| tool | N | K | d | wall s | peak RSS MB | report MB | " + " | ".join(headers) + " |")
    print("|---" * (7 + len(headers)) + "|")
    for r in rows:
        rec = r.get("recall", {})
        cells = [f"{rec[k]:.3f}" if k in rec and rec[k] == rec[k] else "—" for k in keys]
        precision = r.get("flips", {}).get("precision", float("nan"))
        cells.insert(1, f"{precision:.3f}" if precision == precision else "—")
        report = f"{r['report_mb']:.1f}" if "report_mb" in r else "—"
        print(
            f"| {r['tool']} | {r['n']:,} | {r['k']} | {r['d']} | {r['wall_s']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {report} | " + " | ".join(cells) + " |"
        )
    by_n = {}
    for r in rows:
        by_n.setdefault(r["n"], {})[r["tool"]] = r
    print()
    print("| N | Datalab / dataaudit wall time | Datalab / dataaudit peak RSS |")
    print("|---|---|---|")
    for n, tools in by_n.items():
        if "datalab" in tools:
            a, b = tools["dataaudit"], tools["datalab"]
            print(
                f"| {n:,} | {b['wall_s'] / a['wall_s']:.1f}× | {b['peak_rss_mb'] / a['peak_rss_mb']:.1f}× |"
            )
    print()
    print("Wall time per analysis (s):")
    names = sorted({k for r in rows if r["tool"] == "dataaudit" for k in r["timings"]})
    print("| N | " + " | ".join(names) + " |")
    print("|---" * (1 + len(names)) + "|")
    for r in rows:
        if r["tool"] == "dataaudit":
            print(
                f"| {r['n']:,} | "
                + " | ".join(f"{r['timings'].get(k, float('nan')):.2f}" for k in names)
                + " |"
            )


if __name__ == "__main__":
    main()
