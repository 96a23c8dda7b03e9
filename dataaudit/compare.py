"""Compare two audits: what changed since the baseline run (AuditReport x AuditReport -> RunDiff).

Items are matched by id. An item present in only one run is counted and listed (table
"membership"), never dropped. What only one run has (an analysis that was skipped, a metadata
column that is new) is not compared, and `RunDiff.notes` says so.

Error rates per group — overall, per split, per class, per slice (a metadata value, or a quantile
bin of a numeric column, bins taken from the baseline) — are measured against each run's given
labels on its labeled items: an error is an item whose predicted label differs from its given one.
Whether a change is beyond noise is decided by an exact McNemar test on the items labeled in both
runs with the same given label (correct before and wrong now, or the reverse), so added, removed
or relabelled items cannot fake a regression: the paired change is the model's. A group with no
such item falls back to a two-proportion z-test on its aggregate rates. p-values are Benjamini-Hochberg adjusted over every group; a change is significant at
q <= 1 - confidence_level. For the paired test an item belongs to the group it has in the current
run.

Tables (keyed by id, or by their own key columns):
- "groups": scope (overall | split | class | slice), group, old_n, old_errors, old_error_rate
  (+ _low, _high), the same for new_, difference (new - old error rate), n_paired, n_worse
  (correct before, wrong now; same label in both runs), n_better, paired_difference ((n_worse - n_better) / n_paired),
  test (mcnemar | two_proportion | none), p_value, q_value, change (regression | improvement |
  no significant change | only_old | only_new). Regressions first.
- "metrics": metric, old, new, difference — numeric summary metrics both runs have.
- "membership": id, change (only_old | only_new), split, given_label.
- "labels": id, change (relabelled | newly_labeled | label_removed | split_changed), old, new.
- "label_errors": id, status (fixed_relabelled | fixed_unflagged | persisting | new | gone;
  with a verdict ledger also confirmed | reviewed_kept: a persisting flag a reviewer confirmed
  or kept),
  old_given_label, new_given_label, old_suggested_label, new_suggested_label, old_error_score,
  new_error_score, label_changed, in_old_run. `gone`: the item was removed or is unlabeled now.
- "duplicates": id_a, id_b, status (appeared | resolved), leakage (the pair spans two splits).
- "queue": id, status (labeled | left | entered | stayed | gone), old_rank, new_rank,
  given_label (in the current run).
- "failure_slices": slice, status (appeared | resolved | persisting), old_error_rate,
  new_error_rate (discovered rules of the slices analysis, matched by their description).
- "splits": split, old_n_items, new_n_items, difference, old_n_labeled, new_n_labeled.
- "classes": class, status (added | removed | kept), old_n_labeled, new_n_labeled.
- "inputs": role, status (same | changed | unknown | added | removed), old_sha256, new_sha256,
  old_shape, new_shape.
Summary keys (they are `--fail-on` keys): see `summarise`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy import stats

from dataaudit.result import Scalar
from dataaudit.stats import benjamini_hochberg, two_proportion_pvalue, wilson_interval

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

COMPARISON_SCHEMA_VERSION = 1
# Metadata columns with more distinct values than this are binned (numeric) or cut to their most
# frequent values (text), so a free-text column does not become thousands of tested groups.
MAX_LEVELS = 30
NUMERIC_BINS = 4
# Duplicate groups up to this size are compared pair by pair (see group_pairs).
PAIRS_UP_TO = 50
REGRESSION, IMPROVEMENT, NO_CHANGE = "regression", "improvement", "no significant change"
ONLY_OLD, ONLY_NEW = "only_old", "only_new"
_SCOPE_ORDER = {"overall": 0, "split": 1, "class": 2, "slice": 3}
_CHANGE_ORDER = {REGRESSION: 0, IMPROVEMENT: 1, ONLY_NEW: 2, ONLY_OLD: 3, NO_CHANGE: 4}


@dataclass(frozen=True, eq=False)
class RunDiff:
    """What changed between a baseline audit (old) and the current one (new).

    tables   : tidy tables by name (see the module docstring), keyed by id or their own keys.
    summary  : flat scalars; they join the current report's metrics, so each is a `--fail-on` key
               (e.g. ``--fail-on regression>0``).
    notes    : plain sentences, among them what could not be compared and why.
    baseline : identity of the old run (started_at, dataaudit_version, path when loaded from disk).
    current  : identity of the new run.
    params   : how the comparison was made (confidence_level, alpha, ...).
    """

    summary: Mapping[str, Scalar]
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    baseline: Mapping[str, Any] = field(default_factory=dict)
    current: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    schema_version: int = COMPARISON_SCHEMA_VERSION

    def table(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    @property
    def regressions(self) -> pd.DataFrame:
        groups = self.tables.get("groups")
        if groups is None:
            return pd.DataFrame()
        return groups[groups["change"] == REGRESSION].reset_index(drop=True)

    def to_document(self) -> dict[str, Any]:
        """The JSON part (tables are saved beside it as Parquet by AuditReport.save)."""
        from dataaudit.report import jsonable

        return jsonable(
            {
                "schema_version": self.schema_version,
                "summary": dict(self.summary),
                "tables": list(self.tables),
                "notes": list(self.notes),
                "baseline": dict(self.baseline),
                "current": dict(self.current),
                "params": dict(self.params),
            }
        )

    @classmethod
    def from_document(cls, document: Mapping[str, Any], tables: Mapping[str, pd.DataFrame]):
        return cls(
            summary=dict(document["summary"]),
            tables=dict(tables),
            notes=tuple(document.get("notes", ())),
            baseline=dict(document.get("baseline", {})),
            current=dict(document.get("current", {})),
            params=dict(document.get("params", {})),
            schema_version=int(document.get("schema_version", COMPARISON_SCHEMA_VERSION)),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunDiff):
            return NotImplemented
        if self.to_document() != other.to_document():
            return False
        return all(_frames_equal(self.tables[t], other.tables[t]) for t in self.tables)


def compare(old: AuditReport, new: AuditReport, *, baseline_path: str | None = None) -> RunDiff:
    """What changed from the `old` audit (the baseline) to the `new` one.

    Parameters
    ----------
    old, new : AuditReport
        Typically ``AuditReport.load(old_dir)`` and the report of the current run.
    baseline_path : str, optional
        Where the old report was loaded from, recorded for the report.

    Returns
    -------
    RunDiff

    Examples
    --------
    >>> from dataaudit.demo import make_demo_inputs
    >>> from dataaudit import audit
    >>> inputs = make_demo_inputs(seed=0)
    >>> report = audit(inputs.table, inputs.probs, classes=inputs.classes)
    >>> compare(report, report).summary["regression"]
    0
    """
    confidence = float(new.config.confidence_level)
    alpha = 1.0 - confidence
    notes: list[str] = []
    old_items, new_items, id_note = _aligned_items(old.full_items(), new.full_items())
    if id_note:
        notes.append(id_note)
    joined = old_items.merge(
        new_items, on="id", how="outer", suffixes=("_old", "_new"), indicator=True
    )
    in_old = (joined["_merge"] != "right_only").to_numpy()
    in_new = (joined["_merge"] != "left_only").to_numpy()

    tables: dict[str, pd.DataFrame] = {}
    tables["groups"] = group_changes(joined, in_old, in_new, old, new, confidence, notes)
    tables["metrics"] = metric_changes(old.metrics(), new.metrics())
    tables["membership"] = membership_changes(joined, in_old, in_new)
    tables["labels"] = label_changes(joined, in_old & in_new)
    for name, build in (
        ("label_errors", label_error_changes),
        ("duplicates", duplicate_changes),
        ("queue", queue_changes),
        ("failure_slices", failure_slice_changes),
    ):
        table = build(old, new, joined, notes)
        if table is not None:
            tables[name] = table
    tables["splits"] = split_changes(old.dataset, new.dataset)
    tables["classes"] = class_changes(old.dataset, new.dataset)
    tables["inputs"] = input_changes(old.run.get("inputs", []), new.run.get("inputs", []))
    return RunDiff(
        summary=summarise(tables, in_old, in_new),
        tables=tables,
        notes=tuple(notes),
        baseline=_identity(old, baseline_path),
        current=_identity(new, None),
        params={
            "confidence_level": confidence,
            "alpha": alpha,
            "test": "exact McNemar on items labeled in both runs; two-proportion z-test "
            "on aggregate rates for groups without common items; Benjamini-Hochberg over groups",
            "max_levels": MAX_LEVELS,
            "numeric_bins": NUMERIC_BINS,
        },
    )


# -- items ------------------------------------------------------------------------------------


def _aligned_items(old: pd.DataFrame, new: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Both items frames with comparable id columns and an `error` flag on labeled items."""
    frames = []
    for items in (old, new):
        frame = items.copy()
        given = frame["given_label"].astype(object)
        labeled = given.notna() & (given.astype(str) != "")
        frame["labeled"] = labeled.to_numpy(bool)
        frame["error"] = (
            labeled & (given.astype(str) != frame["predicted_label"].astype(str))
        ).to_numpy(bool)
        frames.append(frame)
    note = ""
    numeric = [pd.api.types.is_numeric_dtype(f["id"]) for f in frames]
    if numeric[0] != numeric[1]:
        # e.g. ids read as numbers in one run and as text in the other: match on their text
        for frame in frames:
            frame["id"] = frame["id"].astype(str)
        note = "Ids are numbers in one run and text in the other; they were matched as text."
    return frames[0], frames[1], note


