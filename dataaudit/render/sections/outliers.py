"""Section: the most unusual items, and production / unlabeled items unlike the train split."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataaudit.render.view import Card, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

OOD_COLUMNS = (
    Column("id", "item", "item"),
    Column("split", "split", "text"),
    Column("ood_score", "OOD score", "score", help="mean distance to the nearest train items"),
    Column("is_ood", "flagged", "text"),
    Column("outlier_score", "outlier score", "score"),
)
OUTLIER_COLUMNS = (
    Column("id", "item", "item"),
    Column("split", "split", "text"),
    Column(
        "outlier_score",
        "outlier score",
        "score",
        help="1 - mean cosine similarity to the item's nearest neighbours among all items",
    ),
    Column("is_outlier", "flagged", "text"),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("outliers")
    if result is None:
        return []
    top = min(getattr(report.config, "outliers_top", 200), report.config.html_max_rows)
    items = result.table("items")
    ood = items.dropna(subset=["ood_score"]).sort_values("ood_score", ascending=False)
    outliers = items.sort_values("outlier_score", ascending=False, kind="stable")
    summary = result.summary
    blocks = []
    if summary["n_ood_scored"]:
        blocks.append(
            TableView(
                "Out of distribution",
                ood.head(top),
                OOD_COLUMNS,
                total_rows=len(ood),
                caption="Production and unlabeled items, least like the train split first.",
            )
        )
    blocks.append(
        TableView(
            "Outliers",
            outliers.head(top),
            OUTLIER_COLUMNS,
            total_rows=len(outliers),
            caption="All items, most isolated first.",
        )
    )
    return [
        SectionView(
            id="outliers",
            title="Outliers and out-of-distribution items",
            intro="Items far from their nearest neighbours, and new items unlike anything the "
            "model was trained on.",
            cards=(
                Card(
                    "outliers",
                    f"{summary['n_outliers']:,}",
                    f"{summary['outlier_rate']:.1%} of items",
                ),
                Card(
                    "out of distribution",
                    f"{summary['n_ood']:,}",
                    f"of {summary['n_ood_scored']:,} production / unlabeled items",
                    tone="warn" if summary["n_ood"] else "good",
                ),
            ),
            notes=tuple(result.notes),
            blocks=tuple(blocks),
        )
    ]
