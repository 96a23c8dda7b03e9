"""Progress: long loops show a bar with an ETA, every step its elapsed time, and -q silences all."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time

from _cli_args import run_argv

from dataaudit.cli import main
from dataaudit.context import Progress

# tqdm's "[elapsed<remaining, rate]": the remaining time is the ETA.
ETA = re.compile(r"\d+/6 \[\d\d:\d\d<\d\d:\d\d, ")


def _slow_chunks(progress: Progress, n: int = 6, seconds: float = 0.15) -> list[int]:
    seen = []
    for chunk in progress.bar(range(n), total=n, desc="chunks"):
        time.sleep(seconds)
        seen.append(chunk)
    return seen


def test_a_long_chunked_loop_shows_a_bar_with_an_eta():
    stream = io.StringIO()
    assert _slow_chunks(Progress(1, stream, bar_delay=0.1)) == list(range(6))
    assert "chunks:" in stream.getvalue()
    assert ETA.search(stream.getvalue()), stream.getvalue()


def test_a_quick_loop_shows_no_bar():
    stream = io.StringIO()
    assert list(Progress(1, stream).bar(range(1000), total=1000, desc="quick")) == list(range(1000))
    assert stream.getvalue() == ""


def test_steps_print_their_elapsed_time():
    stream = io.StringIO()
    with Progress(1, stream).step("read and validate inputs"):
        time.sleep(0.1)
    assert re.fullmatch(r"✓ read and validate inputs \(\d+\.\d s\)\n", stream.getvalue())


def test_quiet_progress_writes_nothing_even_for_long_loops():
    stream = io.StringIO()
    progress = Progress(0, stream, bar_delay=0.0)
    with progress.step("slow step"):
        assert _slow_chunks(progress) == list(range(6))
    progress.log("a message")
    assert stream.getvalue() == ""


def test_a_run_reports_every_step_with_its_time(demo_files, tmp_path, capsys):
    assert main(run_argv(demo_files, tmp_path / "out")) == 0
    err = capsys.readouterr().err
    for step in ("read and validate inputs", "Label errors", "write the report and exports"):
        assert re.search(rf"✓ {step} \(\d+\.\d s\)", err), err


def test_quiet_run_writes_nothing_at_all(demo_files, tmp_path):
    # A child process, so warnings and anything written below Python's sys.stderr count too.
    result = subprocess.run(
        [sys.executable, "-m", "dataaudit", *run_argv(demo_files, tmp_path / "out"), "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # the installed package, not the source folder (which has no templates)
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "report.html").is_file()
    assert result.stderr == ""
    assert result.stdout == ""
