"""The output folder of a run: what may be written there, and writing every output into it.

Everything is first written into a hidden staging folder beside the outputs, then renamed into
place, so a run interrupted while computing or writing leaves the previous run's files whole.

Ownership: `.dataaudit-manifest.json` lists every file dataaudit wrote into the folder with its
size and modification time. `--force` replaces or removes only files listed there and unchanged
since; anything else (a reviewer's notes inside audit/, a comparison.json from another tool, a
relabel.csv edited after the run) is left alone, and the run says so. A folder written by a
version without a manifest is recognised by its audit/report.json: its outputs count as ours,
except comparison files its report does not account for.

Interrupted runs (SIGTERM, SIGKILL, power loss) leave hidden staging folders and temporary files;
the next run into the folder removes them and says so. It holds a lock on the folder meanwhile,
so it never removes the staging folder of a run still writing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from dataaudit.demo import DEMO_FILES
from dataaudit.files import (
    RETIRED_SUFFIX,
    FolderLock,
    OutputError,
    OutputExistsError,
    atomic_write_text,
    check_writable_dir,
    describe_os_error,
    interrupted_write_target,
    swap_folder,
)
from dataaudit.render.checks_xml import write_checks_xml
from dataaudit.render.csv import EXPORTS, write_exports
from dataaudit.render.html import write_html
from dataaudit.render.summary import write_summary
from dataaudit.render.summary_md import write_summary_md
from dataaudit.report import REPORT_DIR, foreign_entries

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

MANIFEST = ".dataaudit-manifest.json"
MANIFEST_VERSION = 1
STAGING_PREFIX = ".dataaudit-staging-"
FIXED_OUTPUTS = ("report.html", "summary.json", "summary.md", "checks.xml", "comparison.json")
COMPARISON_OUTPUTS = ("comparison.json", "comparison_items.csv", "comparison_groups.csv")
MAX_NAMED = 8  # entries named in a message; the rest are counted


def output_names() -> set[str]:
    """Every file name dataaudit may write at the top of an output folder."""
    return set(EXPORTS) | set(FIXED_OUTPUTS)


def planned_outputs(comparison: bool = False, demo: bool = False) -> set[str]:
    """The files a run may write (relative paths), for open_output_folder's check."""
    names = output_names() - (set() if comparison else set(COMPARISON_OUTPUTS))
    return names | ({f"inputs/{name}" for name in DEMO_FILES} if demo else set())


# -- ownership ------------------------------------------------------------------------------------
Stamp = tuple[int, int]  # (size, mtime_ns): changes when anyone rewrites the file


def _stamp(path: Path) -> Stamp | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns)


