"""Section: what changed since the baseline run — regressions first, then every other change."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dataaudit.render.comparison_json import GROUPS_CSV, ITEMS_CSV
from dataaudit.render.format import format_value
from dataaudit.render.view import Card, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.compare import RunDiff
    from dataaudit.report import AuditReport

GROUP_COLUMNS = (
    Column("change", "change", help="regression / improvement: beyond noise at the report's level"),
    Column("scope", "scope"),
    Column("group", "group", "label"),
    Column("old_error_rate", "error before", "percent"),
    Column("new_error_rate", "error now", "percent"),
    Column("difference", "difference", "percent", help="error rate now minus before"),
    Column("n_worse", "right → wrong", "number", help="items with the same label in both runs"),
    Column("n_better", "wrong → right", "number", help="items with the same label in both runs"),
    Column("q_value", "q-value", "text", help="Benjamini-Hochberg over every group"),
    Column("test", "test"),
    Column("old_n", "labeled before", "number"),
    Column("new_n", "labeled now", "number"),
)
METRIC_COLUMNS = (
    Column("metric", "metric"),
    Column("old", "before", "number"),
    Column("new", "now", "number"),
    Column("difference", "difference", "number"),
)
LABEL_ERROR_COLUMNS = (
    Column("status", "status"),
    Column("id", "item", "item"),
    Column("old_given_label", "label before", "label"),
    Column("new_given_label", "label now", "label"),
    Column("new_suggested_label", "suggested now", "label"),
    Column("old_error_score", "score before", "score"),
    Column("new_error_score", "score now", "score"),
)
MEMBERSHIP_COLUMNS = (
    Column("change", "in"),
    Column("id", "item", "item"),
    Column("split", "split"),
    Column("given_label", "label", "label"),
)
LABEL_COLUMNS = (
    Column("change", "change"),
    Column("id", "item", "item"),
    Column("old", "before", "label"),
    Column("new", "now", "label"),
)
QUEUE_COLUMNS = (
    Column("status", "status", help="labeled: was queued last run and has a label now"),
    Column("id", "item", "item"),
    Column("old_rank", "rank before", "number"),
    Column("new_rank", "rank now", "number"),
    Column("given_label", "label now", "label"),
)
DUPLICATE_COLUMNS = (
    Column("status", "status"),
    Column("id_a", "item", "item"),
    Column("id_b", "duplicate", "item"),
    Column("leakage", "spans splits", "number"),
)
FAILURE_SLICE_COLUMNS = (
    Column("status", "status"),
    Column("slice", "slice"),
    Column("old_error_rate", "error before", "percent"),
    Column("new_error_rate", "error now", "percent"),
)
SPLIT_COLUMNS = (
    Column("split", "split"),
    Column("old_n_items", "items before", "number"),
    Column("new_n_items", "items now", "number"),
    Column("difference", "difference", "number"),
    Column("old_n_labeled", "labeled before", "number"),
    Column("new_n_labeled", "labeled now", "number"),
)
CLASS_COLUMNS = (
    Column("class", "class", "label"),
    Column("status", "status"),
    Column("old_n_labeled", "labeled before", "number"),
    Column("new_n_labeled", "labeled now", "number"),
)
INPUT_COLUMNS = (
    Column("role", "input"),
    Column("status", "status", help="unknown: an in-memory input has no fingerprint"),
    Column("old_shape", "shape before"),
    Column("new_shape", "shape now"),
    Column("old_sha256", "sha256 before"),
    Column("new_sha256", "sha256 now"),
)


def build(report: AuditReport) -> list[SectionView]:
    diff = report.comparison
    if diff is None:
        return []
    cap = report.config.html_max_rows
    blocks = [
        _table(
            "Error rates per split, class and slice",
            diff.tables["groups"],
            GROUP_COLUMNS,
            cap,
            export=GROUPS_CSV,
            caption="Regressions first, then improvements. Errors are against each run's given "
            "labels; right → wrong counts items with the same label in both runs (exact McNemar "
            "test), so a change there is the model's.",
        )
    ]
    optional = (
        ("label_errors", "Label-error candidates", LABEL_ERROR_COLUMNS, ITEMS_CSV,
         "Fixed (relabelled, or no longer flagged), new, persisting, gone (removed or unlabeled)."),
        ("membership", "Items in one run only", MEMBERSHIP_COLUMNS, ITEMS_CSV,
         "only_old: in the baseline, not in this run; only_new: added since."),
        ("labels", "Labels and splits that changed", LABEL_COLUMNS, ITEMS_CSV,
         "Items in both runs whose given label or split differs."),
        ("queue", "Label-next queue", QUEUE_COLUMNS, ITEMS_CSV,
         "Items that entered or left the queue; labeled = last run's picks that got a label."),
        ("duplicates", "Duplicates and leakage", DUPLICATE_COLUMNS, None,
         "Duplicate pairs that appeared or were resolved; spans splits = leakage."),
        ("failure_slices", "Failure slices found", FAILURE_SLICE_COLUMNS, None,
         "Discovered rules, matched by their description."),
    )  # fmt: skip
    for name, title, columns, export, caption in optional:
        if name in diff.tables:
            blocks.append(_table(title, diff.tables[name], columns, cap, export, caption))
    blocks += [
        _table("Summary metrics", diff.tables["metrics"], METRIC_COLUMNS, cap),
        _table("Split sizes", diff.tables["splits"], SPLIT_COLUMNS, cap),
        _table("Classes", diff.tables["classes"], CLASS_COLUMNS, cap),
        _table("Inputs", diff.tables["inputs"], INPUT_COLUMNS, cap),
    ]
    return [
        SectionView(
            id="comparison",
            title="What changed since the baseline run",
            intro=_intro(diff),
            cards=tuple(_cards(diff)),
            notes=(*_regression_sentences(diff), *diff.notes),
            blocks=tuple(blocks),
        )
    ]


def _table(title, frame, columns, cap, export=None, caption="") -> TableView:
    return TableView(
        title,
        frame.head(cap),
        columns,
        total_rows=len(frame),
        export=export,
        caption=caption,
        empty_message="No change.",
    )


def _intro(diff: RunDiff) -> str:
    s, base = diff.summary, diff.baseline
    when = base.get("started_at") or "an unknown time"
    where = f" ({base['path']})" if base.get("path") else ""
    return (
        f"Compared with the baseline run of {when}{where}: {s['items_common']:,} items in both "
        f"runs, {s['items_only_old']:,} only in the baseline, {s['items_only_new']:,} new."
    )


def _regression_sentences(diff: RunDiff) -> list[str]:
    regressions = diff.regressions
    sentences = []
    for row in regressions.head(5).itertuples(index=False):
        sentences.append(
            f"Regression {_where(row.scope, row.group)}: error rate "
            f"{format_value(row.old_error_rate, 'percent')} → "
            f"{format_value(row.new_error_rate, 'percent')} "
            f"({row.n_worse:,} items right before and wrong now, {row.n_better:,} the reverse; "
            f"q = {row.q_value:.2g})."
        )
    if len(regressions) > 5:
        sentences.append(f"… and {len(regressions) - 5} more regressions in the table below.")
    return sentences


def _cards(diff: RunDiff) -> list[Card]:
    s = diff.summary
    n_reg = s["regression"]
    cards = [
        Card(
            "regressions",
            f"{n_reg:,}",
            "splits, classes or slices significantly worse"
            if n_reg
            else "nothing significantly worse",
            "bad" if n_reg else "good",
        ),
        Card("improvements", f"{s['improvement']:,}", "significantly better", "neutral"),
        Card(
            "items added / removed",
            f"{s['items_only_new']:,} / {s['items_only_old']:,}",
            f"{s['items_relabelled']:,} relabelled, {s['items_newly_labeled']:,} newly labeled",
        ),
    ]
    if "label_errors_fixed" in s:
        cards.append(
            Card(
                "label errors fixed / new",
                f"{s['label_errors_fixed']:,} / {s['label_errors_new']:,}",
                f"{s['label_errors_fixed_relabelled']:,} relabelled; "
                f"{s['label_errors_persisting']:,} persist",
                "warn" if s["label_errors_new"] > s["label_errors_fixed"] else "neutral",
            )
        )
    if "duplicates_appeared" in s:
        cards.append(
            Card(
                "leakage appeared / resolved",
                f"{s['leakage_appeared']:,} / {s['leakage_resolved']:,}",
                f"duplicate pairs: {s['duplicates_appeared']:,} appeared, "
                f"{s['duplicates_resolved']:,} resolved",
                "bad" if s["leakage_appeared"] else "neutral",
            )
        )
    if "queue_labeled" in s:
        cards.append(
            Card(
                "last queue labeled",
                f"{s['queue_labeled']:,} of {s['queue_old_size']:,}",
                f"{s['queue_entered']:,} items entered the queue",
            )
        )
    if s["classes_added"] or s["classes_removed"] or s["inputs_changed"]:
        cards.append(
            Card(
                "classes added / removed",
                f"{s['classes_added']:,} / {s['classes_removed']:,}",
                f"{s['inputs_changed']:,} input file(s) changed",
                "warn" if s["classes_added"] or s["classes_removed"] else "neutral",
            )
        )
    return cards


def _where(scope: str, group: str) -> str:
    return "overall" if scope == "overall" else f"in {scope} {group}"
