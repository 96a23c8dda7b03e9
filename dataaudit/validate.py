"""Raw inputs -> AuditDataset, or one InputError listing every problem found.

Cheap checks run first over chunks (O(1) extra memory on a 1M-row memmap); the rows of a failing
check are named only when it fails. Every problem names the file, column, example rows and values,
and what to do.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from dataaudit.classes import apply_unlabeled_values, label_indices, resolve_class_order, show
from dataaudit.config import AuditConfig
from dataaudit.dataset import UNLABELED, AuditDataset
from dataaudit.load import PANDAS_NA_TEXT, RawInput, RawInputs, read_classes_file, read_inputs
from dataaudit.problems import AuditWarning, InputError, Problem

__all__ = ["InputError", "Problem", "validate", "load_dataset"]

CHUNK_ROWS = 65_536
MAX_EXAMPLES = 5


def load_dataset(table, probs, embeddings=None, config: AuditConfig | None = None) -> AuditDataset:
    """Read, check and assemble the inputs; raises InputError listing every problem."""
    config = config or AuditConfig()
    roles = config.columns
    raw, problems = read_inputs(table, probs, embeddings, roles.id, roles.label, roles.split)
    if problems:
        # Unreadable files make every later check meaningless; report them, and what else we can.
        raise InputError(problems)
    return safely_scaled(validate(raw, config))


def validate(raw: RawInputs, config: AuditConfig) -> AuditDataset:
    problems: list[Problem] = []
    warnings: list[AuditWarning] = []
    roles = config.columns
    frame = raw.table.frame
    tname = raw.table.name

    # -- table ---------------------------------------------------------------------------------
    if len(frame) == 0:
        raise InputError(
            [
                Problem(
                    "empty_table",
                    "the table has no rows",
                    source=tname,
                    fix="Give a table with one row per example.",
                )
            ]
        )
    repeated = sorted({str(c) for c in frame.columns[frame.columns.duplicated()]})
    if repeated:  # frame[name] would be a frame, and which copy is meant is anyone's guess
        raise InputError(
            [
                Problem(
                    "duplicate_columns",
                    f"column names repeat: {show(repeated, 5)}",
                    source=tname,
                    fix="Give every column its own name.",
                )
            ]
        )
    existing = ", ".join(map(str, frame.columns[:30]))
    for role, column in (("id", roles.id), ("text", roles.text), ("image", roles.image)):
        if column is not None and column not in frame.columns:
            problems.append(
                Problem(
                    "column_missing",
                    f"no {role} column {column!r}; the table has: {existing}",
                    source=tname,
                    column=column,
                    fix=f"Name the {role} column with --{role}-col.",
                )
            )
    if roles.label not in frame.columns:
        problems.append(
            Problem(
                "column_missing",
                f"no label column {roles.label!r}; the table has: {existing}",
                source=tname,
                column=roles.label,
                fix="Name the label column with --label-col (empty cells mean unlabeled).",
            )
        )
    if problems:
        raise InputError(problems)

    ids = _normalise_text(frame[roles.id])
    problems += _check_ids(ids, tname, roles.id)

    label_text, unlabeled_by_value = apply_unlabeled_values(
        _normalise_text(frame[roles.label]), config.unlabeled_values
    )
    warnings += unlabeled_value_warnings(unlabeled_by_value, tname, roles.label)
    if roles.split in frame.columns:
        # One str object per split name, shared by its rows: 1M rows hold 1M pointers, not strings.
        split_codes, split_names = pd.factorize(
            _normalise_text(frame[roles.split]).fillna("unknown")
        )
        splits = np.asarray(split_names, dtype=object)[split_codes]
    else:
        splits = np.full(len(frame), "all", dtype=object)
    problems += _check_split_names(config, set(pd.unique(splits)), tname, roles.split)

    # -- probabilities and the class of each column ----------------------------------------------
    header, found, said = _value_columns(raw.probs, roles.id)
    problems += found
    warnings += said
    if raw.probs.array is not None:
        ndim = raw.probs.array.ndim
        k = raw.probs.array.shape[-1] if ndim in (2, 3) else None
    else:
        k = len(header) if header is not None else None
    given, given_source, found, said = _given_classes(config, raw)
    problems += found
    warnings += said
    order = resolve_class_order(
        given,
        given_source,
        None if header is None else [str(c).strip() for c in header],
        raw.probs.name,
        [str(v) for v in pd.unique(label_text.dropna())],
        k,
    )
    problems += order.problems
    warnings += order.warnings
    classes, class_source = order.classes, order.source
    if header is not None and order.columns is not None:
        header = [header[i] for i in order.columns]
    probs_raw, found, said = _array_rows(raw.probs, ids, raw.table, roles.id, header)
    problems += found
    warnings += said
    member_probs = None
    if probs_raw is not None and probs_raw.ndim not in (2, 3):
        problems.append(
            Problem(
                "probs_shape",
                f"probabilities have shape {probs_raw.shape}",
                source=raw.probs.name,
                fix="Give N x K (one model) or M x N x K (M models or MC-dropout passes).",
            )
        )
        probs_raw = None
    if probs_raw is not None:
        n_rows = probs_raw.shape[-2]
        if n_rows != len(frame):
            problems.append(_length_problem(raw.probs, n_rows, raw.table, len(frame)))
            probs_raw = None
    if probs_raw is not None:
        problems += _check_probabilities(probs_raw, raw.probs.name, config.prob_sum_tolerance)

    # -- labels ----------------------------------------------------------------------------------
    labels = None
    if classes is not None:
        dup = sorted({c for c in classes if classes.count(c) > 1})
        if dup:
            problems.append(
                Problem(
                    "duplicate_classes",
                    f"class names repeat: {', '.join(dup[:5])}",
                    source=class_source,
                    fix="Give each class once.",
                )
            )
            classes = None
    if classes is not None:
        labels, note, found = label_indices(label_text, classes, class_source, tname, roles.label)
        class_source += note
        problems += found
        k = probs_raw.shape[-1] if probs_raw is not None else k
        if k is not None and classes and len(classes) != k:  # no classes: too_few_classes
            problems.append(_k_problem(k, classes, class_source, raw.probs.name))
    if labels is not None:
        distinct = np.unique(labels[labels != UNLABELED])
        if len(distinct) < 2:
            problems.append(
                Problem(
                    "too_few_classes",
                    f"labeled rows hold {len(distinct)} distinct class(es); at least 2 are needed",
                    source=tname,
                    column=roles.label,
                    fix="Check the label column; empty cells count as unlabeled.",
                )
            )

    # -- embeddings ----------------------------------------------------------------------------
    embeddings = None
    if raw.embeddings is not None:
        columns, found, said = _value_columns(raw.embeddings, roles.id)
        problems += found
        warnings += said
        shared = [c for c in columns or () if c in frame.columns]
        if shared:  # a saved copy of the table's columns: a 'label' would be a vector dimension
            problems.append(
                Problem(
                    "embedding_columns_not_vectors",
                    f"column(s) {show(shared, 5)} are also columns of {tname}, not vector "
                    "dimensions",
                    source=raw.embeddings.name,
                    fix=f"Keep only {roles.id!r} and the vector columns in the embeddings file.",
                )
            )
            columns = None
        emb, found, said = _array_rows(raw.embeddings, ids, raw.table, roles.id, columns)
        problems += found
        warnings += said
        if emb is not None and emb.ndim != 2:
            problems.append(
                Problem(
                    "embeddings_shape",
                    f"embeddings have shape {emb.shape}",
                    source=raw.embeddings.name,
                    fix="Give an N x d array.",
                )
            )
            emb = None
        if emb is not None and emb.shape[0] != len(frame):
            problems.append(_length_problem(raw.embeddings, emb.shape[0], raw.table, len(frame)))
            emb = None
        if emb is not None:
            problems += _check_embeddings(emb, raw.embeddings.name)
            embeddings = emb

    if problems:
        raise InputError(problems)

    # -- assemble ------------------------------------------------------------------------------
    probs_raw = _as_float(probs_raw)
    if probs_raw.ndim == 3:
        member_probs = probs_raw if probs_raw.shape[0] > 1 else None
        probs = _mean_over_models(probs_raw)
    else:
        probs = np.ascontiguousarray(probs_raw, dtype=np.float32)

    used = {roles.id, roles.label, roles.split, roles.text, roles.image, *roles.ignore}
    index_columns = [c for c in frame.columns if c not in used and _is_index_column(c)]
    if index_columns:
        warnings.append(_index_warning(index_columns, tname))
    used |= set(index_columns)
    metadata = frame[[c for c in frame.columns if c not in used]].reset_index(drop=True)
    text = frame[roles.text].astype(object).to_numpy() if roles.text else None
    image_paths = None
    if roles.image:
        base = str((raw.table.path.parent if raw.table.path is not None else Path.cwd()).resolve())
        # join + normpath, not Path.resolve() per row: a syscall per path made 1M rows take a minute.
        image_paths = np.array(
            [
                os.path.normpath(os.path.join(base, p)) if isinstance(p, str) and p else ""
                for p in frame[roles.image]
            ],
            dtype=object,
        )
    sources = tuple(
        r.fingerprint
        for r in (raw.table, raw.probs, raw.embeddings)
        if r is not None and r.fingerprint
    )
    return AuditDataset(
        ids=ids.to_numpy(dtype=object),
        classes=tuple(classes),
        class_source=class_source,
        labels=labels,
        splits=splits,
        metadata=metadata,
        probs=probs,
        member_probs=member_probs,
        embeddings=embeddings,
        text=text,
        image_paths=image_paths,
        sources=sources,
        warnings=tuple(warnings),
        unlabeled_by_value=tuple(unlabeled_by_value.items()),
    )


def _given_classes(config: AuditConfig, raw: RawInputs):
    """The class list the user gave: --classes (classes=), else classes.txt beside the probs."""
    problems: list[Problem] = []
    file_classes = None
    if raw.classes_file is not None:
        file_classes, problems = read_classes_file(raw.classes_file)
    given, source, warnings = given_classes(config, file_classes, raw.classes_file)
    return given, source, [] if config.classes is not None else problems, warnings


def unlabeled_value_warnings(unlabeled_by_value: dict[str, int], source: str, column: str):
    """`labels_read_as_unlabeled` when --unlabeled-values made labels missing."""
    listed = {v: n for v, n in unlabeled_by_value.items() if v and n}
    if not listed:
        return []
    return [
        AuditWarning(
            "labels_read_as_unlabeled",
            f"{sum(listed.values()):,} rows were read as unlabeled because their label is "
            "one of --unlabeled-values ("
            + ", ".join(f"{v!r}: {n:,}" for v, n in listed.items())
            + ").",
            file=source,
            column=column,
        )
    ]


def given_classes(config: AuditConfig, file_classes, classes_file: Path | None):
    """(classes, how they were given, warnings): --classes wins over classes.txt, with a warning
    when the two differ; None when neither was given. Both engines decide it here."""
    warnings: list[AuditWarning] = []
    if config.classes is not None:
        given = tuple(str(c).strip() for c in config.classes)
        if file_classes is not None and tuple(file_classes) != given:
            warnings.append(
                AuditWarning(
                    "classes_file_overridden",
                    f"--classes ({show(given)}) differs from {classes_file.name} beside the "
                    f"probabilities ({show(file_classes)}); --classes was used.",
                    file=str(classes_file),
                )
            )
        return given, "given with --classes", warnings
    if file_classes is not None:
        return tuple(file_classes), f"read from {classes_file.name}", warnings
    return None, "", warnings


def _k_problem(k: int, classes, class_source: str, source: str) -> Problem:
    fix = "Pass --classes (or a classes.txt beside the probabilities) in column order."
    maybe_unlabeled = [c for c in classes if c in PANDAS_NA_TEXT or c == "-1"]
    if len(classes) > k and maybe_unlabeled:
        fix += (
            f" If {show(maybe_unlabeled, 3)} means unlabeled, pass --unlabeled-values "
            + ",".join(maybe_unlabeled)
            + "."
        )
    return Problem(
        "k_mismatch",
        f"the probabilities have {k} columns but there are {len(classes)} classes "
        f"({class_source}: {show(classes)})",
        source=source,
        fix=fix,
    )


# -- helpers ---------------------------------------------------------------------------------------
def _check_split_names(
    config: AuditConfig, present: set, source: str, column: str
) -> list[Problem]:
    """Splits named by --reference-split / --current-split must exist (a typo would skip shift)."""
    listed = ", ".join(repr(s) for s in sorted(present))
    return [
        Problem(
            "split_missing",
            f"--{flag} {name!r} is not a split of the table (splits: {listed})",
            source=source,
            column=column,
            fix=f"Pass one of the table's splits to --{flag}.",
        )
        for flag, name in (
            ("reference-split", config.reference_split),
            ("current-split", config.current_split),
        )
        if name is not None and name not in present
    ]


def _normalise_text(values: pd.Series) -> pd.Series:
    """Values as stripped text, one spelling whatever the file type: integral floats lose their
    '.0' (3.0 and the text '3.0' -> '3'; '007' stays '007'); empty and missing are missing.

    Vectorised per dtype: a 1M-row column takes a fraction of a second, not a Python call per row.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):  # Parquet dictionary columns
        names = _normalise_text(pd.Series(values.cat.categories)).to_numpy(dtype=object)
        codes = values.cat.codes.to_numpy()
        text = pd.Series(np.append(names, None)[codes], index=values.index, dtype=str)
        return text
    if isinstance(values.dtype, pd.StringDtype):  # text already; .str keeps missing as missing
        text = values.str.strip()
        return _drop_zero_fraction(text.mask(text == ""))
    missing = values.isna().to_numpy()
    positions = values.reset_index(drop=True)
    text = _as_text(positions[~missing] if missing.any() else positions).str.strip()
    text = _drop_zero_fraction(text.mask(text == ""))
    if missing.any():
        text = text.reindex(positions.index)  # missing rows come back as NA
    return text.set_axis(values.index)


