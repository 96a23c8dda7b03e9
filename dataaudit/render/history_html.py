"""history.html and history.csv: many runs in one static page (no server, nothing fetched).

Reads the tables of dataaudit/history.py and lays them out with the report's own page template.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from dataaudit.files import atomic_write_text
from dataaudit.history import HISTORY_COLUMNS, History, LearningCurve, Run
from dataaudit.render.charts import learning_curve_figure, lines_with_intervals
from dataaudit.render.csv import write_csv
from dataaudit.render.html import prepare_views, render_page
from dataaudit.render.view import Card, ChartView, Column, SectionView, TableView

# (metric, title, kind) per column of the runs table; rates get their interval beside them.
RUN_COLUMNS = (
    ("n_items", "items", "number"),
    ("n_labeled", "labeled", "number"),
    ("accuracy", "accuracy", "percent"),
    ("label_error_rate", "label-error rate", "percent"),
    ("worst_class_error_rate", "worst class error", "percent"),
    ("worst_slice", "worst slice", "text"),
    ("worst_slice_error_rate", "worst slice error", "percent"),
    ("n_failure_slices", "failure slices", "number"),
    ("n_duplicate_groups", "duplicate groups", "number"),
    ("leakage", "leakage", "number"),
    ("ood_rate", "OOD share", "percent"),
)
RATE_CHART = ("accuracy", "label_error_rate", "worst_slice_error_rate", "ood_rate")
COUNT_CHART = ("n_label_errors", "n_failure_slices", "n_duplicate_groups", "leakage")
MAX_CLASS_LINES = 20


def _series(history: pd.DataFrame, metrics: tuple[str, ...] | list[str]) -> dict[str, pd.DataFrame]:
    out = {}
    for metric in metrics:
        rows = history[history["metric"] == metric]
        if len(rows):
            out[metric] = rows.rename(columns={"run": "x"})[["x", "value", "ci_low", "ci_high"]]
    return out


def runs_table(runs: list[Run]) -> TableView:
    frame = pd.DataFrame(
        {"run": [r.name for r in runs], "started_at": [r.started_at for r in runs]}
    )
    frame["n_items"] = [r.report.dataset.get("n_items") for r in runs]
    frame["n_labeled"] = [r.report.dataset.get("n_labeled") for r in runs]
    columns = [Column("run", "run"), Column("started_at", "started")]
    metrics = [r.report.metrics() for r in runs]
    for metric, title, kind in RUN_COLUMNS:
        if metric not in frame and any(metric in m for m in metrics):
            frame[metric] = [m.get(metric) for m in metrics]
        if metric in frame:
            columns.append(Column(metric, title, kind))
    return TableView(
        "Runs",
        frame,
        tuple(columns),
        total_rows=len(frame),
        export="history.csv",
        caption="One row per run, oldest first. Rates are against each run's given labels; "
        "history.csv holds every metric with its 95% interval.",
    )


def curve_section(curve: LearningCurve) -> SectionView:
    blocks: list = []
    if len(curve.points):
        blocks.append(
            ChartView(
                "Learning curve",
                learning_curve_figure(curve.points, curve.fitted),
                caption="Accuracy per run (95% Wilson interval) against its labeled items; the "
                "dashed line is the fitted power law, extended over the next labels.",
            )
        )
    cards = ()
    if curve.gain is not None:
        cards = (
            Card(
                f"next {curve.next_labels:,} labels",
                f"{curve.gain * 100:+.1f} pts",
                f"95% interval {curve.gain_low * 100:+.1f} to {curve.gain_high * 100:+.1f} points",
                "warn" if curve.flattened else "good",
            ),
        )
    return SectionView(
        id="learning-curve",
        title="Labels and accuracy",
        intro=curve.message,
        cards=cards,
        blocks=tuple(blocks),
    )


def build_history_sections(runs: list[Run], history: pd.DataFrame, curve, persisted) -> list:
    first, last = runs[0], runs[-1]
    overview = SectionView(
        id="runs",
        title="Runs",
        intro=f"{len(runs)} runs from {first.started_at or first.name} to "
        f"{last.started_at or last.name}.",
        blocks=(
            runs_table(runs),
            ChartView(
                "Rates over runs",
                lines_with_intervals(_series(history, RATE_CHART), "run", "rate"),
                caption="Each point with its 95% interval where the run computed one.",
            ),
            ChartView(
                "Counts over runs",
                lines_with_intervals(_series(history, COUNT_CHART), "run", "count", percent=False),
            ),
        ),
    )
    class_metrics = sorted(
        {m for m in history["metric"] if m.startswith("class_error_rate:")},
        key=lambda m: -history.loc[history["metric"] == m, "value"].max(),
    )[:MAX_CLASS_LINES]
    classes = SectionView(
        id="classes",
        title="Per-class error rates",
        intro="Error rate of each class against its given labels, per run, with 95% Wilson "
        f"intervals (the {MAX_CLASS_LINES} classes with the highest rate in any run). A class "
        "whose rate falls and stays low is the run where it was learned.",
        blocks=(
            ChartView(
                "Error rate per class",
                lines_with_intervals(
                    {m.split(":", 1)[1]: f for m, f in _series(history, class_metrics).items()},
                    "run",
                    "error rate",
                ),
            ),
        )
        if class_metrics
        else (),
    )
    errors = SectionView(
        id="persistent-label-errors",
        title="Label errors that persisted",
        intro="Items flagged as label errors in two or more runs while keeping the label they "
        "were flagged with: reviewed and kept, or never reviewed.",
        blocks=(
            TableView(
                "Persistent label errors",
                persisted,
                (
                    Column("id", "id", "id"),
                    Column("n_runs_flagged", "runs flagged", "number"),
                    Column("first_flagged", "first flagged"),
                    Column("last_flagged", "last flagged"),
                    Column("flagged_in_latest", "in latest run", "number"),
                    Column("given_label", "given label", "label"),
                    Column("suggested_label", "suggested", "label"),
                ),
                total_rows=len(persisted),
                export="history_label_errors.csv",
                empty_message="No item was flagged in two runs with the same label.",
            ),
        ),
    )
    return [overview, curve_section(curve), classes, errors]


def write_history(history: History, out_dir: Path) -> list[Path]:
    """history.html, history.csv and history_label_errors.csv into out_dir."""
    runs = history.runs
    views = build_history_sections(
        runs, history.metrics, history.curve, history.persistent_label_errors
    )
    sections, items = prepare_views(views, pd.DataFrame({"id": []}), max_rows=500)
    page = render_page(
        sections,
        items,
        title=f"dataaudit history — {len(runs)} runs",
        heading="dataaudit history",
        meta=f"{len(runs)} runs · {runs[0].started_at} to {runs[-1].started_at}",
        max_rows=500,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(history.metrics[HISTORY_COLUMNS], out_dir / "history.csv")
    write_csv(history.persistent_label_errors, out_dir / "history_label_errors.csv")
    atomic_write_text(out_dir / "history.html", page)
    return [out_dir / n for n in ("history.html", "history.csv", "history_label_errors.csv")]
