"""Read the user's files into raw frames and arrays. Files, not meaning: validate.py judges them.

Every reader returns a problem instead of raising, so one run reports every unreadable input at once.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dataaudit.dataset import InputFingerprint
from dataaudit.problems import Problem

TABLE_FORMATS = (".csv", ".tsv", ".parquet", ".pq")
ARRAY_FORMATS = (".npy", ".parquet", ".pq", ".csv")

# What pandas' read_csv takes as missing by default. Numeric and metadata columns keep that
# reading ('NA' from R is a missing number); id, label and split columns do not: there only an
# empty cell is missing, so the class 'NA' (North America) or 'None' stays a class.
PANDAS_NA_TEXT = (
    "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16: its BOM starts with UTF-16 LE's
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF8, "utf-8-sig"),
)
# A --classes value without a comma that ends like this is a file name, never a class name.
_FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".names", ".lst", ".list", ".labels", ".yaml")


@dataclass
class RawInput:
    """One input as read: exactly one of frame / array is set when reading worked."""

    role: str  # table | probs | embeddings
    name: str  # file name or "<in-memory DataFrame>", used in messages
    path: Path | None
    frame: pd.DataFrame | None = None
    array: np.ndarray | None = None
    fingerprint: InputFingerprint | None = None


@dataclass
class RawInputs:
    table: RawInput | None
    probs: RawInput | None
    embeddings: RawInput | None
    classes_file: Path | None = None  # classes.txt found beside the probabilities


def fingerprint(path: Path, role: str, shape: tuple[int, ...]) -> InputFingerprint:
    """Size plus a hash of the first and last MiB: identifies a file without reading 1M rows twice."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read(1 << 20))
    return InputFingerprint(role, str(path.resolve()), size, digest.hexdigest(), tuple(shape))


def _memory_fingerprint(role: str, shape: tuple[int, ...]) -> InputFingerprint:
    return InputFingerprint(role, None, None, None, tuple(shape))


def _file_problem(role: str, path: Path, allowed: tuple[str, ...]) -> Problem | None:
    if not path.exists():
        return Problem(
            "file_missing",
            f"{role} file not found",
            source=str(path),
            fix=f"Check the path given for the {role}.",
        )
    if path.is_dir():
        return Problem(
            "file_unreadable", f"{role} path is a folder", source=str(path), fix="Give a file."
        )
    if not path.is_file():  # a FIFO or device: reading would block or never end
        return Problem(
            "file_unreadable",
            f"{role} path is not a regular file",
            source=str(path),
            fix="Give a file saved on disk.",
        )
    if path.suffix.lower() not in allowed:
        return Problem(
            "file_format",
            f"{role} file has an unsupported extension {path.suffix or '(none)'!r}",
            source=str(path),
            fix=f"Use one of: {', '.join(allowed)}.",
        )
    return None


def read_table(
    source: str | os.PathLike | pd.DataFrame, text_columns: tuple[str, ...]
) -> tuple[RawInput, list[Problem]]:
    """Read the examples table. `text_columns` (id, label) are read as text, so '007' stays '007'."""
    if isinstance(source, pd.DataFrame):
        frame = _index_as_column(source, text_columns)
        raw = RawInput("table", "<in-memory table>", None, frame=frame)
        raw.fingerprint = _memory_fingerprint("table", frame.shape)
        return raw, []
    path = Path(source)
    raw = RawInput("table", path.name, path)
    problem = _file_problem("table", path, TABLE_FORMATS)
    if problem:
        return raw, [problem]
    try:
        if path.suffix.lower() in (".csv", ".tsv"):
            sep = "\t" if path.suffix.lower() == ".tsv" else ","
            frame = read_csv(path, sep, text_columns)
        else:
            frame = _index_as_column(pd.read_parquet(path), text_columns)
    except DuplicateColumnsError as exc:
        return raw, [exc.problem(str(path))]
    except Exception as exc:  # the library's message says what is wrong with the bytes
        return raw, [
            Problem(
                "file_unreadable",
                f"cannot read the table: {type(exc).__name__}: {exc}",
                source=str(path),
                fix="Check that the file is a valid CSV or Parquet file.",
            )
        ]
    raw.frame = frame
    raw.fingerprint = fingerprint(path, "table", frame.shape)
    return raw, []


class DuplicateColumnsError(ValueError):
    def __init__(self, names: list[str]):
        self.names = names

    def problem(self, source: str) -> Problem:
        return Problem(
            "duplicate_columns",
            f"the header names {len(self.names)} column(s) twice: "
            + ", ".join(repr(n) for n in self.names[:5]),
            source=source,
            fix="Give every column its own name (pandas would read the second one as 'name.1').",
        )