_ZERO_FRACTION = r"-?(?:0|[1-9]\d*)\.0"


def _drop_zero_fraction(text: pd.Series) -> pd.Series:
    """'3.0' -> '3': a CSV of float ids or labels (pandas writes them so when a column has a
    NaN) reads like the Parquet file of the same column. Only the spelling Python gives a float
    ('3.00' stays; labels are compared by value anyway)."""
    candidates = text.str.endswith(".0").fillna(False).to_numpy(dtype=bool)
    if not candidates.any():
        return text
    sub = text[candidates]
    hit = sub.str.fullmatch(_ZERO_FRACTION).fillna(False).to_numpy(dtype=bool)
    if hit.any():
        text = text.copy()
        text.loc[sub.index[hit]] = sub[hit].str.split(".").str[0]
    return text


def _as_text(values: pd.Series) -> pd.Series:
    """Text of values that are not missing, as str() would write them (floats: see above)."""
    dtype = values.dtype
    if pd.api.types.is_float_dtype(dtype):
        return _float_text(values)
    if pd.api.types.is_object_dtype(dtype):
        kind = pd.api.types.infer_dtype(values, skipna=False)
        if kind in ("floating", "mixed-integer-float"):
            return _float_text(values.astype(np.float64))
        if kind not in ("string", "integer", "boolean", "empty"):
            # Mixed Python objects (only hand-built in-memory frames): str() each one.
            return pd.Series([_one_text(v) for v in values], index=values.index, dtype=str)
    return values.astype(str)


