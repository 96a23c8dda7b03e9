"""Inputs at scale for the Dask engine: partitioned Parquet tables, keyed or .npy arrays, joined on
the cluster, validated per partition.

- `--table`: one Parquet file, a folder of them (searched recursively, sorted by path) or a glob;
  any fsspec URL the workers can read (s3://..., gs://...). Each file is one partition; a row's
  table position is its file's offset (from the Parquet footers) plus its row in the file, so
  ranking ties break by table order, as in process.
- `--probs` / `--embeddings`: a `.npy` file in table order (each partition reads its rows from the
  memory-mapped file, so the workers must see the path), or a keyed Parquet dataset (file, folder
  or glob): the id column plus one numeric column per class / dimension, or one fixed-size list
  column. Keyed inputs are joined to the table by id on the cluster (a shuffle). Probabilities
  as a `.npy` may be M x N x K (a committee or MC-dropout passes): a partition holds their mean,
  as in process, and each model's columns (Layout.members), each model validated.
- Validation is map/reduce too: every partition reports counts and up to five example rows per
  problem, named by its part file and the row within that file; the driver merges them into one
  InputError, cheap checks first (the rows of a failing check are looked up only when it fails).

The driver holds per-file facts and distinct labels, never a column of N values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from dataaudit.classes import distinct_indices
from dataaudit.config import AuditConfig
from dataaudit.dataset import InputFingerprint
from dataaudit.problems import AuditWarning, InputError, Problem
from dataaudit.validate import (
    MAX_EXAMPLES,
    _index_warning,
    _is_index_column,
    _normalise_text,
    given_classes,
    unlabeled_value_warnings,
)

PARQUET = (".parquet", ".pq")
LABEL = "_label"  # class index, -1 = unlabeled
POS = "_pos"  # table position
PART = "_part"  # index of the table file the row came from
META = "m:"  # prefix of the metadata columns in a partition


@dataclass(frozen=True)
class Part:
    """One table file: where it is, the table positions of its rows, its columns."""

    path: str
    offset: int
    n_rows: int
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """Which columns of a joined partition hold what (see dataaudit.engine.dask.partition_chunk)."""

    probs: tuple[str, ...]
    embeddings: tuple[str, ...] = ()
    # Metadata column names; a partition holds each as META + name (no clash with id, _pos, ...).
    metadata: tuple[str, ...] = ()
    # Table columns read on use (Chunk.column): (role, column name), and each table file's
    # (path, offset), from which a partition's rows are looked up by PART and POS.
    columns: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, int], ...] = ()
    # A committee's (M > 1 models or MC-dropout passes) columns, one tuple per model; `probs`
    # then holds their mean, as in process.
    members: tuple[tuple[str, ...], ...] = ()

    @property
    def n_models(self) -> int:
        return max(len(self.members), 1)


def member_columns(n_models: int, k: int) -> tuple[tuple[str, ...], ...]:
    """The columns of each model's probabilities in a partition (none for a single model)."""
    if n_models < 2:
        return ()
    return tuple(tuple(f"c{m}:{j}" for j in range(k)) for m in range(n_models))


@dataclass
class PartitionedInputs:
    """The validated, joined inputs as one Dask DataFrame, and the facts the driver keeps."""

    # Columns _pos, _part, id, _label, split, probabilities, embeddings; None once a DaskEngine
    # owns the partitions.
    frame: dd.DataFrame | None
    layout: Layout
    parts: list[Part]
    classes: tuple[str, ...]
    class_source: str
    split_counts: dict[str, list[int]]  # split -> [n_items, n_labeled]
    label_counts: list[int]  # labeled items per class
    metadata_columns: list[str]
    sources: list[InputFingerprint] = field(default_factory=list)
    unlabeled_by_value: dict[str, int] = field(default_factory=dict)  # '' = empty cells
    warnings: list[AuditWarning] = field(default_factory=list)  # doubts that did not stop it

    @property
    def n(self) -> int:
        return sum(p.n_rows for p in self.parts)


def _is_integer_text(values) -> bool:
    return all(v.lstrip("-").isdigit() for v in values)


