"""Section: what reviewers said (the verdict ledger): precision of the flags, kept, confirmed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataaudit.render.format import format_rate_ci, is_missing
from dataaudit.render.view import Card, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("reviews")
    if result is None:
        return []
    s = result.summary
    precision = (
        "—"
        if is_missing(s.get("reviewed_precision"))
        else format_rate_ci(
            s["reviewed_precision"], s["reviewed_precision_ci_low"], s["reviewed_precision_ci_high"]
        )
    )
    cards = [
        Card("reviewed items", f"{s['reviewed_items']:,}", "with a verdict in the ledger"),
        Card("precision of the flags", precision, "reviewed relabel flags that were errors"),
        Card("reviewed, kept", f"{s['n_reviewed_kept']:,}", "left out of relabel.csv"),
        Card("confirmed", f"{s['n_confirmed']:,}", "errors still carrying the old label", "bad"),
        Card("fixed", f"{s['n_fixed']:,}", "label now equals the correction", "good"),
        Card("pending", f"{s['n_pending']:,}", "sent out, no verdict yet"),
    ]
    if not is_missing(s.get("estimated_label_errors")):
        cards.insert(
            2,
            Card(
                "estimated label errors",
                f"{s['estimated_label_errors']:,.0f}",
                f"flagged × measured precision (95% CI {s['estimated_label_errors_ci_low']:,.0f}–"
                f"{s['estimated_label_errors_ci_high']:,.0f})",
            ),
        )
    items = result.tables["items"]
    kept = items[(items["list"] == "relabel") & (items["status"] == "kept")]
    return [
        SectionView(
            id="reviews",
            title="Reviews",
            intro="Verdicts from the ledger (--verdicts), matched to this run by id. Items "
            "reviewed ok whose label has not changed are left out of relabel.csv; confirmed errors "
            "stay at its top.",
            cards=tuple(cards),
            notes=tuple(result.notes),
            blocks=(
                TableView(
                    "Precision of the flags per class",
                    result.tables["precision"],
                    (
                        Column("class", "given label", "label"),
                        Column("n_reviewed", "reviewed", "number"),
                        Column("n_errors", "errors", "number"),
                        Column("n_ok", "ok", "number"),
                        Column("precision", "precision", "percent"),
                        Column("precision_low", "95% CI low", "percent"),
                        Column("precision_high", "95% CI high", "percent"),
                    ),
                    total_rows=len(result.tables["precision"]),
                    caption="Share of reviewed relabel flags that reviewers called errors, by the "
                    "label the item had when reviewed; Wilson intervals.",
                ),
                TableView(
                    "Reviewed, kept",
                    kept,
                    (
                        Column("id", "item", "item"),
                        Column("given_label", "label", "label"),
                        Column("reviewer", "reviewer"),
                        Column("reviewed_at", "reviewed at"),
                        Column("score", "score then", "score"),
                    ),
                    total_rows=len(kept),
                    empty_message="No reviewed-ok item in this run.",
                ),
            ),
        )
    ]
