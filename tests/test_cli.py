"""The command line: outputs written, exit codes, refusal to overwrite, --fail-on gates."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from _cli_args import run_argv

from dataaudit.cli import main
from dataaudit.outputs import MANIFEST


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _run(args, demo_files, out):
    return main(run_argv(demo_files, out, "-q", *args))


def test_run_writes_all_outputs(demo_files, tmp_path):
    out = tmp_path / "run"
    assert _run([], demo_files, out) == 0
    for name in ("report.html", "relabel.csv", "summary.json", "audit/report.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema_version"] == 1
    assert summary["counts"]["n_items"] == 1846
    assert summary["metrics"]["n_label_errors"] > 0
    assert (
        "classes.txt"
        in json.loads((out / "audit/report.json").read_text())["dataset"]["class_source"]
    )


def test_refuses_non_empty_output_without_force(demo_files, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    assert _run([], demo_files, out) == 2
    assert "--force" in capsys.readouterr().err
    assert _run(["--force"], demo_files, out) == 0
    assert (out / "mine.txt").read_text() == "keep me"


def test_fail_on_met_exits_1(demo_files, tmp_path, capsys):
    assert _run(["--fail-on", "label_error_rate>0.001"], demo_files, tmp_path / "a") == 1
    assert "label_error_rate" in capsys.readouterr().err
    assert _run(["--fail-on", "label_error_rate>0.9"], demo_files, tmp_path / "b") == 0


def test_fail_on_unknown_metric_is_a_usage_error(demo_files, tmp_path, capsys):
    assert _run(["--fail-on", "no_such_metric>1"], demo_files, tmp_path / "a") == 2
    assert "no_such_metric" in capsys.readouterr().err


def test_fail_on_malformed_condition_is_a_usage_error(demo_files, tmp_path):
    assert _run(["--fail-on", "label_error_rate is big"], demo_files, tmp_path / "a") == 2


def test_bad_input_prints_problems_and_exits_2(tmp_path, demo_files, capsys):
    probs = np.load(demo_files["probs"])
    probs[0, 7, :] = np.nan
    bad = tmp_path / "bad_probs.npy"
    np.save(bad, probs)
    code = main(
        [
            "run",
            "--table",
            demo_files["table"],
            "--probs",
            str(bad),
            "--classes",
            ",".join(f"c{i}" for i in range(10)),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "bad_probs.npy" in err and "[probs_not_finite]" in err and "rows 7" in err
    assert "[unknown_labels]" in err  # classes c0..c9 do not match the labels: both reported
    assert "Traceback" not in err


def test_missing_required_flag_exits_2_naming_it(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no dataaudit.toml here to fill the gaps
    assert main(["run", "--table", "x.csv"]) == 2
    err = capsys.readouterr().err
    assert "--probs" in err and "--out" in err and "--table" not in err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "run" in capsys.readouterr().err


def test_python_dash_m_and_help_work():
    result = subprocess.run(
        [sys.executable, "-m", "dataaudit", "run", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "--table" in result.stdout and "--fail-on" in result.stdout


def test_demo_command_writes_a_report(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "-q"]) == 0
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "inputs" / "planted.json").is_file()
    assert (out / "relabel.csv").is_file()


def test_interrupted_run_leaves_the_earlier_report_intact(demo_files, tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert _run([], demo_files, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    before_model = (out / "audit" / "report.json").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("dataaudit.outputs.write_html", interrupted)
    assert _run(["--force", "--seed", "3"], demo_files, out) == 130
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert (out / "audit" / "report.json").read_bytes() == before_model
    assert _hidden(out) == [MANIFEST]  # no staging left behind


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_run_stopped_mid_analysis_leaves_the_earlier_report_intact(demo_files, tmp_path, sig):
    out = tmp_path / "run"
    assert _run([], demo_files, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    before_model = (out / "audit" / "report.json").read_bytes()

    argv = run_argv(demo_files, out, "--force", "--seed", "3")
    # The CLI, held after its first analysis (the run loop reads the process's peak memory
    # after each analysis): on a fast machine the whole run takes a second, and a signal sent
    # on a progress line could arrive after it had finished.
    held = (
        "import sys, time\n"
        "import dataaudit.engine.loop as p\n"
        "real, calls = p.peak_rss_mb, []\n"
        "def held():\n"
        "    calls.append(1)\n"
        "    if len(calls) == 1:\n"
        "        print('held after an analysis', file=sys.stderr, flush=True)\n"
        "        time.sleep(60)\n"
        "    return real()\n"
        "p.peak_rss_mb = held\n"
        "from dataaudit.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", held, *argv],
        stderr=subprocess.PIPE,
        text=True,
        cwd=out.parent,
        # A shell starts background jobs with SIGINT ignored, and Python then installs no
        # KeyboardInterrupt handler: give the child the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in child.stderr:  # stop it once an analysis has run
        if line.startswith("held after an analysis"):
            child.send_signal(sig)
            break
    err = line + child.communicate(timeout=120)[1]
    assert child.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
    if sig == signal.SIGINT:
        assert "interrupted" in err
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert (out / "audit" / "report.json").read_bytes() == before_model
    assert _hidden(out) == [MANIFEST]


def test_a_bug_of_ours_is_a_named_internal_error_not_a_traceback(monkeypatch, tmp_path, capsys):
    """An exception nobody foresaw ends in one line naming it (exit 1); -v adds the traceback."""
    import dataaudit.cli as cli

    def broken(*args, **kwargs):
        raise ZeroDivisionError("planted")

    monkeypatch.setattr(cli, "_command", broken)
    argv = ["run", "--table", "t.csv", "--probs", "p.npy", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "internal error (ZeroDivisionError: planted)" in err and "Traceback" not in err
    assert cli.main([*argv, "-v"]) == 1
    assert "Traceback" in capsys.readouterr().err
