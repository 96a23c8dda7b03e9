"""Shared plotly figures for section builders, returned as plain dicts (ChartView.figure).

Every helper aggregates before plotting (bins, capped categories, sampled points), so a figure's
size does not grow with the number of items: a 1M-row report carries histograms, not scores.
Text in figures (class names, slice values, ids) is user data; plotly draws it as SVG text, and
the page passes figures to plotly only as escaped JSON.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

# A colour-blind-safe palette (Okabe-Ito) for categories; status colours stand out against it.
PALETTE = (
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#56B4E9",
    "#CC79A7",
    "#F0E442",
    "#D55E00",
    "#999999",
)
STATUS_COLORS = {"label error": "#b3261e", "outlier": "#111111"}
MAX_BARS = 60  # categories per bar chart; the table below a chart holds the rest
MAX_HEATMAP = 40  # rows / columns of a heat map


def _finish(figure: Any, height: int = 380, **layout: Any) -> dict[str, Any]:
    """A figure dict without plotly.py's default template (~7 kB each) and with our style."""
    figure.update_layout(
        template=None,
        height=height,
        font={"family": "system-ui, sans-serif", "size": 12, "color": "#1d2330"},
        paper_bgcolor="#ffffff",
        plot_bgcolor="#ffffff",
        margin={"l": 60, "r": 20, "t": 20, "b": 60},
        hoverlabel={"namelength": -1},
        **layout,
    )
    figure.update_xaxes(gridcolor="#eceff4", zerolinecolor="#dde2ea", automargin=True)
    figure.update_yaxes(gridcolor="#eceff4", zerolinecolor="#dde2ea", automargin=True)
    spec = figure.to_plotly_json()
    spec["layout"].pop("template", None)
    return spec


def _floats(values: ArrayLike) -> list[float | None]:
    array = np.asarray(values, dtype=np.float64)
    return [None if not np.isfinite(v) else round(float(v), 6) for v in array]


def rate_bars(
    frame: pd.DataFrame,
    category: str,
    rate: str,
    low: str,
    high: str,
    *,
    support: str | None = None,
    series: str | None = None,
    overall: float | None = None,
    overall_label: str = "overall",
    y_title: str = "error rate",
    max_bars: int = MAX_BARS,
) -> dict[str, Any]:
    """Bars of a rate per category with (Wilson) interval whiskers, and a line at the overall rate.

    frame    : one row per bar (per category, and per `series` value if given)
    low/high : interval bounds, same units as `rate` (shares 0..1)
    series   : column whose values become grouped bar series (e.g. split)
    max_bars : categories kept, highest rate first; the caller's table shows the rest
    """
    import plotly.graph_objects as go

    shown = frame
    categories = pd.unique(frame[category].astype(str))
    if len(categories) > max_bars:
        worst = frame.groupby(frame[category].astype(str))[rate].max().nlargest(max_bars).index
        shown = frame[frame[category].astype(str).isin(set(worst))]
    figure = go.Figure()
    groups = shown.groupby(series, sort=False) if series else [(None, shown)]
    for index, (name, rows) in enumerate(groups):
        values = rows[rate].to_numpy(np.float64)
        hover = "%{x}: %{y:.1%}"
        if support:
            hover += " of %{customdata:,} items"
        figure.add_trace(
            go.Bar(
                name=str(name) if name is not None else y_title,
                x=rows[category].astype(str).tolist(),
                y=_floats(values),
                marker={"color": PALETTE[index % len(PALETTE)]},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": _floats(rows[high].to_numpy(np.float64) - values),
                    "arrayminus": _floats(values - rows[low].to_numpy(np.float64)),
                    "color": "#444",
                    "thickness": 1.2,
                },
                customdata=rows[support].astype(int).tolist() if support else None,
                hovertemplate=hover + "<extra>%{fullData.name}</extra>",
            )
        )
    if overall is not None and np.isfinite(overall):
        figure.add_hline(
            y=float(overall),
            line={"color": "#b3261e", "dash": "dash", "width": 1.5},
            annotation_text=f"{overall_label} {overall * 100:.1f}%",
            annotation_position="top right",
        )
    return _finish(
        figure,
        barmode="group",
        showlegend=series is not None,
        xaxis={"type": "category"},
        yaxis={"title": {"text": y_title}, "tickformat": ".0%", "rangemode": "tozero"},
        legend={"title": {"text": series or ""}},
    )


