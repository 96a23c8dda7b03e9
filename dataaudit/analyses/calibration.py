"""Calibration: can the model's probabilities be read as probabilities?

Requires: probs, labels. Works on labeled items (the probabilities are out-of-sample) and on
top-label confidence: of the items the model gives confidence ≈ c, is a share c correct? Accuracy
is measured against the given labels, so label noise counts as miscalibration.

- ECE (expected calibration error) with equal-mass bins (`config.calibration_bins`, fewer when a
  group has under 20 items a bin): Σ_b n_b/n · |accuracy_b − confidence_b|. Bins are cut on rank,
  so ties at confidence 1.0 cannot empty a bin. It is computed for all labeled items, per split and
  per predicted class, with a bootstrap interval (`config.calibration_bootstrap` resamples;
  percentile interval shifted by the bootstrap's estimate of the ECE's upward bias).
- Good calibration is not ECE 0: a perfectly calibrated model shows a positive ECE on finitely many
  items. `ece_if_calibrated` is the 95th percentile of the ECE with labels drawn from the model's own
  confidences (consistency resampling, Bröcker & Smith 2007). The probabilities are
  `miscalibrated` when the ECE interval lies wholly above it.
- The temperature T that calibrates (softmax(log p / T): T > 1 softens overconfident
  probabilities, T < 1 sharpens underconfident ones), fitted by likelihood on held-out labeled
  items: cross-fitted over 5 folds, each fold scored with a T fitted on the other four, so the ECE
  after it is an honest estimate. The summary's `temperature` is fitted on all labeled items.
- Decisions that read probabilities (the auto-label cut, the difficulty buckets, the queue's
  top-2 margin, see label_next): calibration on the labeled items in each region, before and after
  the temperature. When the probabilities are miscalibrated and the temperature lowers the ECE,
  `calibration_applied` is true and label_next uses the temperature-scaled probabilities.

Bootstrap at scale: resampling n items is the same as drawing each bin's count (multinomial) and
then resampling within the bin. Up to EXACT_ROWS items a group is resampled item by item; above,
each bin's sum is drawn from its normal limit (bins then hold thousands of items), so 1M items
cost milliseconds.

Engine form (`run_on`, any dataaudit.engine): pass 1 counts labeled items per split and predicted
class and draws a hash sample (engine/sample.py) of max(EXACT_ROWS, fit rows) labeled items. Up to
EXACT_ROWS labeled items that sample is every item, in table order, and the analysis is the exact
form above (`calibrate_items`), so both engines give the same figures as ever. Above, a stated
approximation: the temperature is fitted on the sample's fit rows with the smallest hashes (each
fold's on the other folds' ones; folds come from the hash, not a permutation), equal-mass bin edges
are the sample's quantiles of the confidence (bins then hold the sample's share of items, not
exactly n / bins; ties at an edge fall in one bin), and the auto-label cut is found on the sample;
pass 2 sums every item into its bin of every group and region, and intervals come from those
sums' normal limit (as above EXACT_ROWS in process before).

Table "ece" (one row per group): split ("all" = every split), predicted_class (missing = all
classes), n, mean_confidence, accuracy, confidence_gap (mean_confidence − accuracy; > 0 is
overconfident), ece, ece_ci_low, ece_ci_high, ece_if_calibrated, miscalibrated, ece_after,
ece_after_ci_low, ece_after_ci_high (after the cross-fitted temperature).
Table "bins" (the reliability diagram): split, probabilities ("given" | "temperature-scaled"),
bin, n, mean_confidence, accuracy, accuracy_low, accuracy_high.
Table "decisions": decision, rule, n, mean_confidence, accuracy, accuracy_low, accuracy_high,
confidence_gap, miscalibrated (the accuracy's Wilson interval excludes the mean confidence), and
n_after, mean_confidence_after, accuracy_after, confidence_gap_after with temperature-scaled
probabilities.
Summary: ece, ece_ci_low, ece_ci_high, ece_if_calibrated, calibration_gap, temperature,
ece_after_temperature (+ _ci_low, _ci_high), calibration_miscalibrated, calibration_applied.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit import strategies as st
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, Engine, add
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.engine.sample import HASH, sample_rows
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import wilson_interval

ALL_SPLITS = "all"
MIN_PER_BIN = 20  # items per equal-mass bin; small groups get fewer bins
MIN_ITEMS = 20  # a group needs this many labeled items for an ECE
EXACT_ROWS = 50_000  # groups up to this size are bootstrapped item by item
FOLDS = 5
PROB_FLOOR = 1e-7  # log(0) has no temperature; float32 probabilities reach 0 for large logits
TEMPERATURE_RANGE = (0.05, 20.0)
FIT_CELLS = 2_000_000  # a temperature is fitted on at most this many probabilities (rows x K)
CHUNK_ROWS = 65_536


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(
    engine: Engine, ctx: AuditContext, config: AuditConfig, exact_rows: int = EXACT_ROWS
) -> AnalysisResult:
    """The analysis on any engine: labeled items exactly up to `exact_rows`, in bins above."""
    classes = engine.classes
    fit_rows = max(2000, FIT_CELLS // len(classes))
    counts = engine.map_reduce(_group_counts, add, len(classes))
    n_labeled = int(counts["classes"].sum())
    sample = sample_rows(engine, _labeled_rows, max(exact_rows, fit_rows), seed=config.seed)
    probs = sample[[f"p{j}" for j in range(len(classes))]].to_numpy(np.float32)
    labels = sample["label"].to_numpy(np.int64)
    if n_labeled <= exact_rows:  # the sample is every labeled item, in table order
        return calibrate_items(probs, labels, sample["split"].to_numpy(str), classes, config)
    return _calibrate_in_bins(engine, sample, probs, labels, counts, fit_rows, config)


def calibrate_items(
    probs: NDArray, labels: NDArray, splits: NDArray, classes: tuple[str, ...], config: AuditConfig
) -> AnalysisResult:
    """The analysis on the labeled items' arrays (the exact form, item by item)."""
    rng = np.random.default_rng(config.seed)
    k = len(classes)
    predicted = probs.argmax(axis=1)
    conf = probs.max(axis=1).astype(np.float64)
    correct = predicted == labels

    fit_rows = max(2000, FIT_CELLS // k)
    temperature = fit_temperature(probs, labels, max_rows=fit_rows, seed=config.seed)
    folds = rng.permutation(len(labels)) % FOLDS
    scaled, fold_temperatures = cross_fitted(probs, labels, folds, fit_rows, config.seed)
    conf_after = scaled.max(axis=1).astype(np.float64)
    correct_after = scaled.argmax(axis=1) == labels  # temperature keeps the argmax

    groups: list[tuple[str, str | None, NDArray[np.bool_]]] = [
        (ALL_SPLITS, None, np.ones(len(labels), dtype=bool))
    ]
    split_names = sorted(pd.unique(splits))
    if split_names != [ALL_SPLITS]:
        groups += [(name, None, splits == name) for name in split_names]
    groups += [(ALL_SPLITS, classes[c], predicted == c) for c in range(k)]
    draws, level = config.calibration_bootstrap, config.confidence_level
    rows, bins = [], []
    for split, cls, mask in groups:
        row = {"split": split, "predicted_class": cls}
        row |= group_calibration(
            conf[mask], correct[mask], config.calibration_bins, draws, level, rng
        )
        after = group_calibration(
            conf_after[mask], correct_after[mask], config.calibration_bins, draws, level, rng
        )
        rows.append(row | _after(after))
        if cls is None:
            for name, c, ok in (
                ("given", conf, correct),
                ("temperature-scaled", conf_after, correct_after),
            ):
                frame = reliability_bins(c[mask], ok[mask], config.calibration_bins, level)
                frame.insert(0, "probabilities", name)
                frame.insert(0, "split", split)
                bins.append(frame)
    decisions = decision_table(probs, scaled, labels, config)
    return _result(rows, bins, decisions, temperature, fold_temperatures, fit_rows, config)


def _after(after: dict) -> dict:
    return {
        "ece_after": after["ece"],
        "ece_after_ci_low": after["ece_ci_low"],
        "ece_after_ci_high": after["ece_ci_high"],
    }


def _result(
    rows: list[dict],
    bins: list[pd.DataFrame],
    decisions: pd.DataFrame,
    temperature: float,
    fold_temperatures: list[float],
    fit_rows: int,
    config: AuditConfig,
    extra_notes: tuple[str, ...] = (),
) -> AnalysisResult:
    draws = config.calibration_bootstrap
    ece_table = pd.DataFrame(rows)
    ece_table["predicted_class"] = ece_table["predicted_class"].astype(object)
    overall = rows[0]

    miscalibrated = bool(overall["miscalibrated"])
    applied = miscalibrated and bool(overall["ece_after"] < overall["ece"])
    notes = [
        (
            "Top-label calibration on labeled items: accuracy against the given labels among items "
            "of similar confidence; label noise counts as miscalibration."
        ),
        (
            f"ECE over {config.calibration_bins} equal-mass bins (fewer for groups under "
            f"{config.calibration_bins * MIN_PER_BIN} items), {config.confidence_level:.0%} bootstrap "
            f"intervals from {draws} resamples."
        ),
        _verdict(overall, temperature),
        (
            f"Temperature fitted by likelihood; ECE after it is cross-fitted over {FOLDS} folds "
            f"(fold temperatures {min(fold_temperatures):.2f}–{max(fold_temperatures):.2f})."
        ),
        *extra_notes,
    ]
    if applied:
        notes.append(
            f"label_next uses the temperature-scaled probabilities (T = {temperature:.2f}) for its "
            "margin, difficulty buckets and auto-label cut."
        )
    elif miscalibrated:
        notes.append(
            "The temperature does not lower the ECE, so decisions keep the given probabilities."
        )
    return AnalysisResult(
        name="calibration",
        tables={
            "ece": ece_table,
            "bins": pd.concat(bins, ignore_index=True),
            "decisions": decisions,
        },
        summary={
            "ece": overall["ece"],
            "ece_ci_low": overall["ece_ci_low"],
            "ece_ci_high": overall["ece_ci_high"],
            "ece_if_calibrated": overall["ece_if_calibrated"],
            "calibration_gap": overall["confidence_gap"],
            "temperature": temperature,
            "ece_after_temperature": overall["ece_after"],
            "ece_after_temperature_ci_low": overall["ece_after_ci_low"],
            "ece_after_temperature_ci_high": overall["ece_after_ci_high"],
            "calibration_miscalibrated": miscalibrated,
            "calibration_applied": applied,
        },
        params={
            "bins": config.calibration_bins,
            "bootstrap": draws,
            "folds": FOLDS,
            "fold_temperatures": [round(t, 4) for t in fold_temperatures],
            "fit_rows": fit_rows,
            "confidence_level": config.confidence_level,
        },
        notes=tuple(notes),
    )


# -- the engine form above EXACT_ROWS labeled items ----------------------------------------------


def _labeled_rows(chunk: Chunk) -> pd.DataFrame:
    """Kernel: the labeled rows' positions, labels, splits and probabilities."""
    rows = np.flatnonzero(chunk.labeled)
    probs = chunk.probs[rows]
    frame = pd.DataFrame({f"p{j}": probs[:, j] for j in range(probs.shape[1])})
    frame.insert(0, "split", np.asarray(chunk.splits[rows]).astype(str))
    frame.insert(0, "label", chunk.labels[rows])
    frame.insert(0, "pos", chunk.pos[rows])
    return frame


def _group_counts(chunk: Chunk, k: int) -> dict:
    """Kernel: labeled items per split and per predicted class."""
    rows = np.flatnonzero(chunk.labeled)
    splits = np.asarray(chunk.splits[rows]).astype(str)
    names, n = np.unique(splits, return_counts=True)
    predicted = chunk.probs[rows].argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
    return {
        "splits": {str(s): int(c) for s, c in zip(names, n, strict=True)},
        "classes": np.bincount(predicted, minlength=k).astype(np.int64),
    }


def _fold_of(hashes: NDArray[np.uint64]) -> NDArray[np.int64]:
    return ((hashes >> np.uint64(32)) % np.uint64(FOLDS)).astype(np.int64)


def _smallest(hashes: NDArray[np.uint64], rows: NDArray[np.intp], k: int) -> NDArray[np.intp]:
    return np.sort(rows[np.argsort(hashes[rows], kind="stable")[:k]])


# Per-bin sums a chunk returns: items, sum of (correct - confidence) and of its square,
# confidence, correct, confidence x (1 - confidence) (the null's variance).
_N, _X, _XX, _CONF, _HITS, _NULL = range(6)


def _bin_sums(conf: NDArray, correct: NDArray, edges: NDArray, n_bins: int) -> NDArray:
    bins = np.searchsorted(edges, conf, side="right")
    x = correct - conf
    return np.stack(
        [
            np.bincount(bins, weights=w, minlength=n_bins)
            for w in (np.ones(len(conf)), x, x * x, conf, correct, conf * (1 - conf))
        ],
        axis=1,
    )


def _scaled_sums(
    chunk: Chunk,
    groups: list[tuple[str, object]],
    edges: list[tuple[NDArray, NDArray]],
    fold_temperatures: NDArray,
    cuts: tuple[float, float],
    n_bins: int,
    seed: int,
) -> tuple[NDArray, NDArray]:
    """Kernel: per group, the per-bin sums with the given and the cross-fitted scaled
    probabilities, (groups, 2, bins, 6); and per decision region n, hits, sum of confidence
    before and after, (regions, 2, 3)."""
    from dataaudit.engine.sample import row_hash

    rows = np.flatnonzero(chunk.labeled)
    probs = chunk.probs[rows]
    labels = chunk.labels[rows]
    splits = np.asarray(chunk.splits[rows]).astype(str)
    folds = _fold_of(row_hash(chunk.pos[rows], seed))
    scaled = np.empty(probs.shape, dtype=np.float32)
    for f, t in enumerate(fold_temperatures):
        held = folds == f
        scaled[held] = temper(probs[held], float(t))
    predicted = probs.argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
    versions = []
    for p in (probs, scaled):
        conf = p.max(axis=1).astype(np.float64) if len(rows) else np.zeros(0)
        versions.append((conf, (predicted == labels).astype(np.float64)))
    out = np.zeros((len(groups), 2, n_bins, 6))
    for g, (kind, value) in enumerate(groups):
        mask = (
            np.ones(len(rows), bool)
            if kind == "all"
            else (splits == value if kind == "split" else predicted == value)
        )
        for v, (conf, ok) in enumerate(versions):
            out[g, v] = _bin_sums(conf[mask], ok[mask], edges[g][v], n_bins)
    regions = np.zeros((len(DECISIONS), 2, 3))
    for v, p in enumerate((probs, scaled)):
        if not len(rows):
            continue
        masks, p1 = _regions(p, cuts[v])
        ok = p.argmax(axis=1) == labels
        for r, mask in enumerate(masks):
            regions[r, v] = (mask.sum(), ok[mask].sum(), p1[mask].astype(np.float64).sum())
    return out, regions


def _calibrate_in_bins(
    engine: Engine,
    sample: pd.DataFrame,
    probs: NDArray,
    labels: NDArray,
    counts: dict,
    fit_rows: int,
    config: AuditConfig,
) -> AnalysisResult:
    """Above EXACT_ROWS labeled items: temperatures fitted on the hash sample (its fit_rows
    smallest hashes; each fold's on the other folds' ones), equal-mass bin edges at the
    sample's quantiles, then one pass summing every bin of every group, and the bootstrap from
    those sums (its normal limit, as group_calibration above EXACT_ROWS)."""
    rng = np.random.default_rng(config.seed)
    classes = engine.classes
    hashes = sample[HASH].to_numpy(np.uint64)
    every = np.arange(len(sample))
    fit = _smallest(hashes, every, fit_rows)
    temperature = fit_temperature(probs[fit], labels[fit], max_rows=len(fit))
    folds = _fold_of(hashes)
    fold_temperatures = []
    for f in range(FOLDS):
        rest = _smallest(hashes, np.flatnonzero(folds != f), fit_rows)
        fold_temperatures.append(fit_temperature(probs[rest], labels[rest], max_rows=len(rest)))
    scaled = np.empty(probs.shape, dtype=np.float32)
    for f, t in enumerate(fold_temperatures):
        scaled[folds == f] = temper(probs[folds == f], t)

    splits = sample["split"].to_numpy(str)
    predicted = probs.argmax(axis=1)
    split_names = sorted(counts["splits"])
    groups: list[tuple[str, object]] = [("all", None)]
    sizes = [int(counts["classes"].sum())]
    if split_names != [ALL_SPLITS]:
        groups += [("split", name) for name in split_names]
        sizes += [counts["splits"][name] for name in split_names]
    groups += [("class", c) for c in range(len(classes))]
    sizes += counts["classes"].tolist()
    n_bins = config.calibration_bins
    edges = []
    for (kind, value), n in zip(groups, sizes, strict=True):
        mask = (
            np.ones(len(sample), bool)
            if kind == "all"
            else (splits == value if kind == "split" else predicted == value)
        )
        b = bins_for(n, n_bins)
        q = np.arange(1, b) / b
        edges.append(
            tuple(
                np.quantile(p[mask].max(axis=1), q) if mask.any() else np.zeros(0)
                for p in (probs, scaled)
            )
        )
    cuts = tuple(
        st.auto_label_threshold(p.max(axis=1), p.argmax(axis=1) == labels,
                                config.auto_label_precision)[0]
        for p in (probs, scaled)
    )  # fmt: skip
    sums, regions = engine.map_reduce(
        _scaled_sums,
        add,
        groups,
        edges,
        np.array(fold_temperatures),
        cuts,
        n_bins,
        config.seed,
    )
    draws, level = config.calibration_bootstrap, config.confidence_level
    rows, bins = [], []
    for g, (kind, value) in enumerate(groups):
        split = value if kind == "split" else ALL_SPLITS
        cls = classes[value] if kind == "class" else None
        row = {"split": split, "predicted_class": cls}
        row |= binned_calibration(sums[g, 0], draws, level, rng)
        rows.append(row | _after(binned_calibration(sums[g, 1], draws, level, rng)))
        if cls is None:
            for v, name in enumerate(("given", "temperature-scaled")):
                frame = _reliability_from_sums(sums[g, v], level)
                frame.insert(0, "probabilities", name)
                frame.insert(0, "split", split)
                bins.append(frame)
    decisions = _decisions_from_sums(regions, cuts, config.confidence_level)
    note = (
        f"{int(sizes[0]):,} labeled items: equal-mass bin edges are quantiles of a uniform sample "
        f"of {len(sample):,} of them, the auto-label cut is found on it and temperatures are "
        f"fitted on {len(fit):,}; every item is counted in its bin, and intervals come from the "
        "bins' normal limit."
    )
    return _result(rows, bins, decisions, temperature, fold_temperatures, fit_rows, config, (note,))


def binned_calibration(sums: NDArray, draws: int, confidence: float, rng) -> dict:
    """group_calibration from per-bin sums (bins, 6), with the bootstrap's normal limit."""
    n = int(sums[:, _N].sum())
    row = {
        "n": n,
        "mean_confidence": float(sums[:, _CONF].sum() / n) if n else np.nan,
        "accuracy": float(sums[:, _HITS].sum() / n) if n else np.nan,
    }
    row["confidence_gap"] = row["mean_confidence"] - row["accuracy"]
    if n < MIN_ITEMS:
        return (
            row
            | dict.fromkeys(("ece", "ece_ci_low", "ece_ci_high", "ece_if_calibrated"), np.nan)
            | {"miscalibrated": False}
        )
    ece = float(ece_from_sums(sums[:, _X], n))
    boot = _normal_resamples(sums[:, _N], sums[:, _X], sums[:, _XX], n, draws, rng)
    null = _normal_null(sums[:, _NULL], n, draws, rng)
    return row | _interval(ece, boot, null, confidence)


def _reliability_from_sums(sums: NDArray, confidence: float) -> pd.DataFrame:
    counts, hits, total = sums[:, _N], sums[:, _HITS], sums[:, _CONF]
    low, high = wilson_interval(hits, counts, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "bin": np.arange(len(counts)),
                "n": counts.astype(np.int64),
                "mean_confidence": total / counts,
                "accuracy": hits / counts,
                "accuracy_low": low,
                "accuracy_high": high,
            }
        )[counts > 0]


