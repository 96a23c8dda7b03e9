"""Options checked before any data is read, so a wrong value costs a second, not a whole audit.

Every problem is a coded Problem, all reported at once (the CLI exits 2):
  option_invalid          a value outside its range (--seed -1, --html-max-rows 0, ...)
  fail_on_unknown_metric  a --fail-on metric that no analysis produces
  strategy_needs_input    --strategy bald with one model, --strategy ood without embeddings
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from dataaudit.config import AuditConfig
from dataaudit.problems import InputError, Problem

SEED_MAX = 2**32 - 1  # numpy and scikit-learn take seeds in [0, 2**32 - 1]

# field -> (lowest, highest, lowest allowed?, highest allowed?); None = unbounded.
_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "prob_sum_tolerance": (0, None, True, True),
    "swapped_pairs_top": (0, None, True, True),
    "examples_per_pair": (0, None, True, True),
    "confidence_level": (0, 1, False, False),
    "knn_k": (1, None, True, True),
    "knn_approx_threshold": (0, None, True, True),
    "knn_recall_sample": (0, None, True, True),
    "outliers_top": (0, None, True, True),
    "outlier_z": (0, None, False, True),
    "lookalikes_per_item": (0, None, True, True),
    "budget": (0, None, True, True),
    "auto_label_precision": (0, 1, False, True),
    "slice_min_support": (1, None, True, True),
    "slice_min_support_fraction": (0, 1, True, True),
    "slice_top_values": (1, None, True, True),
    "slice_numeric_bins": (1, None, True, True),
    "slice_given_bins": (1, None, True, True),
    "slice_min_lift": (0, None, True, True),
    "slice_min_gap": (0, 1, True, True),
    "slice_fdr": (0, 1, False, False),
    "slice_max_discovered": (0, None, True, True),
    "slice_clusters": (1, None, True, True),
    "slice_cluster_sample": (1, None, True, True),
    "slice_examples": (0, None, True, True),
    "html_max_rows": (1, None, True, True),
    "embedding_map_points": (1, None, True, True),
    "seed": (0, SEED_MAX, True, True),
}
_CHOICES = {
    "knn_mode": ("exact", "approx", "auto"),
    "knn_device": ("cpu", "cuda", "auto"),
    "embedding_map_method": ("pca", "tsne"),
}
# Command-line spellings where they differ from "--" + the field name with dashes.
_FLAGS = {"knn_approx_threshold": "--knn-approx-above", "knn_mode": "--knn"}
_COMMITTEE = ("bald", "vote_entropy", "kl")
_NEEDS_EMBEDDINGS = ("ood", "lookalike", "diversity")


def flag(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def check_options(config: AuditConfig, probs: Any = None, embeddings: Any = None) -> None:
    """Raise InputError listing every option problem of `config` (given these inputs)."""
    problems = config_problems(config) + strategy_problems(config, probs, embeddings)
    if problems:
        raise InputError(problems)


def config_problems(config: AuditConfig) -> list[Problem]:
    """Values of `config` outside their range or choices."""
    problems = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if f.name in _RANGES:
            why = _out_of_range(value, *_RANGES[f.name], whole=isinstance(f.default, int))
        elif f.name in _CHOICES:
            choices = _CHOICES[f.name]
            why = "" if value in choices else f"must be one of {', '.join(choices)}"
        else:
            continue
        if why:
            problems.append(_invalid(f.name, f"{why}, got {value!r}"))
    if config.strategy not in _strategies():
        problems.append(_invalid("strategy", f"unknown strategy {config.strategy!r}"))
    try:
        from dataaudit.analyses.label_next import parse_mix

        parse_mix(config.label_next_mix)
    except ValueError as exc:
        problems.append(_invalid("label_next_mix", str(exc)))
    if config.classes is not None and not config.classes:
        problems.append(_invalid("classes", "no class names given"))
    return problems


def _out_of_range(value, low, high, low_ok, high_ok, whole: bool) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number"
    if whole and not (isinstance(value, int) or float(value).is_integer()):
        return "must be a whole number"
    if not math.isfinite(value):
        return "must be finite"
    too_low = low is not None and (value < low if low_ok else value <= low)
    too_high = high is not None and (value > high if high_ok else value >= high)
    if not (too_low or too_high):
        return ""
    bounds = []
    if low is not None:
        bounds.append(f"{'≥' if low_ok else '>'} {low}")
    if high is not None:
        bounds.append(f"{'≤' if high_ok else '<'} {high:,}")
    return "must be " + " and ".join(bounds)


def _invalid(name: str, why: str) -> Problem:
    return Problem("option_invalid", why, source=f"{flag(name)} ({name})")


def _strategies() -> tuple[str, ...]:
    from dataaudit.analyses.label_next import STRATEGIES

    return STRATEGIES


def strategy_problems(config: AuditConfig, probs: Any, embeddings: Any) -> list[Problem]:
    """A single label-next strategy whose input is missing, known from the files' headers."""
    strategy = config.strategy
    if strategy in _COMMITTEE:
        models = n_models(probs)
        if models == 1:
            return [
                Problem(
                    "strategy_needs_input",
                    f"--strategy {strategy} needs probabilities from several models or "
                    "MC-dropout passes (M x N x K); the probabilities are of one model",
                    source=_name(probs),
                    fix="Give an M x N x K .npy, or choose another strategy (e.g. margin).",
                )
            ]
    if strategy in _NEEDS_EMBEDDINGS and embeddings is None:
        return [
            Problem(
                "strategy_needs_input",
                f"--strategy {strategy} needs embeddings",
                source="--embeddings",
                fix="Pass --embeddings, or choose another strategy (e.g. margin).",
            )
        ]
    return []