def read_csv(path: Path, sep: str, text_columns: tuple[str, ...]) -> pd.DataFrame:
    """A CSV with `text_columns` (ids, labels, splits) read as text, where only an empty cell is
    missing; every other column as pandas reads it. A repeated header name is an error (pandas
    would silently rename the second copy)."""
    with path.open("rb") as handle:
        start = handle.read(4)
    # UTF-8 (a BOM is skipped), or UTF-16/32 when a byte-order mark says so (Excel's "Unicode text").
    encoding = next((name for bom, name in _BOMS if start.startswith(bom)), "utf-8-sig")
    with path.open(newline="", encoding=encoding, errors="replace") as handle:
        header = next(csv.reader(handle, delimiter=sep), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DuplicateColumnsError(repeated)
    text = [c for c in text_columns if c in header]
    na_values = {c: ([""] if c in text else list(PANDAS_NA_TEXT) + [""]) for c in header}
    return pd.read_csv(
        path,
        sep=sep,
        encoding=encoding,
        dtype={c: str for c in text},
        keep_default_na=False,
        na_values=na_values,
        low_memory=False,
    )


def _index_as_column(frame: pd.DataFrame, roles: tuple[str, ...]) -> pd.DataFrame:
    """An index named after a role column (df.set_index('id'), written to Parquet or passed in
    memory) becomes that column again; any other index is row numbers and is dropped."""
    names = list(frame.index.names)
    if any(name in roles and name not in frame.columns for name in names):
        return frame.reset_index()
    return frame.reset_index(drop=True)


def read_array(source: Any, role: str, id_col: str = "id") -> tuple[RawInput, list[Problem]]:
    """Read probabilities or embeddings: .npy (memory-mapped) or a Parquet/CSV keyed by id."""
    if isinstance(source, pd.DataFrame):
        raw = RawInput(
            role, f"<in-memory {role} table>", None, frame=_index_as_column(source, (id_col,))
        )
        raw.fingerprint = _memory_fingerprint(role, source.shape)
        return raw, []
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        array = np.asarray(source)
        raw = RawInput(role, f"<in-memory {role} array>", None, array=array)
        raw.fingerprint = _memory_fingerprint(role, array.shape)
        return raw, []
    path = Path(source)
    raw = RawInput(role, path.name, path)
    problem = _file_problem(role, path, ARRAY_FORMATS)
    if problem:
        return raw, [problem]
    try:
        if path.suffix.lower() == ".npy":
            # Memory-mapped: a 1M x 384 float32 file is paged in as analyses read it, never copied.
            raw.array = np.load(path, mmap_mode="r", allow_pickle=False)
            shape = raw.array.shape
        elif path.suffix.lower() == ".csv":
            # The id column as text, like the table's: '00000' and '0' are two ids.
            raw.frame = read_csv(path, ",", (id_col,))
            shape = raw.frame.shape
        else:
            raw.frame = _index_as_column(pd.read_parquet(path), (id_col,))
            shape = raw.frame.shape
    except DuplicateColumnsError as exc:
        return raw, [exc.problem(str(path))]
    except Exception as exc:
        return raw, [
            Problem(
                "file_unreadable",
                f"cannot read the {role}: {type(exc).__name__}: {exc}",
                source=str(path),
                fix="Save it with numpy.save (.npy) or as Parquet/CSV with an id column.",
            )
        ]
    raw.fingerprint = fingerprint(path, role, shape)
    return raw, []


def read_classes_file(path: Path) -> tuple[list[str] | None, list[Problem]]:
    """Class names, one per line: UTF-8 with or without a BOM, UTF-16/32 with a BOM, any line
    ending; blank lines skipped, names stripped. Anything else is a coded problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [
            Problem(
                "classes_file_unreadable",
                f"cannot read the classes file: {exc.strerror or exc}",
                source=str(path),
                fix="Check the path and its permissions.",
            )
        ]
    encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
    try:
        if encoding == "utf-8" and b"\x00" in data:
            raise UnicodeError("NUL bytes: UTF-16 without a byte-order mark?")
        text = data.decode(encoding)
    except UnicodeError as exc:
        return None, [
            Problem(
                "classes_file_encoding",
                f"the classes file is not readable as {encoding.upper()} ({exc})",
                source=str(path),
                fix="Save it as UTF-8 (or UTF-16 with a byte-order mark), one class name per line.",
            )
        ]
    names = [line.strip().strip("\ufeff").strip() for line in text.splitlines()]
    names = [name for name in names if name]
    if not names:
        return None, [
            Problem(
                "classes_file_empty",
                "the classes file holds no class names",
                source=str(path),
                fix="Write one class name per line, in probability-column order.",
            )
        ]
    return names, []


def parse_classes(value) -> tuple[tuple[str, ...] | None, list[Problem]]:
    """The class list a user gave (--classes or audit(classes=...)): names, comma-separated text,
    or the path of a file with one name per line. A path to a missing file is an error, never a
    one-class list."""
    if value is None:
        return None, []
    if isinstance(value, os.PathLike) or (isinstance(value, str) and Path(value).is_file()):
        names, problems = read_classes_file(Path(value))
        return (tuple(names) if names else None), problems
    if not isinstance(value, str):
        return tuple(str(c).strip() for c in value), []
    names = tuple(c.strip() for c in value.split(",") if c.strip())
    if "," in value and names:
        return names, []
    looks_like_path = (
        "/" in value or "\\" in value or value.lower().endswith(_FILE_SUFFIXES) or value[:1] in "~."
    )
    if looks_like_path:
        problem = Problem(
            "classes_file_missing",
            "--classes names a file that does not exist",
            source=value,
            fix="Check the path, or give the names comma-separated (--classes cat,dog).",
        )
    else:
        problem = Problem(
            "classes_not_a_list",
            f"--classes {value!r} is a single name and not a file; at least 2 classes are needed",
            source="--classes",
            fix="Give the names comma-separated in probability-column order, or a file "
            "with one name per line.",
        )
    return None, [problem]


def read_inputs(table, probs, embeddings=None, id_col="id", label_col="label", split_col="split"):
    """Read all inputs; returns (RawInputs, problems)."""
    problems: list[Problem] = []
    raw_table, found = read_table(table, (id_col, label_col, split_col))
    problems += found
    raw_probs, found = read_array(probs, "probs", id_col)
    problems += found
    raw_emb = None
    if embeddings is not None:
        raw_emb, found = read_array(embeddings, "embeddings", id_col)
        problems += found
    classes_file = None
    if raw_probs.path is not None:
        candidate = raw_probs.path.parent / "classes.txt"
        classes_file = candidate if candidate.is_file() else None
    return RawInputs(raw_table, raw_probs, raw_emb, classes_file), problems
