"""Section: shift between the reference and current splits (metadata, predictions, embeddings)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from dataaudit.render.charts import effect_bars, rate_bars
from dataaudit.render.format import format_value, is_missing
from dataaudit.render.view import Card, ChartView, Column, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

COLUMN_COLUMNS = (
    Column("column", "column", "label"),
    Column("significant", "shifted", "text", help="q-value ≤ FDR and effect size ≥ the minimum"),
    Column(
        "effect_size",
        "effect (JS)",
        "score",
        help="Jensen-Shannon distance, 0 = same, 1 = disjoint",
    ),
    Column("test", "test"),
    Column("statistic", "statistic", "score", help="chi-square statistic, or KS distance"),
    Column("p_value", "p", "score"),
    Column("q_value", "q", "score", help="Benjamini-Hochberg over every test of this section"),
    Column("top_changes", "what moved", "text"),
)
VALUE_COLUMNS = (
    Column("column", "column", "label"),
    Column("value", "value", "label"),
    Column("reference_share", "reference", "percent"),
    Column("current_share", "current", "percent"),
    Column("change", "change", "percent"),
    Column("new", "new", "text", help="a category never seen in the reference split"),
)
PREDICTION_COLUMNS = (
    Column("class", "class", "label"),
    Column("reference_label_share", "reference labels", "percent"),
    Column("reference_predicted_share", "reference predicted", "percent"),
    Column("current_predicted_share", "current predicted", "percent"),
    Column("current_prior", "current prior (estimated)", "percent"),
    Column("current_prior_low", "low", "percent"),
    Column("current_prior_high", "high", "percent"),
    Column(
        "current_label_share", "current labels", "percent", help="where current items have labels"
    ),
)
CLUSTER_COLUMNS = (
    Column("cluster", "cluster", "number"),
    Column("n_reference", "reference items", "number"),
    Column("n_current", "current items", "number"),
    Column("reference_share", "reference share", "percent"),
    Column("current_share", "current share", "percent"),
    Column("change", "change", "percent"),
    Column("mean_domain_score", "mean domain score", "score"),
)
ITEM_COLUMNS = (
    Column("id", "item", "item"),
    Column("split", "split"),
    Column(
        "domain_score", "domain score", "score", help="share of reference items less current-like"
    ),
    Column("cluster", "cluster", "number"),
)
TOP_ITEMS = 20


def build(report: AuditReport) -> list[SectionView]:
    result = report.results.get("shift")
    if result is None:
        return []
    s, p = result.summary, result.params
    cap = report.config.html_max_rows
    columns = result.table("columns")
    values = result.table("values")
    predictions = result.table("predictions")
    clusters = result.table("clusters")
    items = result.table("items")
    reference, current = str(p["reference_split"]), str(p["current_split"])

    cards = [
        Card(
            "shifted columns",
            f"{int(s['n_shifted_columns']):,}",
            f"of {len(columns):,} metadata columns",
            "bad" if s["n_shifted_columns"] else "good",
        ),
        Card(
            "prior shift (TV)",
            format_value(s["prior_shift_tv"], "score"),
            _ci(s, "prior_shift_tv")
            + "; without shift, noise alone gives up to "
            + format_value(p.get("prior_shift_tv_if_unshifted"), "score"),
        ),
    ]
    if not is_missing(s["embedding_shift_auroc"]):
        emb_q = p.get("embedding_q_value")
        shifted = not is_missing(emb_q) and emb_q <= p["fdr"]
        cards.append(
            Card(
                "embedding shift AUROC",
                format_value(s["embedding_shift_auroc"], "score"),
                _ci(s, "embedding_shift_auroc") + "; 0.5 = indistinguishable",
                "bad" if shifted else "good",
            )
        )

    blocks: list = []
    if len(columns):
        blocks.append(
            ChartView(
                "Effect size per column",
                effect_bars(
                    columns.dropna(subset=["effect_size"]),
                    "column",
                    "effect_size",
                    "significant",
                    threshold=float(p["min_effect"]),
                ),
                caption="Jensen-Shannon distance between the two splits' histograms; dark bars "
                "are significant after correction. The dashed line is the minimum effect.",
            )
        )
    blocks.append(
        TableView(
            "Metadata columns",
            columns.head(cap),
            COLUMN_COLUMNS,
            total_rows=len(columns),
            caption="Shifted columns first, then by q-value.",
            empty_message="The table has no metadata columns.",
        )
    )
    moved = values.reindex(values["change"].abs().sort_values(ascending=False).index)
    moved = pd.concat([values[values["new"]], moved[~moved["new"]]]).head(cap)
    blocks.append(
        TableView(
            "Values that moved most",
            moved,
            VALUE_COLUMNS,
            total_rows=len(values),
            caption="New categories first, then values by the size of their change.",
        )
    )
    blocks.append(ChartView("Class mix", _class_chart(predictions), caption=_class_caption()))
    blocks.append(
        TableView(
            "Class mix and estimated current priors",
            predictions.head(cap),
            PREDICTION_COLUMNS,
            total_rows=len(predictions),
            caption="Current priors estimated through the reference confusion matrix (BBSE), "
            "with 95% bootstrap intervals.",
        )
    )
    if len(clusters):
        blocks.append(
            ChartView(
                "Where the embeddings moved",
                _cluster_chart(clusters),
                caption="Share of each split's sampled items per k-means cluster of the "
                "embeddings; clusters the current split gained come first.",
            )
        )
        blocks.append(
            TableView(
                "Clusters",
                clusters.head(cap),
                CLUSTER_COLUMNS,
                total_rows=len(clusters),
                caption="Clusters of the domain classifier's sample, by gain in the current split.",
            )
        )
        shown = items[items["split"] == current].head(TOP_ITEMS)
        blocks.append(
            TableView(
                "Current items least like the reference",
                shown,
                ITEM_COLUMNS,
                total_rows=len(shown),
                caption="By domain score, among the classifier's sample.",
            )
        )
    return [
        SectionView(
            id="shift",
            title="Shift",
            intro=f"Is split {current!r} like split {reference!r}? Metadata columns, the predicted "
            "class mix and priors, and the embeddings, tested with one false-discovery control.",
            cards=tuple(cards),
            notes=tuple(result.notes),
            blocks=tuple(blocks),
        )
    ]


def _ci(s, key: str) -> str:
    low, high = s.get(f"{key}_ci_low"), s.get(f"{key}_ci_high")
    if is_missing(low) or is_missing(high):
        return "no interval"
    return f"95% CI {format_value(low, 'score')}–{format_value(high, 'score')}"


def _class_caption() -> str:
    return (
        "Shares per class: the reference split's labels and predictions, the current split's "
        "predictions, and its estimated priors with 95% intervals."
    )


def _class_chart(predictions: pd.DataFrame):
    series = (
        ("reference labels", "reference_label_share", None, None),
        ("reference predicted", "reference_predicted_share", None, None),
        ("current predicted", "current_predicted_share", None, None),
        ("current prior (estimated)", "current_prior", "current_prior_low", "current_prior_high"),
    )
    frames = []
    for name, key, low, high in series:
        frames.append(
            pd.DataFrame(
                {
                    "class": predictions["class"].astype(str),
                    "series": name,
                    "share": predictions[key],
                    "low": predictions[low or key],
                    "high": predictions[high or key],
                }
            )
        )
    return rate_bars(
        pd.concat(frames, ignore_index=True),
        "class",
        "share",
        "low",
        "high",
        series="series",
        y_title="share",
    )


def _cluster_chart(clusters: pd.DataFrame):
    frames = [
        pd.DataFrame(
            {
                "cluster": "cluster " + clusters["cluster"].astype(str),
                "series": name,
                "share": clusters[key],
                "low": clusters[key],
                "high": clusters[key],
            }
        )
        for name, key in (("reference", "reference_share"), ("current", "current_share"))
    ]
    return rate_bars(
        pd.concat(frames, ignore_index=True),
        "cluster",
        "share",
        "low",
        "high",
        series="series",
        y_title="share of split",
    )
