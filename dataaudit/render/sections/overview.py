"""The overview: what was audited, the health summary, the worst slices, and what was skipped.

Reads only analyses' summaries (and the slices' ranked table), so it works with any subset of
analyses; a metric whose analysis did not run is simply absent. Every number says what it is
computed on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from dataaudit.render.charts import score_histogram
from dataaudit.render.format import format_rate_ci, format_value, is_missing
from dataaudit.render.view import Card, ChartView, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

WORST_SLICES = 5


def _pct(value: Any) -> str:
    return format_value(value, "percent")


def _count(value: Any) -> str:
    return "—" if is_missing(value) else f"{int(value):,}"


def _rate_ci(m: dict[str, Any], key: str, low: str | None = None, high: str | None = None) -> str:
    rate = m.get(key)
    lo, hi = m.get(low or f"{key}_ci_low"), m.get(high or f"{key}_ci_high")
    if is_missing(rate):
        return "—"
    if is_missing(lo) or is_missing(hi):
        return _pct(rate)
    return format_rate_ci(rate, lo, hi)


def _tone(value: Any, warn: float, bad: float) -> str:
    if is_missing(value):
        return "neutral"
    return "bad" if value > bad else "warn" if value > warn else "good"


def health_rows(report: AuditReport) -> list[dict[str, str]]:
    """The health summary: one row per check that ran, with what it was computed on."""
    m = report.metrics()
    d = report.dataset
    labeled = f"{d['n_labeled']:,} labeled items, all splits"
    rows = []

    def add(check: str, result: str, on: str, section: str) -> None:
        rows.append({"check": check, "result": result, "computed_on": on, "section": section})

    if "label_error_rate" in m:
        add(
            "label-error candidates",
            f"{_count(m.get('n_label_errors'))} items, {_rate_ci(m, 'label_error_rate')}",
            labeled,
            "Label errors",
        )
    if "accuracy" in m:
        add("model accuracy vs given labels", _rate_ci(m, "accuracy"), labeled, "Per-class errors")
    if m.get("worst_class") is not None:
        add(
            "worst class",
            f"{m['worst_class']}: {_pct(m.get('worst_class_error_rate'))} error rate",
            "labeled items of that class",
            "Per-class errors",
        )
    if m.get("top_pair") is not None:
        add(
            "most confused class pair",
            f"{m['top_pair']} (joint probability {_pct(m.get('top_pair_joint_probability'))})",
            labeled,
            "Swapped class pairs",
        )
    if "n_duplicate_groups" in m:
        add(
            "duplicate groups",
            f"{_count(m['n_duplicate_groups'])} groups, {_count(m.get('n_duplicate_items'))} items",
            f"all {d['n_items']:,} items (embeddings)",
            "Duplicates",
        )
    if "leakage" in m:
        add(
            "leakage across splits",
            f"{_count(m['leakage'])} duplicate groups span two or more splits",
            f"all {d['n_items']:,} items (embeddings)",
            "Duplicates",
        )
    if "n_outliers" in m:
        add(
            "outliers",
            f"{_count(m['n_outliers'])} items",
            f"all {d['n_items']:,} items (embeddings)",
            "Outliers",
        )
    if "n_failure_slices" in m:
        worst = m.get("worst_slice")
        add(
            "failure slices",
            f"{_count(m['n_failure_slices'])} significant"
            + (
                f"; worst: {worst} ({_pct(m.get('worst_slice_error_rate'))} error)" if worst else ""
            ),
            f"{_count(m.get('n_slices_tested'))} slices tested on labeled items, "
            "after multiple-testing correction",
            "Slices",
        )
    if "label_next_count" in m:
        add(
            "label next",
            f"{_count(m['label_next_count'])} items queued for a budget of "
            f"{_count(m.get('label_next_budget'))}",
            f"{d['n_unlabeled']:,} unlabeled items",
            "Label next",
        )
    if m.get("auto_label_count"):
        add(
            "auto-label candidates",
            f"{_count(m['auto_label_count'])} items, estimated precision "
            f"{_pct(m.get('auto_label_estimated_precision'))}",
            f"{d['n_unlabeled']:,} unlabeled items",
            "Label next",
        )
    return rows


def health_cards(report: AuditReport) -> list[Card]:
    """One card per headline metric that exists in this run, each saying what it is computed on."""
    m = report.metrics()
    d = report.dataset
    cards = []
    if "label_error_rate" in m:
        rate = m["label_error_rate"]
        cards.append(
            Card(
                "label-error candidates",
                _count(m.get("n_label_errors", 0)),
                f"{_rate_ci(m, 'label_error_rate')} of {d['n_labeled']:,} labeled items",
                _tone(rate, 0.01, 0.05),
            )
        )
    if "accuracy" in m:
        cards.append(
            Card(
                "model accuracy",
                _pct(m["accuracy"]),
                f"95% CI {_pct(m.get('accuracy_ci_low'))}–{_pct(m.get('accuracy_ci_high'))}, "
                f"on {d['n_labeled']:,} labeled items vs given labels",
            )
        )
    if "n_duplicate_groups" in m:
        cards.append(
            Card(
                "duplicate groups",
                _count(m["n_duplicate_groups"]),
                f"{_count(m.get('n_duplicate_items', 0))} of {d['n_items']:,} items in exact or "
                "near-duplicate groups",
                "warn" if m["n_duplicate_groups"] else "good",
            )
        )
    if "leakage" in m:
        cards.append(
            Card(
                "leakage across splits",
                _count(m["leakage"]),
                "duplicate groups spanning two or more splits",
                "bad" if m["leakage"] else "good",
            )
        )
    if "n_outliers" in m:
        cards.append(
            Card(
                "outliers",
                _count(m["n_outliers"]),
                f"of {d['n_items']:,} items, flagged by kNN distance",
                "warn" if m["n_outliers"] else "good",
            )
        )
    if "n_failure_slices" in m:
        worst = m.get("worst_slice")
        cards.append(
            Card(
                "failure slices",
                _count(m["n_failure_slices"]),
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
                _count(m["label_next_count"]),
                f"items queued within a budget of {_count(m.get('label_next_budget', 0))}, "
                f"from {d['n_unlabeled']:,} unlabeled",
            )
        )
    return cards


def worst_slices(report: AuditReport) -> TableView | None:
    """The top failure slices (ranked by the slices analysis), with intervals."""
    result = report.results.get("slices")
    if result is None or "discovered" not in result.tables:
        return None
    table = result.tables["discovered"]
    needed = {"slice", "n_labeled", "error_rate", "error_rate_low", "error_rate_high"}
    if not needed <= set(table.columns):
        return None
    top = table.head(WORST_SLICES).copy()
    if "description" in top:
        top["slice"] = [
            d if isinstance(d, str) and d else s for s, d in zip(top["slice"], top["description"])
        ]
    top["error_rate_ci"] = [
        f"{_pct(lo)}–{_pct(hi)}" for lo, hi in zip(top["error_rate_low"], top["error_rate_high"])
    ]
    columns = [
        Column("slice", "slice"),
        Column("n_labeled", "labeled items", "number"),
        Column("error_rate", "error rate", "percent"),
        Column("error_rate_ci", "95% CI", help="Wilson interval of the slice's error rate"),
    ]
    if "rest_error_rate" in top:
        columns.append(
            Column("rest_error_rate", "rest of data", "percent", "error rate outside the slice")
        )
    return TableView(
        "Worst slices",
        top,
        tuple(columns),
        total_rows=len(table),
        caption=(
            "Error rate against the given labels on the slice's labeled items; significant after "
            "multiple-testing correction. The Slices section explains each."
        ),
        empty_message="No slice is significantly worse than the rest of the data.",
    )


def confidence_chart(report: AuditReport) -> ChartView | None:
    """Histogram of the model's top-class probability: agreeing, disagreeing, unlabeled items."""
    items = report.items
    if not {"predicted_prob", "given_label", "predicted_label"} <= set(items.columns):
        return None
    prob = items["predicted_prob"].to_numpy(dtype="float64")
    given = items["given_label"].astype(str).to_numpy()
    labeled = given != ""
    agrees = labeled & (given == items["predicted_label"].astype(str).to_numpy())
    groups = {
        "labeled, prediction = given label": prob[agrees],
        "labeled, prediction ≠ given label": prob[labeled & ~agrees],
        "unlabeled": prob[~labeled],
    }
    groups = {name: values for name, values in groups.items() if len(values)}
    if not groups:
        return None
    return ChartView(
        "Model confidence",
        score_histogram(groups, bins=40, x_title="probability of the predicted class"),
        caption=(
            f"All {len(items):,} items, binned. Disagreements at high confidence are the likeliest "
            "label errors; unlabeled items at low confidence are what the model knows least."
        ),
    )


