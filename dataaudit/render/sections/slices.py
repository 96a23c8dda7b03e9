"""Section: failure slices found without being told, given metadata slices and splits, with CIs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from dataaudit.render import charts
from dataaudit.render.format import format_value
from dataaudit.render.view import Card, ChartView, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

MAX_CHART_SLICES = 25


def _rate(key: str, title: str, help: str) -> tuple[Column, ...]:
    return (
        Column(key, title, "percent", help=help),
        Column(f"{key}_low", "low", "percent", help=f"95% Wilson interval of the {title}"),
        Column(f"{key}_high", "high", "percent", help=f"95% Wilson interval of the {title}"),
    )


ERROR = _rate("error_rate", "error rate", "share of the slice's labeled items the model gets wrong")
LABEL_ERROR = Column(
    "label_error_rate", "label errors", "percent", help="share flagged by the label-error analysis"
)
TESTS = (
    Column("lift", "lift", "number", help="error rate / overall error rate"),
    Column("q_value", "q", "number", help="Benjamini-Hochberg corrected one-sided p-value"),
)

DISCOVERED_COLUMNS = (
    Column("rank", "rank", "number"),
    Column("slice_id", "id", "id"),
    Column("kind", "found by"),
    Column("description", "slice", help="the rule, or what a cluster's items have in common"),
    Column("support", "items", "number", help="items in the slice, labeled or not"),
    Column("n_labeled", "labeled", "number"),
    *ERROR,
    *TESTS,
    Column(
        "score",
        "severity",
        "score",
        help="(lower CI bound − overall rate) × √labeled items not in a higher-ranked slice",
    ),
    Column("excess_errors", "excess errors", "number", help="errors beyond the overall rate"),
    LABEL_ERROR,
    Column("top_confusion", "top confusions", help="given -> predicted (count) among its errors"),
    Column("n_unlabeled", "unlabeled", "number", help="unlabeled items in the slice"),
)

EXAMPLE_COLUMNS = (
    Column("slice_id", "slice", "id"),
    Column("role", "role", help="failure: a confident error; to_label: unlabeled, nearest to them"),
    Column("id", "item", "item"),
    Column("given_label", "given", "label"),
    Column("predicted_label", "predicted", "label"),
    Column("predicted_prob", "p(predicted)", "percent"),
    Column("similarity", "similarity", "score", help="cosine similarity to the slice's failures"),
)

GIVEN_COLUMNS = (
    Column("slice", "slice"),
    Column("split", "split"),
    Column("support", "items", "number"),
    Column("n_labeled", "labeled", "number"),
    *ERROR,
    Column("rest_error_rate", "rest", "percent", help="error rate of the rest of the split"),
    *TESTS,
    Column("significant", "worse", help="q below the FDR and lift above the gate"),
    LABEL_ERROR,
)

SPLIT_COLUMNS = (
    Column("split", "split"),
    Column("support", "items", "number"),
    Column("n_labeled", "labeled", "number"),
    *ERROR,
    *_rate("label_error_rate", "label-error rate", "share flagged by the label-error analysis"),
)


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("slices")
    if result is None:
        return []
    summary = result.summary
    discovered = result.table("discovered")
    given = result.table("given")
    cap = report.config.html_max_rows
    overall = float(result.params.get("overall_error_rate", float("nan")))
    worst = summary["worst_slice"]
    tested = f"{summary['n_slices_tested']:,} slices tested"
    if summary.get("n_slice_pairs_screened_out"):  # absent in reports saved before screening
        tested += (
            f" ({summary['n_slice_pairs_tested']:,} pairs of conditions tested, "
            f"{summary['n_slice_pairs_screened_out']:,} screened out)"
        )
    given_caption = (
        "Every metadata value and pair of values, over all splits and per split, most severe first."
    )
    if summary.get("n_given_slices_not_listed"):
        given_caption = (
            f"The significant metadata slices, then the most severe per column "
            f"({summary['n_given_slices_not_listed']:,} more tested and not listed), over all "
            "splits and per split, most severe first."
        )
    cards = (
        Card(
            "failure slices found",
            f"{summary['n_failure_slices']:,}",
            f"{summary['n_failure_rules']:,} rules, {summary['n_failure_clusters']:,} clusters; "
            f"{tested}",
            "bad" if summary["n_failure_slices"] else "good",
        ),
        Card(
            "worst slice",
            format_value(summary["worst_slice_error_rate"], "percent"),
            worst if worst else "no slice errs significantly more than the rest",
            "warn" if worst else "good",
        ),
        Card("overall error rate", format_value(overall, "percent"), "all labeled items"),
    )
    blocks: list[TableView | ChartView] = []
    chart = slice_chart(discovered, given, overall)
    if chart is not None:
        blocks.append(chart)
    blocks += [
        TableView(
            "Discovered failure slices",
            discovered.head(cap),
            DISCOVERED_COLUMNS,
            total_rows=len(discovered),
            export="slices.csv",
            caption=(
                "Metadata rules (R) and embedding clusters (C) where the model errs significantly "
                "more than overall, ranked by severity (lift traded against support)."
            ),
            empty_message="No slice errs significantly more than the rest of the data.",
        ),
        TableView(
            "Examples per discovered slice",
            result.table("examples").head(cap),
            EXAMPLE_COLUMNS,
            total_rows=len(result.table("examples")),
            export="slices.csv",
            caption=(
                "The slice's most confident failures, then the unlabeled items of the same slice "
                "nearest to them: candidates to label."
            ),
            empty_message="No discovered slices.",
        ),
        TableView(
            "Metadata slices",
            given.head(cap),
            GIVEN_COLUMNS,
            total_rows=len(given),
            export="slices.csv",
            caption=given_caption,
            empty_message="No metadata slice has enough labeled items to test.",
        ),
        TableView(
            "Per split",
            result.table("splits"),
            SPLIT_COLUMNS,
            total_rows=len(result.table("splits")),
        ),
    ]
    return [
        SectionView(
            id="slices",
            title="Slices and failure slices",
            intro=(
                "Where the model fails: groups of items, found in the metadata and in embedding "
                "space, whose error rate is significantly above the rest, with 95% intervals and "
                "false-discovery control."
            ),
            cards=cards,
            notes=tuple(result.notes),
            blocks=tuple(blocks),
        )
    ]


def slice_chart(discovered: pd.DataFrame, given: pd.DataFrame, overall: float) -> ChartView | None:
    """Error rate of every discovered slice and the worst given slices, against the overall rate."""
    rows = discovered.assign(label=discovered["slice_id"] + ": " + discovered["slice"])
    significant = given[given["significant"]].head(max(0, MAX_CHART_SLICES - len(rows)))
    split = significant["split"].where(significant["split"] == "all", "in " + significant["split"])
    rows = pd.concat(
        [
            rows.assign(kind=rows["kind"].map({"rule": "discovered rule", "cluster": "cluster"})),
            significant.assign(
                label=significant["slice"] + " (" + split + ")", kind="metadata slice"
            ),
        ],
        ignore_index=True,
    ).head(MAX_CHART_SLICES)
    if rows.empty:
        return None
    figure = charts.rate_bars(
        rows,
        "label",
        "error_rate",
        "error_rate_low",
        "error_rate_high",
        support="n_labeled",
        series="kind",
        overall=overall,
        overall_label="overall",
    )
    return ChartView(
        "Error rate of failure slices",
        figure,
        caption=(
            "Bars: error rate on the slice's labeled items; whiskers: 95% Wilson interval; "
            "dashed line: overall error rate."
        ),
    )
