"""Section: label next, the queue an annotation team works top-down, and auto-label candidates."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from dataaudit.render.view import Card, ChartView, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

QUEUE_COLUMNS = (
    Column("rank", "rank", "number"),
    Column("id", "item", "item"),
    Column("priority", "priority", "score", help="1 = label first; any prefix keeps the mix"),
    Column("reason", "why", "text", help="the strategy that queued the item and its evidence"),
    Column("strategy", "strategy", "text"),
    Column("predicted_label", "predicted", "label"),
    Column("predicted_prob", "p(predicted)", "percent"),
    Column(
        "difficulty",
        "difficulty",
        "text",
        help="easy: confident and models agree; hard: a near tie, low confidence or disagreement",
    ),
)
AUTO_COLUMNS = (
    Column("rank", "rank", "number"),
    Column("id", "item", "item"),
    Column("predicted_label", "proposed label", "label"),
    Column("predicted_prob", "p(proposed)", "percent"),
    Column("agreement", "models agreeing", "percent"),
)
ALLOCATION_COLUMNS = (
    Column("strategy", "strategy", "text"),
    Column("weight", "weight", "percent", help="share of the budget (config label_next_mix)"),
    Column("quota", "quota", "number"),
    Column("selected", "queued", "number", help="quotas left unfilled go to uncertainty"),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("label_next")
    if result is None:
        return []
    queue = result.table("queue")
    auto = result.table("auto_label")
    allocation = result.tables.get("allocation", pd.DataFrame())
    summary = result.summary
    cap = report.config.html_max_rows
    precision = summary.get("auto_label_estimated_precision")
    blocks: list = []
    if len(queue):
        blocks.append(ChartView("Budget split by strategy", _split_chart(queue)))
    if len(allocation) > 1:
        blocks.append(
            TableView(
                "Mix quotas",
                allocation,
                ALLOCATION_COLUMNS,
                total_rows=len(allocation),
                caption="Planned share of the budget per strategy and what each actually queued.",
            )
        )
    blocks.append(
        TableView(
            "Queue",
            queue.head(cap),
            QUEUE_COLUMNS,
            total_rows=len(queue),
            export="label_next.csv",
            caption="Unlabeled items to label next, best first; near-duplicates of each other "
            "and of labeled items (by the rule of the duplicates section) are left out.",
            empty_message="No unlabeled items to queue.",
        )
    )
    blocks.append(
        TableView(
            "Auto-label candidates",
            auto.head(cap),
            AUTO_COLUMNS,
            total_rows=len(auto),
            export="auto_label.csv",
            caption="Unlabeled items predicted so confidently (and unanimously) that a reviewer "
            "could accept the proposed label; most confident first.",
            empty_message="No unlabeled item is predicted confidently enough.",
        )
    )
    return [
        SectionView(
            id="label-next",
            title="Label next",
            intro=(
                f"What to label next within a budget of {summary['label_next_budget']:,} items: "
                f"strategy {result.params.get('strategy', 'mix')}. Work the queue top-down."
            ),
            cards=(
                Card(
                    "queued",
                    f"{summary['label_next_count']:,}",
                    f"of a budget of {summary['label_next_budget']:,}",
                ),
                Card(
                    "auto-label candidates",
                    f"{summary['auto_label_count']:,}",
                    "estimated precision "
                    + ("—" if precision is None else f"{precision * 100:.1f}%")
                    + " (on labeled items)",
                    "good" if summary["auto_label_count"] else "neutral",
                ),
            ),
            notes=tuple(result.notes),
            blocks=tuple(blocks),
        )
    ]


def _split_chart(queue: pd.DataFrame) -> dict:
    import plotly.graph_objects as go

    from dataaudit.render.charts import PALETTE, _finish

    counts = queue["strategy"].astype(str).value_counts()
    figure = go.Figure(
        go.Bar(
            x=counts.to_numpy().tolist(),
            y=counts.index.tolist(),
            orientation="h",
            marker={"color": PALETTE[0]},
            hovertemplate="%{y}: %{x:,} items<extra></extra>",
        )
    )
    return _finish(
        figure,
        height=max(160, 40 * len(counts) + 80),
        xaxis_title="items queued",
        yaxis={"autorange": "reversed"},
    )
