"""Section: the 2-D embedding map, coloured by split, with label errors and outliers ringed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dataaudit.render.charts import embedding_scatter
from dataaudit.render.view import Card, ChartView, SectionView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def flagged_ids(report: AuditReport, analysis: str, column: str) -> pd.Index | None:
    """Ids an analysis flagged (its items table's boolean `column`), or None if it did not run."""
    result = report.results.get(analysis)
    table = result.tables.get("items") if result is not None else None
    if table is None or column not in table:
        return None
    return pd.Index(table.loc[table[column].astype(bool), "id"])


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("embedding_map")
    if result is None:
        return []
    points = result.table("items")
    flags, cards = (
        {},
        [
            Card(
                "points",
                f"{len(points):,}",
                f"of {report.dataset['n_items']:,} items, all splits",
            )
        ],
    )
    for name, analysis, column in (
        ("label error", "label_errors", "is_label_error"),
        ("outlier", "outliers", "is_outlier"),
    ):
        ids = flagged_ids(report, analysis, column)
        if ids is None:
            continue
        flags[name] = points["id"].isin(ids).to_numpy()
        cards.append(
            Card(
                f"{name}s on the map",
                f"{int(flags[name].sum()):,}",
                f"of {len(ids):,} flagged by {report.titles.get(analysis, analysis).lower()}",
                "warn" if flags[name].any() else "neutral",
            )
        )
    missing = [
        label
        for label, analysis in (("label errors", "label_errors"), ("outliers", "outliers"))
        if analysis not in report.results
    ]
    caption = "Colour: split. Rings: " + (
        ", ".join(flags) if flags else "none (no flags available)"
    )
    caption += ". Click a legend entry to hide it; hover a point for its id."
    notes = list(result.notes)
    if missing:
        notes.append(f"Not marked: {' and '.join(missing)} (analysis did not run).")
    figure = embedding_scatter(
        points["x"].to_numpy(np.float32),
        points["y"].to_numpy(np.float32),
        points["id"].to_numpy(),
        points["split"].to_numpy(),
        flags=flags,
        max_points=max(len(points), 1),
    )
    return [
        SectionView(
            id="embedding-map",
            title="Embedding map",
            intro=(
                "Where items sit in the embedding space, projected to two dimensions: flagged "
                "items among clean items of another class, or far from every cloud, deserve a look."
            ),
            cards=tuple(cards),
            notes=tuple(notes),
            blocks=(ChartView("Embeddings, 2-D projection", figure, caption=caption),),
        )
    ]
