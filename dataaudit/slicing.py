"""Slice algorithms on plain arrays: encode metadata, count every 1- and 2-predicate slice, test,
remove redundancy by sequential covering, and cluster embeddings.

Counting is exact and vectorised: for each column pair one `np.bincount` over a joint code gives a
contingency table of outcome counts; the counts of every predicate pair are then P_a · T · P_bᵀ,
where P maps a predicate to the levels it covers (SliceLine's algebra on contingency tables).
Nothing here loops over rows in Python or knows about AuditDataset, so tests call it directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.stats import benjamini_hochberg, wilson_interval

# Per-row outcome code: 0 unlabeled, else 1 + model_error + 2 * label_error.
N_OUTCOMES = 5
# Columns of a counts array, from outcome codes through REDUCE.
ALL, LABELED, ERRORS, LABEL_ERRORS = 0, 1, 2, 3
REDUCE = np.array(
    [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1], [1, 1, 1, 1]], dtype=np.float64
)


def outcome_codes(
    labeled: NDArray[np.bool_], errors: NDArray[np.bool_], label_errors: NDArray[np.bool_] | None
) -> NDArray[np.int8]:
    """Per-row outcome code (see N_OUTCOMES); errors and label errors count on labeled rows only."""
    code = np.where(labeled, 1 + errors.astype(np.int8), 0).astype(np.int8)
    if label_errors is not None:
        code += (2 * (labeled & label_errors)).astype(np.int8)
    return code


# -- encoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodedColumn:
    """One metadata column as a level code per row, plus predicates as 0/1 masks over levels.

    rule predicates are what discovery combines (values; `x < t` and `x >= t` on 16 quantile
    thresholds); given predicates are the disjoint slices the report lists (values; quartile bins).
    """

    name: str
    codes: NDArray[np.int32]
    rule_preds: NDArray[np.float64]  # (n_rule, n_levels)
    rule_names: tuple[str, ...]
    given_preds: NDArray[np.float64]  # (n_given, n_levels)
    given_names: tuple[str, ...]

    @property
    def n_levels(self) -> int:
        return self.rule_preds.shape[1]

    def rule_mask(self, pred: int) -> NDArray[np.bool_]:
        return self.rule_preds[pred].astype(bool)[self.codes]

    def given_mask(self, pred: int) -> NDArray[np.bool_]:
        return self.given_preds[pred].astype(bool)[self.codes]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def encode_categorical(
    name: str, values: pd.Series, top: int = 50, *, force: bool = False
) -> EncodedColumn:
    """Top `top` values as levels (most frequent first, ties in order of first appearance),
    then "(other)" and "(missing)"."""
    p = profile_column(values, np.arange(len(values)), cap=None)
    return categorical_spec(name, p, top).encode(values)


def encode_numeric(
    name: str, values: NDArray[np.float64], bins: int = 16, given_bins: int = 4
) -> EncodedColumn:
    """Quantile thresholds t: rule predicates `x < t` / `x >= t`; given slices are quartile bins."""
    x = np.asarray(values, dtype=np.float64)
    missing = ~np.isfinite(x)
    present = x[~missing]
    raw = np.quantile(present, np.arange(1, bins) / bins) if len(present) else np.zeros(0)
    minimum = float(present.min()) if len(present) else np.nan
    return numeric_spec(name, raw, minimum, bool(missing.any()), bins, given_bins).encode(x)


@dataclass(frozen=True, eq=False)
class ColumnSpec:
    """How to code one metadata column on any rows: an EncodedColumn without the codes, fitted
    on all rows (value counts, quantiles) and applied chunk by chunk."""

    name: str
    kind: str  # "categorical" | "numeric"
    kept: tuple  # categorical: the kept values, in level order
    thresholds: NDArray[np.float64]  # numeric: bin edges
    rule_preds: NDArray[np.float64]
    rule_names: tuple[str, ...]
    given_preds: NDArray[np.float64]
    given_names: tuple[str, ...]

    @property
    def n_levels(self) -> int:
        return self.rule_preds.shape[1]

    def codes(self, values: pd.Series | NDArray) -> NDArray[np.int32]:
        if self.kind == "numeric":
            if isinstance(values, pd.Series):
                values = values.to_numpy(dtype=np.float64, na_value=np.nan)
            x = np.asarray(values, dtype=np.float64)
            missing = ~np.isfinite(x)
            n_bins = len(self.thresholds) + 1
            codes = np.full(len(x), n_bins, dtype=np.int32)
            codes[~missing] = np.searchsorted(self.thresholds, x[~missing], side="right")
            return codes
        # Look up each distinct value once: kept level, else "(other)"; missing last.
        found, uniques = pd.factorize(pd.Series(values), use_na_sentinel=True)
        kept = list(self.kept)
        level = pd.Index(kept).get_indexer(uniques) if kept else np.full(len(uniques), -1)
        level = np.where(level >= 0, level, len(kept))
        return np.append(level, len(kept) + 1).astype(np.int32)[found]

    def encode(self, values: pd.Series | NDArray) -> EncodedColumn:
        return EncodedColumn(
            self.name,
            self.codes(values),
            self.rule_preds,
            self.rule_names,
            self.given_preds,
            self.given_names,
        )


@dataclass
class ColumnProfile:
    """What encoding a column needs to know about all its rows, as an associative reduction:
    rows, missing values, whether its dtype is numeric (None: no values seen yet), its distinct
    values with counts and first positions (None once there are more than `cap`), the smallest
    finite number."""

    n: int
    n_missing: int
    numeric: bool | None
    values: dict | None  # value -> [count, first position]
    cap: int | None
    minimum: float = np.nan
    n_infinite: int = 0  # numeric: +-inf values, missing for the thresholds

    @property
    def n_unique(self) -> int | None:
        return None if self.values is None else len(self.values)


def profile_column(series: pd.Series, pos: NDArray, cap: int | None) -> ColumnProfile:
    missing = series.isna().to_numpy()
    present = series[~missing]
    numeric = None
    minimum = np.nan
    n_infinite = 0
    if len(present):
        numeric = bool(
            pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        )
        if numeric:
            x = present.to_numpy(dtype=np.float64)
            finite = x[np.isfinite(x)]
            minimum = float(finite.min()) if len(finite) else np.nan
            n_infinite = len(x) - len(finite)
    codes, uniques = pd.factorize(present, sort=False)
    values = None
    if cap is None or len(uniques) <= cap:
        counts = np.bincount(codes, minlength=len(uniques))
        first_row = np.full(len(uniques), len(present), dtype=np.int64)
        np.minimum.at(first_row, codes, np.arange(len(codes)))
        first = np.asarray(pos)[~missing][first_row] if len(uniques) else np.zeros(0, np.int64)
        values = {
            v: [int(c), int(f)]
            for v, c, f in zip(list(uniques), counts.tolist(), first.tolist(), strict=True)
        }
    return ColumnProfile(len(series), int(missing.sum()), numeric, values, cap, minimum, n_infinite)


def merge_profiles(a: ColumnProfile, b: ColumnProfile) -> ColumnProfile:
    numeric = (
        a.numeric
        if b.numeric is None
        else (b.numeric if a.numeric is None else a.numeric and b.numeric)
    )
    values = None
    if a.values is not None and b.values is not None:
        values = dict(a.values)
        for v, (count, first) in b.values.items():
            if v in values:
                values[v] = [values[v][0] + count, min(values[v][1], first)]
            else:
                values[v] = [count, first]
        if a.cap is not None and len(values) > a.cap:
            values = None
    return ColumnProfile(
        a.n + b.n,
        a.n_missing + b.n_missing,
        numeric,
        values,
        a.cap,
        float(np.fmin(a.minimum, b.minimum)),
        a.n_infinite + b.n_infinite,
    )


def categorical_spec(name: str, p: ColumnProfile, top: int = 50) -> ColumnSpec:
    """Top `top` values as levels (count descending, then first appearance), then "(other)" and
    "(missing)"; levels without rows are left out of the predicates."""
    values = list(p.values)
    counts = np.array([p.values[v][0] for v in values], dtype=np.int64)
    firsts = np.array([p.values[v][1] for v in values], dtype=np.int64)
    order = np.lexsort((firsts, -counts)) if values else np.zeros(0, np.intp)
    kept = [values[i] for i in order[:top]]
    n_levels = len(kept) + 2
    names = [f"{name} = {v}" for v in kept] + [f"{name} = (other)", f"{name} is missing"]
    present = np.ones(n_levels, dtype=bool)
    present[len(kept)] = len(values) > top
    present[len(kept) + 1] = p.n_missing > 0
    levels = np.flatnonzero(present)
    preds = np.eye(n_levels)[levels]
    names = tuple(names[i] for i in levels)
    return ColumnSpec(name, "categorical", tuple(kept), np.zeros(0), preds, names, preds, names)


def numeric_spec(
    name: str,
    raw: NDArray[np.float64],
    minimum: float,
    has_missing: bool,
    bins: int = 16,
    given_bins: int = 4,
) -> ColumnSpec:
    """Rule predicates `x < t` / `x >= t` on the quantiles `raw` (at 1/bins, ..., 1 - 1/bins);
    given slices are coarser bins among them."""
    thresholds = np.unique(raw)
    # Drop a threshold at the minimum: `x < min` is empty.
    if np.isfinite(minimum):
        thresholds = thresholds[thresholds > minimum]
    n_bins = len(thresholds) + 1
    n_levels = n_bins + 1  # + missing

    rule_rows, rule_names = [], []
    for j, t in enumerate(thresholds, start=1):
        below = np.zeros(n_levels)
        below[:j] = 1
        above = np.zeros(n_levels)
        above[j:n_bins] = 1
        rule_rows += [below, above]
        rule_names += [f"{name} < {_fmt(t)}", f"{name} >= {_fmt(t)}"]

    # Coarse thresholds are chosen among the fine ones so each fine bin falls in one coarse bin.
    coarse_probs = np.arange(1, given_bins) / given_bins
    picks = (
        np.clip(np.round(coarse_probs * bins).astype(int) - 1, 0, len(raw) - 1) if len(raw) else []
    )
    coarse = np.unique([raw[i] for i in picks])
    coarse = coarse[np.isin(coarse, thresholds)]
    lower_edges = np.concatenate([[-np.inf], thresholds])
    coarse_of_bin = np.searchsorted(coarse, lower_edges, side="right")
    given_rows, given_names = [], []
    edges = [None, *coarse, None]
    for c in range(len(coarse) + 1):
        row = np.zeros(n_levels)
        row[:n_bins] = coarse_of_bin == c
        lo, hi = edges[c], edges[c + 1]
        if lo is None and hi is None:
            label = f"{name} is present"
        elif lo is None:
            label = f"{name} < {_fmt(hi)}"
        elif hi is None:
            label = f"{name} >= {_fmt(lo)}"
        else:
            label = f"{_fmt(lo)} <= {name} < {_fmt(hi)}"
        given_rows.append(row)
        given_names.append(label)
    if has_missing:
        row = np.zeros(n_levels)
        row[n_bins] = 1
        rule_rows.append(row)
        rule_names.append(f"{name} is missing")
        given_rows.append(row)
        given_names.append(f"{name} is missing")
    empty = np.zeros((0, n_levels))
    return ColumnSpec(
        name,
        "numeric",
        (),
        thresholds,
        np.array(rule_rows) if rule_rows else empty,
        tuple(rule_names),
        np.array(given_rows) if given_rows else empty,
        tuple(given_names),
    )


# Why a metadata column is not used (fixed phrases, so a report can group columns by reason).
SKIP_MISSING = "has only missing values"
SKIP_CONSTANT = "has a single value"
SKIP_DISTINCT = "has a distinct value in more than half of its rows, like an id or free text"
# Distinct values a text column's profile counts exactly; beyond, it is skipped (SKIP_MANY).
DISTINCT_CAP = 50_000
SKIP_MANY = f"has more than {DISTINCT_CAP:,} distinct values"
MAX_CATEGORIES_NUMERIC = 10


def profile_metadata(
    metadata: pd.DataFrame, pos: NDArray, max_categories_numeric: int = MAX_CATEGORIES_NUMERIC
) -> dict[str, ColumnProfile]:
    """Per metadata column of some rows, its ColumnProfile (a chunk kernel's partial). A numeric
    column needs its values counted only up to max_categories_numeric + 1 distinct ones."""
    out = {}
    for name in metadata.columns:
        series = metadata[name]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        cap = max_categories_numeric + 1 if numeric else DISTINCT_CAP
        out[str(name)] = profile_column(series, pos, cap)
    return out


def merge_metadata_profiles(a: dict, b: dict) -> dict:
    return {name: merge_profiles(a[name], b[name]) for name in a}


def column_kinds(
    profiles: dict[str, ColumnProfile], max_categories_numeric: int = MAX_CATEGORIES_NUMERIC
) -> tuple[dict[str, str], dict[str, str]]:
    """{column: "numeric" | "categorical"} for the usable columns and {column: reason} for the
    skipped ones, in column order (encode_metadata's rules)."""
    kinds: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for name, p in profiles.items():
        n_unique = p.n_unique
        if n_unique == 0:
            skipped[name] = SKIP_MISSING
        elif n_unique == 1 and p.n_missing == 0:
            skipped[name] = SKIP_CONSTANT
        elif p.numeric and (n_unique is None or n_unique > max_categories_numeric):
            kinds[name] = "numeric"
        elif n_unique is None:
            # More distinct values than DISTINCT_CAP: past half the rows it is id-like for sure.
            skipped[name] = SKIP_DISTINCT if p.n <= 2 * DISTINCT_CAP else SKIP_MANY
        elif not p.numeric and p.n > 100 and n_unique > p.n // 2:
            skipped[name] = SKIP_DISTINCT
        else:
            kinds[name] = "categorical"
    return kinds, skipped


def encode_metadata(
    metadata: pd.DataFrame,
    *,
    top: int = 50,
    bins: int = 16,
    given_bins: int = 4,
    max_categories_numeric: int = MAX_CATEGORIES_NUMERIC,
) -> tuple[list[EncodedColumn], dict[str, str]]:
    """Encode every usable column; returns the columns and {skipped column: reason}."""
    profiles = profile_metadata(metadata, np.arange(len(metadata)), max_categories_numeric)
    kinds, skipped = column_kinds(profiles, max_categories_numeric)
    columns: list[EncodedColumn] = []
    for name in metadata.columns:
        kind = kinds.get(str(name))
        if kind == "numeric":
            values = metadata[name].to_numpy(dtype=np.float64, na_value=np.nan)
            columns.append(encode_numeric(str(name), values, bins, given_bins))
        elif kind == "categorical":
            spec = categorical_spec(str(name), profiles[str(name)], top)
            columns.append(spec.encode(metadata[name]))
    return columns, skipped


def encode_groups(
    groups: NDArray[np.int32], names: Sequence[str], label: str = "split"
) -> EncodedColumn:
    """The split as one more rule column, so discovery can find `split = production and ...`.

    Its codes are the group indices themselves, as `enumerate_slices` requires.
    """
    preds = np.eye(len(names))
    rule_names = tuple(f"{label} = {name}" for name in names)
    return EncodedColumn(label, groups.astype(np.int32), preds, rule_names, preds, rule_names)


# -- counting ---------------------------------------------------------------------------------


def count_table(
    codes: Sequence[NDArray], sizes: Sequence[int], outcome: NDArray[np.int8]
) -> NDArray[np.float64]:
    """Counts (ALL, LABELED, ERRORS, LABEL_ERRORS) per joint level of `codes`: shape (*sizes, 4)."""
    joint = np.zeros(len(outcome), dtype=np.int64)
    for code, size in zip(codes, sizes, strict=True):
        joint *= size
        joint += code
    joint *= N_OUTCOMES
    joint += outcome
    total = int(np.prod(sizes)) * N_OUTCOMES
    table = np.bincount(joint, minlength=total).reshape(*sizes, N_OUTCOMES)
    return table @ REDUCE


def _bilinear(pa: NDArray, table: NDArray, pb: NDArray) -> NDArray[np.float64]:
    """P_a · T · P_bᵀ for each count channel: table (..., La, Lb, 4) -> (..., pa, pb, 4).

    Plain matmuls (BLAS); np.einsum without path optimisation loops in C over all four indices.
    """
    channels = np.moveaxis(table, -1, -3)  # (..., 4, La, Lb)
    out = pa @ channels @ pb.T  # (..., 4, pa, pb)
    return np.moveaxis(out, -3, -1)


@dataclass
class SliceSet:
    """Slices as predicate references plus their counts; col_b = -1 for a single predicate.

    group is the split index the slice is measured in (-1 = all splits).
    """

    col_a: NDArray[np.int32]
    pred_a: NDArray[np.int32]
    col_b: NDArray[np.int32]
    pred_b: NDArray[np.int32]
    group: NDArray[np.int32]
    counts: NDArray[np.float64]  # (m, 4)

    @classmethod
    def concat(cls, parts: Iterable[SliceSet]) -> SliceSet:
        parts = list(parts)
        if not parts:
            z = np.zeros(0, np.int32)
            return cls(z, z, z, z, z, np.zeros((0, 4)))
        return cls(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in _SLICE_FIELDS),
            np.concatenate([p.counts for p in parts]),
        )

    def __len__(self) -> int:
        return len(self.counts)

    def take(self, idx: NDArray) -> SliceSet:
        return SliceSet(*(getattr(self, f)[idx] for f in _SLICE_FIELDS), self.counts[idx])


_SLICE_FIELDS = ("col_a", "pred_a", "col_b", "pred_b", "group")


def _grid(ia: int, n_a: int, ib: int, n_b: int, group: int, counts: NDArray) -> SliceSet:
    """SliceSet for every (pred_a, pred_b) of a counts grid of shape (n_a, n_b, 4)."""
    pa, pb = np.meshgrid(np.arange(n_a), np.arange(n_b), indexing="ij")
    m = n_a * n_b
    return SliceSet(
        np.full(m, ia, np.int32),
        pa.ravel().astype(np.int32),
        np.full(m, ib, np.int32),
        pb.ravel().astype(np.int32) if ib >= 0 else np.full(m, -1, np.int32),
        np.full(m, group, np.int32),
        counts.reshape(m, 4),
    )


@dataclass(frozen=True)
class Screening:
    """How far the 2-condition search went. Counts are of slices passing the support gate.

    Exhaustive when every pair of conditions from two columns fits `max_pairs`. Otherwise only
    pairs holding one of the strongest single conditions (the anchors) are counted and tested;
    the others still count in the Benjamini-Hochberg family, as untested (p = 1).
    """

    exhaustive: bool
    n_single: int  # 1-condition rules tested
    n_pairs_tested: int  # 2-condition rules tested
    # Pairs of conditions from two columns with both conditions above the minimum support: an
    # upper bound of what the exhaustive search tests (itself a count over labeled rows only).
    n_pairs_possible: int
    n_anchors: int  # single conditions whose pairs were tested (0 when exhaustive)
    given_pairs: bool  # given slices include pairs of values from two columns
    n_given_pairs_possible: int  # given pairs, over all splits and per split, the same bound

    @property
    def rule_family(self) -> int:
        """Hypotheses the rules' correction answers for: everything the full search would test."""
        pairs = self.n_pairs_tested if self.exhaustive else self.n_pairs_possible
        return self.n_single + pairs


@dataclass
class Enumeration:
    rules: SliceSet  # every rule slice that passed the support gate (group = -1)
    given: SliceSet  # every given slice, per group and overall, that passed the support gate
    n_rules_considered: int
    n_given_too_small: int
    screening: Screening


def _pairs_among(per_column: NDArray) -> int:
    """Pairs of items from two different columns, given the items per column."""
    c = np.asarray(per_column, np.int64)
    return int((c.sum() ** 2 - (c**2).sum()) // 2)


class ArrayCounts:
    """The contingency tables enumerate_counted reads, counted on in-memory arrays of all rows."""

    def __init__(
        self,
        columns: Sequence[EncodedColumn],
        outcome: NDArray[np.int8],
        groups: NDArray[np.int32],
        n_groups: int,
        rule_columns: Sequence[EncodedColumn] | None = None,
        progress: Callable[[Iterable, int, str], Iterable] | None = None,
    ):
        self.columns, self.outcome, self.groups, self.n_groups = columns, outcome, groups, n_groups
        self.rule_columns = list(columns) if rule_columns is None else list(rule_columns)
        self.progress = progress
        self.total = count_table([groups], [n_groups], outcome)  # (G, 4)
        self.singles = [
            count_table([groups, col.codes], [n_groups, col.n_levels], outcome) for col in columns
        ]  # per column: (G, L, 4)

    def pairs(self, pairs: list[tuple[int, int]]) -> Iterable[tuple[int, int, NDArray]]:
        """(a, b, counts per group and pair of levels: (G, La, Lb, 4)) for each column pair."""
        iterator = self.progress(pairs, len(pairs), "slice pairs") if self.progress else pairs
        for ia, ib in iterator:
            ca, cb = self.columns[ia], self.columns[ib]
            sizes = [self.n_groups, ca.n_levels, cb.n_levels]
            yield ia, ib, count_table([self.groups, ca.codes, cb.codes], sizes, self.outcome)

    def anchor_levels(self, anchors: Sequence[tuple[int, int]]) -> Iterable[NDArray]:
        """Per anchor (rule column, predicate): counts of every level of every rule column on
        the anchor's rows, stacked (sum of n_levels, 4)."""
        cols = self.rule_columns
        iterator = self.progress(anchors, len(anchors), "slice pairs") if self.progress else anchors
        for ca, pa in iterator:
            yield _level_counts(cols, np.flatnonzero(cols[ca].rule_mask(pa)), self.outcome)


def enumerate_slices(
    columns: Sequence[EncodedColumn],
    outcome: NDArray[np.int8],
    groups: NDArray[np.int32] | None = None,
    n_groups: int = 0,
    *,
    min_support: int = 30,
    group_column: EncodedColumn | None = None,
    max_pairs: int | None = None,
    progress: Callable[[Iterable, int, str], Iterable] | None = None,
) -> Enumeration:
    """enumerate_counted on in-memory arrays (see there)."""
    groups_ = np.zeros(len(outcome), np.int32) if groups is None else groups.astype(np.int32)
    n_g = max(n_groups, 1)
    rule_columns = [*columns, group_column] if group_column is not None else list(columns)
    counts = ArrayCounts(columns, outcome, groups_, n_g, rule_columns, progress)
    return enumerate_counted(
        columns,
        counts,
        per_group=groups is not None and n_g > 1,
        min_support=min_support,
        group_column=group_column,
        max_pairs=max_pairs,
    )


def enumerate_counted(
    columns: Sequence[EncodedColumn | ColumnSpec],
    counts,
    *,
    per_group: bool,
    min_support: int = 30,
    group_column: EncodedColumn | ColumnSpec | None = None,
    max_pairs: int | None = None,
) -> Enumeration:
    """Count every 1-predicate slice and, within `max_pairs`, every 2-predicate slice exactly.

    Rules (discovery) are counted over all rows; `group_column` (the split), when given, joins the
    rule columns. Given slices are counted over all rows and, when `groups` is given, within each
    group. Only slices with at least `min_support` labeled rows inside and outside are kept, and
    a 2-predicate rule with the same labeled support as one of its parts is dropped as redundant.

    When more than `max_pairs` 2-predicate rules are possible (a wide table), single conditions
    are screened first: pairs are counted only for the most significant single conditions, each
    with every condition of every other column, as many as fit `max_pairs` (see `Screening`).
    Given pairs are listed only when they fit `max_pairs` too; that choice depends on supports
    alone, never on errors, so the given slices' correction needs no adjustment.
    """
    rules: list[SliceSet] = []
    given: list[SliceSet] = []
    n_considered = 0
    too_small = 0
    total = counts.total  # (G, 4)
    n_g = len(total)
    total_all = total.sum(0)
    n_lab = total_all[LABELED]

    def keep_rules(s: SliceSet, parents: tuple[NDArray, ...] = ()) -> int:
        nonlocal n_considered
        lab = s.counts[:, LABELED]
        ok = (lab >= min_support) & (n_lab - lab >= min_support)
        for parent in parents:
            ok &= lab != parent
        n_considered += int((s.counts[:, ALL] > 0).sum())
        if ok.any():
            rules.append(s.take(np.flatnonzero(ok)))
        return int(ok.sum())

    def keep_given(s: SliceSet, group_totals: NDArray) -> None:
        nonlocal too_small
        lab = s.counts[:, LABELED]
        rest = group_totals[s.group.clip(0), LABELED] if n_g > 1 else n_lab
        rest = np.where(s.group < 0, n_lab, rest) - lab
        ok = (lab >= min_support) & (rest >= 1)
        # Only count a skip where the group has labels at all; unlabeled splits are noted elsewhere.
        has_labels = np.where(s.group < 0, n_lab, total[s.group.clip(0), LABELED]) > 0
        too_small += int(((s.counts[:, ALL] > 0) & ~ok & has_labels).sum())
        if ok.any():
            given.append(s.take(np.flatnonzero(ok)))

    n_cols = len(columns)
    singles: list[NDArray] = []  # per column: (G, L, 4)
    single_rules: list[NDArray] = []  # per rule column (the group column last): (n_rule, 4)
    given_large = []  # per column: given predicates with enough labeled rows, overall and per group
    n_single = 0
    for ia, col in enumerate(columns):
        t = counts.singles[ia]
        singles.append(t)
        t_all = t.sum(0)
        r = col.rule_preds @ t_all
        single_rules.append(r)
        n_single += keep_rules(_grid(ia, len(r), -1, 1, -1, r[:, None, :]))
        g = np.matmul(col.given_preds, t)  # (G, p, 4)
        keep_given(_grid(ia, g.shape[1], -1, 1, -1, g.sum(0)[:, None, :]), total)
        large = [(g.sum(0)[:, LABELED] >= min_support).sum()]
        if per_group:
            for gi in range(n_g):
                keep_given(_grid(ia, g.shape[1], -1, 1, gi, g[gi][:, None, :]), total)
            large += list((g[:, :, LABELED] >= min_support).sum(1))
        given_large.append(large)
    if group_column is not None:
        r = group_column.rule_preds @ total
        single_rules.append(r)
        n_single += keep_rules(_grid(n_cols, len(r), -1, 1, -1, r[:, None, :]))

    large_rules = [int((r[:, LABELED] >= min_support).sum()) for r in single_rules]
    n_pairs_possible = _pairs_among(large_rules)
    n_given_possible = sum(_pairs_among(c) for c in np.array(given_large, np.int64).T)
    exhaustive = max_pairs is None or n_pairs_possible <= max_pairs
    given_pairs = max_pairs is None or n_given_possible <= max_pairs
    n_before = sum(len(s) for s in rules)

    if exhaustive or given_pairs:
        pairs = [(a, b) for a in range(n_cols) for b in range(a + 1, n_cols)]
        for ia, ib, t in counts.pairs(pairs):
            ca, cb = columns[ia], columns[ib]
            if exhaustive:
                t_all = t.sum(0)
                r = _bilinear(ca.rule_preds, t_all, cb.rule_preds)
                par_a = (ca.rule_preds @ t_all.sum(1))[:, LABELED]
                par_b = (cb.rule_preds @ t_all.sum(0))[:, LABELED]
                s = _grid(ia, r.shape[0], ib, r.shape[1], -1, r)
                keep_rules(s, (par_a[s.pred_a], par_b[s.pred_b]))
            if given_pairs:
                g = _bilinear(ca.given_preds, t, cb.given_preds)
                keep_given(_grid(ia, g.shape[1], ib, g.shape[2], -1, g.sum(0)), total)
                if per_group:
                    for gi in range(n_g):
                        keep_given(_grid(ia, g.shape[1], ib, g.shape[2], gi, g[gi]), total)

    if exhaustive and group_column is not None:
        # Pairs (split value, column predicate) come from the per-group single-column tables.
        gp = group_column.rule_preds
        for ia, col in enumerate(columns):
            t = singles[ia]  # (G, L, 4)
            r = _bilinear(gp, t, col.rule_preds)
            par_g = (gp @ t.sum(1))[:, LABELED]
            par_c = (col.rule_preds @ t.sum(0))[:, LABELED]
            s = _grid(n_cols, r.shape[0], ia, r.shape[1], -1, r)
            keep_rules(s, (par_g[s.pred_a], par_c[s.pred_b]))

    n_anchors = 0
    if not exhaustive:
        rule_cols = [*columns, group_column] if group_column is not None else list(columns)
        x_total = total_all[ERRORS]
        anchors = screen_anchors(single_rules, min_support, n_lab, x_total, max_pairs)
        n_anchors = len(anchors)
        lead = n_cols if group_column is not None else -1
        levels = counts.anchor_levels(anchors)
        for s in anchor_pairs(rule_cols, anchors, single_rules, levels, min_support, lead=lead):
            keep_rules(s)
    screening = Screening(
        exhaustive=exhaustive,
        n_single=n_single,
        n_pairs_tested=sum(len(s) for s in rules) - n_before,
        n_pairs_possible=n_pairs_possible,
        n_anchors=n_anchors,
        given_pairs=given_pairs,
        n_given_pairs_possible=n_given_possible,
    )
    return Enumeration(
        SliceSet.concat(rules), SliceSet.concat(given), n_considered, too_small, screening
    )


def screen_anchors(
    single_rules: Sequence[NDArray],
    min_support: int,
    n_labeled: float,
    n_errors: float,
    max_pairs: int,
) -> list[tuple[int, int]]:
    """The strongest single conditions, (column, predicate), while their pairs fit `max_pairs`.

    Strongest = smallest p-value of the slice's own test. A pair's parents carry the same excess
    errors, so the smaller parent shows them most: a planted pair is found when at least one of
    its conditions errs visibly more on its own. Each anchor is paired with every large enough
    condition of every other column (pairs of two anchors once), so the cost is known up front.
    """
    counts = np.concatenate(single_rules)
    col = np.concatenate([np.full(len(r), i) for i, r in enumerate(single_rules)])
    pred = np.concatenate([np.arange(len(r)) for r in single_rules])
    lab, x = counts[:, LABELED], counts[:, ERRORS]
    large = lab >= min_support
    testable = large & (n_labeled - lab >= min_support)
    p = worse_than_rest_pvalue(x, lab, n_errors, n_labeled)
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = x - lab * (n_errors / n_labeled)
    order = np.lexsort((-np.nan_to_num(excess), np.nan_to_num(p, nan=2.0)))
    large_per_col = np.bincount(col[large], minlength=len(single_rules))
    partners = large_per_col.sum()
    chosen_per_col = np.zeros(len(single_rules), np.int64)
    anchors: list[tuple[int, int]] = []
    used = 0
    for i in order[testable[order]]:
        c = col[i]
        # Partners in other columns, less the anchors there: that pair was counted from their side.
        cost = partners - large_per_col[c] - (len(anchors) - chosen_per_col[c])
        if used + cost > max_pairs:
            break
        used += cost
        anchors.append((int(c), int(pred[i])))
        chosen_per_col[c] += 1
    return anchors


def _level_counts(
    columns: Sequence[EncodedColumn], rows: NDArray[np.intp], outcome: NDArray[np.int8]
) -> NDArray[np.float64]:
    """Counts of every level of every column on some rows, stacked: (sum of n_levels, 4)."""
    offsets = np.cumsum([0] + [c.n_levels for c in columns])
    o = outcome[rows].astype(np.int64)
    out = np.zeros(int(offsets[-1]) * N_OUTCOMES)
    # Blocks of columns keep the joint codes near 32 MB whatever the number of rows.
    step = max(1, 4_000_000 // max(len(rows), 1))
    for start in range(0, len(columns), step):
        block = columns[start : start + step]
        codes = np.stack(
            [c.codes[rows] + offsets[start + j] for j, c in enumerate(block)], axis=1
        ).astype(np.int64)
        joint = codes * N_OUTCOMES + o[:, None]
        out += np.bincount(joint.ravel(), minlength=len(out))
    return out.reshape(-1, N_OUTCOMES) @ REDUCE


def anchor_pairs(
    columns: Sequence[EncodedColumn],
    anchors: Sequence[tuple[int, int]],
    single_rules: Sequence[NDArray],
    anchor_levels: Iterable[NDArray],
    min_support: int,
    *,
    lead: int = -1,
) -> Iterable[SliceSet]:
    """Each anchor (column, predicate) with every large enough predicate of every other column.

    From each anchor's level counts of every column on its rows (`anchor_levels`, in anchor
    order), every predicate's counts at once through the block-diagonal predicate matrix. Redundant pairs
    (labeled support equal to a parent's) are dropped; the caller applies the support gate.
    Column `lead` (the split) reads first in a name, as in the exhaustive search.
    """
    from scipy import sparse

    preds = sparse.block_diag([c.rule_preds for c in columns], format="csr")
    pred_col = np.concatenate([np.full(len(r), i) for i, r in enumerate(single_rules)])
    pred_idx = np.concatenate([np.arange(len(r)) for r in single_rules])
    offsets = np.cumsum([0] + [len(r) for r in single_rules])
    lab_single = np.concatenate(single_rules)[:, LABELED]
    done = np.zeros(len(lab_single), bool)
    order_key = np.where(np.arange(len(columns)) == lead, -1, np.arange(len(columns)))
    for (ca, pa), levels in zip(anchors, anchor_levels, strict=True):
        counts = preds @ levels
        a = offsets[ca] + pa
        done[a] = True
        lab = counts[:, LABELED]
        keep = np.flatnonzero(
            (lab_single >= min_support)
            & ~done
            & (pred_col != ca)
            & (lab != lab_single[a])
            & (lab != lab_single)
        )
        cb, pb = pred_col[keep], pred_idx[keep]
        swap = order_key[cb] < order_key[ca]
        m = len(keep)
        yield SliceSet(
            np.where(swap, cb, ca).astype(np.int32),
            np.where(swap, pb, pa).astype(np.int32),
            np.where(swap, ca, cb).astype(np.int32),
            np.where(swap, pa, pb).astype(np.int32),
            np.full(m, -1, np.int32),
            counts[keep],
        )


# -- naming and membership --------------------------------------------------------------------


def slice_name(columns: Sequence[EncodedColumn], s: SliceSet, i: int, *, given: bool) -> str:
    names = []
    for col, pred in ((s.col_a[i], s.pred_a[i]), (s.col_b[i], s.pred_b[i])):
        if col >= 0:
            c = columns[col]
            names.append((c.given_names if given else c.rule_names)[pred])
    return " and ".join(names)


def slice_mask(columns: Sequence[EncodedColumn], s: SliceSet, i: int, *, given: bool) -> NDArray:
    mask = None
    for col, pred in ((s.col_a[i], s.pred_a[i]), (s.col_b[i], s.pred_b[i])):
        if col >= 0:
            c = columns[col]
            m = c.given_mask(pred) if given else c.rule_mask(pred)
            mask = m if mask is None else mask & m
    return mask


def rule_counts_on(
    columns: Sequence[EncodedColumn], s: SliceSet, outcome: NDArray[np.int8]
) -> Callable[[NDArray[np.intp]], NDArray[np.float64]]:
    """A function giving the counts of every rule slice in `s` restricted to some rows."""
    keys = s.col_a.astype(np.int64) * (len(columns) + 1) + (s.col_b + 1)
    groups = [(np.flatnonzero(keys == key)) for key in np.unique(keys)]

    def counts_on(rows: NDArray[np.intp]) -> NDArray[np.float64]:
        out = np.zeros((len(s), 4))
        o = outcome[rows]
        for idx in groups:
            ca = columns[s.col_a[idx[0]]]
            pa = ca.rule_preds[s.pred_a[idx]]
            if s.col_b[idx[0]] < 0:
                t = count_table([ca.codes[rows]], [ca.n_levels], o)
                out[idx] = pa @ t
            else:
                cb = columns[s.col_b[idx[0]]]
                pb = cb.rule_preds[s.pred_b[idx]]
                t = count_table([ca.codes[rows], cb.codes[rows]], [ca.n_levels, cb.n_levels], o)
                left = (pa @ t.reshape(t.shape[0], -1)).reshape(len(idx), t.shape[1], 4)
                out[idx] = (left * pb[:, :, None]).sum(1)
        return out

    return counts_on


# -- testing and covering ---------------------------------------------------------------------


def worse_than_rest_pvalue(
    x: NDArray, n: NDArray, x_total: NDArray | float, n_total: NDArray | float
) -> NDArray[np.float64]:
    """One-sided exact binomial test that a slice (x errors in n) errs more than its group's rate.

    The z-test's normal tail is far too small for slices of a few dozen items at low error
    rates; with thousands of such slices tested that alone yields false discoveries on null
    data. The binomial tail P(X >= x), X ~ Bin(n, x_total / n_total), is exact for small slices
    and conservative for large ones (the hypergeometric of Fisher's test is exact for both, but
    its cost grows with the slice and is prohibitive over 10^5 slices of 10^5 rows).
    """
    from scipy import stats

    x, n = np.asarray(x, np.float64), np.asarray(n, np.float64)
    x_total = np.broadcast_to(np.asarray(x_total, np.float64), x.shape)
    n_total = np.broadcast_to(np.asarray(n_total, np.float64), x.shape)
    valid = np.isfinite(x) & np.isfinite(n) & (n > 0) & (n < n_total)
    p = np.full(x.shape, np.nan)
    rate = x_total[valid] / n_total[valid]
    p[valid] = stats.binom.sf(x[valid] - 1, n[valid], rate)
    return np.clip(p, 0.0, 1.0)


@dataclass
class Tests:
    """Per-slice error test against the rest of its group's labeled rows."""

    rate: NDArray[np.float64]
    low: NDArray[np.float64]
    high: NDArray[np.float64]
    rest_rate: NDArray[np.float64]
    p_value: NDArray[np.float64]
    q_value: NDArray[np.float64]


def test_rates(
    n: NDArray,
    x: NDArray,
    n_total: NDArray | float,
    x_total: NDArray | float,
    confidence: float,
    family: int | None = None,
) -> Tests:
    """One-sided exact test (slice worse than the rest), Wilson CI, BH over all rows (or over a
    `family` of that many hypotheses, the untested ones counting as p = 1)."""
    n = np.asarray(n, np.float64)
    x = np.asarray(x, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = x / n
        rest_rate = (x_total - x) / (n_total - n)
    p = worse_than_rest_pvalue(x, n, x_total, n_total)
    low, high = wilson_interval(x, n, confidence)
    return Tests(rate, low, high, rest_rate, p, benjamini_hochberg(p, family))


def bh_cutoff(p: NDArray, q: NDArray, fdr: float) -> float:
    """Largest raw p-value BH rejects at `fdr` (-1 when none): later re-tests must beat it."""
    rejected = np.isfinite(q) & (q <= fdr)
    return float(p[rejected].max()) if rejected.any() else -1.0


def lift_ok(rate: NDArray, base: float, min_lift: float, min_gap: float) -> NDArray[np.bool_]:
    """Effect-size gate: at 1M rows a tiny gap is significant, so require lift or an absolute gap."""
    return (rate >= base * min_lift) | (rate >= base + min_gap)


def slice_score(low: NDArray, n: NDArray, base: NDArray | float) -> NDArray[np.float64]:
    """Severity: (Wilson lower bound − base rate) × √(labeled support).

    Trades lift against support. Excess errors ((rate − base) × n) would not: adding rows at the
    base rate costs nothing, so a bad region diluted with a healthy one would outrank the region.
    The square root makes dilution cost, while a large slice still beats a tiny one as bad.
    """
    return (np.asarray(low) - base) * np.sqrt(np.asarray(n, np.float64))


@dataclass(frozen=True)
class Pick:
    index: int  # into the candidate arrays
    residual: NDArray[np.float64]  # counts on rows no earlier pick covered
    score: float  # on those rows: (Wilson low − base) × √labeled support; see slice_score


def sequential_cover(
    counts: NDArray[np.float64],
    n_total: float,
    x_total: float,
    p_cutoff: float,
    removed: Callable[[list[int]], NDArray[np.float64]],
    *,
    max_slices: int,
    min_support: int,
    min_lift: float,
    min_gap: float,
    confidence: float,
) -> list[Pick]:
    """Greedy covering: take the slice with the highest score, remove its rows, re-test the rest.

    `removed(picks)` gives every candidate's counts on the rows of the last pick that no earlier
    pick covers. A re-tested slice must still pass the support and lift gates and beat the
    first-stage BH cutoff on its remaining rows, so a child of a reported slice is not reported
    again unless it is bad beyond its parent.
    """
    if p_cutoff < 0 or len(counts) == 0:
        return []
    base = x_total / n_total
    residual = counts.copy()
    alive = np.ones(len(counts), bool)
    picks: list[Pick] = []
    chosen: list[int] = []
    while len(picks) < max_slices:
        n, x = residual[:, LABELED], residual[:, ERRORS]
        with np.errstate(invalid="ignore", divide="ignore"):
            rate = x / n
        p = worse_than_rest_pvalue(x, n, x_total, n_total)
        low, _ = wilson_interval(x, n, confidence)
        ok = alive & (n >= min_support) & (p <= p_cutoff) & lift_ok(rate, base, min_lift, min_gap)
        if not ok.any():
            break
        score = np.where(ok, slice_score(low, n, base), -np.inf)
        best = int(np.argmax(score))
        picks.append(Pick(best, residual[best].copy(), float(score[best])))
        alive[best] = False
        chosen.append(best)
        if len(picks) < max_slices:  # the last pick's rows are never needed
            residual -= removed(chosen)
    return picks


def row_cover(
    members: Callable[[int], NDArray[np.bool_]],
    counts_on: Callable[[NDArray[np.intp]], NDArray[np.float64]],
) -> Callable[[list[int]], NDArray[np.float64]]:
    """sequential_cover's `removed` on in-memory rows: members(i) is candidate i's row mask."""
    covered: NDArray[np.bool_] | None = None

    def removed(picks: list[int]) -> NDArray[np.float64]:
        nonlocal covered
        mask = members(picks[-1])
        if covered is None:
            covered = np.zeros(len(mask), bool)
        rows = np.flatnonzero(mask & ~covered)
        covered[rows] = True
        return counts_on(rows)

    return removed


# -- clusters ---------------------------------------------------------------------------------


def _normalized(chunk: NDArray) -> NDArray[np.float32]:
    x = np.asarray(chunk, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1)


@dataclass(frozen=True)
class ClusterModel:
    centers: NDArray[np.float32]  # (k, p) in the projected space
    mean: NDArray[np.float32] | None  # PCA projection when d > max_dims
    components: NDArray[np.float32] | None

    def project(self, chunk: NDArray) -> NDArray[np.float32]:
        x = _normalized(chunk)
        if self.components is not None:
            x = (x - self.mean) @ self.components.T
        return x


def _threads_for(work: int):
    """One OpenMP thread for small k-means: thread start-up and spinning cost more than the work."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1 if work < 20_000_000 else None)


def kmeans_sample(n: int, sample_size: int, seed: int = 0):
    """(sorted positions of the rows k-means is fitted on, the generator to fit with)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, sample_size), replace=False)), rng


def fit_kmeans(
    embeddings: NDArray,
    k: int,
    *,
    sample_size: int = 100_000,
    seed: int = 0,
    max_dims: int = 128,
    max_iter: int = 10,
) -> ClusterModel:
    """k-means on L2-normalised rows of a random sample (PCA to `max_dims` when wider)."""
    idx, rng = kmeans_sample(len(embeddings), sample_size, seed)
    return fit_kmeans_rows(
        embeddings[idx], k, rng=rng, seed=seed, max_dims=max_dims, max_iter=max_iter
    )


def fit_kmeans_rows(
    rows: NDArray,
    k: int,
    *,
    rng: np.random.Generator,
    seed: int = 0,
    max_dims: int = 128,
    max_iter: int = 10,
) -> ClusterModel:
    """fit_kmeans on the sampled rows themselves (kmeans_sample's positions and generator)."""
    from sklearn.decomposition import PCA

    from dataaudit.neighbors import _spherical_kmeans

    x = _normalized(rows)
    mean = components = None
    if x.shape[1] > max_dims:
        pca = PCA(n_components=max_dims, svd_solver="randomized", random_state=seed).fit(x)
        mean = pca.mean_.astype(np.float32)
        components = pca.components_.astype(np.float32)
        x = (x - mean) @ components.T
    k = int(min(k, len(x)))
    # Spherical k-means in torch (the IVF quantizer's): rows are unit vectors already, and it is
    # several times faster than sklearn's KMeans here, on 64 sample rows per cluster.
    centers = _spherical_kmeans(
        np.ascontiguousarray(x, dtype=np.float32),
        k,
        rng=rng,
        iterations=max_iter,
        sample_per_cluster=64,
    )
    return ClusterModel(centers, mean, components)


def assign_clusters(
    embeddings: NDArray,
    model: ClusterModel,
    *,
    chunk_rows: int = 65_536,
    progress: Callable[[Iterable, int, str], Iterable] | None = None,
) -> NDArray[np.int32]:
    """Nearest center of every row, in chunks (never an N × k matrix)."""
    c = model.centers
    c_sq = (c * c).sum(1)
    out = np.empty(len(embeddings), np.int32)
    starts = range(0, len(embeddings), chunk_rows)
    iterator = progress(starts, len(starts), "assign clusters") if progress else starts
    for start in iterator:
        x = model.project(embeddings[start : start + chunk_rows])
        out[start : start + len(x)] = (c_sq - 2 * (x @ c.T)).argmin(1)
    return out


def coarsen(centers: NDArray, sizes: NDArray, k: int, seed: int = 0) -> NDArray[np.int32]:
    """Group fine clusters into k coarse ones (weighted k-means on the centers): fine → coarse."""
    from sklearn.cluster import KMeans

    k = int(min(k, (sizes > 0).sum()))
    with _threads_for(len(centers) * k):
        km = KMeans(k, n_init=3, random_state=seed).fit(
            centers, sample_weight=np.maximum(sizes, 1e-9)
        )
    return km.labels_.astype(np.int32)


def cluster_counts_on(
    levels: Sequence[NDArray[np.int32]], assign: NDArray[np.int32], outcome: NDArray[np.int8]
) -> Callable[[NDArray[np.intp]], NDArray[np.float64]]:
    """Counts of every (level, cluster) candidate on some rows; levels map fine → cluster id."""
    sizes = [int(m.max()) + 1 for m in levels]

    def counts_on(rows: NDArray[np.intp]) -> NDArray[np.float64]:
        fine = assign[rows]
        o = outcome[rows]
        return np.concatenate(
            [count_table([m[fine]], [s], o) for m, s in zip(levels, sizes, strict=True)]
        )

    return counts_on


# -- description ------------------------------------------------------------------------------


def over_represented(
    columns: Sequence[EncodedColumn],
    mask: NDArray[np.bool_],
    *,
    top: int = 3,
    min_share: float = 0.3,
    min_lift: float = 1.5,
) -> list[tuple[str, float, float]]:
    """Metadata values much more common inside `mask` than overall: (slice name, share, overall)."""
    inside = [np.bincount(col.codes[mask], minlength=col.n_levels) for col in columns]
    overall = [np.bincount(col.codes, minlength=col.n_levels) for col in columns]
    return over_represented_counts(
        columns, inside, overall, int(mask.sum()), len(mask), top=top, min_share=min_share,
        min_lift=min_lift,
    )  # fmt: skip


def over_represented_counts(
    columns: Sequence[EncodedColumn | ColumnSpec],
    inside: Sequence[NDArray],
    overall: Sequence[NDArray],
    n_in: int,
    n: int,
    *,
    top: int = 3,
    min_share: float = 0.3,
    min_lift: float = 1.5,
) -> list[tuple[str, float, float]]:
    """over_represented from the rows per level inside the slice and overall, per column."""
    found = []
    for col, c_in, c_all in zip(columns, inside, overall, strict=True):
        share = (col.given_preds @ c_in) / max(n_in, 1)
        base = (col.given_preds @ c_all) / max(n, 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = np.where(base > 0, share / base, 0)
        for j in np.flatnonzero((share >= min_share) & (lift >= min_lift)):
            found.append((lift[j], col.given_names[j], float(share[j]), float(base[j])))
    found.sort(key=lambda f: -f[0])
    return [(name, share, base) for _, name, share, base in found[:top]]


def top_confusions(
    given: NDArray[np.int64], predicted: NDArray[np.int64], k: int, top: int = 2
) -> list[tuple[int, int, int]]:
    """Most frequent (given, predicted) pairs among the rows passed: (given, predicted, count)."""
    if len(given) == 0:
        return []
    return top_confusion_counts(np.bincount(given * k + predicted, minlength=k * k), k, top)


def top_confusion_counts(counts: NDArray, k: int, top: int = 2) -> list[tuple[int, int, int]]:
    """top_confusions from the counts of given * k + predicted."""
    order = np.argsort(-np.asarray(counts), kind="stable")[:top]
    return [(int(i // k), int(i % k), int(counts[i])) for i in order if counts[i] > 0]


# -- discovery drivers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Gates:
    min_support: int = 30
    min_lift: float = 1.5
    min_gap: float = 0.05
    fdr: float = 0.05
    max_slices: int = 20
    confidence: float = 0.95


def min_support_for(n_labeled: int, absolute: int, fraction: float) -> int:
    return int(max(absolute, np.ceil(fraction * n_labeled)))


@dataclass
class Discovery:
    """Tested candidates and the ones covering picked, in pick order."""

    candidates: SliceSet  # rules; for clusters col_a = level, pred_a = cluster id
    tests: Tests
    picks: list[Pick]
    n_tested: int


def _discover(
    counts: NDArray,
    removed_for: Callable[[NDArray[np.intp]], Callable[[list[int]], NDArray[np.float64]]],
    n_total: float,
    x_total: float,
    gates: Gates,
    family: int | None = None,
) -> tuple[Tests, list[Pick]]:
    """Test every candidate, then cover among those significant and large enough on all rows.

    Covering re-tests only slices that passed on all their rows: removing rows cannot make a
    slice that was not worse than the rest a discovery about the rule it names. That keeps
    covering cheap when a wide table tests millions of candidates. `removed_for(eligible)` is
    sequential_cover's `removed` over those candidates (indices into `eligible`).
    """
    tests = test_rates(
        counts[:, LABELED], counts[:, ERRORS], n_total, x_total, gates.confidence, family
    )
    cutoff = bh_cutoff(tests.p_value, tests.q_value, gates.fdr)
    base = x_total / n_total if n_total else 0.0
    with np.errstate(invalid="ignore"):
        eligible = np.flatnonzero(
            (tests.p_value <= cutoff)
            & lift_ok(tests.rate, base, gates.min_lift, gates.min_gap)
            & (counts[:, LABELED] >= gates.min_support)
        )
    picks = sequential_cover(
        counts[eligible],
        n_total,
        x_total,
        cutoff,
        removed_for(eligible),
        max_slices=gates.max_slices,
        min_support=gates.min_support,
        min_lift=gates.min_lift,
        min_gap=gates.min_gap,
        confidence=gates.confidence,
    )
    return tests, [dataclasses.replace(p, index=int(eligible[p.index])) for p in picks]


def discover_rules(
    columns: Sequence[EncodedColumn],
    enumeration: Enumeration,
    outcome: NDArray[np.int8],
    gates: Gates,
) -> Discovery:
    """Test every enumerated rule, BH across all of them (and across the pairs screening left
    untested, as p = 1), then cover. `columns` includes any group column the enumeration used
    (at index len(metadata columns))."""
    rules = enumeration.rules

    def removed_for(idx: NDArray[np.intp]):
        return row_cover(
            lambda i: slice_mask(columns, rules, int(idx[i]), given=False),
            rule_counts_on(columns, rules.take(idx), outcome),
        )

    n_total = float((outcome > 0).sum())
    x_total = float(np.isin(outcome, (2, 4)).sum())
    return discover_counted_rules(enumeration, n_total, x_total, gates, removed_for)


def discover_counted_rules(
    enumeration: Enumeration, n_total: float, x_total: float, gates: Gates, removed_for
) -> Discovery:
    """discover_rules with covering by `removed_for` (see _discover)."""
    rules = enumeration.rules
    family = enumeration.screening.rule_family
    tests, picks = _discover(rules.counts, removed_for, n_total, x_total, gates, family=family)
    return Discovery(rules, tests, picks, len(rules))


def discover_clusters(
    assign: NDArray[np.int32],
    levels: Sequence[NDArray[np.int32]],
    outcome: NDArray[np.int8],
    gates: Gates,
) -> Discovery:
    """discover_fine_clusters on the rows' fine cluster assignments."""
    fine = count_table([assign], [len(levels[0])], outcome)
    return discover_fine_clusters(fine, levels, gates)


def discover_fine_clusters(
    fine: NDArray[np.float64], levels: Sequence[NDArray[np.int32]], gates: Gates
) -> Discovery:
    """Test every cluster of every granularity (`levels` map fine cluster → cluster), then cover,
    from the counts per fine cluster alone (every cluster is a union of fine ones).

    Clusters are fitted without looking at errors, so the same rows can test them.
    """
    level_of = np.concatenate([np.full(int(m.max()) + 1, i) for i, m in enumerate(levels)])
    cluster_of = np.concatenate([np.arange(int(m.max()) + 1) for m in levels])
    # Candidate x fine-cluster membership.
    member = np.concatenate(
        [(m[None, :] == np.arange(int(m.max()) + 1)[:, None]) for m in levels]
    ).astype(np.float64)
    counts = member @ fine
    z = np.full(len(counts), -1, np.int32)
    cands = SliceSet(level_of.astype(np.int32), cluster_of.astype(np.int32), z, z, z, counts)
    n_total = float(fine[:, LABELED].sum())
    x_total = float(fine[:, ERRORS].sum())
    lab = counts[:, LABELED]
    tested = (lab >= gates.min_support) & (n_total - lab >= gates.min_support)
    counts_t = np.where(tested[:, None], counts, np.nan)

    def removed_for(idx: NDArray[np.intp]):
        covered = np.zeros(len(fine), bool)

        def removed(picks: list[int]) -> NDArray[np.float64]:
            new = (member[idx[picks[-1]]] > 0) & ~covered
            covered[new] = True
            return member[idx][:, new] @ fine[new]

        return removed

    tests, picks = _discover(counts_t, removed_for, n_total, x_total, gates)
    return Discovery(cands, tests, picks, int(tested.sum()))


def cluster_levels(
    model: ClusterModel, assign: NDArray[np.int32], factor: int = 2, min_k: int = 4, seed: int = 0
) -> list[NDArray[np.int32]]:
    """cluster_levels_for with the sizes of `assign`."""
    sizes = np.bincount(assign, minlength=len(model.centers)).astype(np.float64)
    return cluster_levels_for(model, sizes, factor, min_k, seed)


def cluster_levels_for(
    model: ClusterModel, sizes: NDArray, factor: int = 2, min_k: int = 4, seed: int = 0
) -> list[NDArray[np.int32]]:
    """Fine clusters plus coarser groupings (k/2, k/4, ... ≥ min_k): maps fine → cluster id.

    Halving lets two halves of one blob that the fine level split merge back before it merges
    with a different blob. `sizes` are the fine clusters' numbers of rows.
    """
    k = len(model.centers)
    sizes = np.asarray(sizes, dtype=np.float64)
    levels = [np.arange(k, dtype=np.int32)]
    coarse_k = k // factor
    while coarse_k >= min_k:
        levels.append(coarsen(model.centers, sizes, coarse_k, seed))
        coarse_k //= factor
    return levels
