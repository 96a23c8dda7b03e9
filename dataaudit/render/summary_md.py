"""summary.md: a Markdown summary for a pull-request comment.

The checks table, headline metrics with intervals and their change against `--baseline`, the top
label errors and failure slices, and a pointer to report.html. Every user string is escaped for
Markdown (a class named `|` or `<img>` cannot break the table or inject HTML into the comment).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataaudit.checks import FAIL, WARN, worst_status
from dataaudit.files import atomic_write_text
from dataaudit.render.format import format_value, is_missing, truncate

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

TOP_ROWS = 5
# (metric, title, kind); intervals are read from <metric>_ci_low / _ci_high when present.
HEADLINE = (
    ("accuracy", "model accuracy vs given labels", "percent"),
    ("label_error_rate", "label-error rate", "percent"),
    ("n_label_errors", "label-error candidates", "number"),
    ("worst_class_error_rate", "worst class error rate", "percent"),
    ("worst_slice_error_rate", "worst slice error rate", "percent"),
    ("n_failure_slices", "failure slices", "number"),
    ("n_duplicate_groups", "duplicate groups", "number"),
    ("leakage", "leakage across splits (groups)", "number"),
    ("ood_rate", "out-of-distribution share", "percent"),
    ("ece", "expected calibration error", "number"),
    ("label_next_count", "queued to label next", "number"),
)
# Inline markup a cell could open (code, emphasis, links, tables, strikethrough); < > & are
# entities, so no HTML reaches the comment.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(value: Any) -> str:
    """Text safe inside a Markdown table cell: no HTML, no markup, one line."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _number(value: Any) -> str:
    return "—" if is_missing(value) else f"{value:g}"


def checks_lines(report: AuditReport) -> list[str]:
    if not report.checks:
        return ["No checks were configured (add `[checks]` to dataaudit.toml or use `--fail-on`)."]
    rows = [
        [
            md(c.name),
            _number(c.value),
            _number(c.warn),
            _number(c.fail),
            {FAIL: "**fail**", WARN: "warn"}.get(c.status, "pass"),
        ]
        for c in report.checks
    ]
    return _table(["check", "value", "warn", "fail", "status"], rows)


def headline_lines(report: AuditReport) -> list[str]:
    metrics = report.metrics()
    comparison = report.comparison.summary if report.comparison is not None else {}
    rows = []
    for key, title, kind in HEADLINE:
        if is_missing(metrics.get(key)):
            continue
        low, high = metrics.get(f"{key}_ci_low"), metrics.get(f"{key}_ci_high")
        interval = (
            "—"
            if is_missing(low) or is_missing(high)
            else f"{format_value(low, kind)}–{format_value(high, kind)}"
        )
        change = comparison.get(f"{key}_change")
        delta = "—" if is_missing(change) else _signed(change, kind)
        row = [md(title), format_value(metrics[key], kind), interval]
        rows.append(row + [delta] if comparison else row)
    header = ["metric", "value", "95% CI"] + (["vs baseline"] if comparison else [])
    return _table(header, rows) if rows else ["No headline metrics in this run."]


def _signed(change: float, kind: str) -> str:
    if kind == "percent":
        return f"{change * 100:+.1f} pp"
    return f"{change:+,g}"


def label_error_lines(report: AuditReport) -> list[str]:
    relabel = report.relabel_list()
    if relabel is None:
        return []
    lines = ["", f"### Top label errors ({len(relabel):,} in `relabel.csv`)", ""]
    if relabel.empty:
        return lines + ["No label-error candidates."]
    rows = [
        [
            str(r.rank),
            md(r.id),
            md(r.given_label),
            md(r.suggested_label),
            f"{r.error_score:.3f}",
            md(truncate(r.reason, 100)),
        ]
        for r in relabel.head(TOP_ROWS).itertuples(index=False)
    ]
    return lines + _table(["rank", "id", "given", "suggested", "score", "reason"], rows)


def slice_lines(report: AuditReport) -> list[str]:
    result = report.results.get("slices")
    if result is None or "discovered" not in result.tables:
        return []
    table = result.tables["discovered"]
    lines = ["", "### Worst slices", ""]
    if table.empty:
        return lines + ["No slice is significantly worse than the rest of the data."]
    rows = [
        [
            md(truncate(r.description if isinstance(r.description, str) else r.slice, 80)),
            f"{int(r.n_labeled):,}",
            _rate_ci(r.error_rate, r.error_rate_low, r.error_rate_high),
        ]
        for r in table.head(TOP_ROWS).itertuples(index=False)
    ]
    return lines + _table(["slice", "labeled", "error rate (95% CI)"], rows)


def _rate_ci(rate: float, low: float, high: float) -> str:
    pct = [format_value(v, "percent") for v in (rate, low, high)]
    return f"{pct[0]} ({pct[1]}–{pct[2]})"


def summary_markdown(report: AuditReport) -> str:
    d = report.dataset
    status = worst_status(report.checks) if report.checks else None
    verdict = {
        FAIL: f"{sum(c.status == FAIL for c in report.checks)} check(s) failed",
        WARN: f"{sum(c.status == WARN for c in report.checks)} check(s) warn",
        "pass": "all checks passed",
        None: "no checks",
    }[status]
    lines = [
        f"## dataaudit: {verdict}",
        "",
        (
            f"{d['n_items']:,} items ({d['n_labeled']:,} labeled), {len(d['classes'])} classes · "
            f"generated {md(report.run.get('started_at', ''))} · dataaudit "
            f"{md(report.run.get('dataaudit_version', ''))}"
        ),
        "",
        "### Checks",
        "",
        *checks_lines(report),
        "",
        "### Headline metrics",
        "",
        *headline_lines(report),
        *label_error_lines(report),
        *slice_lines(report),
    ]
    warnings = report.all_warnings()
    if warnings:
        lines += ["", "### Warnings", ""]
        lines += [f"- `{md(w.code)}`: {md(truncate(w.message, 200))}" for w in warnings]
    lines += [
        "",
        (
            "Full report: `report.html` in the run's output folder (ranked lists: `relabel.csv`, "
            "`label_next.csv`, `duplicates.csv`, `slices.csv`)."
        ),
    ]
    return "\n".join(lines) + "\n"


def write_summary_md(report: AuditReport, path: str | Path) -> Path:
    atomic_write_text(path, summary_markdown(report))
    return Path(path)
