"""Which class each probability column is, and which class each label names.

The rules (the README's "How inputs are read" table states them for users):

- Class order, first that applies: the class list the user gave (--classes / classes=, else a
  classes.txt beside the probabilities); a keyed probability file's header is matched to it by
  name (a shared prefix or suffix such as 'prob_' may be cut), and the run stops when the header
  names other classes. Without a given list the header's names are the classes, unless they are
  only positions (0..K-1, p0..p{K-1}). Otherwise the labels decide: integers are class indices
  0..K-1, or, when they do not fit, the K distinct integers in numeric order (-1/+1: -1 is
  column 0); other numbers in numeric order; text sorted.
- A label names a class by its text, else by its integer value ('3.0', '+3' and '03' are 3),
  else, when no class name is a number, as a 0-based index into the classes.
- Only an empty cell is unlabeled, plus the values the user lists (--unlabeled-values).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.dataset import UNLABELED
from dataaudit.load import PANDAS_NA_TEXT
from dataaudit.problems import AuditWarning, Problem

_INT_TEXT = re.compile(r"[+-]?\d+(?:\.0*)?")
MAX_EXAMPLES = 5


def int_value(text: str) -> int | None:
    """The integer a label or class name writes ('3', '3.0', '+3', '03'), else None."""
    if _INT_TEXT.fullmatch(text):
        return int(text.split(".")[0])
    return None


def _float_value(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def show(names, limit: int = 10) -> str:
    names = list(names)
    more = f", … ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(repr(str(n)) for n in names[:limit]) + more


@dataclass
class ClassOrder:
    """The classes in probability-column order, where that order came from, and which columns
    of a keyed probability file hold them (None: every column, as it is)."""

    classes: tuple[str, ...] | None
    source: str
    columns: list[int] | None = None
    problems: list[Problem] = field(default_factory=list)
    warnings: list[AuditWarning] = field(default_factory=list)


# -- matching names -------------------------------------------------------------------------------
def _affix_cuts(names: list[str]):
    """The names, then with a shared prefix and/or suffix cut ('prob_cat' -> 'cat'), least cut
    first; only cuts that leave every name non-empty and distinct."""
    yield names
    if len(names) < 2:
        return
    prefix = len(os.path.commonprefix(names))
    suffix = len(os.path.commonprefix([n[::-1] for n in names]))
    for p, s in sorted(((p, s) for p in range(prefix + 1) for s in range(suffix + 1)), key=sum)[1:]:
        cut = [n[p : len(n) - s] for n in names]
        if all(cut) and len(set(cut)) == len(cut):
            yield cut


def _lookup(names: list[str], wanted, one_each: bool = True) -> list[int] | None:
    """For each wanted name, the position of the name that writes it (same text, else the same
    integer); None unless every wanted name is found (each at its own position if one_each)."""
    exact = {n: i for i, n in enumerate(names)}
    by_value = _unique_values(names)
    found = []
    for name in wanted:
        i = exact.get(name)
        if i is None and (value := int_value(name)) is not None:
            i = by_value.get(value)
        if i is None:
            return None
        found.append(i)
    return found if not one_each or len(set(found)) == len(found) else None


def _unique_values(names) -> dict[int, int]:
    """Integer value -> position, for values only one name writes ('1' and '01' cancel out)."""
    positions: dict[int, list[int]] = {}
    for i, name in enumerate(names):
        if (value := int_value(name)) is not None:
            positions.setdefault(value, []).append(i)
    return {v: p[0] for v, p in positions.items() if len(p) == 1}


def _is_positional(header: list[str]) -> bool:
    """Column names that only number the columns: 0..K-1, p0.., prob_0.., in order."""
    positions = list(range(len(header)))
    return any([int_value(n) for n in cut] == positions for cut in _affix_cuts(header))


# -- class order ----------------------------------------------------------------------------------
def resolve_class_order(
    given: tuple[str, ...] | None,
    given_source: str,
    header: list[str] | None,
    header_file: str,
    label_values: list[str],
    k: int | None,
) -> ClassOrder:
    """Decide the class of every probability column; see the module docstring for the rules."""
    if given is not None:
        return _given_order(given, given_source, header, header_file)
    if header is not None and not _is_positional(header):
        for cut in _affix_cuts(header):
            if _lookup(cut, label_values, one_each=False) is not None:
                return ClassOrder(tuple(cut), f"the column names of {header_file}")
        # The labels are not all in the header: the label check names them.
        return ClassOrder(tuple(header), f"the column names of {header_file}")
    order = _order_from_labels(label_values, k)
    if header is not None and order.classes is not None:
        order.source += f" (the columns of {header_file} are only numbered)"
    return order


def _given_order(given, given_source, header, header_file) -> ClassOrder:
    if header is None:
        return ClassOrder(given, given_source)
    columns = next((c for cut in _affix_cuts(header) if (c := _lookup(cut, given))), None)
    positional = _is_positional(header)
    if columns is not None and not (positional and columns != list(range(len(header)))):
        order = ClassOrder(
            given, f"{given_source}; the columns of {header_file} matched by name", columns
        )
        extra = [header[i] for i in range(len(header)) if i not in set(columns)]
        if extra:
            order.warnings.append(
                AuditWarning(
                    "probs_columns_ignored",
                    f"{len(extra)} column(s) are not among the {len(given)} classes and were "
                    f"ignored: {show(extra, 5)}.",
                    file=header_file,
                )
            )
        if columns != sorted(columns):
            order.warnings.append(
                AuditWarning(
                    "class_order_from_header",
                    f"the columns are in another order than the classes {given_source}; they "
                    f"were matched by name (columns: {show(header)}; classes: {show(given)}).",
                    file=header_file,
                )
            )
        return order
    if positional and columns is None:
        return ClassOrder(given, f"{given_source}; the columns of {header_file} are numbered")
    if positional:
        why = (
            f"its columns {show(header)} may be positions (column 0 is the first class given) or "
            "class names (column '0' is class '0'), and the two readings differ"
        )
    else:
        missing = [c for c in given if _lookup(header, [c]) is None]
        why = (
            f"its columns {show(header)} are not the classes {given_source} {show(given)}: "
            f"no column for {show(missing, 5)}"
        )
    return ClassOrder(
        None,
        given_source,
        problems=[
            Problem(
                "class_order_conflict",
                f"the header does not say which column is which class: {why}",
                source=header_file,
                fix="Name the columns after the classes (any order: they are matched by name), "
                "or give the classes in column order with --classes.",
            )
        ],
    )


def _order_from_labels(values: list[str], k: int | None) -> ClassOrder:
    order = ClassOrder(None, "")
    if not values:
        order.classes, order.source = (), "no labeled rows"
        return order
    ints = [int_value(v) for v in values]
    if all(v is not None for v in ints):
        distinct = sorted(set(ints))
        if k is None:
            order.classes = tuple(str(v) for v in distinct)
            order.source = "integer labels"
        elif distinct[0] >= 0 and distinct[-1] < k:
            order.classes = tuple(str(i) for i in range(k))
            order.source = "integer labels are class indices (label 0 = column 0)"
        elif len(distinct) >= k:  # more values than columns: the class count check says so
            order.classes = tuple(str(v) for v in distinct)
            order.source = (
                "integer labels in numeric order ("
                + ", ".join(f"label {v} = column {i}" for i, v in enumerate(distinct[:2]))
                + ", …)"
            )
        else:
            order.source = "integer labels"
            order.problems.append(
                Problem(
                    "class_order_unknown",
                    f"the integer labels {show(distinct)} are not class indices 0..{k - 1}, and "
                    f"{len(distinct)} values for {k} columns do not say which column is which",
                    source="labels",
                    fix="Pass --classes in column order (or a classes.txt beside the "
                    "probabilities).",
                )
            )
    elif all(_float_value(v) is not None for v in values):
        order.classes = tuple(sorted(values, key=_float_value))
        order.source = "numeric label values in numeric order"
    else:
        order.classes = tuple(sorted(values))
        order.source = "sorted label names (pass --classes to set the order)"
    looks_missing = [v for v in values if v in PANDAS_NA_TEXT]
    if looks_missing and order.classes is not None:
        order.warnings.append(
            AuditWarning(
                "label_looks_missing",
                f"label value(s) {show(looks_missing)} were read as class names, as written. "
                "If they mean unlabeled, pass --unlabeled-values " + ",".join(looks_missing) + ".",
            )
        )
    return order


# -- labels ---------------------------------------------------------------------------------------
def apply_unlabeled_values(
    labels: pd.Series, values: tuple[str, ...]
) -> tuple[pd.Series, dict[str, int]]:
    """Labels with the user's unlabeled values (compared as text, or as integers) made missing;
    and how many rows are unlabeled because of each: '' for empty cells, then each value."""
    counts = {"": int(labels.isna().sum())}
    if not values:
        return labels, counts
    texts = {v.strip() for v in values}
    numbers = {int_value(v) for v in texts} - {None}
    codes, distinct = pd.factorize(labels)
    hit = np.array([d in texts or int_value(d) in numbers for d in distinct] + [False])
    for d, n in zip(distinct, np.bincount(codes[codes >= 0], minlength=len(distinct))):
        if d in texts or int_value(d) in numbers:
            counts[str(d)] = int(n)
    return labels.mask(hit[codes]), counts


def distinct_indices(distinct: list[str], classes: tuple[str, ...]) -> tuple[NDArray, str]:
    """The class index of each distinct label text (-1: no class), and a note on how integers
    were read. The one rule every engine applies (see the module docstring)."""
    exact = {c: i for i, c in enumerate(classes)}
    by_value = _unique_values(classes)
    found = np.array(
        [exact.get(d, by_value.get(int_value(d), -1) if by_value else -1) for d in distinct],
        dtype=np.int64,
    )
    note = ""
    ints = [int_value(d) for d in distinct]
    named = not any(int_value(c) is not None for c in classes)
    if (
        named
        and distinct
        and all(v is not None and 0 <= v < len(classes) for v in ints)
        and (found < 0).all()
    ):
        # Integers for named classes are 0-based indices into them.
        found = np.array(ints, dtype=np.int64)
        note = f"; integer labels index them (0 = {classes[0]!r})"
    return found, note


def label_indices(
    labels: pd.Series, classes: tuple[str, ...], class_source: str, source: str, column: str
) -> tuple[np.ndarray | None, str, list[Problem]]:
    """Class index per row (UNLABELED where missing), a note on how integers were read, and
    the problem naming labels that are no class."""
    # Each distinct label is looked up once (a handful), not each of 1M rows.
    codes, distinct = pd.factorize(labels)
    distinct = [str(d) for d in distinct]
    found, note = distinct_indices(distinct, classes)
    lookup = np.append(found, UNLABELED)
    per_row = lookup[codes]
    unknown = (codes >= 0) & (per_row < 0)
    if not unknown.any():
        return per_row.astype(np.int64), note, []
    bad = [d for d, f in zip(distinct, found) if f < 0]
    fix = "Fix the labels, or give the full class list with --classes / classes.txt."
    missing_like = [v for v in bad if v in PANDAS_NA_TEXT]
    if missing_like:
        fix += " If " + show(missing_like, 3) + " means unlabeled, pass --unlabeled-values "
        fix += ",".join(missing_like) + "."
    lower = {c.lower(): c for c in classes}
    cased = [(v, lower[v.lower()]) for v in bad if v.lower() in lower]
    if cased:
        fix += f" ({cased[0][0]!r} differs from the class {cased[0][1]!r} only in case.)"
    return (
        None,
        note,
        [
            Problem(
                "unknown_labels",
                f"{int(unknown.sum()):,} labels are not among the {len(classes)} classes "
                f"({class_source}: {show(classes)})",
                source=source,
                column=column,
                rows=tuple(int(i) for i in np.flatnonzero(unknown)[:MAX_EXAMPLES]),
                values=tuple(repr(v) for v in bad[:MAX_EXAMPLES]),
                count=int(unknown.sum()),
                fix=fix,
            )
        ],
    )
