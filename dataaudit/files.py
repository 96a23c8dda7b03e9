"""Writing outputs safely: temp-and-rename, and never clobbering a folder we were not asked to."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable_mode(is_dir: bool = False) -> int:
    """The mode a plain open() / mkdir() would give; mkstemp and mkdtemp default to private."""
    return (0o777 if is_dir else 0o666) & ~_umask()


class OutputExistsError(Exception):
    """The output folder holds files and --force was not given."""


def prepare_output_dir(out_dir: str | os.PathLike, force: bool) -> Path:
    """Create `out_dir`, or accept an existing one that is empty (or any, with force)."""
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder; choose another --out.")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise OutputExistsError(
            f"{path} is not empty; pass --force to replace dataaudit's files in it "
            "(other files are left alone), or choose another --out."
        )
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "w") -> None:
    """Write via a temporary file in the same folder, then rename over `path`.

    A run interrupted half-way leaves the previous file intact, never a truncated one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        newline = None if "b" in mode else ""
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            write(handle)
        os.chmod(tmp, readable_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


def swap_folder(new: Path, target: Path) -> None:
    """Put folder `new` in place of `target` by renames, so `target` is never half-written."""
    if target.exists():
        retired = target.with_name(f".{target.name}.old")
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        new.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        new.rename(target)