def heatmap(
    matrix: ArrayLike,
    x_labels: Sequence[Any],
    y_labels: Sequence[Any],
    *,
    x_title: str = "",
    y_title: str = "",
    value_name: str = "items",
    colorscale: str = "Reds",
    max_side: int = MAX_HEATMAP,
) -> dict[str, Any]:
    """A heat map of counts, e.g. given label (rows) x suggested label (columns).

    Larger than max_side x max_side: keeps the rows and columns with the largest totals.
    """
    import plotly.graph_objects as go

    values = np.asarray(matrix, dtype=np.float64)
    rows = np.arange(values.shape[0])
    cols = np.arange(values.shape[1])
    if len(rows) > max_side:
        rows = np.sort(np.argsort(-values.sum(axis=1), kind="stable")[:max_side])
    if len(cols) > max_side:
        cols = np.sort(np.argsort(-values.sum(axis=0), kind="stable")[:max_side])
    values = values[np.ix_(rows, cols)]
    side = max(len(rows), len(cols))
    figure = go.Figure(
        go.Heatmap(
            z=[_floats(r) for r in values],
            x=[str(x_labels[c]) for c in cols],
            y=[str(y_labels[r]) for r in rows],
            colorscale=colorscale,
            hovertemplate=f"{y_title} %{{y}} → {x_title} %{{x}}: %{{z:,}} {value_name}<extra></extra>",
            colorbar={"title": {"text": value_name}},
        )
    )
    return _finish(
        figure,
        height=int(min(900, max(360, 22 * side + 140))),
        xaxis={"title": {"text": x_title}, "type": "category", "side": "bottom"},
        yaxis={"title": {"text": y_title}, "type": "category", "autorange": "reversed"},
    )


def score_histogram(
    scores: Mapping[str, ArrayLike],
    *,
    bins: int = 40,
    x_title: str = "score",
    threshold: float | None = None,
    threshold_label: str = "threshold",
    log_y: bool = False,
) -> dict[str, Any]:
    """Overlaid histograms of score distributions, one per group (e.g. flagged / not flagged).

    Binned here with numpy, so the figure holds `bins` numbers per group whatever the row count.
    """
    import plotly.graph_objects as go

    finite = {
        name: values[np.isfinite(values)]
        for name, values in ((n, np.asarray(v, dtype=np.float64)) for n, v in scores.items())
    }
    everything = [v for v in finite.values() if len(v)]
    figure = go.Figure()
    if everything:
        lo = min(float(v.min()) for v in everything)
        hi = max(float(v.max()) for v in everything)
        if hi <= lo:
            hi = lo + 1.0
        edges = np.linspace(lo, hi, bins + 1)
        centers = (edges[:-1] + edges[1:]) / 2
        for index, (name, values) in enumerate(finite.items()):
            counts, _ = np.histogram(values, bins=edges)
            figure.add_trace(
                go.Bar(
                    name=f"{name} ({len(values):,})",
                    x=_floats(centers),
                    y=counts.astype(int).tolist(),
                    width=float(edges[1] - edges[0]),
                    marker={"color": PALETTE[index % len(PALETTE)]},
                    opacity=0.65 if len(finite) > 1 else 0.9,
                    hovertemplate="%{x:.3g}: %{y:,} items<extra>%{fullData.name}</extra>",
                )
            )
    if threshold is not None and np.isfinite(threshold):
        figure.add_vline(
            x=float(threshold),
            line={"color": "#b3261e", "dash": "dash", "width": 1.5},
            annotation_text=threshold_label,
        )
    return _finish(
        figure,
        barmode="overlay",
        bargap=0,
        xaxis={"title": {"text": x_title}},
        yaxis={"title": {"text": "items"}, "type": "log" if log_y else "linear"},
        legend={"orientation": "h", "y": -0.2},
    )