def _float_text(values: pd.Series) -> pd.Series:
    numbers = values.to_numpy(dtype=np.float64)
    # Beyond int64 an integral float keeps its own text ('1e+20'); below, 3.0 -> '3'.
    integral = np.isfinite(numbers) & (numbers == np.trunc(numbers)) & (np.abs(numbers) < 2**63)
    out = np.empty(len(numbers), dtype=object)
    out[integral] = numbers[integral].astype(np.int64).astype(str)
    out[~integral] = values[~integral].astype(str).to_numpy(dtype=object)
    return pd.Series(out, index=values.index, dtype=str)


def _one_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _first_rows(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.flatnonzero(mask)[:MAX_EXAMPLES])


def _check_ids(ids: pd.Series, source: str, column: str) -> list[Problem]:
    problems = []
    missing = ids.isna().to_numpy()
    if missing.any():
        problems.append(
            Problem(
                "missing_ids",
                f"{int(missing.sum())} rows have no id",
                source=source,
                column=column,
                rows=_first_rows(missing),
                count=int(missing.sum()),
                fix="Give every row an id.",
            )
        )
    # One hashing pass: each id's code, then how many rows share it.
    codes, distinct = pd.factorize(ids)
    dup = np.zeros(len(ids), dtype=bool)
    if len(distinct) < int((~missing).sum()):
        counts = np.bincount(codes[~missing], minlength=len(distinct))
        dup = ~missing & (counts[np.maximum(codes, 0)] > 1)
    if dup.any():
        values = tuple(dict.fromkeys(ids[dup].astype(str)))[:MAX_EXAMPLES]
        problems.append(
            Problem(
                "duplicate_ids",
                f"{int(dup.sum())} rows share an id with another row",
                source=source,
                column=column,
                rows=_first_rows(dup),
                values=values,
                count=int(dup.sum()),
                fix="Make ids unique (one row per example).",
            )
        )
    return problems


