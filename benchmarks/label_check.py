"""The safety net (dataaudit/sanity.py) on honest and on misread inputs: how often it stops or warns.

Honest data is calibrated by construction: each item's probability row is drawn first (softmax of
scaled gaussian logits plus the log class mix) and its true label is then drawn from that row, so
the model is exactly as good as it claims. Departures a real run has are added on top: label
noise (a share of labels flipped to another class at random), overconfidence (rows sharpened,
p^s renormalised, after the labels were drawn). Misreads are applied to honest data: reversed or
permuted class columns, two swapped columns, probability rows in another order than the table
(sorted by their top class, or shuffled), classes sorted as text ('10' before '2').

    python benchmarks/label_check.py [--reps 200] [--real DIR]

Prints one markdown table: per case, the share of repetitions that stopped (with which code) and
that warned; and, with --real, the same on real test sets (cifar10 / mnist, ../shared/data).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dataaudit.sanity import judge, measure

DEFAULT_REAL = Path(__file__).resolve().parents[2] / "shared" / "data"


def honest(rng, n, k, strength, mix=None, noise=0.0, sharpen=1.0):
    """(probs, labels): calibrated probabilities, labels drawn from them, then noise/sharpening."""
    mix = np.full(k, 1.0 / k) if mix is None else np.asarray(mix, dtype=float)
    logits = rng.normal(size=(n, k)) * strength + np.log(mix)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=k - 1)
    if noise:
        flip = rng.random(n) < noise
        labels[flip] = (labels[flip] + rng.integers(1, k, flip.sum())) % k
    if sharpen != 1.0:
        p = p**sharpen
        p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32), labels.astype(np.int64)


def reverse(rng, p, y):
    return p[:, ::-1], y


def permute(rng, p, y):
    k = p.shape[1]
    order = rng.permutation(k)
    while (order == np.arange(k)).any() and k > 2:  # move every column
        order = rng.permutation(k)
    return p[:, order], y


def swap_two(rng, p, y):
    a, b = rng.choice(p.shape[1], 2, replace=False)
    order = np.arange(p.shape[1])
    order[[a, b]] = order[[b, a]]
    return p[:, order], y


def rows_sorted(rng, p, y):
    # An .npy written after sorting by predicted class (or any key the table was not sorted by).
    return p[np.argsort(p.argmax(axis=1), kind="stable")], y


def rows_shuffled(rng, p, y):
    return p[rng.permutation(len(p))], y


def text_sorted(rng, p, y):
    # Labels 0..K-1 named by number and sorted as text: column j is read as class int(sorted[j]).
    k = p.shape[1]
    as_text = sorted(str(j) for j in range(k))
    order = np.array([int(t) for t in as_text])
    return p[:, np.argsort(order)], y


def no_change(rng, p, y):
    return p, y


HONEST = {
    "K=10 strong": dict(n=5000, k=10, strength=4.0),
    "K=10 weak": dict(n=5000, k=10, strength=1.0),
    "K=10 weak, overconfident x3": dict(n=5000, k=10, strength=1.0, sharpen=3.0),
    "K=10 strong, 20% flips": dict(n=5000, k=10, strength=4.0, noise=0.2),
    "K=10 strong, 30% flips": dict(n=5000, k=10, strength=4.0, noise=0.3),
    "K=10 strong, 30% flips, overconfident x2": dict(
        n=5000, k=10, strength=4.0, noise=0.3, sharpen=2.0
    ),
    "K=2 95/5 weak": dict(n=5000, k=2, strength=1.0, mix=(0.95, 0.05)),
    "K=2 95/5 weak, overconfident x3": dict(
        n=5000, k=2, strength=1.0, mix=(0.95, 0.05), sharpen=3.0
    ),
    "K=2 70/30, 30% flips": dict(n=2000, k=2, strength=3.0, mix=(0.7, 0.3), noise=0.3),
    "K=5 one class 90%": dict(n=3000, k=5, strength=1.5, mix=(0.9, 0.025, 0.025, 0.025, 0.025)),
    "K=500, 10 per class": dict(n=5000, k=500, strength=3.0),
    "K=500, 4 per class, weak": dict(n=2000, k=500, strength=1.5),
    "20 labeled, K=2 weak": dict(n=20, k=2, strength=1.0),
    "20 labeled, K=5, overconfident x3": dict(n=20, k=5, strength=1.0, sharpen=3.0),
    "50 labeled, K=10 strong, 30% flips": dict(n=50, k=10, strength=4.0, noise=0.3),
}
MISREADS = {
    "reversed, K=2": (dict(n=2000, k=2, strength=3.0), reverse),
    "reversed, K=2, 20 labeled": (dict(n=20, k=2, strength=3.0), reverse),
    "reversed, K=10": (dict(n=5000, k=10, strength=4.0), reverse),
    "permuted, K=10": (dict(n=5000, k=10, strength=4.0), permute),
    "permuted, K=10, 30% flips": (dict(n=5000, k=10, strength=4.0, noise=0.3), permute),
    "permuted, K=500": (dict(n=5000, k=500, strength=3.0), permute),
    "permuted, K=10, 50 labeled": (dict(n=50, k=10, strength=4.0), permute),
    "two columns swapped, K=10": (dict(n=5000, k=10, strength=4.0), swap_two),
    "rows sorted by top class, K=10": (dict(n=5000, k=10, strength=4.0), rows_sorted),
    "rows shuffled, K=2 95/5": (dict(n=5000, k=2, strength=3.0, mix=(0.95, 0.05)), rows_shuffled),
    "rows shuffled, K=10, 20 labeled": (dict(n=20, k=10, strength=4.0), rows_shuffled),
    "classes sorted as text, K=12": (dict(n=5000, k=12, strength=4.0), text_sorted),
}


def outcome(p, y):
    check = measure(p, y, p.shape[1])
    classes = tuple(str(j) for j in range(p.shape[1]))
    problems, warnings = judge(check, classes, "probs.npy", "test")
    return [x.code for x in problems], [w.code for w in warnings], check


def run_case(spec, change, reps, seed):
    stops, warns = Counter(), Counter()
    agreement = []
    for r in range(reps):
        rng = np.random.default_rng(seed + r)
        p, y = change(rng, *honest(rng, **spec))
        problems, warnings, check = outcome(p, y)
        stops.update(set(problems) or {"-"})
        warns.update(set(warnings) or {"-"})
        agreement.append(check.agreement)
    return stops, warns, float(np.mean(agreement))


def _rates(counts: Counter, reps: int) -> str:
    if set(counts) == {"-"}:
        return "0"
    return ", ".join(f"{code} {n / reps:.3f}" for code, n in counts.most_common() if code != "-")


def real_sets(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(probs, labels) of the real test sets: cifar10 / mnist (label-errors), roman / spam (real)."""
    from dataaudit.config import AuditConfig
    from dataaudit.validate import load_dataset

    out = {}
    for name in ("cifar10", "mnist"):
        folder = root / "label-errors" / name
        out[name] = (
            np.load(folder / "pred_probs.npy").astype(np.float32),
            np.load(folder / "labels.npy").astype(np.int64),
        )
    for name in ("roman-numerals", "sms-spam"):
        folder = root / "real" / name
        data = load_dataset(folder / "table.parquet", folder / "probs.npy", config=AuditConfig())
        out[name] = np.asarray(data.probs), data.labels
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--real", type=Path, default=None, help=f"e.g. {DEFAULT_REAL}")
    args = parser.parse_args()
    print("| case | reps | mean agreement | stopped | warned |\n|---|---:|---:|---|---|")
    for group, cases in (("honest", HONEST), ("misread", MISREADS)):
        for i, (name, case) in enumerate(cases.items()):
            spec, change = (case, no_change) if group == "honest" else case
            reps = args.reps if spec["n"] <= 5000 else max(args.reps // 10, 5)
            stops, warns, agreement = run_case(spec, change, reps, seed=1000 * i)
            print(
                f"| {group}: {name} | {reps} | {agreement:.3f} | {_rates(stops, reps)} |"
                f" {_rates(warns, reps)} |"
            )
    if args.real:
        for name, (p, y) in real_sets(args.real).items():
            for label, change in (
                ("as given", no_change),
                ("reversed", reverse),
                ("rows shuffled", rows_shuffled),
                ("two swapped", swap_two),
            ):
                pp, yy = change(np.random.default_rng(0), p, y)
                problems, warnings, check = outcome(pp, yy)
                print(
                    f"| real {name}: {label} | 1 | {check.agreement:.3f} |"
                    f" {', '.join(problems) or '0'} | {', '.join(warnings) or '0'} |"
                )
    rng = np.random.default_rng(0)
    for n, k in ((1_000_000, 10), (1_000_000, 100)):
        p, y = honest(rng, n, k, 4.0)
        start = time.perf_counter()
        measure(p, y, k)
        print(f"\nmeasure() on {n:,} x {k}: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
