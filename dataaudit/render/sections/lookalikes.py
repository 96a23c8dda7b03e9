"""Section: unlabeled items that look like known failures ("more like this" to label)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataaudit.render.view import Card, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

COLUMNS = (
    Column("id_a", "failure", "item"),
    Column("kind", "why", "text"),
    Column("given_label", "given label", "label"),
    Column("predicted_label", "predicted", "label"),
    Column("rank", "rank", "number"),
    Column("id_b", "unlabeled look-alike", "item"),
    Column("similarity", "similarity", "score", help="cosine similarity of the embeddings"),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("lookalikes")
    if result is None:
        return []
    pairs = result.table("pairs")
    summary = result.summary
    return [
        SectionView(
            id="lookalikes",
            title="Look-alikes of failures",
            intro="For each label-error candidate and misclassified item, the most similar "
            "unlabeled items: labeling them teaches the model where it fails.",
            cards=(
                Card("failures searched", f"{summary['n_lookalike_queries']:,}"),
                Card(
                    "unlabeled look-alikes", f"{summary['n_lookalike_items']:,}", "distinct items"
                ),
            ),
            notes=tuple(result.notes),
            blocks=(
                TableView(
                    "Look-alikes",
                    pairs.head(report.config.html_max_rows),
                    COLUMNS,
                    total_rows=len(pairs),
                    caption="Grouped by failure (label errors first), most similar first.",
                    empty_message="No failures, or no unlabeled items.",
                ),
            ),
        )
    ]
