"""Shift and calibration: false alarms without shift, power on planted shift, real sets, 1M rows.

    python benchmarks/shift.py                 # null runs, power, timings at 1M rows
    python benchmarks/shift.py --runs 200      # more null runs
    python benchmarks/shift.py --real /work/shared/data/real   # also the real sets

1. Null runs: both splits drawn from one distribution (numeric, skewed, few-valued, categorical
   with rare values, bool and half-missing columns; a noisy 5-class model; 32-d embeddings).
   A run "flags" when the shift analysis calls anything significant (a column, the predicted mix
   or the embeddings). The target is at most 5% of runs. Calibration runs on calibrated
   probabilities count how often they are called miscalibrated.
2. Power: the same data with one planted shift at a time, detection rate over runs.
3. Scale: both analyses on 1M rows (10 metadata columns, K = 10, 64-d embeddings).
4. Real sets (--real): roman-numerals train vs val, sms-spam (one split: shift is skipped).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dataaudit.analyses import calibration, shift
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import UNLABELED, AuditDataset
from dataaudit.stats import wilson_interval


def synthetic(n: int, seed: int, *, k: int = 5, d: int = 32, plant: str = "none") -> AuditDataset:
    rng = np.random.default_rng(seed)
    cur = rng.random(n) < 0.4
    priors = np.full(k, 1 / k)
    y = rng.choice(k, n, p=priors)
    if plant == "prior":
        y[cur] = rng.choice(k, int(cur.sum()), p=np.r_[0.4, np.full(k - 1, 0.6 / (k - 1))])
    numeric = rng.normal(size=n) + (0.2 if plant == "mean 0.2 SD" else 0) * cur
    skewed = rng.lognormal(size=n)
    category = rng.choice(
        np.array(["a", "b", "c", "d", "rare1", "rare2"], dtype=object),
        n,
        p=[0.4, 0.3, 0.2, 0.09, 0.006, 0.004],
    )
    if plant == "new category 3%":
        category[cur & (rng.random(n) < 0.03)] = "new"
    half_missing = np.where(rng.random(n) < 0.5, np.nan, rng.normal(size=n))
    if plant == "missing rate +10%":
        half_missing[cur & (rng.random(n) < 0.2)] = np.nan
    metadata = pd.DataFrame(
        {
            "numeric": numeric,
            "skewed": skewed,
            "few_values": rng.integers(0, 4, n),
            "category": category,
            "flag": rng.random(n) < 0.2,
            "half_missing": half_missing,
        }
    )
    signal = np.eye(k)[y] * 1.5 + rng.normal(0, 1, (n, k))
    logits = signal * 1.5
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    emb = np.c_[signal, rng.normal(size=(n, d - k))]
    if plant == "embedding 0.3 SD":
        emb[cur, -1] += 0.3
    labels = np.where(cur & (rng.random(n) < 0.5), UNLABELED, y)
    return AuditDataset(
        ids=np.arange(n).astype(str).astype(object),
        classes=tuple(f"c{j}" for j in range(k)),
        class_source="benchmark",
        labels=labels.astype(np.int64),
        splits=np.where(cur, "production", "train").astype(object),
        metadata=metadata,
        probs=probs.astype(np.float32),
        embeddings=emb.astype(np.float32),
    )


def calibrated(n: int, seed: int, k: int = 5) -> AuditDataset:
    """Labels drawn from the model's own probabilities: calibrated by construction."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2.5, (n, k))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    y = np.minimum((probs.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1), k - 1)
    return AuditDataset(
        ids=np.arange(n).astype(str).astype(object),
        classes=tuple(f"c{j}" for j in range(k)),
        class_source="benchmark",
        labels=y.astype(np.int64),
        splits=np.where(rng.random(n) < 0.5, "train", "test").astype(object),
        metadata=pd.DataFrame(index=pd.RangeIndex(n)),
        probs=probs.astype(np.float32),
    )


def _run(module, data, config):
    return module.run(data, AuditContext(config), config)


def _rate(hits: int, runs: int) -> str:
    low, high = wilson_interval(hits, runs)
    return f"{hits / runs:.1%} [{float(low):.1%}, {float(high):.1%}]"


def null_runs(runs: int, sizes: tuple[int, ...]) -> None:
    config = AuditConfig(calibration_bootstrap=100)
    print("\n## Null runs (no shift; target: at most 5% of runs flag anything)\n")
    print(
        "| items | runs | any flag | a column | predicted mix | embeddings | calibration flagged |"
    )
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        anything = column = mix = emb = cal = 0
        for seed in range(runs):
            r = _run(shift, synthetic(n, seed), config)
            anything += bool(r.summary["shift_detected"])
            column += r.summary["n_shifted_columns"] > 0
            mix += bool(r.params["predictions_q_value"] <= config.shift_fdr)
            emb += bool(r.params["embedding_q_value"] <= config.shift_fdr)
            c = _run(calibration, calibrated(n, seed), config)
            cal += bool(c.summary["calibration_miscalibrated"])
        print(
            f"| {n:,} | {runs} | {_rate(anything, runs)} | {_rate(column, runs)} | "
            f"{_rate(mix, runs)} | {_rate(emb, runs)} | {_rate(cal, runs)} |"
        )