# -- reading ------------------------------------------------------------------------------------
def expand_files(source: str, role: str) -> tuple[list[str], list[Problem]]:
    """Parquet files of a file, folder (recursive) or glob; fsspec URLs allowed."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(str(source))
    if any(c in str(source) for c in "*?["):
        found = fs.glob(root)
    elif fs.isdir(root):
        found = fs.find(root)
    elif fs.exists(root):
        found = [root]
    else:
        return [], [
            Problem(
                "file_missing",
                f"{role} not found",
                source=str(source),
                fix=f"Check the path given for the {role}.",
            )
        ]
    files = sorted(f for f in found if f.lower().endswith(PARQUET))
    if not files:
        return [], [
            Problem(
                "file_format",
                f"{role}: no Parquet files (.parquet, .pq) found",
                source=str(source),
                fix="The Dask engine reads Parquet: a file, a folder of part files, or a glob.",
            )
        ]
    local = fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol
    return [f if local else fs.unstrip_protocol(f) for f in files], []


def _read(path: str, columns=None) -> pd.DataFrame:
    return pd.read_parquet(path, columns=columns)


def _footer(path: str) -> tuple[int, list[str], dict[str, str]]:
    """(rows, column names, each column's kind) from a file's footer."""
    import fsspec
    import pyarrow.parquet as pq

    with fsspec.open(path, "rb") as handle:
        meta = pq.ParquetFile(handle).metadata
    schema = meta.schema.to_arrow_schema()
    kinds = {name: _kind(schema.field(name).type) for name in schema.names}
    return meta.num_rows, list(schema.names), kinds


def _kind(arrow_type) -> str:
    """numeric, text or other: what a column's values are read as."""
    import pyarrow as pa

    t = arrow_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    is_view = getattr(pa.types, "is_string_view", lambda _: False)  # pyarrow >= 16
    text = pa.types.is_string(t) or pa.types.is_large_string(t) or is_view(t)
    return "text" if text else "other"


def kind_conflicts(parts: list, kinds: list[dict[str, str]], columns) -> list[Problem]:
    """A metadata column of numbers in some part files and of text in others: the slices would
    read it one way per partition. (Integers in one file and floats in another are numbers.)"""
    problems = []
    for column in columns:
        first: dict[str, str] = {}
        for part, file_kinds in zip(parts, kinds):
            if column in file_kinds:
                first.setdefault(file_kinds[column], part.path)
        if "numeric" in first and "text" in first:
            problems.append(
                Problem(
                    "column_types_differ",
                    f"column {column!r} holds numbers in {Path(first['numeric']).name} and text "
                    f"in {Path(first['text']).name}",
                    source=first["text"],
                    column=str(column),
                    fix="Write every part file with the same type for this column (cast it).",
                )
            )
    return problems


def _part_facts(path: str, roles, unlabeled_values: tuple[str, ...] = ()) -> dict:
    """Per table file: rows, columns, missing ids, label value counts (the user's unlabeled
    values made missing, and counted), split counts; or why the file cannot be read."""
    try:
        return _read_part_facts(path, roles, unlabeled_values)
    except Exception as exc:  # the library's message says what is wrong with the bytes
        return {"n_rows": 0, "columns": [], "unreadable": f"{type(exc).__name__}: {exc}"}


def _unreadable(role: str, path: str, why: str) -> Problem:
    return Problem(
        "file_unreadable",
        f"cannot read the {role} file: {why}",
        source=path,
        fix="Check that it is a valid Parquet file, or move it out of the folder.",
    )


def _read_part_facts(path: str, roles, unlabeled_values: tuple[str, ...]) -> dict:
    from dataaudit.classes import apply_unlabeled_values

    n_rows, columns, kinds = _footer(path)
    wanted = (roles.id, roles.label, roles.split)
    if roles.id not in columns or roles.label not in columns:
        return {"n_rows": n_rows, "columns": columns, "kinds": kinds}
    frame = _read(path, [c for c in wanted if c in columns])
    ids = _normalise_text(frame[roles.id])
    missing = ids.isna().to_numpy()
    labels, unlabeled_by_value = apply_unlabeled_values(
        _normalise_text(frame[roles.label]), unlabeled_values
    )
    splits = (
        _normalise_text(frame[roles.split]).fillna("unknown")
        if roles.split in frame.columns
        else pd.Series("all", index=frame.index)
    )
    labeled = labels.notna().to_numpy()
    by_split = pd.DataFrame({"split": splits.to_numpy(object), "labeled": labeled})
    grouped = by_split.groupby("split")["labeled"].agg(["size", "sum"])
    return {
        "n_rows": n_rows,
        "columns": columns,
        "kinds": kinds,
        "missing_ids": (int(missing.sum()), np.flatnonzero(missing)[:MAX_EXAMPLES].tolist()),
        "labels": labels.value_counts().to_dict(),
        "unlabeled_by_value": unlabeled_by_value,
        "splits": {str(s): [int(r["size"]), int(r["sum"])] for s, r in grouped.iterrows()},
    }


def _metadata_schema(path: str, roles) -> tuple[pd.DataFrame, list[str]]:
    """The metadata columns of a table file as an empty frame with pandas' dtypes: the columns
    validate.py keeps in process (not a role, not pandas' row numbers, not a stored index); and
    the row-number columns left out, which validate.py warns of."""
    import fsspec
    import pyarrow.parquet as pq

    from dataaudit.load import _index_as_column
    from dataaudit.validate import _is_index_column

    with fsspec.open(path, "rb") as handle:
        empty = pq.read_schema(handle).empty_table().to_pandas()
    empty = _index_as_column(empty, (roles.id, roles.label, roles.split))
    used = {roles.id, roles.label, roles.split, roles.text, roles.image, *roles.ignore}
    index_columns = [c for c in empty.columns if c not in used and _is_index_column(c)]
    kept = [c for c in empty.columns if c not in used and c not in index_columns]
    return empty[kept], index_columns


def _table_part(
    part: Part,
    index: int,
    roles,
    codes: dict[str, int],
    probs_npy,
    emb_npy,
    metadata: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One table file as a partition of the joined frame (with .npy rows and the metadata
    columns, named META + name, attached; a column a file lacks is missing there)."""
    wanted = (roles.id, roles.label, roles.split)
    meta_cols = [] if metadata is None else list(metadata.columns)
    present = [c for c in meta_cols if c in part.columns and c not in wanted]
    frame = _read(part.path, [c for c in wanted if c in part.columns] + present)
    labels = _normalise_text(frame[roles.label])
    out = pd.DataFrame(
        {
            POS: np.arange(part.offset, part.offset + len(frame), dtype=np.int64),
            PART: np.full(len(frame), index, dtype=np.int32),
            "id": _normalise_text(frame[roles.id]).to_numpy(dtype=object),
            LABEL: labels.map(codes).fillna(-1).to_numpy(dtype=np.int64),
            "split": (
                _normalise_text(frame[roles.split]).fillna("unknown").to_numpy(dtype=object)
                if roles.split in frame.columns
                else np.full(len(frame), "all", dtype=object)
            ),
        }
    )
    if meta_cols:  # one block, not a column at a time (a wide table fragments the frame)
        columns = {
            META + name: (
                frame[name].to_numpy()
                if name in frame.columns
                else np.full(len(frame), None, object)
            )
            for name in meta_cols
        }
        out = pd.concat([out, pd.DataFrame(columns, index=out.index)], axis=1)
    blocks, member_blocks = [], []  # in _table_meta's order: probabilities, embeddings, models
    for npy, prefix in ((probs_npy, "p:"), (emb_npy, "e:")):
        if npy is None:
            continue
        array = np.load(npy, mmap_mode="r")
        span = slice(part.offset, part.offset + len(frame))
        if array.ndim == 3:  # M x N x K: the models' mean, as in process, then each model's
            members = np.asarray(array[:, span], dtype=np.float32)
            rows = members.mean(axis=0)
            for m, names in enumerate(member_columns(len(members), members.shape[2])):
                member_blocks.append(pd.DataFrame(members[m], columns=list(names)))
        else:
            rows = np.asarray(array[span], dtype=np.float32)
        blocks.append(pd.DataFrame(rows, columns=[f"{prefix}{j}" for j in range(rows.shape[1])]))
    blocks += member_blocks
    return pd.concat([out, *blocks], axis=1) if blocks else out


def _table_meta(
    k: int, d: int, metadata: pd.DataFrame | None = None, n_models: int = 1
) -> pd.DataFrame:
    meta_types = {} if metadata is None else {META + c: t for c, t in metadata.dtypes.items()}
    columns = {
        POS: np.int64,
        PART: np.int32,
        "id": object,
        LABEL: np.int64,
        "split": object,
        **meta_types,
        **{f"p:{j}": np.float32 for j in range(k)},
        **{f"e:{j}": np.float32 for j in range(d)},
        **{c: np.float32 for names in member_columns(n_models, k) for c in names},
    }
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})


def _keyed_meta(prefix: str, width: int) -> pd.DataFrame:
    columns = {"id": object, **{f"{prefix}{j}": np.float32 for j in range(width)}}
    meta = pd.DataFrame({c: pd.Series(dtype=t) for c, t in columns.items()})
    meta[f"{prefix}found"] = pd.Series(dtype=bool)
    return meta


def keyed_value_columns(columns, id_col: str) -> tuple[list, list]:
    """(value columns, pandas row-number columns) of a keyed file, as validate.py reads them in
    process: every column but the id and the row numbers pandas writes without index=False."""
    index_columns = [c for c in columns if c != id_col and _is_index_column(c)]
    return [c for c in columns if c != id_col and c not in index_columns], index_columns


PREFIX_ROLES = {"p:": "probabilities", "e:": "embeddings"}


def _keyed_part(path: str, id_col: str, prefix: str) -> pd.DataFrame:
    """A keyed Parquet file as id + float32 value columns named prefix + position."""
    try:
        frame = _read(path)
    except Exception as exc:
        why = f"{type(exc).__name__}: {exc}"
        raise InputError([_unreadable(PREFIX_ROLES[prefix], path, why)]) from None
    if id_col not in frame.columns:
        raise InputError(
            [
                Problem(
                    "column_missing",
                    f"no id column {id_col!r} to match rows with the table",
                    source=path,
                    column=id_col,
                    fix="Add the id column (or save the values as .npy in table order).",
                )
            ]
        )
    values = frame[keyed_value_columns(frame.columns, id_col)[0]]
    if values.shape[1] == 1 and not pd.api.types.is_numeric_dtype(
        values.dtypes.iloc[0]
    ):  # a list column
        matrix = np.stack(values.iloc[:, 0].to_numpy()).astype(np.float32)
    else:
        matrix = values.to_numpy(dtype=np.float32)
    out = pd.DataFrame(matrix, columns=[f"{prefix}{j}" for j in range(matrix.shape[1])])
    out.insert(0, "id", _normalise_text(frame[id_col]).to_numpy(dtype=object))
    out[f"{prefix}found"] = True
    return out


# A partition (one table file) past this many rows is held, validated and searched by one task.
LARGE_PART_ROWS = 2_000_000


def n_workers(client) -> int:
    """Workers the cluster has now (0 while a new cluster's are still starting)."""
    return len(client.scheduler_info().get("workers", {}))


def partition_warnings(parts: list[Part], n_workers: int, table) -> list[AuditWarning]:
    """`table_parts_too_few`: one partition per table file, so a table in fewer files than the
    cluster has workers, or in files past LARGE_PART_ROWS rows, leaves workers idle and puts a
    whole file in one worker's memory."""
    largest = max((p.n_rows for p in parts), default=0)
    if len(parts) >= max(n_workers, 1) and largest <= LARGE_PART_ROWS:
        return []
    return [
        AuditWarning(
            "table_parts_too_few",
            f"the table is {len(parts):,} file(s) for {n_workers} worker(s), the largest "
            f"{largest:,} rows: each file is one partition, worked on by one worker at a time. "
            "Write it as part files of about 250,000 rows (for example "
            "pyarrow.dataset.write_dataset(..., max_rows_per_file=250_000)).",
            file=str(table),
        )
    ]


# -- assembling and checking ----------------------------------------------------------------------
def read_partitioned(table, probs, embeddings, config: AuditConfig, client) -> PartitionedInputs:
    """Read, join, validate and persist the inputs on the cluster; InputError lists every problem."""
    roles = config.columns
    files, problems = expand_files(table, "table")
    if problems:
        raise InputError(problems)
    # One task per file reads its footer and its id / label / split columns.
    facts = client.gather(
        client.map(
            _part_facts, files, roles=roles, unlabeled_values=config.unlabeled_values, pure=False
        )
    )
    unreadable = [
        _unreadable("table", p, f["unreadable"]) for p, f in zip(files, facts) if "unreadable" in f
    ]
    if unreadable:
        raise InputError(unreadable)
    footers = [(f["n_rows"], f["columns"]) for f in facts]
    parts, offset = [], 0
    for path, (n_rows, cols) in zip(files, footers):
        parts.append(Part(path, offset, n_rows, tuple(cols)))
        offset += n_rows
    columns = footers[0][1]
    for path, (_, cols) in zip(files, footers):
        named = (
            ("id", roles.id),
            ("label", roles.label),
            ("text", roles.text),
            ("image", roles.image),
        )
        for role, column in named:
            if column is not None and column not in cols:
                problems.append(
                    Problem(
                        "column_missing",
                        f"no {role} column {column!r}; the file has: {', '.join(cols[:30])}",
                        source=path,
                        column=column,
                        fix=f"Name the {role} column with --{role}-col.",
                    )
                )
    if offset == 0:
        problems.append(Problem("empty_table", "the table has no rows", source=str(table)))
    if problems:
        raise InputError(problems)

    for part, f in zip(parts, facts):
        count, rows = f["missing_ids"]
        if count:
            problems.append(
                Problem(
                    "missing_ids",
                    f"{count} rows have no id",
                    source=part.path,
                    column=roles.id,
                    rows=tuple(rows),
                    count=count,
                    fix="Give every row an id.",
                )
            )
    label_values: dict[str, int] = {}
    split_counts: dict[str, list[int]] = {}
    for f in facts:
        for value, count in f["labels"].items():
            label_values[value] = label_values.get(value, 0) + int(count)
        for name, (n_items, n_labeled) in f["splits"].items():
            total = split_counts.setdefault(name, [0, 0])
            total[0] += n_items
            total[1] += n_labeled

    read_warnings: list[AuditWarning] = []
    probs_npy, probs_files, k, prob_columns = _array_source(
        probs, "probabilities", problems, read_warnings, (2, 3), roles.id
    )
    emb_npy, emb_files, d, _ = (
        _array_source(embeddings, "embeddings", problems, read_warnings, (2,), roles.id)
        if embeddings is not None
        else (None, [], None, None)
    )
    probs_shape, emb_shape = (
        None if npy is None else np.load(npy, mmap_mode="r").shape for npy in (probs_npy, emb_npy)
    )
    n_models = probs_shape[0] if probs_shape is not None and len(probs_shape) == 3 else 1
    for npy, shape, role in (
        (probs_npy, probs_shape, "probabilities"),
        (emb_npy, emb_shape, "embeddings"),
    ):
        n_rows = None if shape is None else shape[-2]
        if n_rows is not None and n_rows != offset:
            problems.append(
                Problem(
                    "length_mismatch",
                    f"{role} have {n_rows:,} rows but the table has {offset:,}",
                    source=npy,
                    fix="Give one row per table row, in table order (or keyed Parquet).",
                )
            )
    if problems:
        raise InputError(problems)

    order, warnings = _class_order(config, probs, prob_columns, label_values, k)
    warnings = [*read_warnings, *warnings]
    problems += order.problems
    if order.classes is None:
        raise InputError(problems)
    classes, class_source = list(order.classes), order.source
    found, note = distinct_indices(list(label_values), order.classes)
    class_source += note
    codes = {v: int(f) for v, f in zip(label_values, found) if f >= 0}
    unknown = [v for v, f in zip(label_values, found) if f < 0]
    if len(classes) != k:
        problems.append(
            Problem(
                "k_mismatch",
                f"the probabilities have {k} columns but there are {len(classes)} classes "
                f"({class_source})",
                source=str(probs),
                fix="Pass --classes (or a classes.txt beside the probabilities) in column order.",
            )
        )
    if unknown:
        problems += _unknown_label_problems(parts, facts, unknown, roles, client)
    labeled_classes = {codes[v] for v in label_values if v in codes}
    if len(labeled_classes) < 2:
        problems.append(
            Problem(
                "too_few_classes",
                f"labeled rows hold {len(labeled_classes)} distinct class(es); at least 2 are needed",
                source=str(table),
                column=roles.label,
                fix="Check the label column; empty cells count as unlabeled.",
            )
        )
    metadata, index_columns = _metadata_schema(files[0], roles)
    if index_columns:
        warnings.append(_index_warning(index_columns, Path(files[0]).name))
    problems += kind_conflicts(parts, [f["kinds"] for f in facts], metadata.columns)
    # Label problems do not stop the value checks: every problem is reported at once.
    frame = dd.from_map(
        _table_part,
        parts,
        list(range(len(parts))),
        roles=roles,
        codes=codes,
        probs_npy=probs_npy,
        emb_npy=emb_npy,
        metadata=metadata,
        meta=_table_meta(k if probs_npy else 0, d if emb_npy else 0, metadata, n_models),
        enforce_metadata=False,
    )
    problems += _duplicate_ids(frame, parts, client, roles)
    # A keyed file's columns in class order (its header matched by name to the class list).
    prob_cols = tuple(f"p:{j}" for j in (order.columns if order.columns is not None else range(k)))
    emb_cols = tuple(f"e:{j}" for j in range(d)) if d else ()
    members = member_columns(n_models, k)
    keyed_inputs = []
    for files_, prefix, role in (
        (probs_files, "p:", "probabilities"),
        (emb_files, "e:", "embeddings"),
    ):
        if files_:
            width = k if prefix == "p:" else d
            keyed = dd.from_map(
                _keyed_part,
                files_,
                id_col=roles.id,
                prefix=prefix,
                meta=_keyed_meta(prefix, width),
                enforce_metadata=False,
            )
            found, n_keyed = _duplicate_keys(keyed, files_, roles.id, role, client)
            problems += found
            keyed_inputs.append((keyed, n_keyed, files_))
            frame = frame.merge(keyed, on="id", how="left")
    frame = client.persist(frame)
    problems += _check_values(
        frame, parts, members or (prob_cols,), emb_cols, config, client, probs, embeddings
    )
    if problems:
        raise InputError(problems)
    for keyed, n_keyed, files_ in keyed_inputs:
        warnings += _extra_keys(keyed, frame, n_keyed, offset, files_, roles.id, table, client)
    if emb_cols:
        frame, scaled = _safely_scaled(frame, emb_cols, client, str(embeddings))
        warnings += scaled

    label_counts = np.zeros(len(classes), dtype=np.int64)
    for value, count in label_values.items():
        label_counts[codes[value]] += count
    unlabeled_by_value: dict[str, int] = {}
    for f in facts:
        for value, count in f.get("unlabeled_by_value", {}).items():
            unlabeled_by_value[value] = unlabeled_by_value.get(value, 0) + count
    return PartitionedInputs(
        frame=frame,
        layout=Layout(
            prob_cols,
            emb_cols,
            tuple(metadata.columns),
            columns=tuple(
                (role, name)
                for role, name in (("text", roles.text), ("image", roles.image))
                if name is not None and name in columns
            ),
            files=tuple((p.path, p.offset) for p in parts),
            members=members,
        ),
        parts=parts,
        classes=tuple(classes),
        class_source=class_source,
        split_counts=split_counts,
        label_counts=label_counts.tolist(),
        metadata_columns=list(metadata.columns),
        unlabeled_by_value={v: n for v, n in unlabeled_by_value.items() if n},
        warnings=[
            *warnings,
            *unlabeled_value_warnings(unlabeled_by_value, str(table), roles.label),
            *partition_warnings(parts, n_workers(client), table),
        ],
        sources=[
            files_fingerprint(role, str(src), files, shape)
            for role, src, files, shape in (
                ("table", table, [p.path for p in parts], (offset, len(columns))),
                (
                    "probs",
                    probs,
                    [probs_npy] if probs_npy else probs_files,
                    probs_shape or (offset, k),
                ),
                ("embeddings", embeddings, [emb_npy] if emb_npy else emb_files, (offset, d or 0)),
            )
            if src is not None
        ],
    )


def files_fingerprint(role: str, source: str, files: list, shape) -> InputFingerprint:
    """A partitioned input's fingerprint: each file's name, size, first and last 64 KiB (a Parquet
    footer holds every row group's statistics), hashed in path order. Cheap at any file count,
    and it tells `compare` whether two runs read the same inputs."""
    import hashlib

    import fsspec

    digest = hashlib.sha256()
    total = 0
    for path in files:
        fs, root = fsspec.core.url_to_fs(str(path))
        size = fs.size(root)
        total += size
        digest.update(f"{Path(root).name}\0{size}\0".encode())
        with fs.open(root, "rb") as handle:
            digest.update(handle.read(1 << 16))
            if size > 2 << 16:
                handle.seek(size - (1 << 16))
                digest.update(handle.read(1 << 16))
    return InputFingerprint(role, source, total, digest.hexdigest(), tuple(shape))


def _array_source(
    source, role: str, problems: list[Problem], warnings: list, ndims: tuple[int, ...], id_col: str
):
    """(.npy path or None, keyed Parquet files, width, column names of a keyed input)."""
    text = str(source)
    if text.lower().endswith(".npy"):
        if not Path(text).is_file():
            problems.append(Problem("file_missing", f"{role} file not found", source=text))
            return None, [], None, None
        try:
            array = np.load(text, mmap_mode="r")
        except (OSError, ValueError) as exc:
            problems.append(_unreadable(role, text, f"{type(exc).__name__}: {exc}"))
            return None, [], None, None
        if array.ndim not in ndims:
            problems.append(
                Problem(
                    f"{'probs' if role == 'probabilities' else 'embeddings'}_shape",
                    f"{role} have shape {array.shape}",
                    source=text,
                    fix=(
                        "Give N x K probabilities (one model) or M x N x K (M models or "
                        "MC-dropout passes), and N x d embeddings."
                    ),
                )
            )
            return None, [], None, None
        return str(Path(text).resolve()), [], int(array.shape[-1]), None
    files, found = expand_files(text, role)
    problems += found
    if not files:
        return None, [], None, None
    try:
        first = _read(files[0]).head(1)  # pandas' columns: a stored index is not one
    except Exception as exc:
        problems.append(_unreadable(role, files[0], f"{type(exc).__name__}: {exc}"))
        return None, [], None, None
    values, index_columns = keyed_value_columns(first.columns, id_col)
    if index_columns:
        warnings.append(_index_warning(index_columns, Path(files[0]).name))
    width = len(values)
    if width == 1 and len(first) and not pd.api.types.is_numeric_dtype(first[values[0]]):
        width = len(first[values[0]].iloc[0])
        values = None
    return None, files, width, values


def _class_order(config, probs, prob_columns, label_values, k):
    """The class of every probability column, by the rules of dataaudit/classes.py (the same as
    in process): --classes, else classes.txt beside the probabilities, matched by name to a keyed
    file's header; else the header's names; else the labels."""
    from dataaudit.classes import resolve_class_order
    from dataaudit.load import read_classes_file

    beside = Path(str(probs)).parent / "classes.txt"
    file_classes, problems = (None, [])
    if "://" not in str(probs) and beside.is_file():
        file_classes, problems = read_classes_file(beside)
    given, given_source, warnings = given_classes(config, file_classes, beside)
    order = resolve_class_order(
        given,
        given_source,
        None if prob_columns is None else [str(c).strip() for c in prob_columns],
        Path(str(probs)).name,
        list(label_values),
        k,
    )
    order.problems[:0] = problems
    return order, warnings + order.warnings


def _unknown_label_problems(parts, facts, unknown, roles, client) -> list[Problem]:
    bad = set(unknown)

    def rows_of(part: Part) -> list[int]:
        labels = _normalise_text(_read(part.path, [roles.label])[roles.label])
        return np.flatnonzero(labels.isin(bad).to_numpy())[:MAX_EXAMPLES].tolist()

    problems = []
    failing = [(p, f) for p, f in zip(parts, facts) if bad & set(f["labels"])]
    rows = client.gather(client.map(rows_of, [p for p, _ in failing], pure=False))
    for (part, f), found in zip(failing, rows):
        values = [v for v in f["labels"] if v in bad]
        count = sum(int(f["labels"][v]) for v in values)
        problems.append(
            Problem(
                "unknown_labels",
                f"{count:,} labels are not among the classes",
                source=part.path,
                column=roles.label,
                rows=tuple(found),
                values=tuple(repr(v) for v in values[:MAX_EXAMPLES]),
                count=count,
                fix="Fix the labels, or give the full class list with --classes / classes.txt.",
            )
        )
    return problems


def _duplicate_ids(frame: dd.DataFrame, parts: list[Part], client, roles) -> list[Problem]:
    """Ids on more than one row, found by a shuffle (value_counts); rows named per part file."""
    counts = frame["id"].value_counts(split_out=max(1, frame.npartitions // 8))
    dups = client.compute(counts[counts > 1]).result()
    if not len(dups):
        return []
    values = set(dups.index[:1000])

    def where(part: pd.DataFrame) -> pd.DataFrame:
        hit = part[part["id"].isin(values)]
        return hit[[PART, POS, "id"]]

    found = client.compute(frame.map_partitions(where)).result().sort_values(POS)
    problems = []
    for index, group in found.groupby(PART):
        part = parts[int(index)]
        problems.append(
            Problem(
                "duplicate_ids",
                f"{len(group)} rows share an id with another row",
                source=part.path,
                column=roles.id,
                rows=tuple(int(p) - part.offset for p in group[POS][:MAX_EXAMPLES]),
                values=tuple(dict.fromkeys(group["id"].astype(str)))[:MAX_EXAMPLES],
                count=len(group),
                fix="Make ids unique (one row per example).",
            )
        )
    return problems


def _duplicate_keys(keyed: dd.DataFrame, files, id_col, role, client) -> tuple[list[Problem], int]:
    """(duplicate_ids problems of a keyed input, its number of rows), in one pass."""
    counts = keyed["id"].value_counts()
    dups, n_rows = client.compute([counts[counts > 1], counts.sum()], sync=True)
    if not len(dups):
        return [], int(n_rows)
    return [
        Problem(
            "duplicate_ids",
            f"{int(dups.sum())} {role} rows share an id with another row",
            source=files[0] if len(files) == 1 else str(Path(files[0]).parent),
            column=id_col,
            values=tuple(map(str, dups.index[:MAX_EXAMPLES])),
            count=int(dups.sum()),
            fix="Give one row per id.",
        )
    ], int(n_rows)


def _extra_keys(keyed, frame, n_keyed: int, n_table: int, files, id_col, table, client):
    """extra_ids_ignored, as in process: a keyed input's rows whose ids are not in the table
    (every table id matched and keys are unique, so they number n_keyed - table rows)."""
    extra = n_keyed - n_table
    if extra <= 0:
        return []
    joined = keyed[["id"]].merge(frame[["id"]], on="id", how="left", indicator=True)
    # The first ids in sort order, so the examples do not change with the shuffle's order.
    firsts = (
        joined[joined["_merge"] == "left_only"]["id"]
        .astype(str)
        .map_partitions(lambda ids: ids.sort_values().head(MAX_EXAMPLES), meta=("id", object))
    )
    shown = ", ".join(sorted(client.compute(firsts, sync=True))[:MAX_EXAMPLES])
    return [
        AuditWarning(
            "extra_ids_ignored",
            f"{extra:,} rows have ids that are not in {Path(str(table)).name} and were ignored "
            f"(e.g. {shown}).",
            file=files[0] if len(files) == 1 else str(Path(files[0]).parent),
            column=id_col,
        )
    ]


def _check_partition(frame: pd.DataFrame, prob_sets, emb_cols, tol: float) -> dict:
    """Per (check, part file): count and first table positions of rows failing it.

    `prob_sets`: the probability columns of each model (one set for a single model); a row fails
    a check when any model's probabilities fail it, as in process."""
    out: dict = {}

    def note(code: str, mask: np.ndarray, values=None) -> None:
        if not mask.any():
            return
        parts, pos = frame[PART].to_numpy()[mask], frame[POS].to_numpy()[mask]
        vals = None if values is None else values[mask]
        for part in np.unique(parts):
            m = parts == part
            order = np.argsort(pos[m])[:MAX_EXAMPLES]
            shown = [] if vals is None else [f"{v:.3g}" for v in vals[m][order]]
            out[(code, int(part))] = (int(m.sum()), pos[m][order].tolist(), shown)

    if "p:found" in frame.columns:
        missing = frame["p:found"].isna().to_numpy()
        note("ids_not_matching:probs", missing)
    else:
        missing = np.zeros(len(frame), dtype=bool)
    probs = np.stack([frame[list(cols)].to_numpy(dtype=np.float64) for cols in prob_sets])
    finite = np.isfinite(probs).all(axis=(0, 2))
    negative = finite & (probs < 0).any(axis=(0, 2))
    sums = probs.sum(axis=2)  # M x n
    # the sum farthest from 1 among the models, shown for each row
    worst = np.take_along_axis(sums, np.abs(sums - 1).argmax(axis=0)[None], axis=0)[0]
    note("probs_not_finite", ~finite & ~missing)
    note("probs_negative", negative, probs.min(axis=(0, 2)))
    note("probs_not_normalized", finite & ~negative & (np.abs(worst - 1) > tol), worst)
    if emb_cols:
        emb_missing = (
            frame["e:found"].isna().to_numpy()
            if "e:found" in frame.columns
            else np.zeros(len(frame), bool)
        )
        note("ids_not_matching:embeddings", emb_missing)
        emb = frame[list(emb_cols)].to_numpy(dtype=np.float32)
        finite = np.isfinite(emb).all(axis=1)
        note("embeddings_not_finite", ~finite & ~emb_missing)
        note("embeddings_zero_rows", finite & ~emb.any(axis=1))
    return out


def _merge_checks(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, (count, rows, values) in b.items():
        if key in out:
            c0, r0, v0 = out[key]
            merged = sorted(
                zip(r0 + rows, v0 + values) if v0 or values else [(r, "") for r in r0 + rows]
            )
            out[key] = (
                c0 + count,
                [r for r, _ in merged][:MAX_EXAMPLES],
                [v for _, v in merged if v][:MAX_EXAMPLES],
            )
        else:
            out[key] = (count, rows, values)
    return out


_CHECKS = {
    "ids_not_matching:probs": (
        "table ids have no row in the probabilities",
        "Give a row for every id of the table.",
    ),
    "ids_not_matching:embeddings": (
        "table ids have no row in the embeddings",
        "Give a row for every id of the table.",
    ),
    "probs_not_finite": (
        "rows: values are NaN or infinite",
        "Replace NaN/inf; check the model's output.",
    ),
    "probs_negative": ("rows: values are negative", "These look like logits: apply a softmax."),
    "probs_not_normalized": (
        "rows do not sum to 1",
        "Pass probabilities after a softmax, not logits or scores.",
    ),
    "embeddings_not_finite": ("rows hold NaN or infinite values", "Recompute those embeddings."),
    "embeddings_zero_rows": (
        "rows are all zeros (no direction to compare)",
        "Recompute those embeddings.",
    ),
}


def _safely_scaled(frame, emb_cols, client, source: str):
    """validate.safely_scaled on the cluster: embeddings of huge or tiny magnitude divided by one
    power of two, so float32 norms and dot products neither overflow nor vanish."""
    from dataaudit.validate import rescale_exponent, rescaled, rescaled_warning

    top = float(client.compute(frame[list(emb_cols)].abs().max()).result().max())
    exponent = rescale_exponent(top)
    if exponent is None:
        return frame, []
    columns = list(emb_cols)

    def scale(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(**dict(zip(columns, rescaled(part[columns].to_numpy(), exponent).T)))

    scaled = client.persist(frame.map_partitions(scale, meta=frame._meta))
    return scaled, [rescaled_warning(top, exponent, Path(source).name)]


def _check_values(
    frame, parts, prob_sets, emb_cols, config, client, probs, embeddings
) -> list[Problem]:
    tol = config.prob_sum_tolerance
    delayed = [
        dask.delayed(_check_partition)(p, prob_sets, emb_cols, tol) for p in frame.to_delayed()
    ]
    while len(delayed) > 1:
        delayed = [
            dask.delayed(_merge_checks)(*delayed[i : i + 2]) if i + 1 < len(delayed) else delayed[i]
            for i in range(0, len(delayed), 2)
        ]
    found = client.compute(delayed[0]).result()
    problems = []
    for (code, part_index), (count, rows, values) in sorted(found.items(), key=lambda kv: kv[0][1]):
        part = parts[part_index]
        what, fix = _CHECKS[code]
        problems.append(
            Problem(
                code.split(":")[0],
                f"{count:,} {what}",
                source=part.path,
                rows=tuple(int(r) - part.offset for r in rows),
                values=tuple(values),
                count=count,
                fix=fix,
            )
        )
    return problems
