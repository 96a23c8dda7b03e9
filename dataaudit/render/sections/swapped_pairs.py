"""Section: swapped class pairs, with a heat map of given versus suggested labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dataaudit.render.view import ChartView, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

COLUMNS = (
    Column("class_a", "class A", "label"),
    Column("class_b", "class B", "label"),
    Column(
        "joint_probability",
        "joint probability",
        "percent",
        help="cleanlab's estimated share of labeled items with one label of the pair but truly the other",
    ),
    Column("n_given_a_suggested_b", "labeled A, looks B", "number"),
    Column("n_given_b_suggested_a", "labeled B, looks A", "number"),
    Column("example_ids", "examples", "text", help="ids of the most likely errors of the pair"),
)
# Beyond this many classes a heat map is unreadable; keep those most involved in flagged errors.
MAX_HEATMAP_CLASSES = 30


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("swapped_pairs")
    if result is None:
        return []
    pairs = result.table("pairs")
    blocks: list[TableView | ChartView] = [
        TableView(
            "Most confused class pairs",
            pairs.head(report.config.html_max_rows),
            COLUMNS,
            total_rows=len(pairs),
            caption="Ranked by estimated joint probability; counts are flagged label errors.",
            empty_message="No pair of classes is confused.",
        )
    ]
    label_errors = report.results.get("label_errors")
    if label_errors is not None:
        items = label_errors.table("items")
        flagged = items.loc[items["is_label_error"].to_numpy(bool)]
        if len(flagged):
            blocks.append(confusion_heatmap(flagged, list(report.dataset["classes"])))
    return [
        SectionView(
            id="swapped-pairs",
            title="Swapped class pairs",
            intro=(
                "Pairs of classes whose labels are mixed up most often: candidates for a clearer "
                "labeling guideline, or for merging."
            ),
            notes=tuple(result.notes),
            blocks=tuple(blocks),
        )
    ]


def confusion_heatmap(flagged: pd.DataFrame, classes: list[str]) -> ChartView:
    import plotly.graph_objects as go

    counts = pd.crosstab(flagged["given_label"], flagged["suggested_label"])
    involvement = counts.sum(axis=0).add(counts.sum(axis=1), fill_value=0)
    keep = [c for c in classes if c in involvement.index]
    if len(keep) > MAX_HEATMAP_CLASSES:
        top = set(involvement.nlargest(MAX_HEATMAP_CLASSES).index)
        keep = [c for c in keep if c in top]
    matrix = counts.reindex(index=keep, columns=keep, fill_value=0)
    z = matrix.to_numpy(dtype=np.int64)
    figure = go.Figure(
        go.Heatmap(
            z=z.tolist(),
            x=keep,
            y=keep,
            colorscale="Reds",
            hovertemplate="labeled %{y}, looks %{x}: %{z} items<extra></extra>",
            colorbar={"title": {"text": "items"}},
        )
    )
    figure.update_layout(
        xaxis={"title": {"text": "suggested label"}, "type": "category"},
        yaxis={"title": {"text": "given label"}, "type": "category", "autorange": "reversed"},
        margin={"l": 80, "r": 20, "t": 20, "b": 80},
        height=max(320, 24 * len(keep) + 140),
    )
    return ChartView(
        "Flagged label errors: given versus suggested label",
        figure.to_plotly_json(),
        caption=f"{len(flagged):,} flagged items; off-diagonal cells only, by construction.",
    )
