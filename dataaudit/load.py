"""Read the user's files into raw frames and arrays. Files, not meaning: validate.py judges them.

Every reader returns a problem instead of raising, so one run reports every unreadable input at once.
"""

from __future__ import annotations

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
        frame = source.reset_index(drop=True)
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
            header = pd.read_csv(path, sep=sep, nrows=0).columns
            dtypes = {c: str for c in text_columns if c in header}
            frame = pd.read_csv(path, sep=sep, dtype=dtypes, low_memory=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:  # the library's message says what is wrong with the bytes
        return raw, [
            Problem(
                "file_unreadable",
                f"cannot read the table: {type(exc).__name__}: {exc}",
                source=str(path),
                fix="Check that the file is a valid CSV or Parquet file.",
            )
        ]
    raw.frame = frame.reset_index(drop=True)
    raw.fingerprint = fingerprint(path, "table", frame.shape)
    return raw, []


def read_array(source: Any, role: str) -> tuple[RawInput, list[Problem]]:
    """Read probabilities or embeddings: .npy (memory-mapped) or a Parquet/CSV keyed by id."""
    if isinstance(source, pd.DataFrame):
        raw = RawInput(role, f"<in-memory {role} table>", None, frame=source.reset_index(drop=True))
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
            raw.frame = pd.read_csv(path, low_memory=False)
            shape = raw.frame.shape
        else:
            raw.frame = pd.read_parquet(path)
            shape = raw.frame.shape
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


def read_classes_file(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_inputs(table, probs, embeddings=None, id_col="id", label_col="label"):
    """Read all inputs; returns (RawInputs, problems)."""
    problems: list[Problem] = []
    raw_table, found = read_table(table, (id_col, label_col))
    problems += found
    raw_probs, found = read_array(probs, "probs")
    problems += found
    raw_emb = None
    if embeddings is not None:
        raw_emb, found = read_array(embeddings, "embeddings")
        problems += found
    classes_file = None
    if raw_probs.path is not None:
        candidate = raw_probs.path.parent / "classes.txt"
        classes_file = candidate if candidate.is_file() else None
    return RawInputs(raw_table, raw_probs, raw_emb, classes_file), problems
