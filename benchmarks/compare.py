"""Time and memory of `compare` (two report models -> RunDiff) at 10k / 100k / 1M items.

Builds two report models directly (no audit: this measures the comparison alone), where run 2
relabels 1% of the labeled items, removes 1% of items, adds 2% new ones, re-predicts 5% of items
(a retrain's churn, both ways), and degrades the model on one camera (30% of its items wrong). Each size runs in a child process so peak RSS is that size's own. Prints a
markdown table: wall time of compare(), of writing comparison.json + comparison_items.csv, peak
RSS, the number of groups tested, and whether the planted regression was found.

    python benchmarks/compare.py
    python benchmarks/compare.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_reports(n: int, seed: int = 0):
    from dataaudit.config import AuditConfig
    from dataaudit.report import AuditReport
    from dataaudit.result import AnalysisResult

    rng = np.random.default_rng(seed)
    k = 10
    classes = np.array([f"c{i}" for i in range(k)], dtype=object)
    ids = np.char.add("item-", np.arange(n).astype(str)).astype(object)
    split = rng.choice(np.array(["train", "val", "test", "production"], dtype=object), n)
    labeled = split != "production"
    truth = rng.integers(0, k, n)
    predicted = np.where(rng.random(n) < 0.9, truth, rng.integers(0, k, n))
    camera = rng.choice(np.array([f"cam{i}" for i in range(8)], dtype=object), n)
    hour = rng.integers(0, 24, n)
    ink = rng.random(n).astype(np.float32)

    def report(ids, split, labels, predicted, camera, hour, ink, queue_ids):
        given = np.where(labels >= 0, classes[np.maximum(labels, 0)], "")
        items = pd.DataFrame(
            {
                "id": ids,
                "split": split,
                "given_label": given,
                "predicted_label": classes[predicted],
                "predicted_prob": np.full(len(ids), 0.9, dtype=np.float32),
                "meta:camera": camera,
                "meta:hour": hour,
                "meta:ink": ink,
            }
        )
        is_labeled = labels >= 0
        flagged = is_labeled & (given != classes[predicted]) & (rng.random(len(ids)) < 0.3)
        label_errors = pd.DataFrame(
            {
                "id": ids[is_labeled],
                "given_label": given[is_labeled],
                "suggested_label": classes[predicted][is_labeled],
                "is_label_error": flagged[is_labeled],
                "error_score": rng.random(int(is_labeled.sum())).astype(np.float32),
            }
        )
        queue = pd.DataFrame({"rank": np.arange(1, len(queue_ids) + 1), "id": queue_ids})
        dataset = {
            "n_items": len(ids),
            "splits": {
                s: {
                    "n_items": int((split == s).sum()),
                    "n_labeled": int(((split == s) & is_labeled).sum()),
                }
                for s in np.unique(split)
            },
            "classes": list(classes),
            "labeled_per_class": {c: int((given == c).sum()) for c in classes},
        }
        return AuditReport(
            dataset=dataset,
            items=items,
            results={
                "label_errors": AnalysisResult("label_errors", {"items": label_errors}, {}),
                "label_next": AnalysisResult("label_next", {"queue": queue}, {}),
            },
            config=AuditConfig(),
            run={"inputs": [{"role": "table", "sha256": str(len(ids)), "shape": [len(ids), 5]}]},
        )

    labels = np.where(labeled, truth, -1)
    unlabeled = np.flatnonzero(~labeled)
    old = report(ids, split, labels, predicted, camera, hour, ink, ids[unlabeled[:1000]])

    labels2 = labels.copy()
    relabel = rng.choice(np.flatnonzero(labeled), size=n // 100, replace=False)
    labels2[relabel] = (labels2[relabel] + 1) % k
    labels2[unlabeled[:500]] = truth[unlabeled[:500]]  # half of the last queue got labeled
    # A retrain churns some predictions both ways; only cam7 gets worse on purpose.
    predicted2 = predicted.copy()
    churn = rng.random(n) < 0.05
    predicted2[churn] = np.where(
        rng.random(int(churn.sum())) < 0.9, truth[churn], rng.integers(0, k, int(churn.sum()))
    )
    bad = (camera == "cam7") & (rng.random(n) < 0.3)
    predicted2[bad] = (truth[bad] + 1) % k
    keep = rng.random(n) >= 0.01
    n_new = n // 50
    new_ids = np.char.add("new-", np.arange(n_new).astype(str)).astype(object)
    pick = rng.integers(0, n, n_new)

    def grow(a, b):
        return np.concatenate([a[keep], b])

    new = report(
        grow(ids, new_ids),
        grow(split, split[pick]),
        grow(labels2, labels[pick]),
        grow(predicted2, predicted[pick]),
        grow(camera, camera[pick]),
        grow(hour, hour[pick]),
        grow(ink, ink[pick]),
        ids[unlabeled[500:1500]],
    )
    return old, new


def measure(n: int) -> dict:
    from dataaudit.compare import compare
    from dataaudit.render.comparison_json import build_comparison_json, item_changes
    from dataaudit.render.csv import write_csv

    old, new = make_reports(n)
    start = time.perf_counter()
    diff = compare(old, new)
    compare_s = time.perf_counter() - start
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "comparison.json").write_text(json.dumps(build_comparison_json(diff)))
        write_csv(item_changes(diff), Path(folder, "comparison_items.csv"))
    write_s = time.perf_counter() - start
    groups = diff.tables["groups"]
    found = groups[(groups["group"] == "camera = cam7")]["change"].tolist() == ["regression"]
    cameras = groups[(groups["scope"] == "slice") & groups["group"].str.startswith("camera = ")]
    false_cameras = int(
        ((cameras["group"] != "camera = cam7") & (cameras["change"] == "regression")).sum()
    )
    return {
        "n": n,
        "compare_s": compare_s,
        "write_s": write_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "groups": len(groups),
        "regressions": int(diff.summary["regression"]),
        "cam7_regression_found": found,
        "other_cameras_flagged": false_cameras,
        "items_changed": int(len(item_changes(diff))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print("| items | compare() s | write json+csv s | peak RSS MB | groups | regressions "
          "| cam7 regression found | other cameras flagged | per-item changes |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for n in args.sizes:
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {r['n']:,} | {r['compare_s']:.2f} | {r['write_s']:.2f} | {r['peak_rss_mb']:,.0f} "
            f"| {r['groups']} | {r['regressions']} | {r['cam7_regression_found']} "
            f"| {r['other_cameras_flagged']} "
            f"| {r['items_changed']:,} |"
        )


if __name__ == "__main__":
    main()
