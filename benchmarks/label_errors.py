"""Label-error ranking on test sets with human-verified label errors (cifar10, mnist).

Data: ../shared/data/label-errors/{cifar10,mnist}/ (pred_probs.npy, labels.npy, truth.csv) from
cleanlab/label-errors (Northcutt, Athalye & Mueller 2021). Only items an earlier confident-learning
run flagged were reviewed by people, so AP and AUROC are computed over the reviewed items
(confirmed_error = positive), where that selection bias does not apply. R@2% is the share of all
confirmed errors found in the top 2% of all items, as a reviewer working top-down would see it.

    python benchmarks/label_errors.py [--data DIR]

Prints two markdown tables: dataaudit's default ranking and each of cleanlab's rank methods; then
the flag (is_label_error) of each filter: how many items it flags, how many of the confirmed errors
are among them, and the share of its reviewed flags that are confirmed errors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, roc_auc_score

from dataaudit.analyses.label_errors import (
    calibrated_count_flags,
    class_thresholds,
    combine_flag_and_margin,
    score_chunk,
)

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "label-errors"
DATASETS = ("cifar10", "mnist")
TOP_FRACTION = 0.02


def rankings(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """error scores (higher = more likely mislabeled) of every method compared."""
    k = probs.shape[1]
    given = probs[np.arange(len(labels)), labels]
    scored = score_chunk(probs, labels, class_thresholds(given, labels, k))
    out = {"dataaudit default (flagged_then_margin)": scored["error_score"]}
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        adjust_options = (False,) if method == "confidence_weighted_entropy" else (False, True)
        for adjust in adjust_options:
            name = f"cleanlab {method}" + (" + adjust_pred_probs" if adjust else "")
            quality = get_label_quality_scores(
                labels, probs, method=method, adjust_pred_probs=adjust
            )
            out[name] = 1.0 - quality
    # Combinations considered before choosing the default (not used by dataaudit).
    ranks = {m: rankdata(out[f"cleanlab {m}"]) for m in ("self_confidence", "normalized_margin")}
    out["candidate: rank mean of self_confidence and normalized_margin"] = sum(ranks.values())
    pbnr = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    out["candidate: prune_by_noise_rate flag, then margin"] = combine_flag_and_margin(
        pbnr, scored["margin_score"]
    )
    out["candidate: confident-learning flag, then self_confidence"] = combine_flag_and_margin(
        scored["is_label_error"], out["cleanlab self_confidence"]
    )
    return out


def rankings_flag_count(probs: np.ndarray, labels: np.ndarray) -> int:
    given = probs[np.arange(len(labels)), labels]
    thresholds = class_thresholds(given, labels, probs.shape[1])
    return int(score_chunk(probs, labels, thresholds)["is_label_error"].sum())


def flags(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """is_label_error of each filter compared (dataaudit's default first)."""
    k = probs.shape[1]
    given = probs[np.arange(len(labels)), labels]
    scored = score_chunk(probs, labels, class_thresholds(given, labels, k))
    out = {
        "dataaudit default (calibrated_count)": calibrated_count_flags(scored, labels, k)[0],
        "confident_learning (dataaudit before)": scored["is_label_error"],
    }
    for filter_by in ("prune_by_noise_rate", "prune_by_class", "both"):
        name = f"cleanlab {filter_by}" + (
            " (Datalab default)" * (filter_by == "prune_by_noise_rate")
        )
        out[name] = find_label_issues(labels, probs, filter_by=filter_by)
    return out


def evaluate(score: np.ndarray, reviewed: np.ndarray, confirmed: np.ndarray) -> dict[str, float]:
    top = int(np.ceil(TOP_FRACTION * len(score)))
    order = np.argsort(-score, kind="stable")
    return {
        "AP": average_precision_score(confirmed[reviewed], score[reviewed]),
        "AUROC": roc_auc_score(confirmed[reviewed], score[reviewed]),
        "R@2%": confirmed[order[:top]].sum() / confirmed.sum(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    rows, flag_rows = [], []
    for name in DATASETS:
        folder = args.data / name
        # float32, as AuditDataset holds them.
        probs = np.load(folder / "pred_probs.npy").astype(np.float32)
        labels = np.load(folder / "labels.npy").astype(np.int64)
        truth = pd.read_csv(folder / "truth.csv")
        reviewed = truth["reviewed"].to_numpy(bool)
        confirmed = truth["confirmed_error"].to_numpy(bool)
        for method, score in rankings(probs, labels).items():
            rows.append({"dataset": name, "method": method, **evaluate(score, reviewed, confirmed)})
        for method, flag in flags(probs, labels).items():
            flag_rows.append(
                {
                    "dataset": name,
                    "method": method,
                    "flagged": int(flag.sum()),
                    "confirmed": f"{(flag & confirmed).sum()} / {confirmed.sum()}",
                    "precision (reviewed)": f"{(flag & confirmed).sum() / (flag & reviewed).sum():.3f}",
                }
            )
        flagged = rankings_flag_count(probs, labels)
        counts = (
            f"{len(labels)} items, {reviewed.sum()} reviewed, {confirmed.sum()} confirmed errors"
        )
        print(f"<!-- {name}: {counts}, {flagged} off the confident joint's diagonal -->")

    table = pd.DataFrame(rows).set_index(["method", "dataset"]).unstack("dataset")
    columns = [(metric, ds) for ds in DATASETS for metric in ("AP", "R@2%", "AUROC")]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    table = table.loc[methods, columns]
    print("| method | " + " | ".join(f"{ds} {metric}" for metric, ds in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for method, values in table.iterrows():
        print(f"| {method} | " + " | ".join(f"{v:.3f}" for v in values) + " |")

    print()
    flag_table = pd.DataFrame(flag_rows).set_index(["method", "dataset"]).unstack("dataset")
    metrics = ("flagged", "confirmed", "precision (reviewed)")
    columns = [(metric, ds) for ds in DATASETS for metric in metrics]
    flag_table = flag_table.loc[list(dict.fromkeys(r["method"] for r in flag_rows)), columns]
    print("| flag | " + " | ".join(f"{ds} {metric}" for metric, ds in columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for method, values in flag_table.iterrows():
        print(f"| {method} | " + " | ".join(str(v) for v in values) + " |")


if __name__ == "__main__":
    main()