ANALYSIS = Analysis(
    name="calibration",
    title="Calibration",
    run=run,
    requires=("probs", "labels"),
)


def _verdict(overall: dict, temperature: float) -> str:
    gap = overall["confidence_gap"]
    side = "overconfident" if gap > 0 else "underconfident"
    if overall["miscalibrated"]:
        head = (
            f"Miscalibrated, {side}: mean confidence {overall['mean_confidence']:.1%} against "
            f"{overall['accuracy']:.1%} accuracy; the ECE interval lies above "
            f"{overall['ece_if_calibrated']:.3f}, the most a calibrated model shows on these items."
        )
    else:
        head = (
            f"No evidence of miscalibration: the ECE interval reaches "
            f"{overall['ece_if_calibrated']:.3f}, which a calibrated model shows on these items."
        )
    return head + f" Calibrating temperature {temperature:.2f}."


# -- helpers on arrays ---------------------------------------------------------------------------


def equal_mass_bins(conf: NDArray, n_bins: int) -> NDArray[np.int64]:
    """Bin index per item: bins of equal size by rank (ties split, so no bin is empty)."""
    n = len(conf)
    order = np.argsort(conf, kind="stable")
    bins = np.empty(n, dtype=np.int64)
    bins[order] = np.arange(n) * n_bins // max(n, 1)
    return bins