def _read_manifest(out: Path) -> dict[str, list[Stamp]] | None:
    """relative path -> accepted stamps, or None when the folder has no (readable) manifest."""
    try:
        document = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return {
            str(rel): [(int(size), int(mtime)) for size, mtime in stamps]
            for rel, stamps in document["files"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _legacy_files(out: Path) -> set[str]:
    """The outputs a dataaudit without a manifest wrote here (known from its audit/report.json)."""
    try:
        document = json.loads((out / REPORT_DIR / "report.json").read_text(encoding="utf-8"))
        has_comparison = bool(document.get("comparison"))
        document["schema_version"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    # comparison files a report without a comparison did not produce: another command wrote them
    names = output_names() - (set() if has_comparison else set(COMPARISON_OUTPUTS))
    return names | {f"inputs/{name}" for name in DEMO_FILES}


@dataclass
class _Ownership:
    manifest: dict[str, list[Stamp]] | None
    legacy: set[str]

    @classmethod
    def of(cls, out: Path) -> _Ownership:
        manifest = _read_manifest(out)
        return cls(manifest, set() if manifest is not None else _legacy_files(out))

    def why_not_ours(self, out: Path, rel: str) -> str:
        """ "" when dataaudit wrote `rel` and nobody changed it since; else the reason it is not."""
        if self.manifest is None:
            return "" if rel in self.legacy else "not written by dataaudit"
        if rel not in self.manifest:
            return "not written by dataaudit"
        if _stamp(out / rel) not in self.manifest[rel]:
            return "changed since dataaudit wrote it"
        return ""


def _is_leftover(name: str) -> bool:
    """A hidden entry an interrupted dataaudit leaves at the top of its folder."""
    if name.startswith(STAGING_PREFIX):  # _write_outputs' staging folder
        return True
    if re.fullmatch(rf"\.{REPORT_DIR}\.[a-z0-9_]{{8}}", name):  # AuditReport.save's new folder
        return True
    target = interrupted_write_target(name)  # atomic_write's temporary file
    return target is not None and (target in output_names() or target == MANIFEST)


_INNER_NAMES = ("report.json", *DEMO_FILES)  # written inside audit/ and inputs/


def _clean_leftovers(out: Path) -> list[str]:
    """Remove what interrupted runs left; returns what was removed or restored, for the user."""
    done = []
    audit, retired = out / REPORT_DIR, out / f".{REPORT_DIR}{RETIRED_SUFFIX}"
    if retired.is_dir():
        if not audit.exists():
            # Stopped between the two renames of swap_folder: the retired folder is the report.
            retired.rename(audit)
            done.append(f"restored {REPORT_DIR}/ from {retired.name}")
        else:
            # A reviewer's file not yet carried into the new audit/ (older versions did not
            # carry them) is moved there rather than lost.
            for name in foreign_entries(retired):
                if not (audit / name).exists():
                    (retired / name).rename(audit / name)
                    done.append(f"moved {retired.name}/{name} to {REPORT_DIR}/")
            shutil.rmtree(retired)
            done.append(f"removed {retired.name}")
    for folder in (out, audit, out / "inputs"):
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            if folder == out:
                if not _is_leftover(entry.name):
                    continue
            elif interrupted_write_target(entry.name) not in _INNER_NAMES and not (
                interrupted_write_target(entry.name) or ""
            ).endswith(".parquet"):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            done.append(f"removed {entry.relative_to(out)}")
    return done


def _names(entries: list[str]) -> str:
    shown = ", ".join(entries[:MAX_NAMED])
    return shown + (f" and {len(entries) - MAX_NAMED:,} more" if len(entries) > MAX_NAMED else "")


# -- the folder -----------------------------------------------------------------------------------
@dataclass
class OutputFolder:
    """An output folder checked, locked and cleaned for one run; `write` puts the outputs in."""

    path: Path
    notes: list[str] = field(default_factory=list)  # what was cleaned and what was left alone
    adopted: set[str] = field(default_factory=set)  # files written before the report (demo inputs)
    _lock: FolderLock | None = None

    def adopt(self, paths: Iterable[str | os.PathLike]) -> None:
        """Record files written into the folder before the report (e.g. the demo's inputs)."""
        self.adopted.update(
            Path(p).resolve().relative_to(self.path.resolve()).as_posix() for p in paths
        )

    def write(self, report: AuditReport) -> list[Path]:
        """Write every output; OutputError (naming the file and the reason) if that fails."""
        try:
            return _write_outputs(report, self.path, self.adopted)
        except OSError as exc:
            raise OutputError(
                f"cannot write the outputs into {self.path} ({describe_os_error(exc)}); the "
                "previous outputs there are unchanged. Free space or fix permissions, then rerun."
            ) from exc

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> OutputFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_output_folder(
    out_dir: str | os.PathLike,
    force: bool,
    will_write: Iterable[str] = (),
) -> OutputFolder:
    """Check that `out_dir` can take a run's outputs, before any analysis runs.

    Creates the folder, proves it writable, locks it against a concurrent run, removes what
    interrupted runs left, and refuses (OutputError) a non-empty folder without `force`, or, with
    it, a folder where a file this run writes (`will_write`, relative paths) is not dataaudit's.
    """
    out = check_writable_dir(out_dir)
    lock = FolderLock(out)
    if not lock.acquire():
        raise OutputError(
            f"--out {out}: another dataaudit run is writing into this folder; wait for it to "
            "finish or choose another --out."
        )
    folder = OutputFolder(out, _lock=lock)
    try:
        try:
            cleaned = _clean_leftovers(out)
        except OSError as exc:
            raise OutputError(
                f"--out {out}: cannot remove what an interrupted run left "
                f"({describe_os_error(exc)})."
            ) from exc
        if cleaned:
            folder.notes.append(
                f"Removed what an interrupted dataaudit run left in {out}: {_names(cleaned)}."
            )
        entries = sorted(e.name for e in out.iterdir())
        if entries and not force:
            raise OutputExistsError(
                f"{out} is not empty; pass --force to replace dataaudit's files in it "
                "(other files are left alone), or choose another --out."
            )
        if force:
            folder.notes += _check_force(out, will_write)
    except BaseException:
        folder.close()
        raise
    return folder


def _check_force(out: Path, will_write: Iterable[str]) -> list[str]:
    """Refuse when a file this run writes is not dataaudit's; say what --force leaves alone."""
    owner = _Ownership.of(out)
    will_write = {*will_write, "report.html", "summary.json"}
    conflicts = []
    for rel in sorted(will_write):
        path = out / rel
        if path.exists() or path.is_symlink():
            why = "a folder" if path.is_dir() else owner.why_not_ours(out, rel)
            if why:
                conflicts.append(f"{rel} ({why})")
    audit = out / REPORT_DIR
    if audit.exists() and not audit.is_dir():
        conflicts.append(f"{REPORT_DIR} (a file, where dataaudit keeps its saved report)")
    if conflicts:
        raise OutputError(
            f"--out {out}: --force replaces only files dataaudit wrote, and this run would "
            f"overwrite {_names(conflicts)}. Move or rename them to keep them, or choose another "
            "--out."
        )
    left = [
        name
        for name in sorted(e.name for e in out.iterdir())
        if name not in (MANIFEST, REPORT_DIR, "inputs") and owner.why_not_ours(out, name)
    ]
    left += [f"{REPORT_DIR}/{name}" for name in foreign_entries(audit)]
    if (out / "inputs").is_dir():
        left += [
            f"inputs/{e.name}"
            for e in sorted((out / "inputs").iterdir())
            if owner.why_not_ours(out, f"inputs/{e.name}")
        ]
    if not left:
        return []
    return [f"--force left alone what dataaudit did not write in {out}: {_names(left)}."]


# -- writing --------------------------------------------------------------------------------------
def write_outputs(report: AuditReport, out_dir: str | Path) -> list[Path]:
    """Write every output of `report` into `out_dir` (created if needed); returns what was written.

    From Python, without the CLI's checks: the same staging, manifest and ownership rules apply.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _write_outputs(report, out, set())


def _write_outputs(report: AuditReport, out: Path, adopted: set[str]) -> list[Path]:
    owner = _Ownership.of(out)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out))
    try:
        staged = write_exports(report, staging)
        staged.append(write_summary(report, staging / "summary.json"))
        staged.append(write_summary_md(report, staging / "summary.md"))
        staged.append(write_checks_xml(report, staging / "checks.xml"))
        staged.append(write_html(report, staging / "report.html"))
        if report.comparison is not None:
            from dataaudit.render.comparison_json import write_comparison_json

            staged.append(write_comparison_json(report, staging / "comparison.json"))
        report.save(staging)
        audit_files = sorted(p.name for p in (staging / REPORT_DIR).iterdir())
        new = {p.name: _stamp(p) for p in staged}
        new |= {f"{REPORT_DIR}/{n}": _stamp(staging / REPORT_DIR / n) for n in audit_files}
        new |= {rel: _stamp(out / rel) for rel in adopted}
        # Outputs of an earlier run here that this run did not produce (e.g. duplicates.csv of a
        # run with embeddings) would mix two runs: remove them, if dataaudit wrote them.
        stale = [
            name
            for name in sorted(output_names() - {p.name for p in staged})
            if (out / name).is_file() and not owner.why_not_ours(out, name)
        ]
        kept = {
            rel: stamps
            for rel, stamps in (owner.manifest or {}).items()
            if rel not in new
            and rel not in stale
            and not rel.startswith(f"{REPORT_DIR}/")
            and not owner.why_not_ours(out, rel)
        }
        # The manifest accepts old and new stamps while files are renamed, so a run stopped
        # half-way still knows every file in the folder as its own.
        during = {rel: [s for s in (_stamp(out / rel), stamp) if s] for rel, stamp in new.items()}
        _write_manifest(out, {**kept, **{r: s for r, s in during.items() if s}}, stale)
        carry = foreign_entries(out / REPORT_DIR)
        for path in staged:
            os.replace(path, out / path.name)
        for name in stale:
            (out / name).unlink(missing_ok=True)
        swap_folder(staging / REPORT_DIR, out / REPORT_DIR, carry=carry)
        final = {rel: [stamp] for rel, stamp in new.items() if stamp}
        _write_manifest(out, {**kept, **final})
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / p.name for p in staged] + [out / REPORT_DIR]


def _write_manifest(out: Path, files: dict[str, list[Stamp]], removing: Iterable[str] = ()) -> None:
    from dataaudit import __version__

    files = dict(files)
    for rel in removing:  # still there until removed: keep it known meanwhile
        stamp = _stamp(out / rel)
        if stamp:
            files[rel] = [stamp]
    header = {
        "manifest_version": MANIFEST_VERSION,
        "written_by": f"dataaudit {__version__}",
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "about": "Files dataaudit wrote here, with [size, mtime_ns]. `--force` replaces or "
        "removes only these, and only while unchanged.",
    }
    # One file a line, so the manifest reads (and diffs) as a list.
    lines = [
        f"  {json.dumps(rel)}: {json.dumps([list(s) for s in files[rel]])}" for rel in sorted(files)
    ]
    text = json.dumps(header, indent=1)[:-2] + ',\n "files": {\n' + ",\n".join(lines) + "\n }\n}\n"
    atomic_write_text(out / MANIFEST, text)
