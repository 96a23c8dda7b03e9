"""Section: calibration, the reliability diagram, ECE per split and class, and the decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from dataaudit.render.charts import reliability_diagram
from dataaudit.render.format import format_value, is_missing
from dataaudit.render.view import Card, ChartView, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

ECE_COLUMNS = (
    Column("split", "split"),
    Column("class_shown", "predicted class", "label"),
    Column("n", "labeled items", "number"),
    Column("mean_confidence", "mean confidence", "percent"),
    Column("accuracy", "accuracy", "percent", help="against the given labels"),
    Column(
        "confidence_gap",
        "gap",
        "percent",
        help="mean confidence − accuracy: above 0 overconfident, below 0 underconfident",
    ),
    Column("ece", "ECE", "score", help="expected calibration error, equal-mass bins"),
    Column("ece_ci_low", "low", "score", help="95% bootstrap interval of the ECE"),
    Column("ece_ci_high", "high", "score", help="95% bootstrap interval of the ECE"),
    Column(
        "ece_if_calibrated",
        "calibrated up to",
        "score",
        help="95th percentile of the ECE a perfectly calibrated model shows on these items",
    ),
    Column("miscalibrated", "miscalibrated", "text"),
    Column("ece_after", "ECE after T", "score", help="after the cross-fitted temperature"),
)
DECISION_COLUMNS = (
    Column("decision", "decision"),
    Column("rule", "region"),
    Column("n", "labeled items", "number"),
    Column("mean_confidence", "mean confidence", "percent"),
    Column("accuracy", "accuracy", "percent"),
    Column("accuracy_low", "low", "percent", help="95% Wilson interval of the accuracy"),
    Column("accuracy_high", "high", "percent", help="95% Wilson interval of the accuracy"),
    Column("miscalibrated", "miscalibrated", "text", help="the interval excludes the confidence"),
    Column("mean_confidence_after", "confidence after T", "percent"),
    Column("accuracy_after", "accuracy after T", "percent"),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("calibration")
    if result is None:
        return []
    s = result.summary
    ece = result.table("ece").copy()
    ece["class_shown"] = [
        "all classes" if is_missing(c) else str(c) for c in ece["predicted_class"].tolist()
    ]
    bins = result.table("bins")
    curves = {
        f"{kind} probabilities": rows
        for kind, rows in bins[bins["split"] == "all"].groupby("probabilities", sort=False)
    }
    ci = (
        f"95% CI {format_value(s['ece_ci_low'], 'score')}–{format_value(s['ece_ci_high'], 'score')}"
    )
    side = "overconfident" if (s.get("calibration_gap") or 0) > 0 else "underconfident"
    cards = (
        Card(
            "ECE",
            format_value(s["ece"], "score"),
            f"{ci}; a calibrated model shows up to {format_value(s['ece_if_calibrated'], 'score')}",
            "bad" if s["calibration_miscalibrated"] else "good",
        ),
        Card(
            "calibration",
            side if s["calibration_miscalibrated"] else "no evidence of miscalibration",
            f"mean confidence − accuracy: {format_value(s['calibration_gap'], 'percent')}",
            "warn" if s["calibration_miscalibrated"] else "good",
        ),
        Card(
            "calibrating temperature",
            f"{s['temperature']:.2f}",
            f"ECE after it {format_value(s['ece_after_temperature'], 'score')} (cross-fitted); "
            + ("used by label next" if s["calibration_applied"] else "not applied"),
        ),
    )
    return [
        SectionView(
            id="calibration",
            title="Calibration",
            intro=(
                "Can the model's confidence be read as a probability? On labeled items: of the "
                "items the model gives confidence ≈ c, is a share c right?"
            ),
            cards=cards,
            notes=tuple(result.notes),
            blocks=(
                ChartView(
                    "Reliability diagram",
                    reliability_diagram(curves),
                    caption=(
                        "Equal-mass bins of labeled items, all splits; whiskers: 95% Wilson "
                        "intervals. Points below the diagonal are overconfident."
                    ),
                ),
                TableView(
                    "Decisions that read the probabilities",
                    result.table("decisions"),
                    DECISION_COLUMNS,
                    total_rows=len(result.table("decisions")),
                    caption="Labeled items in each decision's region of label next, before and "
                    "after the temperature.",
                ),
                TableView(
                    "ECE per split and predicted class",
                    _ordered(ece).head(report.config.html_max_rows),
                    ECE_COLUMNS,
                    total_rows=len(ece),
                    caption='Split "all" pools every split. Groups under 20 items have no ECE.',
                ),
            ),
        )
    ]


def _ordered(ece: pd.DataFrame) -> pd.DataFrame:
    """Overall and per-split rows first, then classes from the worst ECE down."""
    whole = ece["predicted_class"].isna()
    classes = ece[~whole].sort_values("ece", ascending=False, na_position="last", kind="stable")
    return pd.concat([ece[whole], classes], ignore_index=True)
