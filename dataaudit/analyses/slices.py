"""Slices: where the model fails, per metadata slice and per split, and failure slices it finds itself.

Requires: probs, labels. Uses metadata columns and embeddings when present; reads the
"label_errors" result (is_label_error) for label-error rates when that analysis ran.

An error is a labeled item whose predicted class differs from its given label. Three things:

- Given slices: every metadata value (categoricals: top values, "(other)", "(missing)"; numerics:
  quantile bins) and every pair of such slices from two columns, over all splits (split "all")
  and within each split that has labels. Each with support, error rate and label-error rate with
  Wilson intervals, and a one-sided exact binomial test against its split's rate, with
  Benjamini-Hochberg q-values over every given slice tested. Slices with fewer labeled items than
  the minimum support are not tested; their count is reported.
- Discovered rules: every 1- and 2-predicate conjunction (pairs bounded on wide tables, below)
  of metadata values, `x < t` / `x >= t` on quantile thresholds, and the split, counted exactly
  and tested the same way (BH over all of them, at half the FDR when clusters are searched
  too), kept when significant and at least
  `slice_min_lift` × or `slice_min_gap` above the overall rate, then de-duplicated by sequential
  covering (take the slice with the highest score, remove its rows, re-test the rest that
  passed on all their rows against the first-stage BH cutoff).
- Discovered clusters: k-means over L2-normalised embeddings at several granularities, tested,
  gated and covered the same way; each described by its over-represented metadata values, its
  majority class and its most frequent confusions.

Tables:
- "given": slice, columns, level, split, support, n_labeled, n_errors, error_rate (+ _low,
  _high), rest_error_rate, diff, lift, p_value, q_value, significant, score ((error_rate_low −
  split rate) × √n_labeled: lift traded against support), n_label_errors, label_error_rate
  (+ _low, _high).
- "discovered": rank, slice_id, kind (rule | cluster), slice, description, the same rate columns,
  score (on items no higher-ranked slice of its kind covers), excess_errors (errors beyond the
  overall rate), n_unlabeled, top_confusion, over_represented.
- "examples": slice_id, role (failure | to_label), rank, id, given_label, predicted_label,
  predicted_prob, similarity (to the slice's failures, for to_label items).
- "splits": split, support, n_labeled, n_errors, error_rate (+ CI), label_error_rate (+ CI).
- "items": id, failure_slice (highest-ranked discovered slice holding the item, "" if none),
  cluster (finest k-means cluster, when embeddings exist).
- "ranked" (the rows of slices.csv): the discovered slices in rank order, each with the ids of
  its example failures (example_failures) and of the unlabeled items to label (to_label), then
  the given slices, most severe first; kind tells them apart.
Summary: n_slices_tested, n_slices_below_min_support, n_given_slices_significant,
n_failure_slices, n_failure_rules, n_failure_clusters, worst_slice, worst_slice_error_rate
(highest error rate among significant slices, given or discovered; the overall error rate and
worst_slice "" when no slice is significantly worse than the rest), n_slice_pairs_tested,
n_slice_pairs_screened_out, n_slice_columns_skipped, n_given_slices_not_listed.

Wide tables (every column without a role is metadata, so tabular users meet them by default):
- 2-condition rules are counted exhaustively while they number at most `slice_max_pairs`.
  Beyond that, single conditions are screened: only pairs holding one of the strongest single
  conditions (smallest p-values, as many as fit the cap) are tested, each with every condition
  of every other column. The rules' BH correction still counts every pair the exhaustive search
  could test (screened-out ones as p = 1), so screening never adds a discovery: selecting pairs
  on the same errors would bias their p-values, and a family of the tested pairs alone would
  not account for that. A pair neither of whose conditions stands out alone can be missed.
- Given pairs of values are listed only when they fit `slice_max_pairs` (a choice made on
  supports, not errors); beyond `slice_max_given` tested given slices, the table keeps every
  significant one and the `slice_given_per_column` most severe per column.
The notes say what was screened out and which columns were skipped, and why.

Engine form (`run_on`, any dataaudit.engine; `run` is it with InProcessEngine). Every pass is a
kernel over chunks reduced on the driver (slicing.py's counting on each chunk's codes):
1. profile: per metadata column, rows, missing values, numeric dtype, distinct values with counts
   and first positions (numbers up to 11 distinct, text up to slicing.DISTINCT_CAP; a text
   column with more is skipped, as id-like when that is past half its rows), the smallest
   number; outcome counts per split. Categorical levels follow (count, first appearance).
2. numeric thresholds: quantiles of a hash sample of rows (engine/sample.py), exact (every row)
   up to `quantile_rows` rows (100,000, fewer per column on wide tables), a uniform sample above.
3. contingency counts per split and level of every column; then, when they are searched, per
   split and pair of levels of every column pair (exhaustive) or, when screened, the level
   counts of every column on each anchor's rows (one pass for all anchors).
4. sequential covering: one pass per pick (the candidates' counts on the rows it newly covers).
   Clusters: k-means on the same sampled rows as in process, then outcome counts per fine
   cluster (one pass); coarser levels and covering follow from those counts on the driver.
5. description: per discovered slice, its confusions, metadata levels, classes and most
   confident failures (exact top-k); the unlabeled rows nearest its failures (top-k of the
   highest cosine similarity); the items table (every row up to engine.MAX_DRIVER_ROWS, else the
   rows of failure slices) and, with a parts folder, every row's as Parquet parts
   (audit/slices.all_items.parquet/).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit import slicing as sl
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import (
    MAX_DRIVER_ROWS,
    Chunk,
    Engine,
    add,
    concat,
    label_names,
    select_top,
    top_k,
)
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.engine.sample import sample_rows
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import wilson_interval

ALL_SPLITS = "all"


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    notes: list[str] = []
    classes = engine.classes
    flags = _flag_source(ctx, classes)
    if flags is None:
        notes.append("Label-error rates are missing: the label_errors analysis did not run.")

    with ctx.progress.step("encode slice metadata"):
        profiles, split_totals = engine.map_reduce(_profile, _merge_profile, flags)
        specs, skipped_columns = column_specs(engine, profiles, config)
    notes += skipped_notes(skipped_columns)
    split_names = sorted(split_totals)
    totals = np.array([split_totals[name] for name in split_names])  # (G, 4)
    multi = len(split_names) > 1
    n_labeled = int(totals[:, sl.LABELED].sum())
    min_support = sl.min_support_for(
        n_labeled, config.slice_min_support, config.slice_min_support_fraction
    )
    gates = sl.Gates(
        min_support=min_support,
        min_lift=config.slice_min_lift,
        min_gap=config.slice_min_gap,
        fdr=config.slice_fdr,
        max_slices=config.slice_max_discovered,
        confidence=config.confidence_level,
    )
    for name, t in zip(split_names, totals, strict=True):
        if multi and t[sl.LABELED] == 0:
            notes.append(f"Split {name!r} has no labeled items: its slices have no error rates.")

    layout = _Layout(tuple(specs), tuple(split_names), flags)
    counts = EngineCounts(engine, layout)
    group_col = sl.encode_groups(np.zeros(0, np.int32), split_names) if multi else None
    enum = sl.enumerate_counted(
        specs,
        counts,
        per_group=multi,
        min_support=min_support,
        group_column=group_col,
        max_pairs=config.slice_max_pairs,
    )
    screening = enum.screening
    notes += screening_notes(screening, len(specs), multi, config.slice_max_pairs)
    n_given_tested = len(enum.given)
    given = given_table(
        specs,
        enum.given,
        totals,
        split_names,
        gates,
        config.slice_max_given,
        config.slice_given_per_column,
    )
    if len(given) < n_given_tested:
        notes.append(
            f"The metadata-slice table keeps {len(given):,} of the {n_given_tested:,} given slices tested: every significant one, then the {config.slice_given_per_column} most severe per column ({config.slice_max_given:,} rows at most; slice_max_given, slice_given_per_column)."
        )
    rule_columns = [*specs, group_col] if multi else list(specs)
    # Rules and clusters share the false-discovery budget, so discovery as a whole controls it.
    with_embeddings = bool(getattr(engine, "has_embeddings", False))
    searches_clusters = with_embeddings and n_labeled >= 4 * min_support
    family = dataclasses.replace(gates, fdr=gates.fdr / (2 if searches_clusters else 1))
    n_total = float(totals[:, sl.LABELED].sum())
    x_total = float(totals[:, sl.ERRORS].sum())
    discovered_rules = sl.discover_counted_rules(
        enum, n_total, x_total, family, lambda idx: _engine_cover(engine, layout, enum.rules, idx)
    )

    clusters: Clusters | None = None
    discovered_clusters = None
    if searches_clusters:
        with ctx.progress.step("cluster embeddings"):
            clusters = fit_clusters(engine, layout, int(totals[:, sl.ALL].sum()), n_labeled,
                                    min_support, config)  # fmt: skip
            discovered_clusters = sl.discover_fine_clusters(clusters.fine, clusters.levels, family)
    layout = dataclasses.replace(layout, clusters=clusters)

    base = float(x_total / max(n_labeled, 1))
    rows, defs = [], []
    for pick in discovered_rules.picks:
        c = discovered_rules.candidates
        i = pick.index
        name = sl.slice_name(rule_columns, c, i, given=False)
        rows.append(_discovered_row("rule", name, name, discovered_rules, pick))
        defs.append(("rule", int(c.col_a[i]), int(c.pred_a[i]), int(c.col_b[i]), int(c.pred_b[i])))
    if discovered_clusters is not None:
        sizes = [int(m.max()) + 1 for m in clusters.levels]
        for pick in discovered_clusters.picks:
            lvl = int(discovered_clusters.candidates.col_a[pick.index])
            cid = int(discovered_clusters.candidates.pred_a[pick.index])
            name = f"cluster {cid} of {sizes[lvl]}"
            rows.append(_discovered_row("cluster", name, "", discovered_clusters, pick))
            defs.append(("cluster", lvl, cid, -1, -1))

    overall = [t.sum(0)[:, sl.ALL] for t in counts.singles]
    n_rows = int(totals[:, sl.ALL].sum())
    discovered, examples = describe_discovered(
        engine, layout, rows, defs, overall, n_rows, config, base, with_embeddings
    )
    order = discovered.index.to_numpy()
    defs = [defs[i] for i in order]
    discovered = discovered.reset_index(drop=True)
    items, items_parts = _items(engine, layout, defs, list(discovered["slice_id"]), n_rows)

    worst_name, worst_rate = "", base
    candidates = pd.concat(
        [given.loc[given["significant"], ["slice", "split", "error_rate"]], discovered],
        ignore_index=True,
    )
    if len(candidates):
        top = candidates.sort_values("error_rate", ascending=False, kind="stable").iloc[0]
        split = top.get("split")
        suffix = f" (split {split})" if isinstance(split, str) and split != ALL_SPLITS else ""
        worst_name, worst_rate = f"{top['slice']}{suffix}", float(top["error_rate"])

    n_tested = n_given_tested + discovered_rules.n_tested
    if discovered_clusters is not None:
        n_tested += discovered_clusters.n_tested
    skipped_small = f"{enum.n_given_too_small:,} given slices had fewer and were skipped"
    notes.append(
        f"A slice needs at least {min_support:,} labeled items to be tested ({skipped_small})."
    )
    notes.append(
        f"p-values are one-sided exact binomial tests that a slice errs more than its split overall, corrected by Benjamini-Hochberg: given slices at q = {config.slice_fdr:g}; discovered rules and clusters share q = {config.slice_fdr:g} (half each when both are searched)."
    )
    notes.append(
        f"Discovered slices must also err at least {config.slice_min_lift:g}x the overall rate or {config.slice_min_gap:.0%} above it."
    )
    if not with_embeddings:
        notes.append("No embeddings: failure clusters were not searched.")
    if n_rows > MAX_DRIVER_ROWS:
        notes.append(
            f"The items table here holds the items of failure slices ({MAX_DRIVER_ROWS:,} at most); every item is in the Parquet parts of audit/slices.all_items.parquet/."
        )
    notes += layout_notes(profiles, specs, n_rows)
    n_rules = sum(discovered["kind"] == "rule")
    params = {
        "min_support": min_support,
        "fdr": config.slice_fdr,
        "min_lift": config.slice_min_lift,
        "min_gap": config.slice_min_gap,
        "numeric_bins": config.slice_numeric_bins,
        "given_bins": config.slice_given_bins,
        "clusters": [] if clusters is None else [int(m.max()) + 1 for m in clusters.levels],
        "max_pairs": config.slice_max_pairs,
        "pairs_exhaustive": screening.exhaustive,
        "pair_anchors": screening.n_anchors,
        "rule_family": screening.rule_family,
        "skipped_columns": dict(skipped_columns),
        "confidence_level": config.confidence_level,
        "overall_error_rate": base,
    }
    if items_parts is not None:
        params["items_parts"] = items_parts
    return AnalysisResult(
        name="slices",
        tables={
            "given": given,
            "discovered": discovered,
            "examples": examples,
            "splits": split_table(totals, split_names, config.confidence_level),
            "items": items,
            "ranked": ranked_table(discovered, given, examples),
        },
        summary={
            "n_slices_tested": int(n_tested),
            "n_slices_below_min_support": int(enum.n_given_too_small),
            "n_given_slices_significant": int(given["significant"].sum()),
            "n_failure_slices": len(discovered),
            "n_failure_rules": int(n_rules),
            "n_failure_clusters": len(discovered) - int(n_rules),
            "worst_slice": worst_name,
            "worst_slice_error_rate": worst_rate,
            "n_slice_pairs_tested": int(screening.n_pairs_tested),
            "n_slice_pairs_screened_out": 0
            if screening.exhaustive
            else int(screening.n_pairs_possible - screening.n_pairs_tested),
            "n_slice_columns_skipped": len(skipped_columns),
            "n_given_slices_not_listed": int(n_given_tested - len(given)),
        },
        params=params,
        notes=tuple(notes),
    )


ANALYSIS = Analysis(
    name="slices",
    title="Slices and failure slices",
    run=run,
    requires=("probs", "labels"),
    after=("label_errors",),
)


# -- helpers ------------------------------------------------------------------------------------


# -- the engine form's passes -------------------------------------------------------------------
# Rows of numeric values the quantile sample holds (per column, within a budget of cells): the
# thresholds are exact quantiles up to that many rows, quantiles of a uniform sample above.
QUANTILE_ROWS = 100_000
QUANTILE_CELLS = 10_000_000


@dataclass(frozen=True)
class Clusters:
    model: sl.ClusterModel
    levels: list[NDArray[np.int32]]  # fine cluster -> cluster id, per granularity
    fine: NDArray[np.float64]  # counts per fine cluster (k, 4)


@dataclass(frozen=True)
class _Layout:
    """What every pass needs to rebuild a chunk's codes and outcomes (small, picklable)."""

    specs: tuple[sl.ColumnSpec, ...]
    split_names: tuple[str, ...]
    flags: object  # chunk -> is_label_error per row, or None
    clusters: Clusters | None = None
    # Each chunk's codes (and cluster assignments) by its first position and length. In process
    # every pass gets this very object, so they are computed once per run, in the memory the
    # in-process analysis always used (an int32 per row and column); on Dask each task unpickles
    # its own empty copy and computes them.
    memo: dict = dataclasses.field(default_factory=dict, compare=False, repr=False)

    def __getstate__(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {"memo": {}}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)


