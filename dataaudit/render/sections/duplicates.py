"""Section: duplicate groups, leakage across splits per split pair, and conflicting labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataaudit.render.view import Card, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

LEAKAGE_COLUMNS = (
    Column("split_a", "split", "text"),
    Column("split_b", "and split", "text"),
    Column("n_groups", "groups", "number", help="duplicate groups with members in both splits"),
    Column("n_items", "items", "number", help="members of those groups in either split"),
)
ITEM_COLUMNS = (
    Column("group_id", "group", "number"),
    Column("id", "item", "item"),
    Column("split", "split", "text"),
    Column("given_label", "label", "label"),
    Column(
        "similarity", "similarity", "score", help="cosine similarity to the group's first member"
    ),
    Column("exact", "exact copy", "text", help="shares an exact hash with another member"),
    Column("group_size", "group size", "number"),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("duplicates")
    if result is None:
        return []
    summary = result.summary
    cap = report.config.html_max_rows
    items = result.table("items")
    conflicting = items.loc[items["conflicting_labels"].astype(bool)]
    blocks = (
        TableView(
            "Leakage per split pair",
            result.table("leakage"),
            LEAKAGE_COLUMNS,
            total_rows=len(result.table("leakage")),
            caption="Duplicate groups whose members sit in two splits: evaluation on them "
            "measures memory, not generalisation.",
            empty_message="No duplicate group spans two splits.",
        ),
        TableView(
            "Duplicate groups",
            items.head(cap),
            ITEM_COLUMNS,
            total_rows=len(items),
            export="duplicates.csv",
            caption="One row per member; leaking groups first, then larger groups.",
            empty_message="No duplicates found.",
        ),
        TableView(
            "Conflicting labels",
            conflicting.head(cap),
            ITEM_COLUMNS,
            total_rows=len(conflicting),
            export="duplicates.csv",
            caption="Duplicate groups whose labeled members carry different labels: at least one "
            "label is wrong, or the classes overlap.",
            empty_message="Every duplicate group agrees on its label.",
        ),
    )
    return [
        SectionView(
            id="duplicates",
            title="Duplicates and leakage",
            intro="Items that are the same or nearly the same (exact hashes, and embedding "
            "similarity at or above "
            f"{result.params.get('near_duplicate_similarity', 0):g}), grouped; groups spanning "
            "splits leak, groups with different labels conflict.",
            cards=(
                Card(
                    "duplicate groups",
                    f"{summary['n_duplicate_groups']:,}",
                    f"{summary['n_duplicate_items']:,} items; "
                    f"{summary['n_exact_duplicate_groups']:,} exact-copy groups",
                ),
                Card(
                    "leaking groups",
                    f"{summary['leakage']:,}",
                    f"{summary['n_leaking_items']:,} items across splits",
                    tone="bad" if summary["leakage"] else "good",
                ),
                Card(
                    "conflicting labels",
                    f"{summary['n_conflicting_label_groups']:,}",
                    "groups whose members disagree",
                    tone="warn" if summary["n_conflicting_label_groups"] else "good",
                ),
            ),
            notes=tuple(result.notes),
            blocks=blocks,
        )
    ]


def export(report: AuditReport):
    """duplicates.csv: group id, id, split, label, similarity to the group's first member."""
    result = report.results.get("duplicates")
    if result is None:
        return None
    items = result.table("items")
    return items[
        [
            "group_id",
            "id",
            "split",
            "given_label",
            "similarity",
            "exact",
            "group_size",
            "leaks",
            "conflicting_labels",
        ]
    ]
