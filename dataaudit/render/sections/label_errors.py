"""Section: label errors, the flagged items ranked as relabel.csv ranks them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataaudit.render.format import format_rate_ci
from dataaudit.render.view import Card, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

COLUMNS = (
    Column("rank", "rank", "number"),
    Column("id", "item", "item"),
    Column("given_label", "given label", "label"),
    Column("suggested_label", "suggested label", "label", help="the model's most probable class"),
    Column("suggested_label_prob", "p(suggested)", "percent"),
    Column("given_label_prob", "p(given)", "percent"),
    Column(
        "error_score",
        "error score",
        "score",
        help="higher = more likely mislabeled: 1 - p(given label), pooled with the neighbours' labels",
    ),
)

REVIEW_COLUMN = (
    Column("review_status", "review", help="confirmed by a reviewer, or back on new evidence"),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("label_errors")
    if result is None:
        return []
    summary = result.summary
    ranked = report.relabel_list()
    cap = report.config.html_max_rows
    rate = format_rate_ci(
        summary["label_error_rate"],
        summary["label_error_rate_ci_low"],
        summary["label_error_rate_ci_high"],
    )
    return [
        SectionView(
            id="label-errors",
            title="Label errors",
            intro=(
                "Labeled items whose given label the model's out-of-sample probabilities (and,"
                " with embeddings, the labels of their nearest neighbours) contradict, as many"
                " as cleanlab's confident learning estimates, most likely errors first."
            ),
            cards=(
                Card(
                    "label-error candidates",
                    f"{summary['n_label_errors']:,}",
                    f"{rate} of {summary['n_labeled']:,} labeled items",
                    _tone(summary["label_error_rate"]),
                ),
            ),
            notes=tuple(result.notes),
            blocks=(
                TableView(
                    "Items to relabel",
                    ranked.head(cap),
                    COLUMNS + REVIEW_COLUMN if "review_status" in ranked else COLUMNS,
                    total_rows=len(ranked),
                    export="relabel.csv",
                    caption="Flagged items ranked by error score; check the suggested label.",
                    empty_message="No label errors found.",
                ),
            ),
        )
    ]


def _tone(rate: float) -> str:
    if rate > 0.05:
        return "bad"
    return "warn" if rate > 0 else "good"
