"""Section: duplicate groups, leakage across splits per split pair, and conflicting labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

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
    Column("match_id", "nearest member", "item", help="the member this item is closest to"),
    Column("tier", "tier", "text", help="exact, near-duplicate or possible near-duplicate"),
    Column(
        "score",
        "score",
        "score",
        help="1 = exact copy, 0.5-1 near-duplicate, below 0.5 possible (to review)",
    ),
    Column("match", "matched on", "text", help="what the pair shares: embedding, text, file"),
    Column("split", "split", "text"),
    Column("given_label", "label", "label"),
    Column("group_size", "group size", "number"),
)
REVIEW_COLUMNS = (
    Column("id", "item", "item"),
    Column("match_id", "possible duplicate of", "item"),
    Column(
        "score",
        "score",
        "score",
        help="below 0.5: outside the near-duplicate radius, inside review",
    ),
    Column("split", "split", "text"),
    Column("match_split", "its split", "text"),
    Column("given_label", "label", "label"),
    Column("match_label", "its label", "label"),
)
# duplicates.csv: grouped items first, then the possible near-duplicates to review.
EXPORT_COLUMNS = (
    "group_id",
    "id",
    "split",
    "given_label",
    "similarity",
    "match_id",
    "tier",
    "score",
    "match",
    "exact",
    "group_size",
    "leaks",
    "conflicting_labels",
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("duplicates")
    if result is None:
        return []
    summary = result.summary
    cap = report.config.html_max_rows
    items = result.table("items")
    review = result.tables.get("review")
    review = review if review is not None else pd.DataFrame(columns=[c.key for c in REVIEW_COLUMNS])
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
            caption="One row per member, with the member it is closest to and that pair's tier "
            "and score; leaking groups first, then larger groups.",
            empty_message="No duplicates found.",
        ),
        TableView(
            "Possible near-duplicates to review",
            review.head(cap),
            REVIEW_COLUMNS,
            total_rows=len(review),
            export="duplicates.csv",
            caption="Pairs closer than the data's neighbours usually are, but outside the "
            "near-duplicate radius: not grouped, not counted as leakage; highest score first.",
            empty_message="No pair in the review band.",
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
            intro="Items that are the same (exact copies) or nearly the same: far closer than "
            "their neighbours usually are, by a rule calibrated on this data (see the notes), or "
            "equal text after normalising. Groups spanning splits leak, groups with different "
            "labels conflict.",
            cards=(
                Card(
                    "duplicate groups",
                    f"{summary['n_duplicate_groups']:,}",
                    f"{summary['n_duplicate_items']:,} items; "
                    f"{summary['n_exact_duplicate_groups']:,} exact-copy groups; "
                    f"{summary.get('n_possible_duplicate_pairs', 0):,} pairs to review",
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
    """duplicates.csv: grouped items (group, id, nearest member, tier, score), then review pairs."""
    result = report.results.get("duplicates")
    if result is None:
        return None
    items = result.table("items")
    review = result.tables.get("review")
    frames = [items.reindex(columns=EXPORT_COLUMNS)]
    if review is not None and len(review):
        frames.append(review.reindex(columns=EXPORT_COLUMNS))
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    return frame.astype({"group_id": "Int64", "group_size": "Int64"})