class _FlagsById:
    """is_label_error per row from an in-memory label_errors items table, joined by id (rows
    the table lacks are not flagged)."""

    def __init__(self, items: pd.DataFrame):
        self.index = pd.Index(items["id"])
        self.values = items["is_label_error"].fillna(False).to_numpy(dtype=bool)

    def __call__(self, chunk: Chunk) -> NDArray[np.bool_]:
        position = self.index.get_indexer(chunk.ids)
        return np.where(position >= 0, self.values[np.maximum(position, 0)], False)


class _FlagsByScores:
    """is_label_error per row from an engine-form label_errors result (LabelErrorScores)."""

    def __init__(self, scores):
        self.scores = scores

    def __call__(self, chunk: Chunk) -> NDArray[np.bool_]:
        s = self.scores(chunk)
        out = np.zeros(len(chunk), dtype=bool)
        out[s["rows"]] = s["is_label_error"]
        return out


def _flag_source(ctx: AuditContext, classes: tuple[str, ...]):
    """chunk -> is_label_error per row; None when the label_errors analysis did not run."""
    from dataaudit.analyses.label_errors_chunks import scores_of

    result = ctx.results.get("label_errors")
    if result is None:
        return None
    if "flag_cut" in result.params:
        return _FlagsByScores(scores_of(result, classes))
    items = result.tables.get("items")
    if items is None or "id" not in items.columns or "is_label_error" not in items.columns:
        return None
    return _FlagsById(items)