def warnings_table(report: AuditReport) -> TableView | None:
    """Every coded warning of the run, first on the page: a doubt the reader must see."""
    found = report.all_warnings()
    if not found:
        return None
    rows = pd.DataFrame(
        [
            {
                "code": w.code,
                "message": w.message,
                "where": w.file + (f", column {w.column}" if w.column else ""),
            }
            for w in found
        ]
    )
    return TableView(
        "Warnings",
        rows,
        (Column("code", "code"), Column("message", "what was found"), Column("where", "where")),
        total_rows=len(rows),
        caption="Doubts about the inputs or the results that did not stop the run. "
        'summary.json lists them under "warnings".',
    )


def build_overview(report: AuditReport) -> SectionView:
    dataset = report.dataset
    split_rows = pd.DataFrame(
        [
            {
                "split": name,
                "n_items": c["n_items"],
                "n_labeled": c["n_labeled"],
                "n_unlabeled": c["n_items"] - c["n_labeled"],
                "share_labeled": c["n_labeled"] / c["n_items"] if c["n_items"] else None,
            }
            for name, c in dataset["splits"].items()
        ]
    )
    warned = warnings_table(report)
    blocks: list[TableView | ChartView] = [] if warned is None else [warned]
    blocks += [
        TableView(
            "Items per split",
            split_rows,
            (
                Column("split", "split"),
                Column("n_items", "items", "number"),
                Column("n_labeled", "labeled", "number"),
                Column("n_unlabeled", "unlabeled", "number"),
                Column("share_labeled", "labeled share", "percent"),
            ),
            total_rows=len(split_rows),
            caption="Counts of every item in the examples table, by its split column.",
        )
    ]
    health = health_rows(report)
    if health:
        blocks.append(
            TableView(
                "Health summary",
                pd.DataFrame(health),
                (
                    Column("check", "check"),
                    Column("result", "result"),
                    Column("computed_on", "computed on"),
                    Column("section", "details in"),
                ),
                total_rows=len(health),
                caption="Intervals are 95% Wilson intervals.",
            )
        )
    chart = confidence_chart(report)
    if chart is not None:
        blocks.append(chart)
    slices_table = worst_slices(report)
    if slices_table is not None:
        blocks.append(slices_table)
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
                caption="An analysis is skipped when an input it needs was not given.",
            )
        )
    notes = [
        f"Class order: {dataset['class_source']}.",
        *_unlabeled_note(dataset),
        f"Probabilities from {dataset['n_models']} model(s)"
        + (" were averaged per item before scoring." if dataset["n_models"] > 1 else "."),
    ]
    if report.run.get("config_file"):
        notes.append(f"Settings read from {report.run['config_file']} (flags override it).")
    if report.checks:
        failed = sum(c.status == "fail" for c in report.checks)
        notes.append(
            f"Checks: {len(report.checks)} evaluated, {failed} failed "
            '(summary.json "checks", checks.xml, summary.md).'
        )
    if dataset.get("embedding_dim") is None:
        notes.append("No embeddings were given: similarity analyses were skipped.")
    else:
        notes.append(f"Embeddings: {dataset['embedding_dim']} dimensions.")
    if report.failed:
        notes.append(
            f"{len(report.failed)} analysis(es) failed; their sections are missing and the "
            "command exited with status 1."
        )
    return SectionView(
        id="overview",
        title="Overview",
        intro=(
            f"{dataset['n_items']:,} items: {dataset['n_labeled']:,} labeled, "
            f"{dataset['n_unlabeled']:,} unlabeled, {len(dataset['classes'])} classes, "
            f"{len(dataset['splits'])} split(s)."
        ),
        cards=(
            Card(
                "items",
                f"{dataset['n_items']:,}",
                f"in {len(dataset['splits'])} split(s)"
                + (
                    ": " + ", ".join(f"{k} {v['n_items']:,}" for k, v in dataset["splits"].items())
                    if len(dataset["splits"]) <= 6
                    else ""
                ),
            ),
            Card("labeled", f"{dataset['n_labeled']:,}", f"{dataset['n_unlabeled']:,} unlabeled"),
            *health_cards(report),
        ),
        notes=tuple(notes),
        blocks=tuple(blocks),
    )


def _unlabeled_note(dataset: dict) -> list[str]:
    """How many rows were read as unlabeled, and why (older reports have no counts)."""
    counts = dataset.get("unlabeled_by_value") or {}
    if not counts:
        return []
    parts = [
        f"{n:,} with an empty label" if value == "" else f"{n:,} with the label {value!r}"
        for value, n in counts.items()
    ]
    return ["Unlabeled: " + ", ".join(parts) + " (only these values mean unlabeled)."]