def membership_changes(
    joined: pd.DataFrame, in_old: NDArray[np.bool_], in_new: NDArray[np.bool_]
) -> pd.DataFrame:
    """Every item present in one run only: id, change, split, given_label (from the run it is in)."""
    only_old = in_old & ~in_new
    only_new = in_new & ~in_old
    parts = []
    for mask, change, suffix in ((only_old, ONLY_OLD, "_old"), (only_new, ONLY_NEW, "_new")):
        rows = joined.loc[mask]
        parts.append(
            pd.DataFrame(
                {
                    "id": rows["id"].to_numpy(),
                    "change": change,
                    "split": rows[f"split{suffix}"].astype(object).to_numpy(),
                    "given_label": rows[f"given_label{suffix}"].astype(object).to_numpy(),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def label_changes(joined: pd.DataFrame, common: NDArray[np.bool_]) -> pd.DataFrame:
    """Items in both runs whose label or split changed: id, change, old, new."""
    rows = joined.loc[common]
    old_label = rows["given_label_old"].astype(object).fillna("").astype(str).to_numpy()
    new_label = rows["given_label_new"].astype(object).fillna("").astype(str).to_numpy()
    old_split = rows["split_old"].astype(object).astype(str).to_numpy()
    new_split = rows["split_new"].astype(object).astype(str).to_numpy()
    ids = rows["id"].to_numpy()
    kinds = (
        ("relabelled", (old_label != "") & (new_label != "") & (old_label != new_label)),
        ("newly_labeled", (old_label == "") & (new_label != "")),
        ("label_removed", (old_label != "") & (new_label == "")),
    )
    parts = [
        pd.DataFrame({"id": ids[m], "change": kind, "old": old_label[m], "new": new_label[m]})
        for kind, m in kinds
    ]
    moved = old_split != new_split
    parts.append(
        pd.DataFrame(
            {
                "id": ids[moved],
                "change": "split_changed",
                "old": old_split[moved],
                "new": new_split[moved],
            }
        )
    )
    return pd.concat(parts, ignore_index=True)


# -- error rates per group ----------------------------------------------------------------------


def group_changes(
    joined: pd.DataFrame,
    in_old: NDArray[np.bool_],
    in_new: NDArray[np.bool_],
    old: AuditReport,
    new: AuditReport,
    confidence: float,
    notes: list[str],
) -> pd.DataFrame:
    """Error rate per group in each run, and whether it changed beyond noise."""
    groupings: list[tuple[str, str, NDArray, NDArray]] = [
        (
            "overall",
            "all",
            np.full(len(joined), "all", dtype=object),
            np.full(len(joined), "all", dtype=object),
        )
    ]
    for scope, column in (("split", "split"), ("class", "given_label")):
        groupings.append(
            (
                scope,
                column,
                joined[f"{column}_old"].astype(object).to_numpy(),
                joined[f"{column}_new"].astype(object).to_numpy(),
            )
        )
    meta_old = {c for c in old.items.columns if c.startswith("meta:")}
    meta_new = {c for c in new.items.columns if c.startswith("meta:")}
    for column in sorted(meta_old ^ meta_new):
        where = "baseline" if column in meta_old else "current"
        notes.append(
            f"Metadata column {column[5:]!r} is only in the {where} run; its slices were not compared."
        )
    for column in sorted(meta_old & meta_new):
        old_levels, new_levels, note = slice_levels(
            joined[f"{column}_old"], joined[f"{column}_new"], column[5:], in_old
        )
        if note:
            notes.append(note)
        groupings.append(("slice", column[5:], old_levels, new_levels))

    labeled_old = joined["labeled_old"].fillna(False).to_numpy(bool) & in_old
    labeled_new = joined["labeled_new"].fillna(False).to_numpy(bool) & in_new
    error_old = joined["error_old"].fillna(False).to_numpy(bool) & labeled_old
    error_new = joined["error_new"].fillna(False).to_numpy(bool) & labeled_new
    # Pairs keep their given label, so a paired change is the model's, not the labels' (relabelled
    # items are reported as such, and still count in each run's aggregate rate).
    same_label = (
        joined["given_label_old"].astype(object).to_numpy()
        == joined["given_label_new"].astype(object).to_numpy()
    )
    paired = labeled_old & labeled_new & same_label
    worse = paired & ~error_old & error_new
    better = paired & error_old & ~error_new

    frames = []
    for scope, _column, old_levels, new_levels in groupings:
        frame = _group_counts(
            old_levels,
            new_levels,
            labeled_old,
            labeled_new,
            error_old,
            error_new,
            paired,
            worse,
            better,
        )
        frame.insert(0, "scope", scope)
        frames.append(frame)
    groups = pd.concat(frames, ignore_index=True)
    return _test_groups(groups, confidence)


def slice_levels(
    old_values: pd.Series, new_values: pd.Series, name: str, in_old: NDArray[np.bool_]
) -> tuple[NDArray, NDArray, str]:
    """Level names of one metadata column in each run; numeric columns binned on the baseline's
    quantiles, so both runs use the same bins."""
    note = ""
    if pd.api.types.is_numeric_dtype(old_values) and pd.api.types.is_numeric_dtype(new_values):
        reference = old_values[in_old].dropna()
        if reference.nunique() > MAX_LEVELS:
            edges = np.unique(
                np.quantile(reference.to_numpy(float), np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1])
            )
            return _bin(old_values, edges, name), _bin(new_values, edges, name), note
    old_text = _level_text(old_values, name)
    new_text = _level_text(new_values, name)
    counts = pd.Series(old_text[in_old]).value_counts()
    if len(counts) > MAX_LEVELS:
        keep = set(counts.index[:MAX_LEVELS])
        old_text = np.where(np.isin(old_text, list(keep)), old_text, None)
        new_text = np.where(np.isin(new_text, list(keep)), new_text, None)
        note = (
            f"Metadata column {name!r} has {len(counts):,} values; only its {MAX_LEVELS} most "
            "frequent in the baseline were compared."
        )
    return old_text, new_text, note


def _level_text(values: pd.Series, name: str) -> NDArray:
    # Format each distinct value once, not each row.
    codes, uniques = pd.factorize(values.astype(object), use_na_sentinel=True)
    names = np.array([f"{name} = {u}" for u in uniques] + [None], dtype=object)
    return names[np.where(codes < 0, len(uniques), codes)]


def _bin(values: pd.Series, edges: NDArray, name: str) -> NDArray:
    x = pd.to_numeric(values, errors="coerce").to_numpy(float)
    labels = []
    bounds = [-np.inf, *edges, np.inf]
    for low, high in zip(bounds[:-1], bounds[1:]):
        if low == -np.inf:
            labels.append(f"{name} < {high:.4g}")
        elif high == np.inf:
            labels.append(f"{name} ≥ {low:.4g}")
        else:
            labels.append(f"{low:.4g} ≤ {name} < {high:.4g}")
    index = np.searchsorted(edges, x, side="right")
    out = np.array(labels, dtype=object)[np.minimum(index, len(labels) - 1)]
    out[np.isnan(x)] = None
    return out


def _group_counts(
    old_levels: NDArray,
    new_levels: NDArray,
    labeled_old: NDArray[np.bool_],
    labeled_new: NDArray[np.bool_],
    error_old: NDArray[np.bool_],
    error_new: NDArray[np.bool_],
    paired: NDArray[np.bool_],
    worse: NDArray[np.bool_],
    better: NDArray[np.bool_],
) -> pd.DataFrame:
    """Counts per level: each run on its own labeled items; paired counts by the new level."""

    both = np.concatenate(
        [np.asarray(old_levels, dtype=object), np.asarray(new_levels, dtype=object)]
    )
    codes, uniques = pd.factorize(both, use_na_sentinel=True)
    names = np.asarray(uniques, dtype=object).astype(str)
    codes = np.where((codes >= 0) & (names[np.maximum(codes, 0)] != ""), codes, -1)
    n, m = len(old_levels), len(names)
    old_codes, new_codes = codes[:n], codes[n:]

    def count(level: NDArray, mask: NDArray[np.bool_]) -> NDArray[np.int64]:
        keep = mask & (level >= 0)
        return np.bincount(level[keep], minlength=m).astype(np.int64)

    frame = pd.DataFrame(
        {
            "group": names,
            "old_n": count(old_codes, labeled_old),
            "old_errors": count(old_codes, error_old),
            "new_n": count(new_codes, labeled_new),
            "new_errors": count(new_codes, error_new),
            "n_paired": count(new_codes, paired),
            "n_worse": count(new_codes, worse),
            "n_better": count(new_codes, better),
        }
    )
    frame = frame[(frame["old_n"] > 0) | (frame["new_n"] > 0)]
    return frame.sort_values("group", kind="stable").reset_index(drop=True)


def _test_groups(groups: pd.DataFrame, confidence: float) -> pd.DataFrame:
    alpha = 1.0 - confidence
    for run in ("old", "new"):
        n, errors = groups[f"{run}_n"].to_numpy(), groups[f"{run}_errors"].to_numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            groups[f"{run}_error_rate"] = np.where(n > 0, errors / np.maximum(n, 1), np.nan)
        groups[f"{run}_error_rate_low"], groups[f"{run}_error_rate_high"] = wilson_interval(
            errors, n, confidence
        )
    groups["difference"] = groups["new_error_rate"] - groups["old_error_rate"]
    n_paired = groups["n_paired"].to_numpy()
    worse, better = groups["n_worse"].to_numpy(), groups["n_better"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        groups["paired_difference"] = np.where(
            n_paired > 0, (worse - better) / np.maximum(n_paired, 1), np.nan
        )
    p_paired = mcnemar_pvalue(worse, better)
    p_aggregate = two_proportion_pvalue(
        groups["new_errors"], groups["new_n"], groups["old_errors"], groups["old_n"], "two-sided"
    )
    has_both = (groups["old_n"] > 0) & (groups["new_n"] > 0)
    use_paired = n_paired > 0
    groups["test"] = np.where(use_paired, "mcnemar", np.where(has_both, "two_proportion", "none"))
    groups["p_value"] = np.where(use_paired, p_paired, np.where(has_both, p_aggregate, np.nan))
    groups["q_value"] = benjamini_hochberg(groups["p_value"])
    direction = np.where(use_paired, worse - better, groups["difference"].fillna(0).to_numpy())
    significant = groups["q_value"].to_numpy() <= alpha
    change = np.full(len(groups), NO_CHANGE, dtype=object)
    change[significant & (direction > 0)] = REGRESSION
    change[significant & (direction < 0)] = IMPROVEMENT
    change[(groups["old_n"] > 0) & (groups["new_n"] == 0)] = ONLY_OLD
    change[(groups["old_n"] == 0) & (groups["new_n"] > 0)] = ONLY_NEW
    groups["change"] = change
    # Regressions, then improvements, each most certain first; then the rest by scope.
    certainty = np.where(significant, groups["q_value"].fillna(1).to_numpy(), 1.0)
    order = np.lexsort(
        (
            -np.abs(groups["difference"].fillna(0).to_numpy()),
            groups["scope"].map(_SCOPE_ORDER).to_numpy(),
            certainty,
            groups["change"].map(_CHANGE_ORDER).to_numpy(),
        )
    )
    columns = [
        "scope", "group",
        "old_n", "old_errors", "old_error_rate", "old_error_rate_low", "old_error_rate_high",
        "new_n", "new_errors", "new_error_rate", "new_error_rate_low", "new_error_rate_high",
        "difference", "n_paired", "n_worse", "n_better", "paired_difference",
        "test", "p_value", "q_value", "change",
    ]  # fmt: skip
    return groups.iloc[order][columns].reset_index(drop=True)


def mcnemar_pvalue(worse: NDArray, better: NDArray) -> NDArray[np.float64]:
    """Exact two-sided McNemar p-value from the discordant counts; 1 where there are none."""
    worse = np.asarray(worse, dtype=np.int64)
    better = np.asarray(better, dtype=np.int64)
    discordant = worse + better
    p = 2.0 * stats.binom.cdf(np.minimum(worse, better), np.maximum(discordant, 1), 0.5)
    return np.where(discordant > 0, np.minimum(p, 1.0), 1.0)


# -- metrics, splits, classes, inputs ------------------------------------------------------------


def metric_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for key in [k for k in new if k in old]:
        a, b = old[key], new[key]
        if _is_number(a) and _is_number(b):
            rows.append(
                {"metric": key, "old": float(a), "new": float(b), "difference": float(b) - float(a)}
            )
    return pd.DataFrame(rows, columns=["metric", "old", "new", "difference"])


def split_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> pd.DataFrame:
    a, b = old.get("splits", {}), new.get("splits", {})
    names = list(a) + [s for s in b if s not in a]
    rows = [
        {
            "split": s,
            "old_n_items": a.get(s, {}).get("n_items", 0),
            "new_n_items": b.get(s, {}).get("n_items", 0),
            "old_n_labeled": a.get(s, {}).get("n_labeled", 0),
            "new_n_labeled": b.get(s, {}).get("n_labeled", 0),
        }
        for s in names
    ]
    frame = pd.DataFrame(
        rows, columns=["split", "old_n_items", "new_n_items", "old_n_labeled", "new_n_labeled"]
    )
    frame.insert(3, "difference", frame["new_n_items"] - frame["old_n_items"])
    return frame


def class_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> pd.DataFrame:
    a, b = list(old.get("classes", [])), list(new.get("classes", []))
    counts_a, counts_b = old.get("labeled_per_class", {}), new.get("labeled_per_class", {})
    rows = [
        {
            "class": c,
            "status": "kept" if c in a and c in b else "removed" if c in a else "added",
            "old_n_labeled": counts_a.get(c, 0),
            "new_n_labeled": counts_b.get(c, 0),
        }
        for c in a + [c for c in b if c not in a]
    ]
    return pd.DataFrame(rows, columns=["class", "status", "old_n_labeled", "new_n_labeled"])


def input_changes(old: list[Mapping[str, Any]], new: list[Mapping[str, Any]]) -> pd.DataFrame:
    """Fingerprints per input role. In-memory inputs have no digest: status 'unknown' unless
    their shapes differ."""
    a = {s["role"]: s for s in old}
    b = {s["role"]: s for s in new}
    rows = []
    for role in list(a) + [r for r in b if r not in a]:
        x, y = a.get(role), b.get(role)
        if x is None or y is None:
            status = "added" if x is None else "removed"
        elif list(x.get("shape") or []) != list(y.get("shape") or []):
            status = "changed"
        elif x.get("sha256") and y.get("sha256"):
            status = "same" if x["sha256"] == y["sha256"] else "changed"
        else:
            status = "unknown"
        rows.append(
            {
                "role": role,
                "status": status,
                "old_sha256": (x or {}).get("sha256"),
                "new_sha256": (y or {}).get("sha256"),
                "old_shape": _shape_text((x or {}).get("shape")),
                "new_shape": _shape_text((y or {}).get("shape")),
            }
        )
    columns = ["role", "status", "old_sha256", "new_sha256", "old_shape", "new_shape"]
    return pd.DataFrame(rows, columns=columns).astype(object)


def _shape_text(shape: Any) -> str | None:
    return None if shape is None else " x ".join(str(int(s)) for s in shape)


# -- per-analysis changes (each returns None, with a note, when it cannot compare) ---------------


def _both(
    old: AuditReport,
    new: AuditReport,
    name: str,
    table: str,
    columns: tuple[str, ...],
    notes: list[str],
):
    """The named table of both runs, or None with a note saying why it is not compared."""
    missing = [
        which
        for which, report in (("baseline", old), ("current", new))
        if name not in report.results or table not in report.results[name].tables
    ]
    if missing:
        if len(missing) == 1:
            notes.append(
                f"{name} ran only in the {'current' if missing == ['baseline'] else 'baseline'} run; not compared."
            )
        return None
    # A Dask run's saved table is capped; its partitioned form holds every row.
    a, b = old.full_table(name, table), new.full_table(name, table)
    lacking = [c for c in columns if c not in a.columns or c not in b.columns]
    if lacking:
        notes.append(f"{name} table {table!r} lacks {', '.join(lacking)} in one run; not compared.")
        return None
    return a, b


def label_error_changes(
    old: AuditReport, new: AuditReport, joined: pd.DataFrame, notes: list[str]
) -> pd.DataFrame | None:
    """Label-error candidates: fixed (relabelled, or no longer flagged), persisting, new, gone."""
    both = _both(old, new, "label_errors", "items", ("id", "is_label_error"), notes)
    if both is None:
        return None
    a, b = (_comparable_ids(t, joined) for t in both)
    a = a.set_index("id")
    b = b.set_index("id")
    flagged_old = a.index[a["is_label_error"].to_numpy(bool)]
    flagged_new = b.index[b["is_label_error"].to_numpy(bool)]
    ids = flagged_old.union(flagged_new, sort=False)
    labels = joined.set_index("id")
    was = _isin(ids, flagged_old)
    now = _isin(ids, flagged_new)
    old_label = _lookup(labels, "given_label_old", ids)
    new_label = _lookup(labels, "given_label_new", ids)
    present_new = _present(labels, ids, "left_only")
    labeled_new = present_new & (new_label != "")
    changed = (old_label != "") & (new_label != "") & (old_label != new_label)
    status = np.select(
        [now & was, now, was & ~labeled_new, was & changed],
        ["persisting", "new", "gone", "fixed_relabelled"],
        default="fixed_unflagged",
    )
    # With a verdict ledger (--verdicts), the newer run knows what reviewers said: a persisting
    # flag a reviewer kept is not an open error, and a confirmed one is.
    reviews = new.results.get("reviews")
    if reviews is not None:
        relabel = reviews.tables["items"]
        relabel = relabel[relabel["list"] == "relabel"].set_index("id")["status"]
        said = pd.Series(ids.astype(str)).map(relabel).to_numpy()
        status = np.where((status == "persisting") & (said == "kept"), "reviewed_kept", status)
        status = np.where((status == "persisting") & (said == "confirmed"), "confirmed", status)
    frame = pd.DataFrame(
        {
            "id": ids.to_numpy(),
            "status": status,
            "old_given_label": old_label,
            "new_given_label": new_label,
            "old_suggested_label": _lookup(a, "suggested_label", ids),
            "new_suggested_label": _lookup(b, "suggested_label", ids),
            "old_error_score": _lookup(a, "error_score", ids, numeric=True),
            "new_error_score": _lookup(b, "error_score", ids, numeric=True),
            "label_changed": changed,
            "in_old_run": _present(labels, ids, "right_only"),
        }
    )
    order = {
        "fixed_relabelled": 0,
        "fixed_unflagged": 1,
        "new": 2,
        "confirmed": 3,
        "persisting": 4,
        "reviewed_kept": 5,
        "gone": 6,
    }
    rank = frame["status"].map(order).to_numpy()
    score = frame["new_error_score"].fillna(frame["old_error_score"]).fillna(0).to_numpy()
    return frame.iloc[np.lexsort((-score, rank))].reset_index(drop=True)


def duplicate_changes(
    old: AuditReport, new: AuditReport, joined: pd.DataFrame, notes: list[str]
) -> pd.DataFrame | None:
    """Duplicate pairs that appeared or were resolved, and whether each crosses splits (leakage).

    Reads every pair table (id_a, id_b) of the duplicates analysis, else its membership table
    (group_id, id) turned into pairs (see group_pairs).
    """
    name = "duplicates"
    have = [name in r.results for r in (old, new)]
    if not all(have):
        if any(have):
            where = "current" if have[1] else "baseline"
            notes.append(f"{name} ran only in the {where} run; not compared.")
        return None
    pairs = [_pairs(r.results[name].tables, joined) for r in (old, new)]
    if pairs[0] is None or pairs[1] is None:
        notes.append(
            f"{name}: no pair (id_a, id_b) or group (group, id) table in one run; not compared."
        )
        return None
    a, b = pairs
    appeared = b.difference(a)
    resolved = a.difference(b)
    rows = [(x, y, "appeared") for x, y in sorted(appeared, key=str)] + [
        (x, y, "resolved") for x, y in sorted(resolved, key=str)
    ]
    frame = pd.DataFrame(rows, columns=["id_a", "id_b", "status"])
    frame = frame.astype({"id_a": object, "id_b": object})
    splits = joined.set_index("id")
    # A pair leaks when its items sit in different splits, in the run the pair belongs to.
    leak = np.zeros(len(frame), dtype=bool)
    for status, suffix in (("appeared", "split_new"), ("resolved", "split_old")):
        rows_mask = (frame["status"] == status).to_numpy()
        if rows_mask.any():
            sa = _lookup(splits, suffix, pd.Index(frame.loc[rows_mask, "id_a"]))
            sb = _lookup(splits, suffix, pd.Index(frame.loc[rows_mask, "id_b"]))
            leak[rows_mask] = (sa != sb) & (sa != "") & (sb != "")
    frame["leakage"] = leak
    return frame


def _pairs(tables: Mapping[str, pd.DataFrame], joined: pd.DataFrame) -> set[tuple] | None:
    found: set[tuple] | None = None
    for table in tables.values():
        if {"id_a", "id_b"} <= set(table.columns):
            t = _comparable_ids(table, joined, ("id_a", "id_b"))
            found = (found or set()) | {_ordered(x, y) for x, y in zip(t["id_a"], t["id_b"])}
    if found is not None:
        return found
    for table in tables.values():
        key = next((c for c in ("group_id", "group") if c in table.columns), None)
        if key is not None and "id" in table.columns:
            return group_pairs(
                _comparable_ids(table, joined)[[key, "id"]].set_axis(["g", "id"], axis=1)
            )
    return None


def group_pairs(members: pd.DataFrame) -> set[tuple]:
    """Pairs within each group (columns g, id): every pair in groups of up to PAIRS_UP_TO members,
    so a group that gains or loses one member changes only that member's pairs; larger groups
    pair each member with the group's smallest id, to stay linear."""
    size = members.groupby("g")["id"].transform("size")
    small = members[(size <= PAIRS_UP_TO).to_numpy()]
    both = small.merge(small, on="g", suffixes=("_a", "_b"))
    a = both["id_a"].astype(str).to_numpy()
    b = both["id_b"].astype(str).to_numpy()
    keep = a < b
    pairs = set(zip(both["id_a"].to_numpy()[keep], both["id_b"].to_numpy()[keep]))
    large = members[(size > PAIRS_UP_TO).to_numpy()]
    if len(large):
        large = large.assign(text=large["id"].astype(str)).sort_values("text", kind="stable")
        first = large.groupby("g")["id"].transform("first").to_numpy()
        ids = large["id"].to_numpy()
        rest = ids != first
        pairs |= {_ordered(x, y) for x, y in zip(first[rest], ids[rest])}
    return pairs


def _ordered(x: Any, y: Any) -> tuple:
    return (x, y) if str(x) <= str(y) else (y, x)


def queue_changes(
    old: AuditReport, new: AuditReport, joined: pd.DataFrame, notes: list[str]
) -> pd.DataFrame | None:
    """Items that entered or left the label-next queue, and which of last run's queue got labeled."""
    both = _both(old, new, "label_next", "queue", ("id",), notes)
    if both is None:
        return None
    a, b = (_comparable_ids(t, joined).set_index("id") for t in both)
    ids = a.index.union(b.index, sort=False)
    was, now = _isin(ids, a.index), _isin(ids, b.index)
    items = joined.set_index("id")
    present_new = _present(items, ids, "left_only")
    label_now = _lookup(items, "given_label_new", ids)
    label_before = _lookup(items, "given_label_old", ids)
    newly_labeled = present_new & (label_now != "") & (label_before == "")
    status = np.select(
        [was & now, was & newly_labeled, was & ~present_new, was],
        ["stayed", "labeled", "gone", "left"],
        default="entered",
    )
    frame = pd.DataFrame(
        {
            "id": ids.to_numpy(),
            "status": status,
            "old_rank": _lookup(a, "rank", ids, numeric=True),
            "new_rank": _lookup(b, "rank", ids, numeric=True),
            "given_label": label_now,
        }
    )
    order = {"labeled": 0, "entered": 1, "left": 2, "gone": 3, "stayed": 4}
    rank = frame["new_rank"].fillna(frame["old_rank"]).fillna(0).to_numpy()
    return frame.iloc[np.lexsort((rank, frame["status"].map(order).to_numpy()))].reset_index(
        drop=True
    )


def failure_slice_changes(
    old: AuditReport, new: AuditReport, joined: pd.DataFrame, notes: list[str]
) -> pd.DataFrame | None:
    """Discovered failure rules that appeared, were resolved, or persist (matched by description).
    Clusters are re-fit every run, so their numbering does not match across runs; not compared."""
    both = _both(old, new, "slices", "discovered", ("slice", "error_rate"), notes)
    if both is None:
        return None
    a, b = (t[t["kind"] == "rule"] if "kind" in t.columns else t for t in both)
    a = a.drop_duplicates("slice").set_index("slice")
    b = b.drop_duplicates("slice").set_index("slice")
    names = a.index.union(b.index, sort=False)
    was, now = _isin(names, a.index), _isin(names, b.index)
    frame = pd.DataFrame(
        {
            "slice": names.to_numpy(dtype=object),
            "status": np.select([was & now, now], ["persisting", "appeared"], default="resolved"),
            "old_error_rate": _lookup(a, "error_rate", names, numeric=True),
            "new_error_rate": _lookup(b, "error_rate", names, numeric=True),
        }
    )
    order = {"appeared": 0, "resolved": 1, "persisting": 2}
    return frame.iloc[np.argsort(frame["status"].map(order).to_numpy(), kind="stable")].reset_index(
        drop=True
    )


def _comparable_ids(
    table: pd.DataFrame, joined: pd.DataFrame, columns: tuple[str, ...] = ("id",)
) -> pd.DataFrame:
    """Cast a table's id columns to the joined frame's id kind (text when ids were matched as text)."""
    if pd.api.types.is_numeric_dtype(joined["id"]):
        return table
    table = table.copy()
    for column in columns:
        if pd.api.types.is_numeric_dtype(table[column]):
            table[column] = table[column].astype(str)
    return table


def _isin(ids: pd.Index, values: pd.Index) -> NDArray[np.bool_]:
    # A hash lookup; Index.isin on pandas' arrow strings walks the values in Python.
    return pd.Index(values).get_indexer(ids) >= 0


def _present(joined_by_id: pd.DataFrame, ids: pd.Index, absent: str) -> NDArray[np.bool_]:
    """Whether each id is in the run that `absent` ("left_only": new run; "right_only": old)
    does not exclude."""
    position = joined_by_id.index.get_indexer(ids)
    merge = joined_by_id["_merge"].astype(str).to_numpy()
    return (position >= 0) & (merge[np.maximum(position, 0)] != absent)


def _lookup(frame: pd.DataFrame, column: str, ids: pd.Index, numeric: bool = False) -> NDArray:
    """frame[column] at `ids` (frame indexed by id); "" (or nan) where absent."""
    if column not in frame.columns:
        return np.full(len(ids), np.nan if numeric else "", dtype=float if numeric else object)
    position = frame.index.get_indexer(ids)
    found = position >= 0
    if numeric:
        out = np.full(len(ids), np.nan)
        out[found] = pd.to_numeric(frame[column].to_numpy()[position[found]], errors="coerce")
        return out
    out = np.full(len(ids), "", dtype=object)
    values = pd.Series(frame[column].to_numpy()[position[found]], dtype=object)
    out[found] = values.where(values.notna(), "").astype(str).to_numpy(dtype=object)
    return out


# -- summary ---------------------------------------------------------------------------------


# Every key summarise() may produce (fnmatch patterns), so --fail-on is checked before any data
# is read. A contract test keeps this exact.
SUMMARY_KEYS = (
    "regression",
    "regression_splits",
    "regression_classes",
    "regression_slices",
    "improvement",
    "items_common",
    "items_only_old",
    "items_only_new",
    "items_relabelled",
    "items_newly_labeled",
    "items_label_removed",
    "items_split_changed",
    "label_errors_fixed_relabelled",
    "label_errors_fixed_unflagged",
    "label_errors_persisting",
    "label_errors_new",
    "label_errors_gone",
    "label_errors_confirmed",
    "label_errors_reviewed_kept",
    "label_errors_fixed",
    "duplicates_appeared",
    "duplicates_resolved",
    "leakage_appeared",
    "leakage_resolved",
    "queue_old_size",
    "queue_labeled",
    "queue_entered",
    "queue_left",
    "queue_stayed",
    "failure_slices_appeared",
    "failure_slices_resolved",
    "classes_added",
    "classes_removed",
    "inputs_changed",
    "inputs_unknown",
    "*_change",  # <metric>_change for every numeric metric of both runs
)


def summarise(
    tables: Mapping[str, pd.DataFrame], in_old: NDArray[np.bool_], in_new: NDArray[np.bool_]
) -> dict[str, Scalar]:
    """The flat summary: counts per kind of change, and `<metric>_change` per numeric metric."""
    groups = tables["groups"]
    regressed = groups["change"] == REGRESSION
    improved = groups["change"] == IMPROVEMENT
    summary: dict[str, Scalar] = {
        "regression": int(regressed.sum()),
        "regression_splits": int((regressed & (groups["scope"] == "split")).sum()),
        "regression_classes": int((regressed & (groups["scope"] == "class")).sum()),
        "regression_slices": int((regressed & (groups["scope"] == "slice")).sum()),
        "improvement": int(improved.sum()),
        "items_common": int((in_old & in_new).sum()),
        "items_only_old": int((in_old & ~in_new).sum()),
        "items_only_new": int((in_new & ~in_old).sum()),
    }
    labels = tables["labels"]["change"]
    for kind in ("relabelled", "newly_labeled", "label_removed", "split_changed"):
        summary[f"items_{kind}"] = int((labels == kind).sum())
    if "label_errors" in tables:
        status = tables["label_errors"]["status"]
        for kind in (
            "fixed_relabelled",
            "fixed_unflagged",
            "persisting",
            "new",
            "gone",
            "confirmed",
            "reviewed_kept",
        ):
            summary[f"label_errors_{kind}"] = int((status == kind).sum())
        summary["label_errors_fixed"] = (
            summary["label_errors_fixed_relabelled"] + summary["label_errors_fixed_unflagged"]
        )
    if "duplicates" in tables:
        dup = tables["duplicates"]
        for kind in ("appeared", "resolved"):
            mine = dup["status"] == kind
            summary[f"duplicates_{kind}"] = int(mine.sum())
            summary[f"leakage_{kind}"] = int((mine & dup["leakage"]).sum())
    if "queue" in tables:
        status = tables["queue"]["status"]
        summary["queue_old_size"] = int(status.isin(["stayed", "labeled", "gone", "left"]).sum())
        for kind in ("labeled", "entered", "left", "stayed"):
            summary[f"queue_{kind}"] = int((status == kind).sum())
    if "failure_slices" in tables:
        status = tables["failure_slices"]["status"]
        summary["failure_slices_appeared"] = int((status == "appeared").sum())
        summary["failure_slices_resolved"] = int((status == "resolved").sum())
    classes = tables["classes"]["status"]
    summary["classes_added"] = int((classes == "added").sum())
    summary["classes_removed"] = int((classes == "removed").sum())
    inputs = tables["inputs"]["status"]
    summary["inputs_changed"] = int(inputs.isin(["changed", "added", "removed"]).sum())
    summary["inputs_unknown"] = int((inputs == "unknown").sum())
    for row in tables["metrics"].itertuples(index=False):
        key = f"{row.metric}_change"
        if key not in summary and not row.metric.endswith(("_ci_low", "_ci_high")):
            summary[key] = float(row.difference)
    return summary


def _identity(report: AuditReport, path: str | None) -> dict[str, Any]:
    identity = {
        "started_at": report.run.get("started_at"),
        "dataaudit_version": report.run.get("dataaudit_version"),
        "n_items": report.dataset.get("n_items"),
    }
    if path is not None:
        identity["path"] = str(path)
    return identity


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    try:
        pd.testing.assert_frame_equal(
            a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False, check_exact=False
        )
    except AssertionError:
        return False
    return True