def _outcome(chunk: Chunk, flags) -> tuple[NDArray[np.int8], NDArray[np.int64]]:
    """Per row: the outcome code (slicing.outcome_codes) and the predicted class."""
    labeled = chunk.labeled
    predicted = (
        np.asarray(chunk.probs).argmax(axis=1).astype(np.int64)
        if len(chunk)
        else np.zeros(0, np.int64)
    )
    errors = labeled & (predicted != chunk.labels)
    return sl.outcome_codes(labeled, errors, None if flags is None else flags(chunk)), predicted


def _profile(chunk: Chunk, flags) -> tuple[dict, dict]:
    """Kernel: each metadata column's profile, and outcome counts (4,) per split."""
    outcome, _ = _outcome(chunk, flags)
    splits = np.asarray(chunk.splits).astype(str)
    totals = {
        str(name): np.bincount(outcome[splits == name], minlength=sl.N_OUTCOMES) @ sl.REDUCE
        for name in np.unique(splits)
    }
    return sl.profile_metadata(chunk.metadata, chunk.pos), totals


def _merge_profile(a: tuple, b: tuple) -> tuple:
    return sl.merge_metadata_profiles(a[0], b[0]), add(a[1], b[1])


def _numeric_rows(chunk: Chunk, names: tuple[str, ...]) -> pd.DataFrame:
    meta = chunk.metadata
    frame = pd.DataFrame(
        {name: meta[name].to_numpy(dtype=np.float64, na_value=np.nan) for name in names}
    )
    frame.insert(0, "pos", chunk.pos)
    return frame