def _length_problem(raw: RawInput, n: int, table: RawInput, n_table: int) -> Problem:
    return Problem(
        "length_mismatch",
        f"{raw.role} have {n:,} rows but {table.name} has {n_table:,}",
        source=raw.name,
        fix=f"Give one {raw.role} row per table row, in the table's order (or a Parquet/CSV keyed by id).",
    )


_INDEX_COLUMN = re.compile(r"Unnamed: \d+")


def _is_index_column(name) -> bool:
    """pandas' name for the row numbers that to_csv writes unless index=False."""
    return isinstance(name, str) and _INDEX_COLUMN.fullmatch(name) is not None


def _index_warning(columns, source: str) -> AuditWarning:
    return AuditWarning(
        "index_column_ignored",
        f"column(s) {show(columns, 5)} hold the row numbers pandas writes without "
        "index=False, and were ignored.",
        file=source,
    )


def _value_columns(raw: RawInput, id_col: str):
    """The value columns of a keyed frame (None for an array): every column but the id and
    pandas' row-number columns; with the problems and warnings about them."""
    if raw.frame is None:
        return None, [], []
    frame = raw.frame
    if id_col not in frame.columns:
        return (
            None,
            [
                Problem(
                    "column_missing",
                    f"no id column {id_col!r} to match rows with the table; it has: "
                    + ", ".join(map(str, frame.columns[:30])),
                    source=raw.name,
                    column=id_col,
                    fix="Add the id column (or save the values as .npy in table order).",
                )
            ],
            [],
        )
    index_columns = [c for c in frame.columns if c != id_col and _is_index_column(c)]
    columns = [c for c in frame.columns if c != id_col and c not in index_columns]
    warnings = [_index_warning(index_columns, raw.name)] if index_columns else []
    names = [str(c).strip() for c in columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        return (
            None,
            [
                Problem(
                    "duplicate_columns",
                    f"column names repeat: {show(repeated, 5)}",
                    source=raw.name,
                    fix="Give every column its own name.",
                )
            ],
            warnings,
        )
    return columns, [], warnings


def _array_rows(raw: RawInput, ids: pd.Series, table: RawInput, id_col: str, columns):
    """The input as an array in table order; a keyed frame's `columns` aligned on ids."""
    if raw.array is not None:
        if not np.issubdtype(raw.array.dtype, np.number):
            return (
                None,
                [
                    Problem(
                        "file_format",
                        f"{raw.role} array has dtype {raw.array.dtype}, not numbers",
                        source=raw.name,
                        fix="Save a numeric array.",
                    )
                ],
                [],
            )
        return raw.array, [], []
    if columns is None:  # no id column, or repeated names: already a problem
        return None, [], []
    frame = raw.frame
    non_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        return (
            None,
            [
                Problem(
                    "file_format",
                    f"columns that are not numbers: {show(non_numeric)}",
                    source=raw.name,
                    fix=f"Keep only {id_col!r} and numeric value columns.",
                )
            ],
            [],
        )
    keys = _normalise_text(frame[id_col])
    problems = _check_ids(keys, raw.name, id_col)
    if problems:
        return None, problems, []
    key_index = pd.Index(keys)
    position = key_index.get_indexer(ids)
    absent = position < 0
    extra = ~key_index.isin(ids)
    warnings = []
    if absent.any():
        message = f"{int(absent.sum()):,} of the {len(ids):,} table ids have no row here"
        if extra.any():
            message += (
                f", and {int(extra.sum()):,} ids here are not in the table "
                f"(e.g. {show(keys[extra][:MAX_EXAMPLES], MAX_EXAMPLES)})"
            )
        return (
            None,
            [
                Problem(
                    "ids_not_matching",
                    message,
                    source=raw.name,
                    column=id_col,
                    rows=_first_rows(absent),
                    values=tuple(ids[absent].astype(str)[:MAX_EXAMPLES]),
                    count=int(absent.sum()),
                    fix=f"Give a row for every id of {table.name}."
                    + _id_hint(ids[absent], keys[extra]),
                )
            ],
            [],
        )
    if extra.any():
        warnings.append(
            AuditWarning(
                "extra_ids_ignored",
                f"{int(extra.sum()):,} rows have ids that are not in {table.name} and were "
                f"ignored (e.g. {show(keys[extra][:MAX_EXAMPLES], MAX_EXAMPLES)}).",
                file=raw.name,
                column=id_col,
            )
        )
    # float32 as the analyses hold them (half of float64 at 1M x 384); rows already in table
    # order, the usual case, are not copied again.
    values = frame[columns].to_numpy(dtype=np.float32)
    if not np.array_equal(position, np.arange(len(position))):
        values = values[position]
    return values, [], warnings


def _id_hint(missing: pd.Series, extra: pd.Series) -> str:
    """Why ids that should match do not, when a simple spelling difference explains most."""
    if extra.empty:
        return ""
    sample = missing[: 10 * MAX_EXAMPLES]
    for describe, spell in (
        ("leading zeros ('007' and '7'): one file stored the ids as numbers", _no_zeros),
        ("letter case", str.lower),
    ):
        extra_spelled = set(extra.map(spell))
        if np.mean([spell(v) in extra_spelled for v in sample]) >= 0.5:
            return (
                f" Most missing ids match ids here up to {describe}; write the ids the same way "
                "in both files (as text, e.g. dtype=str)."
            )
    return ""


def _no_zeros(text: str) -> str:
    return text.lstrip("0") or "0" if text.isdigit() else text


def _chunks(n: int):
    for start in range(0, n, CHUNK_ROWS):
        yield start, min(start + CHUNK_ROWS, n)


def _read_rows(array: np.ndarray, start: int, stop: int, model: int | None = None) -> np.ndarray:
    """Rows start..stop of a 2-D array (of model `model` of an M x N x K one), as a plain array.

    A memory-mapped .npy is read from the file rather than through the mapping: every page read
    through a mapping stays in the process's resident memory, so checking a 512 MB embeddings
    file would cost 512 MB of RSS; read this way it costs one chunk.
    """
    if not (isinstance(array, np.memmap) and isinstance(array.base, mmap.mmap)):
        return np.asarray(array[start:stop] if model is None else array[model, start:stop])
    if not array.flags.c_contiguous:  # Fortran-ordered .npy: rows are not contiguous on disk
        return np.array(array[start:stop] if model is None else array[model, start:stop])
    width = array.shape[-1]
    first = start if model is None else model * array.shape[1] + start
    return np.fromfile(
        array.filename,
        dtype=array.dtype,
        count=(stop - start) * width,
        offset=array.offset + first * width * array.dtype.itemsize,
    ).reshape(stop - start, width)


def _check_probabilities(probs: np.ndarray, source: str, tol: float) -> list[Problem]:
    """Finite, non-negative, rows summing to 1 (within tol); chunked over rows."""
    stacked = probs if probs.ndim == 3 else probs[None]
    tests = {
        "probs_not_finite": (
            "values are NaN or infinite",
            "Replace NaN/inf; check the model's output.",
        ),
        "probs_negative": (
            "values are negative",
            "These look like logits: apply a softmax (scipy.special.softmax(x, axis=-1)).",
        ),
        "probs_not_normalized": (
            f"rows do not sum to 1 (tolerance ±{tol:g})",
            "Pass probabilities after a softmax, not logits or scores.",
        ),
    }
    bad_rows: dict[str, list[int]] = {code: [] for code in tests}
    counts = dict.fromkeys(tests, 0)
    examples: dict[str, list[str]] = {code: [] for code in tests}
    for model in range(stacked.shape[0]):
        for start, stop in _chunks(stacked.shape[1]):
            block = _read_rows(probs, start, stop, model if probs.ndim == 3 else None)
            block = block.astype(np.float64)
            finite = np.isfinite(block).all(axis=1)
            negative = finite & (block < 0).any(axis=1)
            sums = block.sum(axis=1)
            off = finite & ~negative & (np.abs(sums - 1) > tol)
            for code, mask, vals in (
                ("probs_not_finite", ~finite, None),
                ("probs_negative", negative, block.min(axis=1)),
                ("probs_not_normalized", off, sums),
            ):
                if mask.any():
                    counts[code] += int(mask.sum())
                    rows = np.flatnonzero(mask)
                    room = MAX_EXAMPLES - len(bad_rows[code])
                    bad_rows[code] += [int(start + r) for r in rows[:room]]
                    if vals is not None:
                        examples[code] += [f"{vals[r]:.3g}" for r in rows[:room]]
    problems = []
    for code, (what, fix) in tests.items():
        if counts[code]:
            label = "row sums" if code == "probs_not_normalized" else "values"
            problems.append(
                Problem(
                    code,
                    f"{counts[code]:,} rows: {what}"
                    + (f" ({label} shown)" if examples[code] else ""),
                    source=source,
                    rows=tuple(bad_rows[code]),
                    values=tuple(examples[code]),
                    count=counts[code],
                    fix=fix,
                )
            )
    return problems


def _check_embeddings(emb: np.ndarray, source: str) -> list[Problem]:
    not_finite: list[int] = []
    zero: list[int] = []
    n_not_finite = n_zero = 0
    for start, stop in _chunks(emb.shape[0]):
        block = _read_rows(emb, start, stop).astype(np.float32, copy=False)
        finite = np.isfinite(block).all(axis=1)
        is_zero = finite & ~block.any(axis=1)
        n_not_finite += int((~finite).sum())
        n_zero += int(is_zero.sum())
        not_finite += [
            start + int(r) for r in np.flatnonzero(~finite)[: MAX_EXAMPLES - len(not_finite)]
        ]
        zero += [start + int(r) for r in np.flatnonzero(is_zero)[: MAX_EXAMPLES - len(zero)]]
    problems = []
    if n_not_finite:
        problems.append(
            Problem(
                "embeddings_not_finite",
                f"{n_not_finite:,} rows hold NaN or infinite values",
                source=source,
                rows=tuple(not_finite),
                count=n_not_finite,
                fix="Recompute those embeddings, or drop the rows from every input.",
            )
        )
    if n_zero:
        problems.append(
            Problem(
                "embeddings_zero_rows",
                f"{n_zero:,} rows are all zeros (no direction to compare)",
                source=source,
                rows=tuple(zero),
                count=n_zero,
                fix="Recompute those embeddings; an all-zero vector usually means a failed encoder call.",
            )
        )
    return problems


def _as_float(array: np.ndarray) -> np.ndarray:
    return (
        array if array.dtype in (np.float32, np.float64, np.float16) else array.astype(np.float32)
    )


def _mean_over_models(stacked: np.ndarray) -> np.ndarray:
    out = np.empty(stacked.shape[1:], dtype=np.float32)
    for start, stop in _chunks(stacked.shape[1]):
        out[start:stop] = np.asarray(stacked[:, start:stop], dtype=np.float32).mean(axis=0)
    return out


# Beyond these magnitudes a float32 squared norm or dot product overflows (or underflows to 0).
EMBEDDING_MAX_ABS = 2.0**32
EMBEDDING_MIN_ABS = 2.0**-32


def safely_scaled(data: AuditDataset) -> AuditDataset:
    """Embeddings of huge (1e30) or tiny magnitude divided by one power of two, with a warning.

    One scale for all rows leaves cosine similarities, neighbours, clusters and outlier ranks as
    they were; a power of two changes no mantissa. The array is copied only in this case.
    """
    emb = data.embeddings
    if emb is None or emb.shape[0] == 0:
        return data
    top = max(
        float(np.abs(_read_rows(emb, a, b)).max(initial=0.0)) for a, b in _chunks(emb.shape[0])
    )
    exponent = rescale_exponent(top)
    if exponent is None:
        return data
    scaled = np.empty(emb.shape, dtype=np.float32)
    for a, b in _chunks(emb.shape[0]):
        scaled[a:b] = rescaled(_read_rows(emb, a, b), exponent)
    from dataclasses import replace

    path = next((s.path for s in data.sources if s.role == "embeddings"), None)
    warning = rescaled_warning(top, exponent, Path(path).name if path else "<in-memory embeddings>")
    return replace(data, embeddings=scaled, warnings=(*data.warnings, warning))


def rescale_exponent(top: float) -> int | None:
    """The power of two to divide embeddings by when their largest magnitude `top` is out of
    float32's safe range; None when they are fine as they are."""
    if top == 0 or EMBEDDING_MIN_ABS <= top <= EMBEDDING_MAX_ABS:
        return None
    return int(np.floor(np.log2(top)))


def rescaled(rows: np.ndarray, exponent: int) -> np.ndarray:
    return np.ldexp(np.asarray(rows, dtype=np.float64), -exponent).astype(np.float32)


def rescaled_warning(top: float, exponent: int, file: str):
    from dataaudit.problems import AuditWarning

    return AuditWarning(
        "embeddings_rescaled",
        f"embedding values reach {top:.3g}, where 32-bit arithmetic overflows or underflows; they "
        f"were divided by 2^{exponent} (cosine similarities, neighbours and outlier ranks do not "
        "change). Normalise the embeddings to silence this.",
        file=file,
    )
