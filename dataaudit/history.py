"""History across runs: saved reports in, tidy tables out (rendered by render/history_html.py).

- `metrics_history`: one row per run and metric (run, started_at, metric, value, ci_low, ci_high):
  every numeric metric of each run's summary, with its interval where the run has one, plus
  per-class error rates (`class_error_rate:<class>`, Wilson intervals from the per-class table).
- `learning_curve`: labels per run against accuracy, a fitted power law, and what the next N labels
  would buy, with a parametric-bootstrap interval, and whether the curve has flattened.
- `persistent_label_errors`: items flagged as label errors in two or more runs, still carrying the
  label they were flagged with.

Runs are ordered by when each started (`run.started_at` of the saved report).
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

HISTORY_COLUMNS = ["run", "started_at", "metric", "value", "ci_low", "ci_high"]
# The curve has flattened when the next N labels would buy less than this accuracy (upper bound).
FLAT_GAIN = 0.005
BOOTSTRAP = 1000
MIN_CURVE_POINTS = 3


class HistoryError(ValueError):
    """Runs that cannot be read or compared (a usage problem: exit 2)."""


@dataclass(frozen=True)
class Run:
    name: str  # the folder's name, made unique
    path: Path
    started_at: str
    report: AuditReport


def load_runs(patterns: list[str]) -> list[Run]:
    """Saved runs from folders or globs, oldest first."""
    from dataaudit.report import AuditReport, ReportLoadError

    folders: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches:
            raise HistoryError(f"{pattern}: matches no folder")
        folders += [Path(m) for m in matches]
    folders = list(dict.fromkeys(f.resolve() for f in folders))
    if not folders:
        raise HistoryError("give at least one run folder")
    runs = []
    for folder in folders:
        try:
            report = AuditReport.load(folder)
        except ReportLoadError as exc:
            raise HistoryError(str(exc)) from exc
        runs.append((str(report.run.get("started_at") or ""), folder, report))
    runs.sort(key=lambda r: (r[0], str(r[1])))
    names: dict[str, int] = {}
    out = []
    for started, folder, report in runs:
        n = names[folder.name] = names.get(folder.name, 0) + 1
        out.append(Run(folder.name if n == 1 else f"{folder.name}-{n}", folder, started, report))
    return out


def metrics_history(runs: list[Run]) -> pd.DataFrame:
    rows = []
    for run in runs:
        metrics = run.report.metrics()
        metrics.setdefault("n_labeled", run.report.dataset.get("n_labeled"))
        for key, value in metrics.items():
            if key.endswith(("_ci_low", "_ci_high")) or not _is_number(value):
                continue
            rows.append(
                [
                    run.name,
                    run.started_at,
                    key,
                    float(value),
                    _number(metrics.get(f"{key}_ci_low")),
                    _number(metrics.get(f"{key}_ci_high")),
                ]
            )
        per_class = run.report.results.get("per_class")
        if per_class is not None and "classes" in per_class.tables:
            table = per_class.tables["classes"]
            overall = table[table["split"] == "all"] if "all" in set(table["split"]) else table
            for name, rate, low, high in zip(
                overall["class"],
                overall["error_rate"],
                overall["error_rate_low"],
                overall["error_rate_high"],
            ):
                rows.append(
                    [
                        run.name,
                        run.started_at,
                        f"class_error_rate:{name}",
                        _number(rate),
                        _number(low),
                        _number(high),
                    ]
                )
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


@dataclass(frozen=True)
class LearningCurve:
    points: pd.DataFrame  # run, n_labeled, accuracy, ci_low, ci_high
    fitted: pd.DataFrame  # n_labeled, accuracy: the fitted curve, up to n_last + next_labels
    next_labels: int
    gain: float | None  # predicted accuracy gain from the next `next_labels` labels
    gain_low: float | None
    gain_high: float | None
    flattened: bool | None
    message: str  # the honest one-sentence reading of the curve


def learning_curve(runs: list[Run], next_labels: int | None = None, seed: int = 0) -> LearningCurve:
    """Accuracy against labeled items per run, with a power-law fit `error = a * n^-b`.

    The interval comes from a parametric bootstrap: each run's accuracy is redrawn from a binomial
    on its labeled count, the curve refitted, and the gain at n_last + N recomputed. Accuracy is
    measured per run against that run's own labels, so a curve over runs whose labels were also
    cleaned mixes two effects; the message says what was fitted.
    """
    rows = []
    for run in runs:
        m = run.report.metrics()
        if _is_number(m.get("accuracy")):
            rows.append(
                {
                    "run": run.name,
                    "n_labeled": int(run.report.dataset.get("n_labeled") or 0),
                    "accuracy": float(m["accuracy"]),
                    "ci_low": _number(m.get("accuracy_ci_low")),
                    "ci_high": _number(m.get("accuracy_ci_high")),
                }
            )
    points = pd.DataFrame(rows, columns=["run", "n_labeled", "accuracy", "ci_low", "ci_high"])
    increments = np.diff(np.sort(points["n_labeled"].unique())) if len(points) else np.array([])
    if next_labels is None:
        next_labels = int(np.median(increments)) if len(increments) else 0
    empty = pd.DataFrame(columns=["n_labeled", "accuracy"])
    usable = points[(points["n_labeled"] > 0) & (points["accuracy"] < 1)]
    if usable["n_labeled"].nunique() < MIN_CURVE_POINTS or next_labels <= 0:
        return LearningCurve(
            points,
            empty,
            next_labels,
            None,
            None,
            None,
            None,
            f"A learning curve needs at least {MIN_CURVE_POINTS} runs with different numbers of "
            f"labeled items (these runs have {points['n_labeled'].nunique()}); no fit.",
        )
    n = usable["n_labeled"].to_numpy(dtype=float)
    acc = usable["accuracy"].to_numpy(dtype=float)
    n_last = float(points["n_labeled"].max())
    target = n_last + next_labels
    a, b = _fit_power_law(n, 1 - acc)
    gain = _gain(a, b, n_last, target)
    rng = np.random.default_rng(seed)
    gains = []
    for _ in range(BOOTSTRAP):
        drawn = rng.binomial(n.astype(np.int64), acc) / n
        fit = _fit_power_law(n, 1 - np.minimum(drawn, 1 - 0.5 / n))
        gains.append(_gain(*fit, n_last, target))
    low, high = (float(v) for v in np.quantile(gains, [0.025, 0.975]))
    grid = np.geomspace(n.min(), target, 50)
    fitted = pd.DataFrame({"n_labeled": grid, "accuracy": 1 - np.minimum(a * grid**-b, 1)})
    flattened = high < FLAT_GAIN
    verdict = (
        f"the curve has flattened: even the upper bound is under {FLAT_GAIN * 100:.1f} points"
        if flattened
        else "the curve is still rising"
        if low > 0
        else "the gain is not distinguishable from 0"
    )
    message = (
        f"Fitted error = {a:.3g} × n^-{b:.2f} on {len(n)} runs. The next {next_labels:,} labels "
        f"(to {int(target):,}) would buy {gain * 100:+.1f} accuracy points (95% interval "
        f"{low * 100:+.1f} to {high * 100:+.1f}); {verdict}."
    )
    return LearningCurve(points, fitted, next_labels, gain, low, high, flattened, message)


def _fit_power_law(n: np.ndarray, error: np.ndarray) -> tuple[float, float]:
    """Least squares of log(error) on log(n); b >= 0 (more labels never predicted to hurt)."""
    y = np.log(np.clip(error, 1e-6, 1))
    x = np.log(n)
    slope, intercept = np.polyfit(x, y, 1)
    b = max(0.0, -slope)
    a = math.exp(float(np.mean(y + b * x)))  # intercept refitted for the clipped slope
    return a, b


def _gain(a: float, b: float, n_from: float, n_to: float) -> float:
    return float(min(a * n_from**-b, 1) - min(a * n_to**-b, 1))


def persistent_label_errors(runs: list[Run]) -> pd.DataFrame:
    """Items flagged in two or more runs, with the label they still carry in the latest run."""
    columns = [
        "id",
        "n_runs_flagged",
        "first_flagged",
        "last_flagged",
        "flagged_in_latest",
        "given_label",
        "suggested_label",
    ]
    flagged = []
    for order, run in enumerate(runs):
        result = run.report.results.get("label_errors")
        if result is None:
            continue
        items = result.tables["items"]
        hit = items[items["is_label_error"].astype(bool)]
        flagged.append(
            pd.DataFrame(
                {
                    "id": hit["id"].astype(str),
                    "order": order,
                    "run": run.name,
                    "given_label": hit["given_label"].astype(str),
                    "suggested_label": hit["suggested_label"].astype(str),
                }
            )
        )
    if not flagged:
        return pd.DataFrame(columns=columns)
    hits = pd.concat(flagged, ignore_index=True).sort_values(["id", "order"])
    latest = hits.groupby("id").tail(1).set_index("id")
    # Flagged with the label it still has: a relabelled item that is flagged again is a new case.
    same_label = hits.merge(
        latest[["given_label"]], left_on="id", right_index=True, suffixes=("", "_latest")
    )
    same_label = same_label[same_label["given_label"] == same_label["given_label_latest"]]
    counts = same_label.groupby("id").agg(
        n_runs_flagged=("order", "nunique"),
        first_flagged=("run", "first"),
        last_flagged=("run", "last"),
        last_order=("order", "max"),
    )
    counts = counts[counts["n_runs_flagged"] >= 2]
    out = counts.join(latest[["given_label", "suggested_label"]]).reset_index()
    out["flagged_in_latest"] = out["last_order"] == len(runs) - 1
    out = out.sort_values(
        ["flagged_in_latest", "n_runs_flagged", "id"], ascending=[False, False, True]
    )
    return out[columns].reset_index(drop=True)


@dataclass(frozen=True)
class History:
    """Everything history.html and history.csv show."""

    runs: list[Run]
    metrics: pd.DataFrame  # HISTORY_COLUMNS
    curve: LearningCurve
    persistent_label_errors: pd.DataFrame


def build_history(runs: list[Run], next_labels: int | None = None) -> History:
    return History(
        runs,
        metrics_history(runs),
        learning_curve(runs, next_labels),
        persistent_label_errors(runs),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _number(value: Any) -> float | None:
    return float(value) if _is_number(value) else None