def column_specs(
    engine: Engine, profiles: dict[str, sl.ColumnProfile], config: AuditConfig
) -> tuple[list[sl.ColumnSpec], dict[str, str]]:
    """The slice columns' encodings from the profiles, numeric thresholds at the quantiles of a
    hash sample of rows (every row up to quantile_rows(...))."""
    kinds, skipped = sl.column_kinds(profiles)
    numeric = tuple(name for name, kind in kinds.items() if kind == "numeric")
    sample = None
    if numeric:
        rows = quantile_rows(len(numeric))
        sample = sample_rows(engine, _numeric_rows, rows, numeric, seed=config.seed)
    bins = config.slice_numeric_bins
    specs = []
    for name, kind in kinds.items():
        p = profiles[name]
        if kind == "categorical":
            specs.append(sl.categorical_spec(name, p, config.slice_top_values))
            continue
        x = sample[name].to_numpy(np.float64)
        present = x[np.isfinite(x)]
        raw = np.quantile(present, np.arange(1, bins) / bins) if len(present) else np.zeros(0)
        has_missing = p.n_missing + p.n_infinite > 0
        specs.append(
            sl.numeric_spec(name, raw, p.minimum, has_missing, bins, config.slice_given_bins)
        )
    return specs, skipped


def quantile_rows(n_numeric: int) -> int:
    return int(max(10_000, min(QUANTILE_ROWS, QUANTILE_CELLS // max(n_numeric, 1))))


def layout_notes(profiles: dict, specs, n_rows: int) -> list[str]:
    numeric = [s for s in specs if s.kind == "numeric"]
    if numeric and n_rows > quantile_rows(len(numeric)):
        return [
            f"Numeric thresholds are quantiles of a uniform sample of {quantile_rows(len(numeric)):,} of the {n_rows:,} rows; every row is counted in its bin."
        ]
    return []


def _chunk_columns(chunk: Chunk, layout: _Layout):
    """(outcome, predicted, groups, encoded metadata columns, rule columns) of a chunk."""
    key = ("columns", int(chunk.pos[0]) if len(chunk) else -1, len(chunk))
    if key not in layout.memo:
        layout.memo[key] = _encode_chunk(chunk, layout)
    return layout.memo[key]


def _assign(chunk: Chunk, layout: _Layout, model: sl.ClusterModel) -> NDArray[np.int32]:
    key = ("clusters", int(chunk.pos[0]) if len(chunk) else -1, len(chunk))
    if key not in layout.memo:
        layout.memo[key] = sl.assign_clusters(chunk.embeddings, model)
    return layout.memo[key]


def _encode_chunk(chunk: Chunk, layout: _Layout):
    outcome, predicted = _outcome(chunk, layout.flags)
    # Split names are text (validated); a hash lookup, not a sort of 200,000 strings.
    names = pd.Index(layout.split_names, dtype=object)
    groups = names.get_indexer(np.asarray(chunk.splits, dtype=object)).astype(np.int32)
    meta = chunk.metadata
    columns = [spec.encode(meta[spec.name]) for spec in layout.specs]
    rule_columns = list(columns)
    if len(layout.split_names) > 1:
        rule_columns.append(sl.encode_groups(groups, layout.split_names))
    return outcome, predicted, groups, columns, rule_columns


def _singles(chunk: Chunk, layout: _Layout) -> tuple:
    """Kernel: outcome counts per split (G, 4) and per split and level of each column."""
    outcome, _, groups, columns, _ = _chunk_columns(chunk, layout)
    g = len(layout.split_names)
    total = sl.count_table([groups], [g], outcome)
    singles = tuple(sl.count_table([groups, c.codes], [g, c.n_levels], outcome) for c in columns)
    return total, singles


def _pair_tables(chunk: Chunk, layout: _Layout, pairs: list[tuple[int, int]]) -> tuple:
    """Kernel: outcome counts per split and pair of levels, for each column pair."""
    outcome, _, groups, columns, _ = _chunk_columns(chunk, layout)
    g = len(layout.split_names)
    return tuple(
        sl.count_table(
            [groups, columns[a].codes, columns[b].codes],
            [g, columns[a].n_levels, columns[b].n_levels],
            outcome,
        )
        for a, b in pairs
    )


def _anchor_levels(chunk: Chunk, layout: _Layout, anchors: list[tuple[int, int]]) -> tuple:
    """Kernel: per anchor, the counts of every level of every rule column on its rows."""
    outcome, _, _, _, rule_columns = _chunk_columns(chunk, layout)
    return tuple(
        sl._level_counts(rule_columns, np.flatnonzero(rule_columns[c].rule_mask(p)), outcome)
        for c, p in anchors
    )


class EngineCounts:
    """slicing.enumerate_counted's contingency tables, each set counted in one engine pass."""

    def __init__(self, engine: Engine, layout: _Layout):
        self.engine, self.layout = engine, layout
        self.total, singles = engine.map_reduce(_singles, add, layout)
        self.singles = list(singles)

    def pairs(self, pairs: list[tuple[int, int]]):
        if not pairs:
            return []
        tables = self.engine.map_reduce(_pair_tables, add, self.layout, pairs)
        return [(a, b, t) for (a, b), t in zip(pairs, tables, strict=True)]

    def anchor_levels(self, anchors):
        if not anchors:
            return []
        return list(self.engine.map_reduce(_anchor_levels, add, self.layout, list(anchors)))


def _covered_counts(
    chunk: Chunk, layout: _Layout, candidates: sl.SliceSet, picks: list[int]
) -> NDArray[np.float64]:
    """Kernel: every candidate's counts on the rows of the last pick no earlier pick covers."""
    outcome, _, _, _, rule_columns = _chunk_columns(chunk, layout)
    mask = sl.slice_mask(rule_columns, candidates, picks[-1], given=False)
    for earlier in picks[:-1]:
        mask &= ~sl.slice_mask(rule_columns, candidates, earlier, given=False)
    return sl.rule_counts_on(rule_columns, candidates, outcome)(np.flatnonzero(mask))


def _engine_cover(engine: Engine, layout: _Layout, rules: sl.SliceSet, idx: NDArray[np.intp]):
    """sequential_cover's `removed` for rule candidates `idx`: one engine pass per pick."""
    candidates = rules.take(idx)

    def removed(picks: list[int]) -> NDArray[np.float64]:
        return engine.map_reduce(_covered_counts, add, layout, candidates, list(picks))

    return removed


def _rows_at(chunk: Chunk, positions: NDArray[np.int64]) -> pd.DataFrame:
    rows = np.flatnonzero(np.isin(chunk.pos, positions))
    emb = np.asarray(chunk.embeddings[rows], dtype=np.float32)
    return pd.DataFrame({"pos": chunk.pos[rows], "emb": list(emb)})


def _fine_counts(chunk: Chunk, layout: _Layout, model: sl.ClusterModel) -> NDArray:
    outcome = _chunk_columns(chunk, layout)[0]
    assign = _assign(chunk, layout, model)
    return sl.count_table([assign], [len(model.centers)], outcome)


def fit_clusters(
    engine: Engine,
    layout: _Layout,
    n_rows: int,
    n_labeled: int,
    min_support: int,
    config: AuditConfig,
) -> Clusters:
    """k-means on the same sample of rows as in process (positions drawn on the driver), then
    the outcome counts per fine cluster in one pass; coarser levels from the clusters' sizes."""
    k = int(min(config.slice_clusters, max(4, n_labeled // (2 * min_support))))
    positions, rng = sl.kmeans_sample(n_rows, config.slice_cluster_sample, config.seed)
    found = engine.map_reduce(_rows_at, concat, positions).sort_values("pos", kind="stable")
    rows = np.stack(found["emb"].to_numpy()).astype(np.float32)
    model = sl.fit_kmeans_rows(rows, k, rng=rng, seed=config.seed)
    fine = engine.map_reduce(_fine_counts, add, layout, model)
    levels = sl.cluster_levels_for(model, fine[:, sl.ALL], seed=config.seed)
    return Clusters(model, levels, fine)


def _slice_masks(chunk: Chunk, layout: _Layout, defs: list[tuple]) -> list[NDArray[np.bool_]]:
    """Row masks of discovered slices: ("rule", col_a, pred_a, col_b, pred_b) or
    ("cluster", level, cluster id, -1, -1)."""
    _, _, _, _, rule_columns = _chunk_columns(chunk, layout)
    assign = None
    masks = []
    for kind, a, pa, b, pb in defs:
        if kind == "rule":
            mask = rule_columns[a].rule_mask(pa)
            if b >= 0:
                mask = mask & rule_columns[b].rule_mask(pb)
        else:
            if assign is None:
                assign = _assign(chunk, layout, layout.clusters.model)
            mask = layout.clusters.levels[a][assign] == pa
        masks.append(mask)
    return masks


# How many of a slice's most confident failures the unlabeled items are compared with.
TO_LABEL_FAILURES = 20


def _slice_stats(chunk: Chunk, layout: _Layout, defs: list[tuple], k: int, n_failures: int):
    """Kernel: per discovered slice, (given, predicted) counts of its errors, rows per level of
    every metadata column inside it, labeled rows per class, rows; and its most confident
    failures (a top-k frame per slice)."""
    outcome, predicted, _, columns, _ = _chunk_columns(chunk, layout)
    labels = chunk.labels
    errors = np.isin(outcome, (2, 4))
    conf = (
        np.asarray(chunk.probs).max(axis=1).astype(np.float32)
        if len(chunk)
        else np.zeros(0, np.float32)
    )
    stats, frames = [], []
    emb = chunk.embeddings
    for i, mask in enumerate(_slice_masks(chunk, layout, defs)):
        err = np.flatnonzero(mask & errors)
        lab = mask & chunk.labeled
        stats.append(
            (
                np.bincount(labels[err] * k + predicted[err], minlength=k * k),
                tuple(np.bincount(c.codes[mask], minlength=c.n_levels) for c in columns),
                np.bincount(labels[lab], minlength=k),
                int(mask.sum()),
            )
        )
        frame = pd.DataFrame(
            {
                "pos": chunk.pos[err],
                "slice": i,
                "conf": conf[err],
                "id": chunk.ids[err],
                "label": labels[err],
                "predicted": predicted[err],
            }
        )
        if emb is not None:
            frame["emb"] = list(np.asarray(emb[err], dtype=np.float32))
        frames.append(select_top(frame, n_failures, "conf"))
    failures = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return tuple(stats), failures


def _merge_stats(a: tuple, b: tuple, k: int) -> tuple:
    return add(a[0], b[0]), _merge_top(a[1], b[1], k, "conf")


def _to_label_rows(chunk: Chunk, layout: _Layout, defs: list[tuple], failures: dict, k: int):
    """Kernel: per slice, its unlabeled rows' highest cosine similarity to its failures (the
    TO_LABEL_FAILURES most confident), top k."""
    emb = chunk.embeddings
    unlabeled = ~chunk.labeled
    _, predicted = _outcome(chunk, None)
    frames = []
    for i, mask in enumerate(_slice_masks(chunk, layout, defs)):
        if i not in failures:
            continue
        rows = np.flatnonzero(mask & unlabeled)
        x = sl._normalized(emb[rows])
        sims = (x @ failures[i].T).max(axis=1) if len(rows) else np.zeros(0, np.float32)
        probs = np.asarray(chunk.probs[rows])
        frame = pd.DataFrame(
            {
                "pos": chunk.pos[rows],
                "slice": i,
                "similarity": sims.astype(np.float32),
                "id": chunk.ids[rows],
                "predicted": predicted[rows],
                "conf": probs.max(axis=1).astype(np.float32)
                if len(rows)
                else np.zeros(0, np.float32),
            }
        )
        frames.append(select_top(frame, k, "similarity"))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _items_rows(chunk: Chunk, layout: _Layout, defs: list[tuple], slice_ids: list[str]):
    """Kernel: id, failure_slice (the highest-ranked discovered slice holding the row), rank
    (of that slice; 0 = none) and the finest cluster."""
    failure = np.full(len(chunk), "", dtype=object)
    rank = np.zeros(len(chunk), dtype=np.int64)
    masks = _slice_masks(chunk, layout, defs)
    for r, (sid, mask) in enumerate(zip(slice_ids[::-1], masks[::-1], strict=True)):
        failure[mask] = sid
        rank[mask] = len(slice_ids) - r
    frame = pd.DataFrame({"pos": chunk.pos, "id": chunk.ids, "failure_slice": failure})
    if layout.clusters is not None:
        frame["cluster"] = _assign(chunk, layout, layout.clusters.model)
    frame["_order"] = np.where(rank > 0, -rank, -(len(slice_ids) + 1)).astype(np.float64)
    return frame


def _items_in_slices(chunk: Chunk, layout: _Layout, defs, slice_ids) -> pd.DataFrame:
    frame = _items_rows(chunk, layout, defs, slice_ids)
    return frame[frame["failure_slice"] != ""]


def _items_table(chunk: Chunk, layout, defs, slice_ids) -> pd.DataFrame:
    return _items_rows(chunk, layout, defs, slice_ids).drop(columns=["pos", "_order"])


def _items(engine: Engine, layout: _Layout, defs, slice_ids, n_rows: int):
    """The items table (every row up to MAX_DRIVER_ROWS, else the rows of failure slices by
    slice rank, that many at most) and the Parquet parts of every row."""
    parts = engine.write_parts(_items_table, "slices.all_items.parquet", layout, defs, slice_ids)
    if n_rows <= MAX_DRIVER_ROWS:
        frame = engine.map_reduce(_items_rows, concat, layout, defs, slice_ids)
        frame = frame.sort_values("pos", kind="stable")
    else:
        frame = top_k(engine, _items_in_slices, MAX_DRIVER_ROWS, "_order", layout, defs, slice_ids)
    return frame.drop(columns=["pos", "_order"]).reset_index(drop=True), parts


def skipped_notes(skipped: dict[str, str], show: int = 5) -> list[str]:
    """One note per reason a metadata column was not used, naming a few of the columns."""
    by_reason: dict[str, list[str]] = {}
    for name, reason in skipped.items():
        by_reason.setdefault(reason, []).append(name)
    notes = []
    for reason, names in by_reason.items():
        listed = ", ".join(repr(n) for n in names[:show])
        more = f" and {len(names) - show:,} more" if len(names) > show else ""
        if len(names) == 1:
            notes.append(f"Metadata column {listed} is not used as a slice: it {reason}.")
        else:
            notes.append(
                f"{len(names):,} metadata columns are not used as slices: each {reason} ({listed}{more})."
            )
    return notes


def screening_notes(s: sl.Screening, n_columns: int, with_split: bool, max_pairs: int) -> list[str]:
    """What the bounded 2-condition search tested and what it screened out."""
    notes = []
    split = " and the split" if with_split else ""
    if not s.exhaustive:
        notes.append(
            f"2-condition rules were screened: {n_columns:,} metadata columns{split} give {s.n_single:,} single conditions and up to {s.n_pairs_possible:,} pairs, more than the {max_pairs:,} tested at most (slice_max_pairs). Pairs were tested for the {s.n_anchors:,} strongest single conditions (smallest p-values), each with every condition of every other column: {s.n_pairs_tested:,} pairs tested, {s.n_pairs_possible - s.n_pairs_tested:,} screened out."
        )
        notes.append(
            f"Screened-out pairs still count in the rules' Benjamini-Hochberg correction, as untested (p = 1; family {s.rule_family:,}), so screening can only lose discoveries the full search would make, never add one (a family of the tested pairs alone would be too lenient: they were chosen on the same errors). What it can miss is a pair neither of whose conditions errs notably more on its own."
        )
    if not s.given_pairs:
        notes.append(
            f"Metadata slices list single values only: pairs of values from two columns would be up to {s.n_given_pairs_possible:,} slices, more than {max_pairs:,} (discovered rules still search pairs)."
        )
    return notes


def most_severe_per_column(
    col_a: NDArray[np.int32], col_b: NDArray[np.int32], per_column: int
) -> NDArray[np.bool_]:
    """Slices among the `per_column` first of each column, for slices in severity order (a pair
    counts for both of its columns)."""
    pair = col_b >= 0
    pos = np.concatenate([np.arange(len(col_a)), np.flatnonzero(pair)])
    col = np.concatenate([col_a, col_b[pair]])
    order = np.lexsort((pos, col))
    col, pos = col[order], pos[order]
    starts = np.flatnonzero(np.r_[True, col[1:] != col[:-1]])
    rank = np.arange(len(col)) - np.repeat(starts, np.diff(np.r_[starts, len(col)]))
    top = np.zeros(len(col_a), bool)
    top[pos[rank < per_column]] = True
    return top


def _rates(frame: pd.DataFrame, counts: NDArray, confidence: float) -> None:
    """Add error and label-error rates with Wilson intervals from a counts array (m, 4)."""
    n = counts[:, sl.LABELED]
    for rate, x in (
        ("error_rate", counts[:, sl.ERRORS]),
        ("label_error_rate", counts[:, sl.LABEL_ERRORS]),
    ):
        with np.errstate(invalid="ignore", divide="ignore"):
            frame[rate] = np.where(n > 0, x / np.maximum(n, 1), np.nan)
        frame[f"{rate}_low"], frame[f"{rate}_high"] = wilson_interval(x, n, confidence)


def given_table(
    columns: list[sl.EncodedColumn],
    s: sl.SliceSet,
    totals: NDArray,
    split_names: list[str],
    gates: sl.Gates,
    max_rows: int | None = None,
    per_column: int = 5,
) -> pd.DataFrame:
    """Tested given slices, most severe first: significant ones by score, then the rest.

    Beyond `max_rows` slices, only the significant ones and the `per_column` most severe of
    each column are kept, `max_rows` at most.
    """
    max_rows = len(s) if max_rows is None else max_rows
    group = s.group
    tot = np.where(group[:, None] < 0, totals.sum(0), totals[group.clip(0)])
    c = s.counts
    tests = sl.test_rates(
        c[:, sl.LABELED], c[:, sl.ERRORS], tot[:, sl.LABELED], tot[:, sl.ERRORS], gates.confidence
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        split_rate = tot[:, sl.ERRORS] / tot[:, sl.LABELED]
    names = _names(columns, s)
    col_names = np.array([col.name for col in columns] + [""], dtype=object)
    both = np.where(
        s.col_b >= 0, col_names[s.col_a] + " x " + col_names[s.col_b], col_names[s.col_a]
    )
    frame = pd.DataFrame(
        {
            "slice": names,
            "columns": both,
            "level": np.where(s.col_b >= 0, 2, 1),
            "split": np.array([ALL_SPLITS, *split_names], dtype=object)[group + 1],
            "support": c[:, sl.ALL].astype(np.int64),
            "n_labeled": c[:, sl.LABELED].astype(np.int64),
            "n_errors": c[:, sl.ERRORS].astype(np.int64),
        }
    )
    _rates(frame, c, gates.confidence)
    frame["rest_error_rate"] = tests.rest_rate
    frame["diff"] = tests.rate - tests.rest_rate
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["lift"] = tests.rate / split_rate
    frame["p_value"] = tests.p_value
    frame["q_value"] = tests.q_value
    frame["significant"] = (tests.q_value <= gates.fdr) & sl.lift_ok(
        tests.rate, split_rate, gates.min_lift, gates.min_gap
    )
    frame["score"] = sl.slice_score(tests.low, c[:, sl.LABELED], split_rate)
    frame["n_label_errors"] = c[:, sl.LABEL_ERRORS].astype(np.int64)
    label_cols = [
        "n_label_errors",
        "label_error_rate",
        "label_error_rate_low",
        "label_error_rate_high",
    ]
    frame = frame[[col for col in frame.columns if col not in label_cols] + label_cols]
    frame = frame.sort_values(["significant", "score"], ascending=False, kind="stable")
    if len(frame) > max_rows:
        order = frame.index.to_numpy()
        top = most_severe_per_column(s.col_a[order], s.col_b[order], per_column)
        frame = frame[frame["significant"].to_numpy(bool) | top].head(max_rows)
    return frame.reset_index(drop=True)


def _names(columns: list[sl.EncodedColumn], s: sl.SliceSet) -> NDArray:
    """Given-slice names, vectorised: one lookup table of names per column."""
    offsets = np.cumsum([0] + [len(col.given_names) for col in columns])
    table = np.array([n for col in columns for n in col.given_names] + [""], dtype=object)
    a = table[offsets[s.col_a] + s.pred_a]
    b = table[np.where(s.col_b >= 0, offsets[s.col_b.clip(0)] + s.pred_b, len(table) - 1)]
    return np.where(s.col_b >= 0, a + " and " + b, a)


def _discovered_row(
    kind: str, name: str, description: str, found: sl.Discovery, pick: sl.Pick
) -> dict:
    i = pick.index
    c = found.candidates.counts[i]
    return {
        "kind": kind,
        "slice": name,
        "description": description,
        "counts": c,
        "score": pick.score,
        "new_labeled": int(pick.residual[sl.LABELED]),
        "rest_error_rate": float(found.tests.rest_rate[i]),
        "p_value": float(found.tests.p_value[i]),
        "q_value": float(found.tests.q_value[i]),
    }


def describe_discovered(
    engine: Engine,
    layout: _Layout,
    rows: list[dict],
    defs: list[tuple],
    overall: list[NDArray],
    n_rows: int,
    config: AuditConfig,
    base: float,
    with_embeddings: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The discovered table (ranked by score) and example failures / items to label per slice."""
    cols = [
        "rank", "slice_id", "kind", "slice", "description", "support", "n_labeled", "n_errors",
        "error_rate", "error_rate_low", "error_rate_high", "rest_error_rate", "lift", "score",
        "excess_errors",
        "new_labeled", "p_value", "q_value", "n_label_errors", "label_error_rate",
        "label_error_rate_low", "label_error_rate_high", "n_unlabeled", "top_confusion",
        "over_represented",
    ]  # fmt: skip
    example_cols = [
        "slice_id", "role", "rank", "id", "given_label", "predicted_label", "predicted_prob",
        "similarity",
    ]  # fmt: skip
    if not rows:
        return pd.DataFrame(columns=cols), pd.DataFrame(columns=example_cols)
    counts = np.array([r.pop("counts") for r in rows])
    frame = pd.DataFrame(rows)
    frame["support"] = counts[:, sl.ALL].astype(np.int64)
    frame["n_labeled"] = counts[:, sl.LABELED].astype(np.int64)
    frame["n_errors"] = counts[:, sl.ERRORS].astype(np.int64)
    frame["n_label_errors"] = counts[:, sl.LABEL_ERRORS].astype(np.int64)
    _rates(frame, counts, config.confidence_level)
    frame["lift"] = frame["error_rate"] / base if base > 0 else np.nan
    frame["n_unlabeled"] = frame["support"] - frame["n_labeled"]
    frame["excess_errors"] = frame["n_errors"] - base * frame["n_labeled"]
    frame = frame.sort_values("score", ascending=False, kind="stable")
    frame["rank"] = np.arange(1, len(frame) + 1)
    counter = {"rule": 0, "cluster": 0}
    ids = []
    for kind in frame["kind"]:
        counter[kind] += 1
        ids.append(f"{kind[0].upper()}{counter[kind]}")
    frame["slice_id"] = ids

    k = len(engine.classes)
    n_failures = max(config.slice_examples, TO_LABEL_FAILURES if with_embeddings else 0)
    stats, failures = engine.map_reduce(
        _slice_stats, functools.partial(_merge_stats, k=n_failures), layout, defs, k, n_failures
    )
    names = np.array(engine.classes, dtype=object)
    specs = layout.specs
    confusions, over, descriptions, examples = [], [], [], []
    nearest: dict[int, NDArray] = {}
    for idx, row in frame.iterrows():
        confusion, inside, majority, n_in = stats[idx]
        pairs = sl.top_confusion_counts(confusion, k)
        confusions.append(
            "; ".join(f"{names[g]} -> {names[p]} ({n})" for g, p, n in pairs) if pairs else ""
        )
        reps = sl.over_represented_counts(specs, inside, overall, n_in, n_rows)
        over.append("; ".join(f"{n} ({s:.0%} vs {b:.0%} overall)" for n, s, b in reps))
        if row["kind"] == "cluster":
            top_class = int(majority.argmax())
            parts = [
                f"top class {names[top_class]} ({majority[top_class] / max(majority.sum(), 1):.0%})"
            ]
            if reps:
                parts.append(over[-1])
            if pairs:
                parts.append(f"errors mostly {confusions[-1].split(';')[0]}")
            descriptions.append("; ".join(parts))
        else:
            descriptions.append(row["slice"])
        # Failures the model was most sure about first: the clearest examples of the slice's problem.
        mine = failures[failures["slice"] == idx] if len(failures) else failures
        shown = mine.iloc[: config.slice_examples]
        examples.append(
            pd.DataFrame(
                {
                    "slice_id": row["slice_id"],
                    "role": "failure",
                    "rank": np.arange(1, len(shown) + 1),
                    "id": shown["id"].to_numpy() if len(shown) else [],
                    "given_label": label_names(engine.classes, shown["label"].to_numpy())
                    if len(shown)
                    else [],
                    "predicted_label": label_names(engine.classes, shown["predicted"].to_numpy())
                    if len(shown)
                    else [],
                    "predicted_prob": shown["conf"].to_numpy(np.float32) if len(shown) else [],
                    "similarity": np.nan,
                }
            )
        )
        if with_embeddings and row["n_unlabeled"] > 0 and len(mine):
            fail = np.stack(mine["emb"].iloc[:TO_LABEL_FAILURES].to_numpy())
            nearest[idx] = sl._normalized(fail)
    frame["top_confusion"] = confusions
    frame["over_represented"] = over
    frame["description"] = descriptions
    if nearest:
        found = engine.map_reduce(
            _to_label_rows, _merge_to_label(config.slice_examples), layout, defs, nearest,
            config.slice_examples,
        )  # fmt: skip
        by_slice = dict(zip(frame.index, frame["slice_id"], strict=True))
        labelled = []
        for idx in frame.index:
            if idx not in nearest:
                continue
            mine = found[found["slice"] == idx]
            labelled.append(
                pd.DataFrame(
                    {
                        "slice_id": by_slice[idx],
                        "role": "to_label",
                        "rank": np.arange(1, len(mine) + 1),
                        "id": mine["id"].to_numpy(),
                        "given_label": "",
                        "predicted_label": label_names(
                            engine.classes, mine["predicted"].to_numpy()
                        ),
                        "predicted_prob": mine["conf"].to_numpy(np.float32),
                        "similarity": mine["similarity"].to_numpy(np.float32),
                    }
                )
            )
        # Each slice's to-label rows follow its failures, as before.
        merged = []
        by_id = {f["slice_id"].iloc[0] if len(f) else None: f for f in labelled}
        for ex, sid in zip(examples, frame["slice_id"], strict=True):
            merged.append(ex)
            if sid in by_id:
                merged.append(by_id[sid])
        examples = merged
    examples_frame = pd.concat(examples, ignore_index=True) if examples else pd.DataFrame()
    return frame[cols], examples_frame.reindex(columns=example_cols)


def _merge_to_label(k: int):
    return functools.partial(_merge_top, k=k, score="similarity")


def _merge_top(a: pd.DataFrame, b: pd.DataFrame, k: int, score: str) -> pd.DataFrame:
    both = pd.concat([a, b], ignore_index=True)
    return select_top(both, k, score, group="slice") if len(both) else both


def split_table(totals: NDArray, split_names: list[str], confidence: float) -> pd.DataFrame:
    """Support, error rate and label-error rate per split and over all splits."""
    counts = np.vstack([totals.sum(0, keepdims=True), totals]) if len(split_names) > 1 else totals
    names = [ALL_SPLITS, *split_names] if len(split_names) > 1 else split_names
    frame = pd.DataFrame(
        {
            "split": names,
            "support": counts[:, sl.ALL].astype(np.int64),
            "n_labeled": counts[:, sl.LABELED].astype(np.int64),
            "n_errors": counts[:, sl.ERRORS].astype(np.int64),
            "n_label_errors": counts[:, sl.LABEL_ERRORS].astype(np.int64),
        }
    )
    _rates(frame, counts, confidence)
    return frame


def ranked_table(
    discovered: pd.DataFrame, given: pd.DataFrame, examples: pd.DataFrame
) -> pd.DataFrame:
    """The "ranked" table: discovered failure slices (ranked), then given slices (most severe
    first). Discovered rows carry the ids of their example failures and of the unlabeled items
    to label."""
    discovered = discovered.copy()
    for role, column in (("failure", "example_failures"), ("to_label", "to_label")):
        chosen = examples[examples["role"] == role]
        joined = chosen.groupby("slice_id", sort=False)["id"].agg(
            lambda ids: " ".join(map(str, ids))
        )
        # object first: with no slices the mapped column is float64, which "" cannot fill
        discovered[column] = discovered["slice_id"].map(joined).astype(object).fillna("")
    discovered["split"] = ALL_SPLITS
    discovered["significant"] = True
    given = given.copy()
    given.insert(0, "kind", "given")
    frames = [frame for frame in (discovered, given) if len(frame)]
    if not frames:
        return pd.DataFrame(columns=["kind", "slice"])
    combined = pd.concat(frames, ignore_index=True)
    for column in ("rank", "level", "new_labeled", "n_unlabeled"):
        if column in combined:  # integers with gaps, not floats, in the CSV
            combined[column] = combined[column].astype("Int64")
    first = ["rank", "slice_id", "kind", "slice", "description", "split", "columns", "level"]
    if "diff" in combined:
        rest = list(combined.columns)
        rest.remove("diff")
        rest.insert(rest.index("rest_error_rate") + 1, "diff")
        combined = combined[rest]
    return combined[[c for c in first if c in combined] + [c for c in combined if c not in first]]
