"""Writing outputs safely: temp-and-rename, and never clobbering a folder we were not asked to."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, BinaryIO

# Files a user's table points at (images) are read only up to this size: a 10 GB video or a
# disk image named .png would stall the run for minutes to produce one thumbnail or hash.
MAX_USER_FILE_BYTES = 256 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable_mode(is_dir: bool = False) -> int:
    """The mode a plain open() / mkdir() would give; mkstemp and mkdtemp default to private."""
    return (0o777 if is_dir else 0o666) & ~_umask()


class NotARegularFile(OSError):
    """A path that names a FIFO, a device, a folder or an over-size file: never read."""


def open_regular(path: str | os.PathLike, max_bytes: int = MAX_USER_FILE_BYTES) -> BinaryIO:
    """Open `path` for binary reading if it is a regular file of at most `max_bytes`.

    A FIFO blocks open() until a writer comes and /dev/zero never ends a read, so the type is
    checked before opening (stat does not block) and again on the open descriptor (the path may
    have changed in between). Raises FileNotFoundError, NotARegularFile or another OSError.
    """
    _check_regular(path, os.stat(path), max_bytes)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        _check_regular(path, os.fstat(fd), max_bytes)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(path: str | os.PathLike, info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise NotARegularFile(f"{path} is {kind}")
    if info.st_size > max_bytes:
        raise NotARegularFile(
            f"{path} is {info.st_size / 2**20:,.0f} MiB, over the {max_bytes / 2**20:,.0f} MiB read limit"
        )


class OutputError(Exception):
    """An output folder that cannot be used or written; the CLI exits 2 with this message."""


class OutputExistsError(OutputError):
    """The output folder holds files and --force was not given."""


def describe_os_error(exc: OSError) -> str:
    """'permission denied' / 'no space left on the device' ... for a message naming the path."""
    reasons = {
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.EROFS: "the file system is read-only",
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EFBIG: "the file is larger than this process may write",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.ENOENT: "a part of the path does not exist and cannot be created",
    }
    reason = reasons.get(exc.errno or -1) or (exc.strerror or type(exc).__name__).lower()
    where = exc.filename if exc.filename is not None else ""
    return f"{where}: {reason}" if where else reason


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create folder `path` (and parents) if needed, and prove a file can be created in it.

    Run before the analyses, so that /proc/x, a path under a regular file or a read-only folder
    costs a second, not a whole audit.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {path}: exists and is not a folder; choose another --out.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dataaudit-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"--out {path}: cannot write there ({describe_os_error(exc)}); choose a folder you "
            "can write to."
        ) from exc
    return path


class FolderLock:
    """An exclusive advisory lock on a folder (flock on the folder itself: no lock file to leave
    behind), so two runs never write one output folder at once. No-op where flock is missing."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True when held; False when another process holds it."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks on folders
            return True
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


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


# atomic_write's temporary name: "." + the file's name + "." + mkstemp's 8 characters + ".tmp".
_TEMP_NAME = re.compile(r"^\.(?P<target>.+)\.[a-z0-9_]{8}\.tmp$")


def interrupted_write_target(name: str) -> str | None:
    """The file an atomic_write temporary `name` was for (None if `name` is not one)."""
    match = _TEMP_NAME.match(name)
    return match.group("target") if match else None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda handle: handle.write(text))


RETIRED_SUFFIX = ".old"


def swap_folder(new: Path, target: Path, carry: Iterable[str] = ()) -> None:
    """Put folder `new` in place of `target` by renames, so `target` is never half-written.

    Entries of `target` named in `carry` (files dataaudit did not write, e.g. a reviewer's notes)
    are hard-linked, or copied, into `new` first: at every moment each exists in one of the two.
    """
    for name in carry:
        source, dest = target / name, new / name
        if dest.exists() or dest.is_symlink():
            raise OutputError(
                f"{source}: has the name of a file dataaudit writes; rename it to keep it."
            )
        if source.is_dir() and not source.is_symlink():
            shutil.copytree(source, dest, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(source, dest)
    if target.exists():
        retired = target.with_name(f".{target.name}{RETIRED_SUFFIX}")
        shutil.rmtree(retired, ignore_errors=True)
        target.rename(retired)
        new.rename(target)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        new.rename(target)


def _link_or_copy(source: str | os.PathLike, dest: str | os.PathLike) -> None:
    if os.path.islink(source):
        os.symlink(os.readlink(source), dest)
        return
    try:
        os.link(source, dest)
    except OSError:  # another file system, or links not supported
        shutil.copy2(source, dest)