def power(runs: int, n: int) -> None:
    config = AuditConfig()
    plants = ("mean 0.2 SD", "new category 3%", "missing rate +10%", "prior", "embedding 0.3 SD")
    print(f"\n## Power: one planted shift, {n:,} items (40% current), {runs} runs each\n")
    print("| planted | detected (any flag) | the planted column flagged | mean embedding AUROC |")
    print("|---|---|---|---|")
    column_of = {
        "mean 0.2 SD": "numeric",
        "new category 3%": "category",
        "missing rate +10%": "half_missing",
    }
    for plant in plants:
        hits = right = 0
        aucs = []
        for seed in range(runs):
            r = _run(shift, synthetic(n, 1000 + seed, plant=plant), config)
            hits += bool(r.summary["shift_detected"])
            table = r.table("columns").set_index("column")
            if plant in column_of:
                right += bool(table.loc[column_of[plant], "significant"])
            aucs.append(r.summary["embedding_shift_auroc"])
        flagged = _rate(right, runs) if plant in column_of else "—"
        print(f"| {plant} | {_rate(hits, runs)} | {flagged} | {np.mean(aucs):.3f} |")


def scale(n: int = 1_000_000) -> None:
    rng = np.random.default_rng(0)
    k, d = 10, 64
    data = synthetic(50_000, 0, k=k, d=d)
    # Tile the 50k rows' structure to n with fresh noise, cheaply.
    idx = rng.integers(0, data.n, n)
    meta = data.metadata.iloc[idx].reset_index(drop=True)
    for j in range(4):
        meta[f"extra{j}"] = rng.normal(size=n).astype(np.float32)
    emb = data.embeddings[idx] + rng.normal(0, 0.1, (n, d)).astype(np.float32)
    big = AuditDataset(
        ids=np.arange(n).astype(str).astype(object),
        classes=data.classes,
        class_source="benchmark",
        labels=data.labels[idx],
        splits=data.splits[idx],
        metadata=meta,
        probs=data.probs[idx],
        embeddings=emb,
    )
    config = AuditConfig()
    print(f"\n## Scale: {n:,} rows, {meta.shape[1]} metadata columns, K = {k}, d = {d}\n")
    print("| analysis | seconds |")
    print("|---|---|")
    for module in (shift, calibration):
        start = time.perf_counter()
        _run(module, big, config)
        print(f"| {module.__name__.rsplit('.', 1)[1]} | {time.perf_counter() - start:.1f} |")


def real_sets(folder: Path) -> None:
    from dataaudit.validate import load_dataset

    print("\n## Real sets\n")
    for name, options in (
        ("roman-numerals", {"current_split": "val"}),
        ("sms-spam", {}),
    ):
        base = folder / name
        classes = tuple((base / "classes.txt").read_text().split())
        table = pd.read_parquet(base / "table.parquet")
        ignore = tuple(c for c in ("file_name", "thumbnail", "text") if c in table.columns)
        config = AuditConfig(classes=classes, **options)
        config = config.replace(columns=config.columns.__class__(ignore=ignore))
        data = load_dataset(
            base / "table.parquet", base / "probs.npy", base / "embeddings.npy", config
        )
        print(f"### {name} ({data.n:,} items, splits {sorted(set(data.splits))})\n")
        reason = shift.skip_reason(data, config)
        if reason:
            print(f"shift: skipped ({reason})\n")
        else:
            start = time.perf_counter()
            r = _run(shift, data, config)
            s = r.summary
            print(
                f"shift ({time.perf_counter() - start:.1f} s): {r.params['reference_split']} vs "
                f"{r.params['current_split']}; shifted columns {s['n_shifted_columns']}; embedding "
                f"AUROC {s['embedding_shift_auroc']:.3f} [{s['embedding_shift_auroc_ci_low']:.3f}, "
                f"{s['embedding_shift_auroc_ci_high']:.3f}] (q {r.params['embedding_q_value']:.2g}); "
                f"prior TV {s['prior_shift_tv']:.3f} [{s['prior_shift_tv_ci_low']:.3f}, "
                f"{s['prior_shift_tv_ci_high']:.3f}], noise alone up to "
                f"{r.params['prior_shift_tv_if_unshifted']:.3f}; predicted mix q "
                f"{r.params['predictions_q_value']:.2g}\n"
            )
            cols = r.table("columns")[
                ["column", "test", "p_value", "q_value", "effect_size", "significant"]
            ]
            print(cols.to_string(index=False, float_format="{:.3g}".format) + "\n")
            print(
                r.table("clusters").head(3).to_string(index=False, float_format="{:.3g}".format)
                + "\n"
            )
        start = time.perf_counter()
        c = _run(calibration, data, config)
        s = c.summary
        print(
            f"calibration ({time.perf_counter() - start:.1f} s): ECE {s['ece']:.3f} "
            f"[{s['ece_ci_low']:.3f}, {s['ece_ci_high']:.3f}], a calibrated model up to "
            f"{s['ece_if_calibrated']:.3f}; gap {s['calibration_gap']:+.3f}; temperature "
            f"{s['temperature']:.2f}; ECE after {s['ece_after_temperature']:.3f} "
            f"[{s['ece_after_temperature_ci_low']:.3f}, {s['ece_after_temperature_ci_high']:.3f}]; "
            f"miscalibrated {s['calibration_miscalibrated']}, applied {s['calibration_applied']}\n"
        )
        ece = c.table("ece")
        rows = ece[ece["predicted_class"].isna()][
            [
                "split",
                "n",
                "mean_confidence",
                "accuracy",
                "ece",
                "ece_ci_low",
                "ece_ci_high",
                "ece_after",
            ]
        ]
        print(rows.to_string(index=False, float_format="{:.3f}".format) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100, help="null runs per size (default 100)")
    parser.add_argument("--power-runs", type=int, default=20)
    parser.add_argument("--sizes", default="500,5000", help="items per null run")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1M-row timing")
    parser.add_argument("--real", type=Path, help="folder of the real sets (benchmarks only)")
    args = parser.parse_args()
    null_runs(args.runs, tuple(int(s) for s in args.sizes.split(",")))
    power(args.power_runs, 5000)
    if not args.no_scale:
        scale()
    if args.real:
        real_sets(args.real)


if __name__ == "__main__":
    main()