def bins_for(n: int, n_bins: int) -> int:
    return int(max(1, min(n_bins, n // MIN_PER_BIN)))


def ece_from_sums(sums: NDArray, n: int) -> NDArray:
    """ECE from per-bin sums of (correct − confidence); the last axis runs over bins."""
    return np.abs(sums).sum(axis=-1) / n


def expected_calibration_error(conf: NDArray, correct: NDArray, n_bins: int = 15) -> float:
    """ECE with equal-mass bins.

    >>> round(expected_calibration_error([0.9, 0.9, 0.6, 0.6], [1, 0, 1, 1], n_bins=2), 3)
    0.4
    """
    conf = np.asarray(conf, dtype=np.float64)
    if len(conf) == 0:
        return float("nan")
    n_bins = int(max(1, min(n_bins, len(conf))))
    bins = equal_mass_bins(conf, n_bins)
    sums = np.bincount(bins, weights=np.asarray(correct, dtype=np.float64) - conf, minlength=n_bins)
    return float(ece_from_sums(sums, len(conf)))


def bootstrap_ece(
    conf: NDArray, correct: NDArray, bins: NDArray[np.int64], n_bins: int, draws: int, rng
) -> NDArray[np.float64]:
    """ECE of `draws` bootstrap resamples (bins fixed at the original items' bins)."""
    x = np.asarray(correct, dtype=np.float64) - conf
    return _resampled_ece(x, bins, n_bins, draws, rng, null=None)


def null_ece(
    conf: NDArray, bins: NDArray[np.int64], n_bins: int, draws: int, rng
) -> NDArray[np.float64]:
    """ECE of `draws` label sets drawn from the confidences: what a calibrated model would show."""
    return _resampled_ece(np.zeros(len(conf)), bins, n_bins, draws, rng, null=conf)


def _resampled_ece(x, bins, n_bins, draws, rng, null):
    n = len(x)
    if n <= EXACT_ROWS:
        out = np.empty(draws)
        step = max(1, 2_000_000 // max(n, 1))  # replicates per batch: ~2M cells
        for start in range(0, draws, step):
            r = min(step, draws - start)
            offset = (np.arange(r) * n_bins)[:, None]
            if null is None:
                idx = rng.integers(0, n, size=(r, n))
                values, where = x[idx], bins[idx] + offset
            else:
                values = (rng.random((r, n)) < null).astype(np.float64) - null
                where = bins[None, :] + offset
            sums = np.bincount(where.ravel(), weights=values.ravel(), minlength=r * n_bins)
            out[start : start + r] = ece_from_sums(sums.reshape(r, n_bins), n)
        return out
    if null is None:
        counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
        sx = np.bincount(bins, weights=x, minlength=n_bins)
        sxx = np.bincount(bins, weights=x * x, minlength=n_bins)
        return _normal_resamples(counts, sx, sxx, n, draws, rng)
    return _normal_null(
        np.bincount(bins, weights=null * (1 - null), minlength=n_bins), n, draws, rng
    )


def _normal_resamples(counts, sx, sxx, n: int, draws: int, rng) -> NDArray[np.float64]:
    """Bootstrap ECEs from per-bin sums: bin counts vary like a multinomial; each bin's sum of
    resampled items is ~ normal."""
    counts = np.asarray(counts, np.float64)
    mean = sx / np.maximum(counts, 1)
    var = sxx / np.maximum(counts, 1) - mean**2
    drawn = rng.multinomial(n, counts / n, size=draws).astype(np.float64)
    sums = rng.normal(drawn * mean, np.sqrt(drawn * np.maximum(var, 0)))
    return ece_from_sums(sums, n)


def _normal_null(variance, n: int, draws: int, rng) -> NDArray[np.float64]:
    """ECEs of labels drawn from the confidences, from each bin's sum of conf x (1 - conf)."""
    sums = rng.normal(0.0, np.sqrt(variance), size=(draws, len(variance)))
    return ece_from_sums(sums, n)


def group_calibration(
    conf: NDArray, correct: NDArray, n_bins: int, draws: int, confidence: float, rng
) -> dict:
    """ECE with its bootstrap interval and calibrated-model reference for one group of items."""
    n = len(conf)
    row = {
        "n": n,
        "mean_confidence": float(conf.mean()) if n else np.nan,
        "accuracy": float(np.mean(correct)) if n else np.nan,
    }
    row["confidence_gap"] = row["mean_confidence"] - row["accuracy"]
    if n < MIN_ITEMS:
        return (
            row
            | dict.fromkeys(("ece", "ece_ci_low", "ece_ci_high", "ece_if_calibrated"), np.nan)
            | {"miscalibrated": False}
        )
    b = bins_for(n, n_bins)
    bins = equal_mass_bins(conf, b)
    x = np.asarray(correct, dtype=np.float64) - conf
    ece = float(ece_from_sums(np.bincount(bins, weights=x, minlength=b), n))
    boot = bootstrap_ece(conf, correct, bins, b, draws, rng)
    null = null_ece(conf, bins, b, draws, rng)
    return row | _interval(ece, boot, null, confidence)


def _interval(ece: float, boot: NDArray, null: NDArray, confidence: float) -> dict:
    alpha = (1 - confidence) / 2
    # The ECE sums absolute values, so resampled ECEs sit above the ECE (noise adds); the
    # percentile interval is shifted back by that bias so it brackets the estimate.
    bias = max(0.0, float(boot.mean()) - ece)
    low, high = np.clip(np.quantile(boot, [alpha, 1 - alpha]) - bias, 0, None)
    reference = float(np.quantile(null, confidence))
    return {
        "ece": ece,
        "ece_ci_low": float(low),
        "ece_ci_high": float(high),
        "ece_if_calibrated": reference,
        "miscalibrated": bool(low > reference),
    }


def reliability_bins(
    conf: NDArray, correct: NDArray, n_bins: int, confidence: float = 0.95
) -> pd.DataFrame:
    """Per equal-mass bin: items, mean confidence, accuracy with its Wilson interval."""
    n = len(conf)
    b = bins_for(n, n_bins)
    bins = equal_mass_bins(conf, b) if n else np.zeros(0, np.int64)
    counts = np.bincount(bins, minlength=b)
    hits = np.bincount(bins, weights=np.asarray(correct, np.float64), minlength=b)
    total = np.bincount(bins, weights=conf, minlength=b)
    low, high = wilson_interval(hits, counts, confidence)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame(
            {
                "bin": np.arange(b),
                "n": counts,
                "mean_confidence": total / counts,
                "accuracy": hits / counts,
                "accuracy_low": low,
                "accuracy_high": high,
            }
        )[counts > 0]


def _logits(probs: NDArray) -> NDArray[np.float32]:
    return np.log(np.clip(np.asarray(probs, dtype=np.float32), PROB_FLOOR, 1.0))


def temper(probs: NDArray, temperature: float) -> NDArray[np.float32]:
    """softmax(log p / T) row by row, in chunks; T = 1 returns the probabilities unchanged."""
    probs = np.asarray(probs, dtype=np.float32)
    if temperature == 1.0:
        return probs
    out = np.empty(probs.shape, dtype=np.float32)
    for start in range(0, len(probs), CHUNK_ROWS):
        z = _logits(probs[start : start + CHUNK_ROWS]) / np.float32(temperature)
        z -= z.max(axis=1, keepdims=True)
        np.exp(z, out=z)
        out[start : start + len(z)] = z / z.sum(axis=1, keepdims=True)
    return out


def _nll(logits: NDArray, labels: NDArray, temperature: float) -> float:
    z = logits / temperature
    top = z.max(axis=1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(axis=1))
    return float((lse - z[np.arange(len(z)), labels]).mean())


def fit_temperature(
    probs: NDArray, labels: NDArray, *, max_rows: int = 50_000, seed: int = 0
) -> float:
    """The temperature minimising the negative log-likelihood of `labels` (a random subsample of
    at most `max_rows` rows: one parameter needs few items)."""
    from scipy.optimize import minimize_scalar

    if len(labels) == 0:
        return 1.0
    rows = np.arange(len(labels))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    logits = _logits(probs[rows]).astype(np.float64)
    y = np.asarray(labels)[rows]
    lo, hi = np.log(TEMPERATURE_RANGE)
    best = minimize_scalar(
        lambda t: _nll(logits, y, float(np.exp(t))), bounds=(lo, hi), method="bounded"
    )
    return float(np.exp(best.x))


def cross_fitted(
    probs: NDArray, labels: NDArray, folds: NDArray, max_rows: int, seed: int
) -> tuple[NDArray[np.float32], list[float]]:
    """Temperature-scaled probabilities where each fold is scaled by a T fitted on the others."""
    out = np.empty(probs.shape, dtype=np.float32)
    temperatures = []
    for f in range(FOLDS):
        held = folds == f
        if not held.any():
            continue
        rest = ~held
        t = (
            fit_temperature(probs[rest], labels[rest], max_rows=max_rows, seed=seed + f)
            if rest.any()
            else 1.0
        )
        temperatures.append(t)
        out[held] = temper(probs[held], t)
    return out, temperatures


DECISIONS = (
    "auto-label cut",
    "difficulty: easy",
    "difficulty: medium",
    "difficulty: hard",
    "queue margin",
)


def _rules(cut: float) -> list[str]:
    return [
        f"confidence ≥ {cut:.3f}" if np.isfinite(cut) else "no cut reaches the precision",
        f"confidence ≥ {st.DIFFICULTY_EASY[0]}",
        "neither easy nor hard",
        f"confidence < {st.DIFFICULTY_HARD[0]} or top-2 margin < {st.DIFFICULTY_HARD[1]}",
        f"top-2 margin < {st.DIFFICULTY_HARD[1]} (the uncertain items the queue picks)",
    ]


def _regions(probs: NDArray, cut: float) -> tuple[list[NDArray[np.bool_]], NDArray]:
    """Masks of the DECISIONS' regions for an auto-label cut, and the top-1 probabilities."""
    _, _, p1, p2 = st.top2(probs)
    easy = p1 >= st.DIFFICULTY_EASY[0]
    hard = (p1 < st.DIFFICULTY_HARD[0]) | (p1 - p2 < st.DIFFICULTY_HARD[1])
    return [p1 >= cut, easy & ~hard, ~easy & ~hard, hard, p1 - p2 < st.DIFFICULTY_HARD[1]], p1


def decision_regions(probs: NDArray, labels: NDArray, config: AuditConfig):
    """(decision, rule, mask over rows) for the label_next decisions that read probabilities."""
    p1 = st.top2(probs)[2]
    correct = probs.argmax(axis=1) == labels
    cut, _, _ = st.auto_label_threshold(p1, correct, config.auto_label_precision)
    masks, p1 = _regions(probs, cut)
    return list(zip(DECISIONS, _rules(cut), masks, strict=True)), p1, correct


def decision_table(
    probs: NDArray, scaled: NDArray, labels: NDArray, config: AuditConfig
) -> pd.DataFrame:
    """Calibration inside each decision's region, with the given and the scaled probabilities."""
    before, p1, correct = decision_regions(probs, labels, config)
    after, q1, correct_after = decision_regions(scaled, labels, config)
    sums = np.zeros((len(DECISIONS), 2, 3))
    for r, ((_, _, mask), (_, _, mask_after)) in enumerate(zip(before, after, strict=True)):
        sums[r, 0] = (mask.sum(), correct[mask].sum(), p1[mask].astype(np.float64).sum())
        sums[r, 1] = (
            mask_after.sum(),
            correct_after[mask_after].sum(),
            q1[mask_after].astype(np.float64).sum(),
        )
    return _decision_rows([rule for _, rule, _ in before], sums, config.confidence_level)


def _decisions_from_sums(sums: NDArray, cuts: tuple[float, float], confidence: float):
    return _decision_rows(_rules(cuts[0]), sums, confidence)


def _decision_rows(rules: list[str], sums: NDArray, confidence: float) -> pd.DataFrame:
    """The decisions table from each region's (n, hits, sum of confidence) before and after."""
    rows = []
    for decision, rule, (before, after) in zip(DECISIONS, rules, sums, strict=True):
        n, hits = int(before[0]), int(before[1])
        low, high = wilson_interval(hits, n, confidence)
        conf = float(before[2] / n) if n else np.nan
        acc = hits / n if n else np.nan
        n_after = int(after[0])
        conf_after = float(after[2] / n_after) if n_after else np.nan
        acc_after = float(after[1] / n_after) if n_after else np.nan
        rows.append(
            {
                "decision": decision,
                "rule": rule,
                "n": n,
                "mean_confidence": conf,
                "accuracy": acc,
                "accuracy_low": float(low),
                "accuracy_high": float(high),
                "confidence_gap": conf - acc,
                "miscalibrated": bool(n and not (low <= conf <= high)),
                "n_after": n_after,
                "mean_confidence_after": conf_after,
                "accuracy_after": acc_after,
                "confidence_gap_after": conf_after - acc_after,
            }
        )
    return pd.DataFrame(rows)


def decision_probs(data: AuditDataset, ctx: AuditContext) -> tuple[AuditDataset, str | None]:
    """The dataset with temperature-scaled probabilities when calibration says to use them.

    Returns the dataset unchanged (and None) otherwise; else the scaled one and a note. Members of
    a committee keep their probabilities: their votes (argmax) do not change with a temperature.
    """
    import dataclasses

    result = ctx.results.get("calibration")
    if result is None or not result.summary.get("calibration_applied"):
        return data, None
    t = float(result.summary["temperature"])
    note = (
        f"probabilities temperature-scaled (T = {t:.2f}) before the margin, difficulty and "
        f"auto-label cut: calibration found them miscalibrated (ECE {result.summary['ece']:.3f})"
    )
    return dataclasses.replace(data, probs=temper(data.probs, t)), note