def embedding_scatter(
    x: ArrayLike,
    y: ArrayLike,
    ids: ArrayLike,
    groups: ArrayLike,
    *,
    flags: Mapping[str, ArrayLike] | None = None,
    max_points: int = 5000,
    seed: int = 0,
) -> dict[str, Any]:
    """2-D map of items: one colour per group (e.g. split), flagged items ringed on top.

    flags : status name -> boolean per point ("label error", "outlier", ...); each becomes a
            trace of rings over the group colours, so a point can carry several statuses.
    Beyond max_points, a seeded random sample is drawn, flagged points kept first.
    """
    import plotly.graph_objects as go

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32)
    ids = np.asarray(ids).astype(str)
    groups = np.asarray(groups).astype(str)
    masks = {name: np.asarray(m, dtype=bool) for name, m in (flags or {}).items()}
    keep = np.arange(len(x))
    if len(keep) > max_points:
        any_flag = np.zeros(len(x), dtype=bool)
        for mask in masks.values():
            any_flag |= mask
        rng = np.random.default_rng(seed)
        order = np.concatenate([rng.permutation(keep[any_flag]), rng.permutation(keep[~any_flag])])
        keep = np.sort(order[:max_points])
    figure = go.Figure()
    for index, group in enumerate(sorted(set(groups[keep].tolist()))):
        rows = keep[groups[keep] == group]
        figure.add_trace(
            go.Scatter(
                name=f"{group} ({len(rows):,})",
                x=np.round(x[rows], 4),
                y=np.round(y[rows], 4),
                text=ids[rows].tolist(),
                mode="markers",
                marker={"size": 5, "color": PALETTE[index % len(PALETTE)], "opacity": 0.55},
                hovertemplate="%{text}<extra>%{fullData.name}</extra>",
            )
        )
    for index, (name, mask) in enumerate(masks.items()):
        rows = keep[mask[keep]]
        if not len(rows):
            continue
        figure.add_trace(
            go.Scatter(
                name=f"{name} ({len(rows):,})",
                x=np.round(x[rows], 4),
                y=np.round(y[rows], 4),
                text=ids[rows].tolist(),
                mode="markers",
                marker={
                    # "-open" symbols stroke with the marker colour and have no fill.
                    "size": 9 + 3 * index,
                    "color": STATUS_COLORS.get(name, "#D55E00"),
                    "line": {"width": 1.8},
                    "symbol": ("circle-open", "diamond-open", "square-open")[index % 3],
                },
                hovertemplate="%{text}<extra>%{fullData.name}</extra>",
            )
        )
    return _finish(
        figure,
        height=540,
        xaxis={"title": {"text": "component 1"}, "zeroline": False},
        yaxis={"title": {"text": "component 2"}, "zeroline": False},
        legend={"itemsizing": "constant"},
    )


def lines_with_intervals(
    series: Mapping[str, pd.DataFrame], x_title: str, y_title: str, percent: bool = True
) -> dict[str, Any]:
    """One line per series over runs (frames with x, value, ci_low, ci_high), interval whiskers."""
    import plotly.graph_objects as go

    figure = go.Figure()
    for n, (name, frame) in enumerate(series.items()):
        value = frame["value"].to_numpy(dtype=float)
        high = frame["ci_high"].to_numpy(dtype=float) - value
        low = value - frame["ci_low"].to_numpy(dtype=float)
        figure.add_trace(
            go.Scatter(
                x=[str(x) for x in frame["x"]],
                y=_floats(value),
                name=str(name),
                mode="lines+markers",
                line={"color": PALETTE[n % len(PALETTE)]},
                error_y={"type": "data", "array": _floats(high), "arrayminus": _floats(low)},
            )
        )
    return _finish(
        figure,
        xaxis_title=x_title,
        yaxis={"title": y_title, "tickformat": ".0%" if percent else ""},
        legend={"orientation": "h", "y": -0.25},
    )


