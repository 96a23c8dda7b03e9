"""The output folder: --force touches only dataaudit's files, interrupted runs are cleaned up,
unwritable folders and write errors end in exit 2 with a named message, nothing is lost."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap

import pytest
from _small_inputs import small_argv, write_small_inputs

from dataaudit.cli import main
from dataaudit.files import FolderLock
from dataaudit.outputs import MANIFEST


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_small_inputs(tmp_path_factory.mktemp("small-inputs"))


def _run(files, out, *extra, embeddings=True):
    return main(small_argv(files, out, "-q", *extra, embeddings=embeddings))


def _snapshot(folder):
    """Every file under `folder` (relative path -> bytes), hidden ones included."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _no_analysis(monkeypatch):
    """Make any analysis run fail the test: checks must happen before the analyses start."""

    def refuse(*args, **kwargs):
        raise AssertionError("the analyses started")

    monkeypatch.setattr("dataaudit.pipeline.run_analyses", refuse)


# -- --force keeps what dataaudit did not write ---------------------------------------------------
def test_force_keeps_files_dataaudit_did_not_write(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(files, out) == 0
    (out / "audit" / "reviewer-notes.md").write_text("item-0003 is fine, keep the label")
    (out / "audit" / "review").mkdir()
    (out / "audit" / "review" / "decisions.csv").write_text("id,decision\nitem-0003,keep\n")
    (out / "comparison.json").write_text('{"from": "another tool"}')
    (out / "mine.txt").write_text("keep me")
    theirs = {
        rel: data
        for rel, data in _snapshot(out).items()
        if rel in ("audit/reviewer-notes.md", "audit/review/decisions.csv", "comparison.json")
        or rel == "mine.txt"
    }
    capsys.readouterr()
    assert main(small_argv(files, out, "--force", "--seed", "2")) == 0
    err = capsys.readouterr().err
    after = _snapshot(out)
    assert {rel: after.get(rel) for rel in theirs} == theirs
    assert "left alone" in err
    for rel in ("mine.txt", "comparison.json", "audit/reviewer-notes.md", "audit/review"):
        assert rel in err
    # The new report replaced the old one and loads.
    from dataaudit.report import AuditReport

    assert AuditReport.load(out).config.seed == 2


def test_force_refuses_to_overwrite_an_export_edited_since(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert _run(files, out) == 0
    edited = (out / "relabel.csv").read_text() + "reviewed by ana,,,\n"
    (out / "relabel.csv").write_text(edited)
    before = _snapshot(out)
    _no_analysis(monkeypatch)
    assert _run(files, out, "--force") == 2
    err = capsys.readouterr().err
    assert "relabel.csv (changed since dataaudit wrote it)" in err
    assert _snapshot(out) == before


def test_force_refuses_a_user_file_with_an_output_name(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text('{"mine": true}')
    _no_analysis(monkeypatch)
    assert _run(files, out, "--force") == 2
    assert "summary.json (not written by dataaudit)" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == '{"mine": true}'


def test_stale_outputs_of_an_earlier_run_are_removed_only_if_unchanged(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(files, out) == 0
    assert (out / "duplicates.csv").is_file()
    assert _run(files, out, "--force", embeddings=False) == 0  # no embeddings: no duplicates
    assert not (out / "duplicates.csv").exists()
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert "duplicates.csv" not in manifest and "relabel.csv" in manifest
    assert "audit/report.json" in manifest


def test_folder_of_a_version_without_manifest(files, tmp_path, capsys):
    """An earlier version wrote outputs and no manifest: its outputs are replaced, a
    comparison.json its report does not account for (another command's) is left alone."""
    out = tmp_path / "run"
    assert _run(files, out) == 0
    (out / MANIFEST).unlink()
    (out / "comparison.json").write_text('{"written": "by dataaudit compare, say"}')
    (out / "audit" / "notes.txt").write_text("mine")
    assert _run(files, out, "--force", "--seed", "4") == 0
    assert (out / "comparison.json").read_text() == '{"written": "by dataaudit compare, say"}'
    assert (out / "audit" / "notes.txt").read_text() == "mine"
    assert json.loads((out / "summary.json").read_text())["analyses"]["label_next"]["params"]
    assert (out / MANIFEST).is_file()


# -- interrupted runs -----------------------------------------------------------------------------
def _killed_during_write(files, out):
    """Run the CLI in a child that SIGKILLs itself while writing report.html (a real kill)."""
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        import dataaudit.outputs as outputs
        def killed(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        outputs.write_html = killed
        from dataaudit.cli import main
        sys.exit(main({small_argv(files, out, "-q", "--force", "--seed", "9")!r}))
        """
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=out.parent,
    )
    assert child.returncode == -9, child.stderr


def test_run_after_a_killed_write_removes_its_leftovers_and_says_so(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(files, out) == 0
    before = _snapshot(out)
    _killed_during_write(files, out)
    staging = [p.name for p in out.iterdir() if p.name.startswith(".dataaudit-staging-")]
    assert len(staging) == 1  # the kill left one, with the exports already staged
    assert {k: v for k, v in _snapshot(out).items() if not k.startswith(".dataaudit-s")} == before
    # Leftovers of other interruptions: a retired report holding a reviewer's note, a report
    # folder and a temporary file being written.
    (out / ".audit.old").mkdir()
    (out / ".audit.old" / "report.json").write_text("{}")
    (out / ".audit.old" / "old-notes.md").write_text("from before")
    (out / ".audit.k3j9x0ab").mkdir()
    (out / ".report.html.q1w2e3r4.tmp").write_text("<html")
    capsys.readouterr()
    assert main(small_argv(files, out, "--force")) == 0
    err = capsys.readouterr().err
    assert "interrupted" in err and staging[0] in err and ".report.html.q1w2e3r4.tmp" in err
    hidden = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
    assert hidden == [MANIFEST]
    assert (out / "audit" / "old-notes.md").read_text() == "from before"


def test_report_restored_when_stopped_between_the_folder_renames(files, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(files, out) == 0
    report_json = (out / "audit" / "report.json").read_bytes()
    (out / "audit").rename(out / ".audit.old")  # the moment between swap_folder's renames
    missing = {**files, "table": str(tmp_path / "no-such-table.csv")}
    assert main(small_argv(missing, out, "--force")) == 2  # stops after the folder's check
    assert "restored audit/" in capsys.readouterr().err
    assert (out / "audit" / "report.json").read_bytes() == report_json


def test_concurrent_run_into_the_same_folder_is_refused(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".dataaudit-staging-live").mkdir()  # a running run's staging: must survive
    lock = FolderLock(out)
    assert lock.acquire()
    try:
        _no_analysis(monkeypatch)
        assert _run(files, out, "--force") == 2
        assert "another dataaudit run is writing" in capsys.readouterr().err
        assert (out / ".dataaudit-staging-live").is_dir()
    finally:
        lock.release()


# -- unwritable output folders and write errors ---------------------------------------------------
def _unwritable_outs(tmp_path):
    regular = tmp_path / "a-file"
    regular.write_text("x")
    return {
        "proc": "/proc/dataaudit-x",
        "under_a_file": str(regular / "out"),
        "a_file": str(regular),
    }


@pytest.mark.parametrize("kind", ["proc", "under_a_file", "a_file"])
def test_unwritable_out_exits_2_before_the_analyses(files, tmp_path, capsys, monkeypatch, kind):
    out = _unwritable_outs(tmp_path)[kind]
    _no_analysis(monkeypatch)
    assert _run(files, out) == 2
    err = capsys.readouterr().err
    assert f"--out {out}" in err and "Traceback" not in err
    assert (tmp_path / "a-file").read_text() == "x"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_out_exits_2_before_the_analyses(files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        _no_analysis(monkeypatch)
        assert _run(files, out) == 2
        assert "permission denied" in capsys.readouterr().err
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_write_error_exits_2_and_keeps_the_earlier_outputs(
    files, tmp_path, capsys, monkeypatch, code
):
    out = tmp_path / "run"
    assert _run(files, out) == 0
    before = _snapshot(out)

    def fail(report, path):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr("dataaudit.outputs.write_html", fail)
    assert _run(files, out, "--force", "--seed", "5") == 2
    err = capsys.readouterr().err
    assert "report.html" in err and "unchanged" in err and "Traceback" not in err
    assert ("no space left" if code == errno.ENOSPC else "permission denied") in err
    assert _snapshot(out) == before


def test_disk_full_in_a_child_exits_2_with_nothing_lost(files, tmp_path):
    """RLIMIT_FSIZE makes every write past 2 MB fail with EFBIG, as a full disk fails them."""
    resource = pytest.importorskip("resource")
    out = tmp_path / "run"
    assert _run(files, out) == 0
    before = _snapshot(out)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    child = subprocess.run(
        [sys.executable, "-m", "dataaudit", *small_argv(files, out, "-q", "--force")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        preexec_fn=limit,
    )
    assert child.returncode == 2, child.stderr
    assert "cannot write the outputs" in child.stderr and "Traceback" not in child.stderr
    assert _snapshot(out) == before


# -- ids survive the exports exactly --------------------------------------------------------------
HOSTILE_IDS = ("-5", "=1+1", "+44 20 7946", "@user", "'quoted", "''=x", "a  b\tc", "007", "NA")


def test_exported_ids_join_back_exactly(tmp_path):
    import numpy as np
    from _small_inputs import CLASSES, small_frame

    import dataaudit
    from dataaudit.outputs import write_outputs
    from dataaudit.render.csv import EXPORTS

    table, probs, embeddings = small_frame()
    # The planted flips (relabel.csv) and the first unlabeled rows (label_next.csv) get them.
    given = table["label"].map({c: i for i, c in enumerate(CLASSES)}).fillna(-1).to_numpy()
    flipped = np.flatnonzero((given >= 0) & (given != probs.argmax(axis=1)))
    unlabeled = np.flatnonzero(given < 0)
    ids = table["id"].to_numpy(dtype=object)
    ids[np.r_[flipped[:4], unlabeled[:5]]] = HOSTILE_IDS
    table["id"] = ids
    report = dataaudit.audit(table, probs, embeddings, classes=CLASSES)
    out = tmp_path / "out"
    write_outputs(report, out)
    seen = set()
    for name, build in EXPORTS.items():
        frame = build(report)
        if frame is None or "id" not in frame.columns:
            continue
        back = dataaudit.read_export(out / name)
        assert back["id"].tolist() == [str(v) for v in frame["id"]], name
        seen |= set(back["id"])
    assert set(HOSTILE_IDS) <= seen