def n_models(probs: Any) -> int | None:
    """How many models' probabilities `probs` holds, from its shape or .npy header; None if unknown
    (the file is missing or unreadable: reading the inputs will say so)."""
    if probs is None:
        return None
    if isinstance(probs, (str, os.PathLike)):
        path = Path(probs)
        if path.suffix.lower() != ".npy":
            return 1  # Parquet / CSV probabilities are one model's
        if not path.is_file():  # missing, a folder or a FIFO: reported when read
            return None
        try:
            import numpy as np

            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape  # the header only
        except Exception:  # unreadable: load_dataset names it
            return None
    else:
        shape = getattr(probs, "shape", None)
        if shape is None:
            return None
    if len(shape) == 3:
        return int(shape[0])
    return 1 if len(shape) == 2 else None


def _name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return "<in-memory probs>"


# -- --fail-on ------------------------------------------------------------------------------------
def metric_patterns(comparison: bool = False) -> tuple[str, ...]:
    """Every metric key a run may produce (fnmatch patterns); with a comparison, its keys too."""
    from dataaudit.analyses import METRICS

    patterns = tuple(key for keys in METRICS.values() for key in keys)
    if comparison:
        from dataaudit.compare import SUMMARY_KEYS

        patterns += SUMMARY_KEYS
    return patterns


def fail_on_problems(conditions, comparison: bool = False, checks=()) -> list[Problem]:
    """--fail-on conditions and config-file [checks] on metrics that no run (or comparison, with
    `comparison`) can produce."""
    patterns = metric_patterns(comparison)
    gates = [(f"--fail-on {c}", c.metric) for c in conditions]
    gates += [(f"[checks] {c.name}", c.metric) for c in checks if c.condition is None]
    problems = []
    for where, metric in gates:
        if any(fnmatchcase(metric, p) for p in patterns):
            continue
        if not comparison and any(fnmatchcase(metric, p) for p in metric_patterns(True)):
            why = f"{metric!r} describes a comparison with an earlier run"
            fix = "Pass --baseline OLD_DIR (or use `dataaudit compare`)."
        else:
            exact = sorted({p for p in patterns if "*" not in p})
            close = difflib.get_close_matches(metric, exact, n=3)
            why = f"no analysis produces a metric {metric!r}"
            fix = (f"Did you mean {' or '.join(close)}? " if close else "") + (
                f"The metrics (as in summary.json): {', '.join(exact)}."
            )
        problems.append(Problem("fail_on_unknown_metric", why, source=where, fix=fix))
    return problems
