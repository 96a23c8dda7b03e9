"""Property: however a planted dataset is written, dataaudit reads it right or stops with a code.

One planted dataset (calibrated probabilities, a few confident label flips, some unlabeled rows)
is written the ways real pipelines write it: class columns in any order, declared or not (with
--classes, a classes.txt beside the probabilities, or the header of a keyed Parquet/CSV), the
declaration true or stale; table rows shuffled with or without the probability rows, or keyed by
id; labels as names, integer indices, float-written indices (3.0, with NaN for unlabeled), index
text, or signed binary labels. The run must then either give the unpermuted run's answer (the same
accuracy and the same label-error candidates, up to renaming the classes) or stop with a coded
Problem; a misread it cannot stop (a few swapped columns) must at least carry a coded warning.
When the inputs declare everything truthfully, the run must not stop.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataaudit.analyses import label_errors
from dataaudit.context import AuditContext, Progress
from dataaudit.pipeline import load_checked, make_config
from dataaudit.problems import InputError

NAMES = ("ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "kiwi", "lynx")
N = 360
N_UNLABELED = 30
N_FLIPS = 12
# A coded doubt that tells the user the classes or rows may be misread.
MISREAD_WARNINGS = {"class_columns_swapped", "label_agreement_low", "label_agreement_at_chance"}


@dataclass(frozen=True)
class Planted:
    probs: np.ndarray  # N x K, columns in NAMES order
    labels: np.ndarray  # class index, -1 = unlabeled


@functools.cache
def planted(k: int) -> Planted:
    """Calibrated probabilities (labels drawn from them), sharp enough that every check is decisive;
    then N_FLIPS labeled items flipped to another class with the model confident against them."""
    rng = np.random.default_rng(k)
    logits = rng.normal(size=(N, k)) * 5.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) < rng.random((N, 1))).sum(axis=1).clip(max=k - 1)
    labels[np.arange(k)] = np.arange(k)  # every class has a label
    flips = rng.choice(np.flatnonzero(p.max(axis=1) > 0.95)[k:], N_FLIPS, replace=False)
    labels[flips] = (p[flips].argmax(axis=1) + rng.integers(1, k, N_FLIPS)) % k
    labels[-N_UNLABELED:] = -1
    return Planted(p.astype(np.float32), labels.astype(np.int64))


@dataclass(frozen=True)
class Outcome:
    stopped: tuple[str, ...] = ()  # Problem codes
    warnings: tuple[str, ...] = ()
    agreement: float | None = None
    flagged: frozenset = frozenset()  # (id, given class index, suggested class index)


def run(table, probs, to_index, **options) -> Outcome:
    """The pipeline's reading, the safety net and the label-error analysis; class names mapped
    back to the planted class index with `to_index`."""
    config = make_config(**options)
    try:
        data, check = load_checked(table, probs, None, config)
    except InputError as exc:
        return Outcome(stopped=tuple(exc.codes))
    result = label_errors.run(data, AuditContext(config, Progress(0)), config)
    items = result.table("items")
    flagged = items[items["is_label_error"].to_numpy(bool)]
    return Outcome(
        warnings=tuple(w.code for w in data.warnings),
        agreement=check.agreement,
        flagged=frozenset(
            (str(i), to_index(g), to_index(s))
            for i, g, s in zip(flagged["id"], flagged["given_label"], flagged["suggested_label"])
        ),
    )


@functools.cache
def base(k: int) -> Outcome:
    """The unpermuted run: names, columns in NAMES order declared with --classes, rows as planted."""
    plant = planted(k)
    names = np.array(NAMES[:k] + ("",), dtype=object)
    table = pd.DataFrame({"id": [f"x{i:04d}" for i in range(N)], "label": names[plant.labels]})
    lookup = {n: i for i, n in enumerate(NAMES[:k])}
    outcome = run(table, plant.probs, lookup.__getitem__, classes=NAMES[:k])
    assert not outcome.stopped and outcome.flagged, "the planted base run must find its flips"
    return outcome


ENCODINGS = ("names", "indices", "float_indices", "index_text", "signed")


def encode(labels: np.ndarray, encoding: str, k: int):
    """(label column, class name of each planted index in this encoding, name -> planted index)."""
    if encoding == "names":
        names = list(NAMES[:k])
        column = np.array(names + [""], dtype=object)[labels]
    elif encoding == "signed":  # binary -1 / +1, "+1" as written by many tools
        names = ["-1", "+1"]
        column = np.array(names + [""], dtype=object)[labels]
    else:
        names = [str(j) for j in range(k)]
        if encoding == "indices":  # ints; unlabeled rows have no row value at all -> NaN
            column = np.where(labels >= 0, labels, np.nan)
            column = pd.array(column).astype("Int64")
        elif encoding == "float_indices":  # how pandas writes ints with NaN: 3.0
            column = np.where(labels >= 0, labels.astype(float), np.nan)
        else:
            column = np.array(names + [""], dtype=object)[labels]
    return column, names


def to_index_for(names: list[str]):
    def to_index(name) -> int:
        text = str(name).strip()
        for j, candidate in enumerate(names):
            if text == candidate:
                return j
        number = float(text)  # an index read back as "3", "3.0" or "+1"
        if names[0] == "-1":
            return 0 if number < 0 else 1
        return int(number)

    return to_index


@st.composite
def writings(draw):
    k = draw(st.sampled_from((2, 3, 5, 12)))
    encodings = ENCODINGS if k == 2 else ENCODINGS[:-1]
    return {
        "k": k,
        "columns": draw(st.permutations(range(k))),
        "declare": draw(st.sampled_from(("arg", "txt", "header_parquet", "header_csv", "none"))),
        "stale": draw(st.booleans()),  # the declared order is the planted one, not the columns'
        "rows": draw(st.sampled_from(("same", "table_shuffled", "both_shuffled"))),
        "encoding": draw(st.sampled_from(encodings)),
        "seed": draw(st.integers(0, 2**16)),
    }


def write(folder: Path, w: dict):
    """Write the planted data as `w` says; returns (table path, probs path, options, truthful)."""
    k, plant = w["k"], planted(w["k"])
    rng = np.random.default_rng(w["seed"])
    column, names = encode(plant.labels, w["encoding"], k)
    table = pd.DataFrame({"id": [f"x{i:04d}" for i in range(N)], "label": column})
    cols = list(w["columns"])  # column j of the written probabilities holds planted class cols[j]
    probs = plant.probs[:, cols]
    column_names = [names[c] for c in cols]
    declared = names if w["stale"] else column_names
    keyed = w["declare"].startswith("header")

    order = rng.permutation(N)
    if w["rows"] in ("table_shuffled", "both_shuffled"):
        table = table.iloc[order].reset_index(drop=True)
    if w["rows"] == "both_shuffled":
        probs = probs[order]

    options = {}
    folder.mkdir(parents=True, exist_ok=True)
    table_path = folder / "table.csv"
    table.to_csv(table_path, index=False)
    if keyed:
        frame = pd.DataFrame(probs, columns=column_names)
        ids = table["id"] if w["rows"] == "both_shuffled" else [f"x{i:04d}" for i in range(N)]
        frame.insert(0, "id", list(ids))
        if w["rows"] == "table_shuffled":  # keyed rows may come in any order
            frame = frame.iloc[rng.permutation(N)]
        probs_path = folder / ("probs.parquet" if w["declare"] == "header_parquet" else "probs.csv")
        if probs_path.suffix == ".csv":
            frame.to_csv(probs_path, index=False)
        else:
            frame.to_parquet(probs_path, index=False)
        if w["stale"]:  # a classes.txt from an earlier run lies beside it
            (folder / "classes.txt").write_text("\n".join(names) + "\n")
    else:
        probs_path = folder / "probs.npy"
        np.save(probs_path, probs)
        if w["declare"] == "arg":
            options["classes"] = tuple(declared)
        elif w["declare"] == "txt":
            (folder / "classes.txt").write_text("\n".join(declared) + "\n")

    identity = cols == sorted(cols)
    rows_ok = keyed or w["rows"] != "table_shuffled"
    declared_ok = (
        keyed
        and not w["stale"]
        or (w["declare"] in ("arg", "txt") and (not w["stale"] or identity))
    )
    # Undeclared orders are known for names and indices only when the columns are not permuted.
    default_ok = w["declare"] == "none" and identity and w["encoding"] in ("names", "indices")
    # Float-written and signed labels are read by the reading rules of load/validate.
    parsed_ok = w["encoding"] in ("names", "indices", "index_text")
    truthful = rows_ok and parsed_ok and (declared_ok or default_ok)
    return table_path, probs_path, options, truthful, to_index_for(names)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(w=writings())
def test_a_planted_dataset_is_read_right_or_stopped_with_a_code(w, tmp_path_factory):
    folder = tmp_path_factory.mktemp("written")
    table_path, probs_path, options, truthful, to_index = write(folder, w)
    outcome = run(str(table_path), str(probs_path), to_index, **options)
    expected = base(w["k"])
    if outcome.stopped:
        assert not truthful, f"a truthfully declared input stopped: {outcome.stopped}"
        return
    correct = outcome.agreement == expected.agreement and outcome.flagged == expected.flagged
    if truthful:
        assert correct, "truthfully declared input read differently from the planted run"
    else:
        assert correct or MISREAD_WARNINGS & set(outcome.warnings), (
            "misread without a stop or a warning"
        )
