"""The hostile corpus (tests/_corpus.py) through the CLI, each case in a child process.

For every case: exit 0 or 1 with a complete, escaped, spreadsheet-safe report, or exit 2 naming
the problem; never a traceback, never a hang (every child under a timeout), never a lost file.
Children run a few at a time, so the corpus costs about a minute.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from _corpus import RAW_HTML_PAYLOADS, Case, _argv, _write, build_cases
from _small_inputs import small_frame

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="the corpus uses FIFOs (POSIX)")

TIMEOUT_S = 240  # per child; a hang fails its case, it never stalls the suite
WORKERS = max(2, min(4, os.cpu_count() or 2))
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Outcome:
    case: Case
    returncode: int | None  # None: timed out
    stderr: str
    seconds: float


def _run_child(case: Case) -> Outcome:
    start = time.perf_counter()
    command = [sys.executable, "-m", "dataaudit", *case.argv]
    # Never the source folder: there `python -m dataaudit` would import the uninstalled tree.
    cwd = (
        case.out.parent
        if case.out is not None and case.out.parent.is_dir()
        else tempfile.gettempdir()
    )
    child = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=cwd
    )
    try:
        if case.signal_after:
            seen = []
            for line in child.stderr:
                seen.append(line)
                if line.startswith(case.signal_after):
                    child.send_signal(signal.SIGTERM)
                    break
            _, rest = child.communicate(timeout=TIMEOUT_S)
            err = "".join(seen) + rest
        else:
            _, err = child.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        child.kill()
        _, err = child.communicate()
        return Outcome(case, None, err, time.perf_counter() - start)
    return Outcome(case, child.returncode, err, time.perf_counter() - start)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    # One finished run to start the output-folder cases from (copied with its mtimes).
    table, probs, emb = small_frame(120)
    earlier = root / "earlier-run"
    paths = _write(root / "earlier-in", table, probs, emb)
    first = subprocess.run(
        [sys.executable, "-m", "dataaudit", *_argv(paths, earlier)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        cwd=root,
    )
    assert first.returncode == 0, first.stderr
    cases = build_cases(root / "cases", earlier)
    start = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        outcomes = {o.case.name: o for o in pool.map(_run_child, cases)}
    total = time.perf_counter() - start
    slowest = sorted(outcomes.values(), key=lambda o: -o.seconds)[:3]
    print(
        f"\nhostile corpus: {len(cases)} cases in {total:.0f} s with {WORKERS} workers; slowest "
        + ", ".join(f"{o.case.name} {o.seconds:.0f} s" for o in slowest)
    )
    return outcomes


def _case_names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        earlier = Path(folder) / "earlier"
        (earlier / "audit").mkdir(parents=True)
        (earlier / "relabel.csv").write_text("id\n")
        return [c.name for c in build_cases(Path(folder) / "cases", earlier)]


@pytest.mark.parametrize("name", _case_names())
def test_hostile_case(corpus, name):
    outcome = corpus[name]
    case, err = outcome.case, outcome.stderr
    if case.xfail:
        pytest.xfail(case.xfail)
    assert outcome.returncode is not None, f"{name}: no answer within {TIMEOUT_S} s (a hang)"
    assert "Traceback" not in err, err
    assert outcome.returncode in case.exits, f"{name}: exit {outcome.returncode}\n{err}"
    assert "\x1b" not in err, f"{name}: a terminal escape reached stderr raw"
    for text in case.says:
        assert text in err, f"{name}: stderr lacks {text!r}\n{err}"
    for path, data in case.keep.items():
        assert Path(path).read_bytes() == data, f"{name}: {path} was changed or lost"
    if outcome.returncode == 2:
        named = [line for line in err.splitlines() if line.startswith(("dataaudit:", "  "))]
        assert named, f"{name}: exit 2 without a named problem\n{err}"
        if case.codes:
            assert any(f"[{code}]" in err for code in case.codes), f"{name}: {case.codes}\n{err}"
    elif outcome.returncode in (0, 1):
        _check_report(case, err)


def _check_report(case: Case, err: str) -> None:
    out = case.out
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert not summary["failed"], summary["failed"]
    codes = {w["code"] for w in summary["warnings"]}
    assert set(case.warnings) <= codes, (case.warnings, codes)
    page = (out / "report.html").read_text(encoding="utf-8")
    for payload in RAW_HTML_PAYLOADS:
        assert payload not in page, f"{case.name}: {payload!r} reached report.html unescaped"
    for csv in out.glob("*.csv"):
        raw = pd.read_csv(csv, dtype=str, keep_default_na=False)
        for column in raw.columns:
            assert not column.startswith(FORMULA_START), (csv.name, column)
            text = raw[column][pd.to_numeric(raw[column], errors="coerce").isna()]
            assert not text.str.startswith(FORMULA_START).any(), (csv.name, column)
    from dataaudit.report import AuditReport

    AuditReport.load(out)  # the saved model is complete