def learning_curve_figure(points: pd.DataFrame, fitted: pd.DataFrame) -> dict[str, Any]:
    """Accuracy per run against labeled items (with intervals) and the fitted curve."""
    import plotly.graph_objects as go

    figure = go.Figure()
    if len(fitted):
        figure.add_trace(
            go.Scatter(
                x=_floats(fitted["n_labeled"]),
                y=_floats(fitted["accuracy"]),
                name="fitted power law",
                mode="lines",
                line={"color": PALETTE[1], "dash": "dash"},
            )
        )
    value = points["accuracy"].to_numpy(dtype=float)
    figure.add_trace(
        go.Scatter(
            x=_floats(points["n_labeled"]),
            y=_floats(value),
            text=[str(r) for r in points["run"]],
            name="runs",
            mode="markers",
            marker={"color": PALETTE[0], "size": 9},
            error_y={
                "type": "data",
                "array": _floats(points["ci_high"].to_numpy(dtype=float) - value),
                "arrayminus": _floats(value - points["ci_low"].to_numpy(dtype=float)),
            },
        )
    )
    return _finish(
        figure,
        xaxis_title="labeled items",
        yaxis={"title": "accuracy vs given labels", "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.25},
    )


def reliability_diagram(curves: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Accuracy against mean confidence per bin, one line per curve, with the diagonal.

    curves : name -> frame with mean_confidence, accuracy, accuracy_low, accuracy_high, n (one row
             per bin, already aggregated; bins are few whatever the item count).
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    figure.add_trace(
        go.Scatter(
            name="perfect calibration",
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            line={"color": "#999999", "dash": "dash", "width": 1.2},
            hoverinfo="skip",
        )
    )
    for index, (name, frame) in enumerate(curves.items()):
        acc = frame["accuracy"].to_numpy(np.float64)
        figure.add_trace(
            go.Scatter(
                name=str(name),
                x=_floats(frame["mean_confidence"]),
                y=_floats(acc),
                mode="lines+markers",
                marker={"color": PALETTE[index % len(PALETTE)], "size": 7},
                line={"color": PALETTE[index % len(PALETTE)], "width": 1.5},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": _floats(frame["accuracy_high"].to_numpy(np.float64) - acc),
                    "arrayminus": _floats(acc - frame["accuracy_low"].to_numpy(np.float64)),
                    "thickness": 1,
                },
                customdata=frame["n"].astype(int).tolist(),
                hovertemplate="confidence %{x:.3f}: accuracy %{y:.1%} of %{customdata:,} items"
                "<extra>%{fullData.name}</extra>",
            )
        )
    return _finish(
        figure,
        height=440,
        xaxis={"title": {"text": "mean confidence in bin"}, "range": [0, 1.02]},
        yaxis={"title": {"text": "accuracy in bin"}, "range": [0, 1.02], "tickformat": ".0%"},
        legend={"orientation": "h", "y": -0.2},
    )


def effect_bars(
    frame: pd.DataFrame,
    category: str,
    value: str,
    flag: str,
    *,
    threshold: float | None = None,
    max_bars: int = MAX_BARS,
) -> dict[str, Any]:
    """Bars of an effect size per category, the flagged ones dark, largest first."""
    import plotly.graph_objects as go

    shown = frame.sort_values(value, ascending=False, kind="stable").head(max_bars)
    flagged = shown[flag].astype(bool).to_numpy()
    figure = go.Figure(
        go.Bar(
            x=shown[category].astype(str).tolist(),
            y=_floats(shown[value]),
            marker={"color": [PALETTE[0] if f else "#b8c4d6" for f in flagged]},
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        )
    )
    if threshold is not None and np.isfinite(threshold):
        figure.add_hline(
            y=float(threshold), line={"color": "#b3261e", "dash": "dash", "width": 1.5}
        )
    return _finish(
        figure,
        showlegend=False,
        xaxis={"type": "category"},
        yaxis={"title": {"text": value.replace("_", " ")}, "rangemode": "tozero"},
    )
