"""The overview: what was audited, the health summary, and what was skipped."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from dataaudit.render.format import format_rate_ci, format_value
from dataaudit.render.view import Card, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def _pct(value) -> str:
    return format_value(value, "percent")


def health_cards(report: AuditReport) -> list[Card]:
    """One card per headline metric that exists in this run, each saying what it is computed on."""
    m = report.metrics()
    cards = []
    if "label_error_rate" in m:
        rate = m["label_error_rate"]
        cards.append(
            Card(
                "label-error candidates",
                f"{m.get('n_label_errors', 0):,}",
                f"{format_rate_ci(rate, m.get('label_error_rate_ci_low'), m.get('label_error_rate_ci_high'))}"
                f" of {report.dataset['n_labeled']:,} labeled items",
                "bad" if rate and rate > 0.05 else "warn" if rate and rate > 0.01 else "good",
            )
        )
    if "accuracy" in m:
        cards.append(
            Card(
                "model accuracy",
                _pct(m["accuracy"]),
                f"on {report.dataset['n_labeled']:,} labeled items, all splits",
            )
        )
    if "n_duplicate_groups" in m:
        cards.append(
            Card(
                "duplicate groups",
                f"{m['n_duplicate_groups']:,}",
                f"{m.get('n_duplicate_items', 0):,} items in exact or near-duplicate groups",
                "warn" if m["n_duplicate_groups"] else "good",
            )
        )
    if "leakage" in m:
        cards.append(
            Card(
                "leakage across splits",
                f"{m['leakage']:,}",
                "duplicate groups spanning two or more splits",
                "bad" if m["leakage"] else "good",
            )
        )
    if "n_outliers" in m:
        cards.append(
            Card(
                "outliers",
                f"{m['n_outliers']:,}",
                "items flagged by kNN distance",
                "warn" if m["n_outliers"] else "good",
            )
        )
    if "n_failure_slices" in m:
        worst = m.get("worst_slice")
        cards.append(
            Card(
                "failure slices",
                f"{m['n_failure_slices']:,}",
                f"worst: {worst} ({_pct(m.get('worst_slice_error_rate'))} error)"
                if worst
                else "none significant after correction",
                "bad" if m["n_failure_slices"] else "good",
            )
        )
    if "label_next_count" in m:
        cards.append(
            Card(
                "label next",
                f"{m['label_next_count']:,}",
                f"items queued within a budget of {m.get('label_next_budget', 0):,}",
            )
        )
    return cards


def build_overview(report: AuditReport) -> SectionView:
    dataset = report.dataset
    split_rows = pd.DataFrame(
        [
            {
                "split": name,
                "n_items": c["n_items"],
                "n_labeled": c["n_labeled"],
                "n_unlabeled": c["n_items"] - c["n_labeled"],
            }
            for name, c in dataset["splits"].items()
        ]
    )
    blocks = [
        TableView(
            "Items per split",
            split_rows,
            (
                Column("split", "split"),
                Column("n_items", "items", "number"),
                Column("n_labeled", "labeled", "number"),
                Column("n_unlabeled", "unlabeled", "number"),
            ),
            total_rows=len(split_rows),
        )
    ]
    status = [
        {"analysis": report.titles.get(name, name), "status": "skipped", "reason": why}
        for name, why in report.skipped.items()
    ] + [
        {
            "analysis": report.titles.get(name, name),
            "status": "failed",
            "reason": why.splitlines()[0],
        }
        for name, why in report.failed.items()
    ]
    if status:
        blocks.append(
            TableView(
                "Skipped or failed analyses",
                pd.DataFrame(status),
                (
                    Column("analysis", "analysis"),
                    Column("status", "status"),
                    Column("reason", "reason"),
                ),
                total_rows=len(status),
            )
        )
    notes = [
        f"Class order: {dataset['class_source']}.",
        f"Probabilities from {dataset['n_models']} model(s)"
        + (" were averaged per item before scoring." if dataset["n_models"] > 1 else "."),
    ]
    if dataset.get("embedding_dim") is None:
        notes.append("No embeddings were given: similarity analyses were skipped.")
    return SectionView(
        id="overview",
        title="Overview",
        intro=(
            f"{dataset['n_items']:,} items: {dataset['n_labeled']:,} labeled, "
            f"{dataset['n_unlabeled']:,} unlabeled, {len(dataset['classes'])} classes, "
            f"{len(dataset['splits'])} split(s)."
        ),
        cards=(
            Card("items", f"{dataset['n_items']:,}", f"{len(dataset['splits'])} split(s)"),
            Card("labeled", f"{dataset['n_labeled']:,}", f"{dataset['n_unlabeled']:,} unlabeled"),
            *health_cards(report),
        ),
        notes=tuple(notes),
        blocks=tuple(blocks),
    )
