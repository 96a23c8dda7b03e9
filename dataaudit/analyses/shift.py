"""Shift: is the current split (production) like the reference split (train)?

Requires: probs and two splits to compare: `config.reference_split` (default "train") and
`config.current_split` (default "production", else "test", else the one other split there is).
Skipped, with the reason, when the table has no second split.

Three kinds of evidence. Every p-value below (one per metadata column, one for the predicted
class mix, one for the embeddings) goes through one Benjamini-Hochberg family at `config.shift_fdr`,
so on data without shift at most ~5% of runs flag anything (benchmarks/shift.py measures it).

- Metadata columns, each tested reference vs current. Categorical (text, bool, numbers with at
  most 10 distinct values): Pearson chi-square on the value counts (top `slice_top_values` values,
  the rest as "(other)", missing as "(missing)"; values expected fewer than 5 times are pooled so
  the chi-square law holds). Numeric: two-sample Kolmogorov-Smirnov on the present values, and when
  values are missing a two-proportion test on the missing rate (Bonferroni over the two). Effect
  size: Jensen-Shannon distance (base 2, in [0, 1]) between the two histograms (categories, or
  `shift_bins` reference-quantile bins plus missing). A column is `significant` when its q-value
  is at most `shift_fdr` and its effect size at least `shift_min_effect`: with 1M rows a test
  finds differences too small to matter. Id-like columns (more distinct values than half the rows)
  and columns missing everywhere are not tested.
- Predictions: the predicted class mix of both splits (chi-square test), and the current split's
  class priors estimated through the reference confusion matrix (black-box shift estimation,
  Lipton et al. 2018): q solves C q = mu, where C[i, j] = P(predicted i | label j) on labeled
  reference items and mu is the current predicted mix; valid when p(x | y) stays put.
  Intervals from resampling the confusion counts and the current predictions (multinomial).
  prior_shift_tv is the total variation between the reference label mix and the estimate.
- Embeddings: a domain classifier two-sample test. Ridge regression of "is current" on the
  standardised embeddings of at most `shift_classifier_sample` items (half from each split),
  5-fold cross-fitted; the AUROC is the mean of the folds' AUROCs (0.5 = no shift), with a DeLong
  interval and a one-sided p-value from the Mann-Whitney null (exact per fold: each fold's model
  never saw its items). The sample is clustered (k-means) to show which regions the current
  split gained or lost, and each sampled item gets a domain_score: the share of its fold's
  reference items the classifier finds less current-like (1.0 = unlike anything in the reference).

Table "columns" (one row per metadata column): column, test, statistic, p_value, q_value,
effect_size, significant, top_changes.
Table "values" (the columns' histograms): column, value, reference_share, current_share, change,
new (a category never seen in the reference).
Table "predictions" (one row per class): class, reference_label_share, reference_predicted_share,
current_predicted_share, current_prior, current_prior_low, current_prior_high, current_label_share.
Table "clusters": cluster, n_reference, n_current, reference_share, current_share, change,
mean_domain_score. Table "items" (the classifier's sample): id, split, domain_score, cluster.
Summary: n_shifted_columns, embedding_shift_auroc (+ _ci_low, _ci_high), prior_shift_tv
(+ _ci_low, _ci_high), shift_detected (any test of this analysis significant).

Engine form (`run_on`, any dataaudit.engine; `run` is it with InProcessEngine):
- Split sizes in one pass. The class counts (predicted mix, the reference confusion joint,
  current labels) are one more: exact at any size.
- Metadata: while the two splits hold at most `exact_rows_for(columns)` items (EXACT_ROWS, fewer
  per column on wide tables) their values are collected and tested exactly as above. Above, a
  stated approximation: categorical columns on exact value counts per split (a column with more
  than DISTINCT_CAP distinct values is not tested); numeric ones on counts per split in bins
  at the quantiles of a hash sample of that many items (engine/sample.py): the KS distance over
  KS_GRID bins of the pooled sample with its asymptotic p-value, the histogram on the reference
  sample's quantiles, medians of the sample. Categories with equal counts order by value.
- Embeddings: each split's classifier sample is drawn from a hash sample of half the classifier
  sample: every item when the split is that small (the same items and figures as in process),
  a uniform sample, the same on every engine, above; the classifier then runs on it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.special import chdtrc, ndtr, ndtri
from threadpoolctl import threadpool_limits

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, Engine, add, concat
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.engine.sample import sample_rows
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import benjamini_hochberg, two_proportion_pvalue

CURRENT_DEFAULTS = ("production", "test")
MIN_EXPECTED = 5.0  # chi-square cells expected fewer times are pooled
MAX_CATEGORIES_NUMERIC = 10  # numeric columns with at most this many values are categorical
TOP_CHANGES = 3  # values named in top_changes
BOOTSTRAP = 200  # resamples of the prior estimate (fewer at large K: each solves a K x K system)
FOLDS = 5
MIN_CLASSIFIER_ITEMS = 10  # per split, for the domain classifier
CLUSTER_ITEMS = 200  # sample items per cluster; at most MAX_CLUSTERS
MAX_CLUSTERS = 16
MISSING, OTHER = "(missing)", "(other)"
# The two splits' metadata is compared exactly (every value) up to this many items, within a
# budget of cells on wide tables; above, on counts (see run_on and _columns_binned).
EXACT_ROWS = 100_000
EXACT_CELLS = 10_000_000
KS_GRID = 1_000  # bins of the binned Kolmogorov-Smirnov distance
DISTINCT_CAP = 50_000  # distinct values of a column counted above EXACT_ROWS


def exact_rows_for(n_columns: int) -> int:
    return int(max(10_000, min(EXACT_ROWS, EXACT_CELLS // max(n_columns, 1))))


def resolve_splits(names, config: AuditConfig) -> tuple[str, str] | str:
    """(reference, current) split names, or the reason they cannot be compared."""
    present = sorted({str(n) for n in names})
    listed = ", ".join(repr(n) for n in present)
    reference = config.reference_split or "train"
    if reference not in present:
        return (
            f"no reference split {reference!r} (splits: {listed}); name one with --reference-split"
        )
    others = [n for n in present if n != reference]
    if config.current_split is not None:
        current = config.current_split
    else:
        current = next((n for n in CURRENT_DEFAULTS if n in others), None)
        if current is None and len(others) == 1:
            current = others[0]
    if current is None or current not in others:
        if not others:
            return (
                f"needs a second split to compare with {reference!r} (the table has one: {listed})"
            )
        return f"no current split to compare with {reference!r} among {listed}; name one with --current-split"
    return reference, current


def skip_reason(data: AuditDataset, config: AuditConfig) -> str | None:
    resolved = resolve_splits(pd.unique(data.splits), config)
    return resolved if isinstance(resolved, str) else None


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(
    engine: Engine, ctx: AuditContext, config: AuditConfig, exact_rows: int | None = None
) -> AnalysisResult:
    """The analysis on any engine (see the module docstring's engine form)."""
    sizes, names = engine.map_reduce(_split_sizes, _merge_sizes)
    resolved = resolve_splits(list(sizes), config)
    if isinstance(resolved, str):
        raise ValueError(f"shift cannot run: {resolved}")
    reference, current = resolved
    pair = (reference, current)
    n_ref, n_cur = sizes[reference], sizes[current]
    notes = [
        (
            f"Reference split {reference!r} ({n_ref:,} items) against current split "
            f"{current!r} ({n_cur:,} items)."
        )
    ]
    rng = np.random.default_rng(config.seed)
    if exact_rows is None:
        exact_rows = exact_rows_for(len(names))

    with ctx.progress.step("shift: metadata columns"):
        if n_ref + n_cur <= exact_rows:
            rows, values = _columns_exact(engine, pair, names, config)
        else:
            rows, values = _columns_binned(engine, pair, names, config, exact_rows)
            notes.append(
                f"{n_ref + n_cur:,} items in the two splits: numeric columns are compared on "
                f"their counts in {KS_GRID:,} bins at the quantiles of a uniform sample of "
                f"{exact_rows:,} items (the Kolmogorov-Smirnov distance on those bins, its "
                "asymptotic p-value; bins and medians from the sample), categorical ones on "
                "exact counts."
            )
    untested = [f"{r['column']!r} ({r['top_changes']})" for r in rows if r["test"] == "none"]
    columns = pd.DataFrame(rows, columns=COLUMN_FIELDS)
    if untested:
        notes.append("Not tested: " + "; ".join(untested) + ".")
    if not rows:
        notes.append("No metadata columns to test.")

    k = len(engine.classes)
    ref_pred, cur_pred, joint, cur_labels = engine.map_reduce(_prediction_counts, add, pair, k)
    predictions, prior, pred_p = prediction_shift_counts(
        ref_pred, cur_pred, joint, cur_labels, engine.classes, rng, config.confidence_level
    )
    notes += prior["notes"]

    embedding = {"auroc": np.nan, "low": np.nan, "high": np.nan, "p": np.nan}
    clusters = pd.DataFrame(columns=CLUSTER_FIELDS)
    items = pd.DataFrame(columns=["id", "split", "domain_score", "cluster"])
    if not getattr(engine, "has_embeddings", False):
        notes.append("No embeddings: the domain classifier did not run.")
    elif min(n_ref, n_cur) < MIN_CLASSIFIER_ITEMS:
        notes.append(
            f"The domain classifier needs {MIN_CLASSIFIER_ITEMS} items in each split; it did not run."
        )
    else:
        with ctx.progress.step("shift: domain classifier"):
            embedding, clusters, items = embedding_shift_on(engine, pair, config)
        notes.append(
            f"Domain classifier on {len(items):,} sampled items (at most "
            f"{config.shift_classifier_sample:,}, half from each split): ridge regression on "
            f"standardised embeddings, {FOLDS}-fold cross-fitted; AUROC 0.5 means the splits "
            "cannot be told apart."
        )

    # One false-discovery family for everything this analysis tests.
    family = np.r_[columns["p_value"].to_numpy(np.float64), pred_p, embedding["p"]]
    q = benjamini_hochberg(family)
    n_cols = len(columns)
    columns["q_value"] = q[:n_cols]
    columns["significant"] = (columns["q_value"] <= config.shift_fdr) & (
        columns["effect_size"] >= config.shift_min_effect
    )
    pred_q, emb_q = q[n_cols], q[n_cols + 1]
    prediction_shifted = bool(pred_q <= config.shift_fdr)
    embedding_shifted = bool(emb_q <= config.shift_fdr)
    notes.append(
        f"Benjamini-Hochberg at {config.shift_fdr:.0%} over {int(np.isfinite(family).sum())} tests "
        f"(metadata columns, predicted class mix, embeddings); a column also needs a "
        f"Jensen-Shannon distance of at least {config.shift_min_effect}."
    )
    if np.isfinite(pred_q):
        notes.append(
            f"Predicted class mix: {'shifted' if prediction_shifted else 'no significant shift'} "
            f"(q = {pred_q:.3g})."
        )
    if np.isfinite(emb_q):
        notes.append(
            f"Embeddings: {'shifted' if embedding_shifted else 'no significant shift'} "
            f"(AUROC {embedding['auroc']:.3f}, q = {emb_q:.3g})."
        )
    n_shifted = int(columns["significant"].sum())
    return AnalysisResult(
        name="shift",
        tables={
            "columns": columns.sort_values(
                ["significant", "q_value", "effect_size"],
                ascending=[False, True, False],
                na_position="last",
                kind="stable",
            ).reset_index(drop=True),
            "values": pd.concat(values, ignore_index=True)
            if values
            else pd.DataFrame(columns=VALUE_FIELDS),
            "predictions": predictions,
            "clusters": clusters,
            "items": items,
        },
        summary={
            "n_shifted_columns": n_shifted,
            "embedding_shift_auroc": embedding["auroc"],
            "embedding_shift_auroc_ci_low": embedding["low"],
            "embedding_shift_auroc_ci_high": embedding["high"],
            "prior_shift_tv": prior["tv"],
            "prior_shift_tv_ci_low": prior["tv_low"],
            "prior_shift_tv_ci_high": prior["tv_high"],
            "shift_detected": bool(n_shifted or prediction_shifted or embedding_shifted),
        },
        params={
            "reference_split": reference,
            "current_split": current,
            "fdr": config.shift_fdr,
            "min_effect": config.shift_min_effect,
            "bins": config.shift_bins,
            "classifier_sample": config.shift_classifier_sample,
            "predictions_q_value": pred_q,
            "embedding_q_value": emb_q,
            "prior_shift_tv_if_unshifted": prior["tv_null"],
        },
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="shift",
    title="Shift",
    run=run,
    requires=("probs",),
    skip_reason=skip_reason,
)

COLUMN_FIELDS = [
    "column",
    "test",
    "statistic",
    "p_value",
    "q_value",
    "effect_size",
    "significant",
    "top_changes",
]
VALUE_FIELDS = ["column", "value", "reference_share", "current_share", "change", "new"]
CLUSTER_FIELDS = [
    "cluster",
    "n_reference",
    "n_current",
    "reference_share",
    "current_share",
    "change",
    "mean_domain_score",
]


# -- the engine form's passes -------------------------------------------------------------------


def _split_sizes(chunk: Chunk) -> tuple[dict[str, int], tuple[str, ...]]:
    """Kernel: rows per split, and the metadata column names."""
    names, counts = np.unique(np.asarray(chunk.splits).astype(str), return_counts=True)
    sizes = {str(n): int(c) for n, c in zip(names, counts, strict=True)}
    return sizes, tuple(str(c) for c in chunk.metadata.columns)


def _merge_sizes(a: tuple, b: tuple) -> tuple:
    return add(a[0], b[0]), a[1]


def _pair_mask(chunk: Chunk, pair: tuple[str, str]) -> tuple[NDArray, NDArray]:
    splits = np.asarray(chunk.splits).astype(str)
    return splits == pair[0], splits == pair[1]


def _prediction_counts(chunk: Chunk, pair: tuple[str, str], k: int) -> tuple:
    """Kernel: predicted classes per split, the (predicted, label) joint of labeled reference
    rows, the labels of the current split's labeled rows."""
    ref, cur = _pair_mask(chunk, pair)
    predicted = np.asarray(chunk.probs).argmax(axis=1) if len(chunk) else np.zeros(0, np.int64)
    labeled = chunk.labeled
    joint = np.zeros((k, k))
    np.add.at(joint, (predicted[ref & labeled], chunk.labels[ref & labeled]), 1.0)
    return (
        np.bincount(predicted[ref], minlength=k).astype(np.float64),
        np.bincount(predicted[cur], minlength=k).astype(np.float64),
        joint,
        np.bincount(chunk.labels[cur & labeled], minlength=k).astype(np.float64),
    )


def _pair_rows(chunk: Chunk, pair: tuple[str, str]) -> pd.DataFrame:
    """Kernel: the metadata of the two splits' rows, with their position and split."""
    ref, cur = _pair_mask(chunk, pair)
    rows = np.flatnonzero(ref | cur)
    frame = chunk.metadata.iloc[rows].reset_index(drop=True)
    keys = pd.DataFrame({"_pos": chunk.pos[rows], "_current": cur[rows]})
    frame = pd.concat([keys, frame], axis=1)
    return frame


def _columns_exact(engine: Engine, pair, names, config) -> tuple[list[dict], list[pd.DataFrame]]:
    """column_shift on every value of the two splits (collected: they are few)."""
    frame = engine.map_reduce(_pair_rows, concat, pair)
    frame = frame.sort_values("_pos", kind="stable").reset_index(drop=True)
    cur = frame["_current"].to_numpy(bool)
    rows, values = [], []
    for name in names:
        row, hist = column_shift(name, frame[name], ~cur, cur, config)
        rows.append(row)
        values.append(hist)
    return rows, values


def _text_counts(values: pd.Series) -> dict:
    missing = values.isna()
    counts = values[~missing].astype(str).value_counts(sort=False)
    out = {str(v): int(c) for v, c in counts.items()}
    if missing.any():
        out[MISSING] = int(missing.sum())
    return out


def _merge_counts(a: dict | None, b: dict | None, cap: int) -> dict | None:
    if a is None or b is None:
        return None
    out = dict(a)
    for v, c in b.items():
        out[v] = out.get(v, 0) + c
    return out if len(out) <= cap + 1 else None  # + 1: the MISSING entry


def _column_profiles(chunk: Chunk, pair, names) -> dict:
    """Kernel: per column, its slicing profile on the two splits' rows (numeric dtype, distinct
    values up to a cap) and each split's counts of its values as text (capped too)."""
    from dataaudit import slicing as sl

    ref, cur = _pair_mask(chunk, pair)
    meta = chunk.metadata
    out = {}
    for name in names:
        series = meta[name]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        cap = MAX_CATEGORIES_NUMERIC + 1 if numeric else DISTINCT_CAP
        both = ref | cur
        profile = sl.profile_column(series[both], chunk.pos[both], cap)
        counts = [_text_counts(series[m]) for m in (ref, cur)]
        counts = [c if len(c) <= cap + 1 else None for c in counts]
        out[name] = (profile, counts[0], counts[1], cap)
    return out


def _merge_column_profiles(a: dict, b: dict) -> dict:
    from dataaudit import slicing as sl

    out = {}
    for name, (pa, ra, ca, cap) in a.items():
        pb, rb, cb, _ = b[name]
        out[name] = (
            sl.merge_profiles(pa, pb),
            _merge_counts(ra, rb, cap),
            _merge_counts(ca, cb, cap),
            cap,
        )
    return out


def _numeric_rows(chunk: Chunk, pair, names) -> pd.DataFrame:
    ref, cur = _pair_mask(chunk, pair)
    rows = np.flatnonzero(ref | cur)
    meta = chunk.metadata
    values = {n: meta[n].iloc[rows].to_numpy(dtype=np.float64, na_value=np.nan) for n in names}
    return pd.DataFrame({"pos": chunk.pos[rows], "_current": cur[rows], **values})


def _binned_counts(chunk: Chunk, pair, names, edges: dict, grids: dict) -> dict:
    """Kernel: per numeric column and split, counts in the histogram bins, in the KS grid's bins,
    and of missing values."""
    ref, cur = _pair_mask(chunk, pair)
    meta = chunk.metadata
    out = {}
    for name in names:
        x = meta[name].to_numpy(dtype=np.float64, na_value=np.nan)
        parts = []
        for m in (ref, cur):
            v = x[m]
            present = v[np.isfinite(v)]
            parts.append(
                (
                    np.bincount(
                        np.searchsorted(edges[name], present, side="right"),
                        minlength=len(edges[name]) + 1,
                    ),
                    np.bincount(
                        np.searchsorted(grids[name], present, side="right"),
                        minlength=len(grids[name]) + 1,
                    ),
                    len(v) - len(present),
                )
            )
        out[name] = tuple(parts)
    return out


def _columns_binned(
    engine: Engine, pair, names, config, sample_size: int
) -> tuple[list[dict], list[pd.DataFrame]]:
    """The columns above the exact size: categorical ones on their exact value counts, numeric
    ones on counts in bins at a sample's quantiles (KS distance over KS_GRID bins, asymptotic
    p-value; histogram bins at the reference sample's quantiles; medians of the sample)."""
    profiles = engine.map_reduce(_column_profiles, _merge_column_profiles, pair, names)
    rows: dict[str, dict] = {}
    values: dict[str, pd.DataFrame] = {}
    numeric = []
    for name in names:
        profile, ref_counts, cur_counts, _ = profiles[name]
        row = dict.fromkeys(COLUMN_FIELDS, np.nan) | {"column": name, "significant": False}
        n_unique, n = profile.n_unique, profile.n
        if n_unique == 0:
            rows[name] = row | {"test": "none", "top_changes": "every value is missing"}
            values[name] = _hist(name, [], [], [])
        elif profile.numeric and (n_unique is None or n_unique > MAX_CATEGORIES_NUMERIC):
            numeric.append(name)
        elif n_unique is None or ref_counts is None or cur_counts is None:
            rows[name] = row | {
                "test": "none",
                "top_changes": f"more than {DISTINCT_CAP:,} distinct values, like an id",
            }
            values[name] = _hist(name, [], [], [])
        elif not profile.numeric and n > 100 and n_unique > n // 2:
            rows[name] = row | {
                "test": "none",
                "top_changes": f"{n_unique:,} distinct values, like an id",
            }
            values[name] = _hist(name, [], [], [])
        else:
            ca = pd.Series(ref_counts, dtype=np.float64)
            cb = pd.Series(cur_counts, dtype=np.float64)
            ca.index, cb.index = ca.index.astype(object), cb.index.astype(object)
            rows[name], values[name] = categorical_counts_shift(
                row, ca, cb, config.slice_top_values
            )
    if numeric:
        sample = sample_rows(engine, _numeric_rows, sample_size, pair, tuple(numeric),
                             seed=config.seed)  # fmt: skip
        cur = sample["_current"].to_numpy(bool)
        edges, grids, medians = {}, {}, {}
        for name in numeric:
            x = sample[name].to_numpy(np.float64)
            xs, ys = x[~cur & np.isfinite(x)], x[cur & np.isfinite(x)]
            basis = xs if len(xs) else ys
            bins = config.shift_bins
            edges[name] = (
                np.unique(np.quantile(basis, np.arange(1, bins) / bins))
                if len(basis)
                else np.zeros(0)
            )
            pooled = x[np.isfinite(x)]
            grids[name] = (
                np.unique(np.quantile(pooled, np.arange(1, KS_GRID) / KS_GRID))
                if len(pooled)
                else np.zeros(0)
            )
            medians[name] = (
                (float(np.median(xs)), float(np.median(ys))) if len(xs) and len(ys) else None
            )
        counts = engine.map_reduce(_binned_counts, add, pair, tuple(numeric), edges, grids)
        for name in numeric:
            row = dict.fromkeys(COLUMN_FIELDS, np.nan) | {"column": name, "significant": False}
            rows[name], values[name] = numeric_counts_shift(
                row, counts[name], edges[name], medians[name]
            )
    return [rows[n] for n in names], [values[n] for n in names]


def numeric_counts_shift(row: dict, counts, edges, medians) -> tuple[dict, pd.DataFrame]:
    """numeric_shift from binned counts: ((hist, grid, missing) per split)."""
    from scipy.stats import kstwo

    (hist_a, grid_a, miss_a), (hist_b, grid_b, miss_b) = counts
    n_a, n_b = int(grid_a.sum()), int(grid_b.sum())
    tests, pvalues, stat = [], [], np.nan
    if n_a and n_b:
        stat = float(np.abs(np.cumsum(grid_a) / n_a - np.cumsum(grid_b) / n_b).max())
        tests.append("ks")
        pvalues.append(float(kstwo.sf(stat, max(1, round(n_a * n_b / (n_a + n_b))))))
    if miss_a or miss_b:
        tests.append("missing rate")
        pvalues.append(
            float(
                two_proportion_pvalue(
                    miss_b, n_b + miss_b, miss_a, n_a + miss_a, alternative="two-sided"
                )
            )
        )
    p = min(1.0, len(pvalues) * min(pvalues)) if pvalues else np.nan
    labels = _bin_labels(edges)
    ref_counts, cur_counts = hist_a, hist_b
    if miss_a or miss_b:
        labels.append(MISSING)
        ref_counts, cur_counts = np.r_[ref_counts, miss_a], np.r_[cur_counts, miss_b]
    hist = _hist(row["column"], labels, ref_counts, cur_counts)
    changes = describe_changes(hist)
    if medians is not None:
        changes = f"median {_num(medians[0])} → {_num(medians[1])}; " + changes
    return row | {
        "test": " + ".join(tests),
        "statistic": stat,
        "p_value": p,
        "effect_size": js_distance(ref_counts, cur_counts),
        "top_changes": changes,
    }, hist


# -- metadata columns ---------------------------------------------------------------------------


def column_shift(
    name: str, values: pd.Series, ref: NDArray[np.bool_], cur: NDArray[np.bool_], config
) -> tuple[dict, pd.DataFrame]:
    """(row of the "columns" table, the column's histogram rows) for one metadata column."""
    series = values.reset_index(drop=True)
    a, b = series[ref], series[cur]
    n_unique = int(pd.concat([a, b]).nunique(dropna=True))
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    row = dict.fromkeys(COLUMN_FIELDS, np.nan) | {"column": name, "significant": False}
    n = len(a) + len(b)
    if n_unique == 0:
        return row | {"test": "none", "top_changes": "every value is missing"}, _hist(
            name, [], [], []
        )
    if not numeric and n > 100 and n_unique > n // 2:
        return row | {
            "test": "none",
            "top_changes": f"{n_unique:,} distinct values, like an id",
        }, _hist(name, [], [], [])
    if numeric and n_unique > MAX_CATEGORIES_NUMERIC:
        return numeric_shift(row, a, b, config.shift_bins)
    return categorical_shift(row, a, b, config.slice_top_values)


def categorical_shift(row: dict, a: pd.Series, b: pd.Series, top: int) -> tuple[dict, pd.DataFrame]:
    return categorical_counts_shift(row, _value_counts(a), _value_counts(b), top)


def categorical_counts_shift(
    row: dict, ca: pd.Series, cb: pd.Series, top: int
) -> tuple[dict, pd.DataFrame]:
    """categorical_shift from each split's counts of its values as text (MISSING: missing)."""
    # Most frequent first, ties by value: the same order whichever rows came first.
    both = ca.add(cb, fill_value=0).sort_index(kind="stable")
    both = both.sort_values(ascending=False, kind="stable")
    named = [v for v in both.index if v != MISSING][:top]
    keep = named + ([MISSING] if MISSING in both.index else [])
    ref_counts = ca.reindex(keep, fill_value=0).to_numpy(np.float64)
    cur_counts = cb.reindex(keep, fill_value=0).to_numpy(np.float64)
    labels = list(keep)
    rest_a, rest_b = ca.sum() - ref_counts.sum(), cb.sum() - cur_counts.sum()
    if rest_a + rest_b > 0:
        labels.append(OTHER)
        ref_counts = np.r_[ref_counts, rest_a]
        cur_counts = np.r_[cur_counts, rest_b]
    stat, p, df = chi_square_two_sample(ref_counts, cur_counts)
    new = np.array([lab not in ca.index for lab in labels]) & (cur_counts > 0)
    if OTHER in labels:  # "(other)" is new only if none of its values was in the reference
        new[labels.index(OTHER)] = False
    hist = _hist(row["column"], labels, ref_counts, cur_counts, new)
    return row | {
        "test": "chi-square",
        "statistic": stat,
        "p_value": p,
        "effect_size": js_distance(ref_counts, cur_counts),
        "top_changes": describe_changes(hist),
    }, hist


def numeric_shift(row: dict, a: pd.Series, b: pd.Series, n_bins: int) -> tuple[dict, pd.DataFrame]:
    from scipy.stats import ks_2samp

    x = a.to_numpy(dtype=np.float64, na_value=np.nan)
    y = b.to_numpy(dtype=np.float64, na_value=np.nan)
    fx, fy = np.isfinite(x), np.isfinite(y)
    xs, ys = x[fx], y[fy]
    tests, pvalues, stat = [], [], np.nan
    if len(xs) and len(ys):
        ks = ks_2samp(xs, ys)
        stat = float(ks.statistic)
        tests.append("ks")
        pvalues.append(float(ks.pvalue))
    miss_a, miss_b = int((~fx).sum()), int((~fy).sum())
    if miss_a or miss_b:
        tests.append("missing rate")
        pvalues.append(
            float(two_proportion_pvalue(miss_b, len(y), miss_a, len(x), alternative="two-sided"))
        )
    p = min(1.0, len(pvalues) * min(pvalues)) if pvalues else np.nan

    # Histogram on reference quantile bins (all values when the reference has none present).
    basis = xs if len(xs) else ys
    edges = np.unique(np.quantile(basis, np.arange(1, n_bins) / n_bins)) if len(basis) else []
    labels = _bin_labels(edges)
    ref_counts = np.bincount(np.searchsorted(edges, xs, side="right"), minlength=len(labels))
    cur_counts = np.bincount(np.searchsorted(edges, ys, side="right"), minlength=len(labels))
    if miss_a or miss_b:
        labels.append(MISSING)
        ref_counts, cur_counts = np.r_[ref_counts, miss_a], np.r_[cur_counts, miss_b]
    hist = _hist(row["column"], labels, ref_counts, cur_counts)
    changes = describe_changes(hist)
    if len(xs) and len(ys):
        changes = f"median {_num(np.median(xs))} → {_num(np.median(ys))}; " + changes
    return row | {
        "test": " + ".join(tests),
        "statistic": stat,
        "p_value": p,
        "effect_size": js_distance(ref_counts, cur_counts),
        "top_changes": changes,
    }, hist


def _value_counts(values: pd.Series) -> pd.Series:
    missing = values.isna()
    counts = values[~missing].astype(str).value_counts(sort=False)
    counts.index = counts.index.astype(object)
    if missing.any():
        counts = pd.concat([counts, pd.Series({MISSING: int(missing.sum())})])
    return counts.astype(np.float64)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _bin_labels(edges) -> list[str]:
    if len(edges) == 0:
        return ["all values"]
    labels = [f"< {_num(edges[0])}"]
    labels += [f"[{_num(lo)}, {_num(hi)})" for lo, hi in zip(edges[:-1], edges[1:])]
    return labels + [f"≥ {_num(edges[-1])}"]


def _hist(column, labels, ref_counts, cur_counts, new=None) -> pd.DataFrame:
    ref_counts = np.asarray(ref_counts, dtype=np.float64)
    cur_counts = np.asarray(cur_counts, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        ref_share = ref_counts / ref_counts.sum() if ref_counts.sum() else ref_counts * np.nan
        cur_share = cur_counts / cur_counts.sum() if cur_counts.sum() else cur_counts * np.nan
    return pd.DataFrame(
        {
            "column": pd.Series([column] * len(labels), dtype=object),
            "value": pd.Series(list(labels), dtype=object),
            "reference_share": ref_share,
            "current_share": cur_share,
            "change": cur_share - ref_share,
            "new": np.zeros(len(labels), bool) if new is None else np.asarray(new, bool),
        }
    )


def describe_changes(hist: pd.DataFrame, top: int = TOP_CHANGES) -> str:
    """The values whose share moved most, then the categories new in the current split."""
    moved = hist.reindex(hist["change"].abs().sort_values(ascending=False, kind="stable").index)
    moved = moved[moved["change"].abs() > 0].head(top)
    parts = [
        f"{v}: {r:.1%} → {c:.1%}"
        for v, r, c in zip(moved["value"], moved["reference_share"], moved["current_share"])
    ]
    new = hist[hist["new"]]
    if len(new):
        shown = ", ".join(
            f"{v} ({c:.1%})" for v, c in zip(new["value"][:top], new["current_share"][:top])
        )
        parts.append(f"new: {shown}" + (f" and {len(new) - top} more" if len(new) > top else ""))
    return "; ".join(parts) if parts else "no change"


def chi_square_two_sample(a: NDArray, b: NDArray) -> tuple[float, float, int]:
    """Pearson chi-square of a 2 x C table of counts; cells expected < 5 times are pooled.

    Returns (statistic, p-value, degrees of freedom); (0, 1, 0) when one category remains.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = a.sum(), b.sum()
    if na == 0 or nb == 0:
        return 0.0, float("nan"), 0
    total = a + b
    keep = total > 0
    a, b, total = a[keep], b[keep], total[keep]
    small = np.minimum(na, nb) * total / (na + nb) < MIN_EXPECTED
    if small.any():
        pooled_a, pooled_b = a[small].sum(), b[small].sum()
        a, b = a[~small], b[~small]
        if len(a) and np.minimum(na, nb) * (pooled_a + pooled_b) / (na + nb) < MIN_EXPECTED:
            smallest = int(np.argmin(a + b))  # a pool still too small joins the smallest cell
            a[smallest] += pooled_a
            b[smallest] += pooled_b
        else:
            a, b = np.r_[a, pooled_a], np.r_[b, pooled_b]
    if len(a) < 2:
        return 0.0, 1.0, 0
    total = a + b
    ea, eb = total * na / (na + nb), total * nb / (na + nb)
    stat = float(((a - ea) ** 2 / ea).sum() + ((b - eb) ** 2 / eb).sum())
    df = len(a) - 1
    return stat, float(chdtrc(df, stat)), df


def js_distance(a: NDArray, b: NDArray) -> float:
    """Jensen-Shannon distance (base 2; 0 = same histogram, 1 = disjoint) between two counts."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.sum() == 0 or b.sum() == 0:
        return float("nan")
    p, q = a / a.sum(), b / b.sum()
    m = (p + q) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum()
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum()
    return float(np.sqrt(max(0.0, (kl_p + kl_q) / 2)))


# -- predictions: class mix and priors (BBSE) ---------------------------------------------------


def prediction_shift(data: AuditDataset, ref, cur, rng, confidence: float):
    """(per-class table, prior summary, p-value of the predicted-mix test)."""
    k = data.k
    predicted = data.predicted
    ref_lab, cur_lab = ref & data.labeled, cur & data.labeled
    joint = np.zeros((k, k))
    np.add.at(joint, (predicted[ref_lab], data.labels[ref_lab]), 1.0)
    return prediction_shift_counts(
        np.bincount(predicted[ref], minlength=k).astype(np.float64),
        np.bincount(predicted[cur], minlength=k).astype(np.float64),
        joint,
        np.bincount(data.labels[cur_lab], minlength=k).astype(np.float64),
        data.classes,
        rng,
        confidence,
    )


def prediction_shift_counts(ref_pred, cur_pred, joint, cur_labels, classes, rng, confidence):
    """prediction_shift from the counts: predicted classes per split, the (predicted, label)
    joint of labeled reference items, labels of the current split."""
    k = len(classes)
    _, p_mix, _ = chi_square_two_sample(ref_pred, cur_pred)
    ref_labels = joint.sum(axis=0)
    notes = []
    prior = {"tv": np.nan, "tv_low": np.nan, "tv_high": np.nan, "tv_null": np.nan, "notes": notes}
    estimate = low = high = np.full(k, np.nan)
    if ref_labels.sum() == 0:
        notes.append(
            "No labeled items in the reference split: the current priors are not estimated."
        )
    else:
        estimate = bbse_priors(joint, cur_pred)
        draws = int(min(BOOTSTRAP, max(30, 2e8 // k**3)))
        n_joint = int(joint.sum())
        with threadpool_limits(limits=1):  # small solves: threads cost more than they save
            boot, null_tv = _bootstrap_priors(joint, cur_pred, ref_pred, n_joint, draws, rng)
        alpha = (1 - confidence) / 2
        known = ref_labels > 0
        low, high = np.full(k, np.nan), np.full(k, np.nan)
        low[known], high[known] = np.quantile(boot[:, known], [alpha, 1 - alpha], axis=0)
        base = ref_labels / ref_labels.sum()
        tv = 0.5 * np.abs(estimate[known] - base[known]).sum()
        tv_boot = 0.5 * np.abs(boot[:, known] - base[known]).sum(axis=1)
        # Noise alone makes the TV positive; the interval is shifted back by the bootstrap's bias.
        bias = max(0.0, float(tv_boot.mean()) - tv)
        tv_low, tv_high = np.clip(np.quantile(tv_boot, [alpha, 1 - alpha]) - bias, 0, 1)
        noise = float(np.quantile(null_tv, confidence))
        prior.update(tv=float(tv), tv_low=float(tv_low), tv_high=float(tv_high), tv_null=noise)
        notes.append(
            f"Prior shift TV {tv:.3f}; estimation noise alone gives up to {noise:.3f} on these "
            f"items ({confidence:.0%} of resamples with the current split drawn like the reference)."
        )
        if not known.all():
            notes.append(
                f"{int((~known).sum())} classes have no labeled reference items; their current "
                "prior is not estimated."
            )
        notes.append(
            "Current class priors estimated through the reference confusion matrix (black-box "
            f"shift estimation); {confidence:.0%} intervals from {draws} multinomial resamples. "
            "Valid for label shift: the classes' appearance does not change."
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        table = pd.DataFrame(
            {
                "class": list(classes),
                "reference_label_share": ref_labels / ref_labels.sum(),
                "reference_predicted_share": ref_pred / ref_pred.sum(),
                "current_predicted_share": cur_pred / cur_pred.sum(),
                "current_prior": estimate,
                "current_prior_low": low,
                "current_prior_high": high,
                "current_label_share": cur_labels / cur_labels.sum()
                if cur_labels.sum()
                else np.full(k, np.nan),
            }
        )
    return table, prior, p_mix


def _bootstrap_priors(joint, cur_pred, ref_pred, n_joint, draws, rng):
    """(draws x K resampled estimates, draws null TVs: the current split drawn like the reference)."""
    k = len(cur_pred)
    n_cur = int(cur_pred.sum())
    estimates, null_tv = [], []
    for _ in range(draws):
        resampled = rng.multinomial(n_joint, joint.ravel() / n_joint).reshape(k, k).astype(float)
        estimates.append(bbse_priors(resampled, rng.multinomial(n_cur, cur_pred / n_cur)))
        like_reference = bbse_priors(resampled, rng.multinomial(n_cur, ref_pred / ref_pred.sum()))
        base = resampled.sum(axis=0) / n_joint
        known = base > 0
        null_tv.append(0.5 * np.abs(like_reference[known] - base[known]).sum())
    return np.array(estimates), np.array(null_tv)


def bbse_priors(joint: NDArray, current_predicted: NDArray) -> NDArray[np.float64]:
    """Current class priors q from C q = mu (Lipton et al. 2018), clipped to >= 0 and normalised.

    joint : K x K counts of (predicted, label) on labeled reference items.
    current_predicted : K counts of predicted classes on current items.
    Classes without labeled reference items get NaN.
    """
    support = joint.sum(axis=0)
    known = support > 0
    out = np.full(len(support), np.nan)
    if not known.any() or current_predicted.sum() == 0:
        return out
    conditional = joint[:, known] / support[known]  # P(predicted i | label j)
    mu = current_predicted / current_predicted.sum()
    # Least squares through the normal equations with a tiny ridge: a class the model never
    # predicts makes C singular, and an SVD solve (lstsq) costs ~100x more at K = 500.
    gram = conditional.T @ conditional
    gram[np.diag_indices_from(gram)] += 1e-9 * max(np.trace(gram), 1e-12)
    q = np.linalg.solve(gram, conditional.T @ mu)
    q = np.clip(q, 0, None)
    out[known] = q / q.sum() if q.sum() > 0 else support[known] / support.sum()
    return out


# -- embeddings: domain classifier ---------------------------------------------------------------


def embedding_shift(data: AuditDataset, ref, cur, config: AuditConfig):
    rng = np.random.default_rng(config.seed)
    half = max(1, config.shift_classifier_sample // 2)
    picks = [np.flatnonzero(mask) for mask in (ref, cur)]
    picks = [np.sort(rng.choice(p, min(len(p), half), replace=False)) for p in picks]
    rows = np.concatenate(picks)
    is_current = np.r_[np.zeros(len(picks[0]), bool), np.ones(len(picks[1]), bool)]
    x = np.asarray(data.embeddings[rows], dtype=np.float64)
    return domain_classifier(x, data.ids[rows], data.splits[rows], is_current, rng, config)


def _split_rows(chunk: Chunk, split: str) -> pd.DataFrame:
    rows = np.flatnonzero(np.asarray(chunk.splits).astype(str) == split)
    return pd.DataFrame(
        {
            "pos": chunk.pos[rows],
            "id": chunk.ids[rows],
            "split": chunk.splits[rows],
            "emb": list(np.asarray(chunk.embeddings[rows], dtype=np.float32)),
        }
    )


def embedding_shift_on(engine: Engine, pair: tuple[str, str], config: AuditConfig):
    """embedding_shift on any engine. Each split's sample is drawn from a hash sample of at most
    half the classifier sample (engine/sample.py): every item of a split that small, so the same
    items as in process and the same figures; a uniform sample, the same on every engine, above."""
    rng = np.random.default_rng(config.seed)
    half = max(1, config.shift_classifier_sample // 2)
    samples = [sample_rows(engine, _split_rows, half, name, seed=config.seed) for name in pair]
    picks = [np.sort(rng.choice(len(f), min(len(f), half), replace=False)) for f in samples]
    frames = [f.iloc[p] for f, p in zip(samples, picks, strict=True)]
    frame = pd.concat(frames, ignore_index=True)
    is_current = np.r_[np.zeros(len(frames[0]), bool), np.ones(len(frames[1]), bool)]
    x = np.stack(frame["emb"].to_numpy()).astype(np.float64)
    ids = frame["id"].to_numpy(dtype=object)
    return domain_classifier(x, ids, frame["split"].to_numpy(dtype=object), is_current, rng, config)


def domain_classifier(x, ids, splits, is_current, rng, config: AuditConfig):
    """The domain classifier, clusters and items on the sampled rows' embeddings."""
    rows = np.arange(len(x))
    x -= x.mean(axis=0)
    std = x.std(axis=0)
    x /= np.where(std > 0, std, 1.0)

    folds = stratified_folds(is_current, FOLDS, rng)
    scores = cross_fitted_ridge(x, is_current, folds)
    auroc, var, var0, domain = fold_aurocs(scores, is_current, folds)
    z = ndtri(0.5 + config.confidence_level / 2)
    result = {
        "auroc": auroc,
        "low": float(max(0.0, auroc - z * np.sqrt(var))),
        "high": float(min(1.0, auroc + z * np.sqrt(var))),
        "p": float(ndtr(-(auroc - 0.5) / np.sqrt(var0))) if var0 > 0 else np.nan,
    }

    from dataaudit.slicing import assign_clusters, fit_kmeans

    k = int(np.clip(len(rows) // CLUSTER_ITEMS, 1, MAX_CLUSTERS))
    model = fit_kmeans(x.astype(np.float32), k, sample_size=len(x), seed=config.seed)
    cluster = assign_clusters(x.astype(np.float32), model)
    k = len(model.centers)
    n_ref = np.bincount(cluster[~is_current], minlength=k)
    n_cur = np.bincount(cluster[is_current], minlength=k)
    ref_share, cur_share = n_ref / max(n_ref.sum(), 1), n_cur / max(n_cur.sum(), 1)
    mean_score = np.bincount(cluster, weights=domain, minlength=k) / np.maximum(n_ref + n_cur, 1)
    clusters = pd.DataFrame(
        {
            "cluster": np.arange(k),
            "n_reference": n_ref,
            "n_current": n_cur,
            "reference_share": ref_share,
            "current_share": cur_share,
            "change": cur_share - ref_share,
            "mean_domain_score": mean_score,
        }
    )
    clusters = clusters[(n_ref + n_cur) > 0]
    clusters = clusters.sort_values("change", ascending=False, kind="stable").reset_index(drop=True)
    items = pd.DataFrame(
        {
            "id": ids,
            "split": splits,
            "domain_score": domain.astype(np.float32),
            "cluster": cluster,
        }
    ).sort_values("domain_score", ascending=False, kind="stable")
    return result, clusters, items.reset_index(drop=True)


def stratified_folds(y: NDArray[np.bool_], n_folds: int, rng) -> NDArray[np.int64]:
    """Fold index per row, each class spread evenly over the folds in random order."""
    folds = np.empty(len(y), dtype=np.int64)
    for value in (False, True):
        idx = rng.permutation(np.flatnonzero(y == value))
        folds[idx] = np.arange(len(idx)) % n_folds
    return folds


def cross_fitted_ridge(x: NDArray, y: NDArray[np.bool_], folds: NDArray) -> NDArray[np.float64]:
    """Out-of-fold scores of a ridge regression of y on x (with intercept; penalty d / n).

    Each fold's Gram matrix and sums are computed once; a fold's training statistics are the
    totals minus its own, so the cost is one pass over x (not one per fold).
    """
    x32 = np.asarray(x, dtype=np.float32)
    target = y.astype(np.float64)
    ids = np.unique(folds)
    parts = []
    for f in ids:
        rows = folds == f
        xf = x32[rows]
        parts.append(
            (
                int(rows.sum()),
                (xf.T @ xf).astype(np.float64),
                xf.sum(axis=0, dtype=np.float64),
                xf.T.astype(np.float64) @ target[rows],
                target[rows].sum(),
            )
        )
    n_all, gram_all, sx_all, sxy_all, sy_all = (sum(p[i] for p in parts) for i in range(5))
    d = x.shape[1]
    scores = np.empty(len(y))
    for f, (nf, gf, sxf, sxyf, syf) in zip(ids, parts, strict=True):
        n = n_all - nf
        mean_x, mean_y = (sx_all - sxf) / n, (sy_all - syf) / n
        # Centred training statistics from raw sums.
        gram = (gram_all - gf) - n * np.outer(mean_x, mean_x)
        cross = (sxy_all - sxyf) - n * mean_x * mean_y
        gram[np.diag_indices(d)] += max(0.01, d / n) * n
        w = np.linalg.solve(gram, cross)
        rows = folds == f
        scores[rows] = (x32[rows] - mean_x) @ w
    return scores


def _auroc_parts(pos: NDArray, neg: NDArray) -> tuple[float, float, float, NDArray]:
    """AUROC, its DeLong variance, its Mann-Whitney null variance, and per-negative placements."""
    from scipy.stats import rankdata

    n1, n0 = len(pos), len(neg)
    both = rankdata(np.r_[pos, neg])
    v10 = (both[:n1] - rankdata(pos)) / n0  # share of negatives below each positive
    v01 = 1 - (both[n1:] - rankdata(neg)) / n1  # share of positives above each negative
    auc = float(v10.mean())
    var = float(v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0) if n1 > 1 and n0 > 1 else np.nan
    var0 = (n0 + n1 + 1) / (12 * n0 * n1)
    return auc, var, var0, v01


def fold_aurocs(scores: NDArray, y: NDArray[np.bool_], folds: NDArray):
    """Mean AUROC over folds with its variances, and a domain score per row.

    Each fold is scored by a model fitted without it, so given the models the folds' AUROCs are
    independent: variances of the mean add as var_f / F^2, and under no shift each fold's AUROC
    follows the Mann-Whitney null exactly. domain score: share of the fold's reference rows
    scored lower (ties count half).
    """
    aucs, vars_, vars0 = [], [], []
    domain = np.empty(len(y))
    for f in np.unique(folds):
        idx = np.flatnonzero(folds == f)
        pos, neg = idx[y[idx]], idx[~y[idx]]
        ref_sorted = np.sort(scores[neg])
        lower = np.searchsorted(ref_sorted, scores[idx], side="left")
        upper = np.searchsorted(ref_sorted, scores[idx], side="right")
        domain[idx] = (lower + upper) / 2 / max(len(neg), 1)
        if len(pos) == 0 or len(neg) == 0:
            continue
        auc, var, var0, _ = _auroc_parts(scores[pos], scores[neg])
        aucs.append(auc)
        vars_.append(var)
        vars0.append(var0)
    m = len(aucs)
    return (
        float(np.mean(aucs)),
        float(np.nansum(vars_) / m**2),
        float(np.sum(vars0) / m**2),
        domain,
    )
