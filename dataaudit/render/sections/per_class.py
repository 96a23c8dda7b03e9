"""Section: per-class error rates with Wilson intervals, as a table and a bar chart."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dataaudit.render.format import format_value
from dataaudit.render.view import Card, ChartView, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def _rate_columns(key: str, title: str, help: str) -> tuple[Column, ...]:
    return (
        Column(key, title, "percent", help=help),
        Column(f"{key}_low", "low", "percent", help=f"95% Wilson interval of the {title}"),
        Column(f"{key}_high", "high", "percent", help=f"95% Wilson interval of the {title}"),
    )


COLUMNS = (
    Column("split", "split"),
    Column("class", "class", "label"),
    Column("support", "labeled items", "number"),
    *_rate_columns(
        "error_rate", "error rate", "share of the class's items predicted as another class"
    ),
    *_rate_columns("precision", "precision", "share of items predicted as the class labeled so"),
    *_rate_columns("recall", "recall", "share of the class's items predicted as it"),
    *_rate_columns(
        "label_noise_rate", "label noise", "share of the class's items flagged as label errors"
    ),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("per_class")
    if result is None:
        return []
    classes = result.table("classes")
    summary = result.summary
    return [
        SectionView(
            id="per-class",
            title="Per-class errors",
            intro=(
                "How often the model disagrees with the given label, per class and split, on "
                "labeled items, with 95% Wilson intervals."
            ),
            cards=(
                Card(
                    "accuracy",
                    format_value(summary["accuracy"], "percent"),
                    "all labeled items",
                ),
                Card(
                    "worst class",
                    str(summary["worst_class"]),
                    f"{format_value(summary['worst_class_error_rate'], 'percent')} error rate",
                    "warn",
                ),
            ),
            notes=tuple(result.notes),
            blocks=(
                error_rate_chart(classes),
                TableView(
                    "Per class and split",
                    classes.head(report.config.html_max_rows),
                    COLUMNS,
                    total_rows=len(classes),
                    caption='Split "all" pools every split.',
                ),
            ),
        )
    ]


def error_rate_chart(classes: pd.DataFrame) -> ChartView:
    import plotly.graph_objects as go

    figure = go.Figure()
    shown = classes[classes["support"] > 0]
    for split, rows in shown.groupby("split", sort=False):
        rate = rows["error_rate"].to_numpy(np.float64)
        figure.add_trace(
            go.Bar(
                name=str(split),
                x=rows["class"].astype(str).tolist(),
                y=rate.tolist(),
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (rows["error_rate_high"].to_numpy(np.float64) - rate).tolist(),
                    "arrayminus": (rate - rows["error_rate_low"].to_numpy(np.float64)).tolist(),
                },
                customdata=rows["support"].tolist(),
                hovertemplate="%{x}: %{y:.1%} of %{customdata} items<extra>%{fullData.name}</extra>",
            )
        )
    figure.update_layout(
        barmode="group",
        yaxis={"title": {"text": "error rate"}, "tickformat": ".0%", "rangemode": "tozero"},
        xaxis={"type": "category"},
        margin={"l": 60, "r": 20, "t": 20, "b": 80},
        legend={"title": {"text": "split"}},
    )
    return ChartView(
        "Error rate per class",
        figure.to_plotly_json(),
        caption="Bars: error rate against the given label; whiskers: 95% Wilson interval.",
    )
