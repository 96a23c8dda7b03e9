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
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit import slicing as sl
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import wilson_interval

ALL_SPLITS = "all"


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    notes: list[str] = []
    labeled = data.labeled
    predicted = data.predicted
    errors = labeled & (predicted != data.labels)
    flags = _label_error_flags(ctx, data.ids)
    if flags is None:
        notes.append("Label-error rates are missing: the label_errors analysis did not run.")
    outcome = sl.outcome_codes(labeled, errors, flags)
    n_labeled = int(labeled.sum())
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

    with ctx.progress.step("encode slice metadata"):
        columns, skipped_columns = sl.encode_metadata(
            data.metadata,
            top=config.slice_top_values,
            bins=config.slice_numeric_bins,
            given_bins=config.slice_given_bins,
        )
    notes += skipped_notes(skipped_columns)
    split_names, groups = np.unique(np.asarray(data.splits).astype(str), return_inverse=True)
    groups = groups.astype(np.int32)
    multi = len(split_names) > 1
    group_col = sl.encode_groups(groups, list(split_names)) if multi else None
    totals = sl.count_table([groups], [len(split_names)], outcome)  # (G, 4)
    for name, t in zip(split_names.tolist(), totals, strict=True):
        if multi and t[sl.LABELED] == 0:
            notes.append(f"Split {name!r} has no labeled items: its slices have no error rates.")

    enum = sl.enumerate_slices(
        columns,
        outcome,
        groups if multi else None,
        len(split_names),
        min_support=min_support,
        group_column=group_col,
        max_pairs=config.slice_max_pairs,
        progress=ctx.progress.bar,
    )
    screening = enum.screening
    notes += screening_notes(screening, len(columns), multi, config.slice_max_pairs)
    n_given_tested = len(enum.given)
    given = given_table(
        columns,
        enum.given,
        totals,
        list(split_names),
        gates,
        config.slice_max_given,
        config.slice_given_per_column,
    )
    if len(given) < n_given_tested:
        notes.append(
            f"The metadata-slice table keeps {len(given):,} of the {n_given_tested:,} given slices tested: every significant one, then the {config.slice_given_per_column} most severe per column ({config.slice_max_given:,} rows at most; slice_max_given, slice_given_per_column)."
        )
    rule_columns = [*columns, group_col] if multi else columns
    # Rules and clusters share the false-discovery budget, so discovery as a whole controls it.
    searches_clusters = data.embeddings is not None and n_labeled >= 4 * min_support
    family = dataclasses.replace(gates, fdr=gates.fdr / (2 if searches_clusters else 1))
    discovered_rules = sl.discover_rules(rule_columns, enum, outcome, family)

    assign = None
    discovered_clusters = None
    levels: list[NDArray[np.int32]] = []
    if searches_clusters:
        with ctx.progress.step("cluster embeddings"):
            k = int(min(config.slice_clusters, max(4, n_labeled // (2 * min_support))))
            model = sl.fit_kmeans(
                data.embeddings, k, sample_size=config.slice_cluster_sample, seed=config.seed
            )
            assign = sl.assign_clusters(data.embeddings, model, progress=ctx.progress.bar)
            levels = sl.cluster_levels(model, assign, seed=config.seed)
            discovered_clusters = sl.discover_clusters(assign, levels, outcome, family)

    base = float(errors.sum() / max(n_labeled, 1))
    rows, masks = [], []
    for pick in discovered_rules.picks:
        mask = sl.slice_mask(rule_columns, discovered_rules.candidates, pick.index, given=False)
        name = sl.slice_name(rule_columns, discovered_rules.candidates, pick.index, given=False)
        rows.append(_discovered_row("rule", name, name, discovered_rules, pick))
        masks.append(mask)
    if discovered_clusters is not None:
        sizes = [int(m.max()) + 1 for m in levels]
        for pick in discovered_clusters.picks:
            lvl = int(discovered_clusters.candidates.col_a[pick.index])
            cid = int(discovered_clusters.candidates.pred_a[pick.index])
            mask = levels[lvl][assign] == cid
            name = f"cluster {cid} of {sizes[lvl]}"
            rows.append(_discovered_row("cluster", name, "", discovered_clusters, pick))
            masks.append(mask)

    discovered, examples = describe_discovered(
        data, rows, masks, columns, errors, config, base, assign is not None
    )
    order = discovered.index.to_numpy()
    masks = [masks[i] for i in order]
    discovered = discovered.reset_index(drop=True)

    failure_slice = np.full(data.n, "", dtype=object)
    for sid, mask in zip(discovered["slice_id"][::-1], masks[::-1], strict=True):
        failure_slice[mask] = sid
    items = pd.DataFrame({"id": data.ids, "failure_slice": failure_slice})
    if assign is not None:
        items["cluster"] = assign

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
    if data.embeddings is None:
        notes.append("No embeddings: failure clusters were not searched.")
    n_rules = sum(discovered["kind"] == "rule")
    return AnalysisResult(
        name="slices",
        tables={
            "given": given,
            "discovered": discovered,
            "examples": examples,
            "splits": split_table(totals, list(split_names), config.confidence_level),
            "items": items,
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
        params={
            "min_support": min_support,
            "fdr": config.slice_fdr,
            "min_lift": config.slice_min_lift,
            "min_gap": config.slice_min_gap,
            "numeric_bins": config.slice_numeric_bins,
            "given_bins": config.slice_given_bins,
            "clusters": [int(m.max()) + 1 for m in levels],
            "max_pairs": config.slice_max_pairs,
            "pairs_exhaustive": screening.exhaustive,
            "pair_anchors": screening.n_anchors,
            "rule_family": screening.rule_family,
            "skipped_columns": dict(skipped_columns),
            "confidence_level": config.confidence_level,
            "overall_error_rate": base,
        },
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


def _label_error_flags(ctx: AuditContext, ids: NDArray) -> NDArray[np.bool_] | None:
    """is_label_error per row, joined by id; None when the label_errors analysis did not run."""
    result = ctx.results.get("label_errors")
    if result is None or "items" not in result.tables:
        return None
    items = result.tables["items"]
    if "id" not in items.columns or "is_label_error" not in items.columns:
        return None
    position = pd.Index(items["id"]).get_indexer(ids)
    values = items["is_label_error"].fillna(False).to_numpy(dtype=bool)
    return np.where(position >= 0, values[np.maximum(position, 0)], False)


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
    data: AuditDataset,
    rows: list[dict],
    masks: list[NDArray[np.bool_]],
    columns: list[sl.EncodedColumn],
    errors: NDArray[np.bool_],
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

    labeled = data.labeled
    predicted = data.predicted
    conf = data.probs.max(axis=1)
    names = np.array(data.classes, dtype=object)
    confusions, over, descriptions, examples = [], [], [], []
    for row_pos, (idx, row) in enumerate(frame.iterrows()):
        del row_pos
        mask = masks[idx]
        err_rows = np.flatnonzero(mask & errors)
        pairs = sl.top_confusions(data.labels[err_rows], predicted[err_rows], data.k)
        confusions.append(
            "; ".join(f"{names[g]} -> {names[p]} ({n})" for g, p, n in pairs) if pairs else ""
        )
        reps = sl.over_represented(columns, mask)
        over.append("; ".join(f"{n} ({s:.0%} vs {b:.0%} overall)" for n, s, b in reps))
        if row["kind"] == "cluster":
            lab_rows = np.flatnonzero(mask & labeled)
            majority = np.bincount(data.labels[lab_rows], minlength=data.k)
            top_class = int(majority.argmax())
            parts = [
                f"top class {names[top_class]} ({majority[top_class] / max(len(lab_rows), 1):.0%})"
            ]
            if reps:
                parts.append(over[-1])
            if pairs:
                parts.append(f"errors mostly {confusions[-1].split(';')[0]}")
            descriptions.append("; ".join(parts))
        else:
            descriptions.append(row["slice"])
        # Failures the model was most sure about first: the clearest examples of the slice's problem.
        failures = err_rows[np.argsort(-conf[err_rows], kind="stable")]
        shown = failures[: config.slice_examples]
        examples.append(
            pd.DataFrame(
                {
                    "slice_id": row["slice_id"],
                    "role": "failure",
                    "rank": np.arange(1, len(shown) + 1),
                    "id": data.ids[shown],
                    "given_label": data.label_names(data.labels[shown]),
                    "predicted_label": data.label_names(predicted[shown]),
                    "predicted_prob": conf[shown],
                    "similarity": np.nan,
                }
            )
        )
        unlabeled_rows = np.flatnonzero(mask & ~labeled)
        if with_embeddings and len(unlabeled_rows) and len(failures):
            examples.append(_to_label(data, row["slice_id"], failures[:20], unlabeled_rows, config))
    frame["top_confusion"] = confusions
    frame["over_represented"] = over
    frame["description"] = descriptions
    examples_frame = pd.concat(examples, ignore_index=True) if examples else pd.DataFrame()
    return frame[cols], examples_frame.reindex(columns=example_cols)


def _to_label(
    data: AuditDataset,
    slice_id: str,
    failures: NDArray[np.intp],
    unlabeled_rows: NDArray[np.intp],
    config: AuditConfig,
) -> pd.DataFrame:
    """Unlabeled items of the slice nearest to its failures: labeling them teaches the model most."""
    from dataaudit.neighbors import knn

    k = min(config.slice_examples, len(unlabeled_rows))
    sims, idx = knn(
        data.embeddings[failures], data.embeddings[unlabeled_rows], k=k, exclude_self=False
    )
    best = pd.Series(sims.ravel()).groupby(idx.ravel()).max().sort_values(ascending=False)
    best = best.iloc[: config.slice_examples]
    rows = unlabeled_rows[best.index.to_numpy()]
    return pd.DataFrame(
        {
            "slice_id": slice_id,
            "role": "to_label",
            "rank": np.arange(1, len(rows) + 1),
            "id": data.ids[rows],
            "given_label": "",
            "predicted_label": data.label_names(data.predicted[rows]),
            "predicted_prob": data.probs[rows].max(axis=1),
            "similarity": best.to_numpy(dtype=np.float32),
        }
    )


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


def export_table(result: AnalysisResult) -> pd.DataFrame:
    """slices.csv: discovered failure slices (ranked), then given slices (most severe first).

    Discovered rows carry the ids of their example failures and of the unlabeled items to label.
    """
    discovered = result.table("discovered").copy()
    examples = result.table("examples")
    for role, column in (("failure", "example_failures"), ("to_label", "to_label")):
        chosen = examples[examples["role"] == role]
        joined = chosen.groupby("slice_id", sort=False)["id"].agg(
            lambda ids: " ".join(map(str, ids))
        )
        discovered[column] = discovered["slice_id"].map(joined).fillna("")
    discovered["split"] = ALL_SPLITS
    discovered["significant"] = True
    given = result.table("given").copy()
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
