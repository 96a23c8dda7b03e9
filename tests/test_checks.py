"""Checks from a config file and --fail-on: statuses, exit codes, precedence, checks.xml, summary.md."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

import pytest

from dataaudit.checks import CheckError, evaluate, fail_on_checks, parse_checks
from dataaudit.cli import _exit_for_checks, build_parser, main, parse_args
from dataaudit.configfile import ConfigFileError
from dataaudit.fail_on import parse_conditions

METRICS = {"label_error_rate": 0.04, "leakage": 0, "accuracy": 0.87, "top_pair": "a / b"}


def test_check_statuses_follow_thresholds_and_direction():
    specs = parse_checks(
        {
            "label_error_rate": {"warn": 0.03, "fail": 0.05},  # 0.04: warn
            "leakage": {"fail": 0},  # 0: pass (only above 0 fails)
            "accuracy": {"warn": 0.9, "fail": 0.88, "direction": "below"},  # 0.87: fail
        },
        "dataaudit.toml",
    )
    results = {r.name: r for r in evaluate(specs, METRICS)}
    assert {n: r.status for n, r in results.items()} == {
        "label_error_rate": "warn",
        "leakage": "pass",
        "accuracy": "fail",
    }
    assert results["accuracy"].value == pytest.approx(0.87)
    assert evaluate(parse_checks({"leakage": 0}, "f"), {"leakage": 2})[0].status == "fail"


def test_fail_on_conditions_are_checks_with_their_operator():
    specs = fail_on_checks(parse_conditions(["label_error_rate>=0.04,accuracy<0.5"]))
    results = evaluate(specs, METRICS)
    assert [(r.name, r.status) for r in results] == [
        ("fail_on: label_error_rate>=0.04", "fail"),
        ("fail_on: accuracy<0.5", "pass"),
    ]


@pytest.mark.parametrize(
    "table, match",
    [
        ({"x": {"warn": "high"}}, "must be a number"),
        ({"x": {"fail": 1, "above": 2}}, "unknown key"),
        ({"x": {}}, "give warn, fail or both"),
        ({"x": {"fail": 1, "direction": "up"}}, "direction"),
        ({"x": "0.1"}, "expected a table"),
    ],
)
def test_malformed_checks_are_named(table, match):
    with pytest.raises(CheckError, match=match):
        parse_checks(table, "dataaudit.toml")


def test_a_check_on_a_metric_the_run_lacks_is_a_usage_error():
    with pytest.raises(CheckError, match="no_such_metric"):
        evaluate(parse_checks({"no_such_metric": {"fail": 1}}, "f"), METRICS)
    with pytest.raises(CheckError, match="no numeric value"):
        evaluate(parse_checks({"top_pair": {"fail": 1}}, "f"), METRICS)


def test_exit_code_is_1_on_fail_0_on_warn_2_when_unevaluable(capsys):
    def exit_for(table):
        report = SimpleNamespace(checks=evaluate(parse_checks(table, "f"), METRICS))
        return _exit_for_checks(report, None)

    assert exit_for({"label_error_rate": {"fail": 0.01}}) == 1
    assert exit_for({"label_error_rate": {"warn": 0.01}}) == 0
    assert "check warn" in capsys.readouterr().err
    assert exit_for({"leakage": {"fail": 0}}) == 0
    assert _exit_for_checks(SimpleNamespace(checks=[]), "check 'x': no metric") == 2


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_config_file_precedence_flags_over_file_over_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(
        tmp_path / "dataaudit.toml",
        'table = "data/t.csv"\nprobs = "data/p.npy"\nout = "audit"\nbudget = 7\n'
        'html-max-rows = 40\n[columns]\nlabel = "target"\nignore = ["a", "b"]\n',
    )
    _, args, settings = parse_args(["run", "--budget", "5"])
    assert args.budget == 5  # flag beats the file
    assert args.html_max_rows == 40  # file beats the default (500)
    assert args.seed == 0  # built-in default
    assert args.label_col == "target" and args.ignore_cols == "a,b"
    assert args.table == str(tmp_path / "data" / "t.csv")  # relative to the file's folder
    assert settings.path.name == "dataaudit.toml"


def test_a_classes_file_in_the_config_is_found_beside_it(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "classes.txt").write_text("a\nb\n")
    config = _write(tmp_path / "cfg" / "ci.toml", 'classes = "classes.txt"\n')
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--config", str(config), "--table", "t", "--probs", "p", "--out", "o"]
    _, args, _ = parse_args(argv)
    assert args.classes == str(tmp_path / "cfg" / "classes.txt")
    _write(config, 'classes = "a,b"\n')
    assert parse_args(argv)[1].classes == "a,b"


def test_pyproject_tool_table_and_explicit_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n[tool.dataaudit]\nbudget = 9\n')
    _, args, settings = parse_args(["run", "--table", "t", "--probs", "p", "--out", "o"])
    assert args.budget == 9 and settings.path.name == "pyproject.toml"
    other = _write(tmp_path / "ci.toml", "budget = 11\n[checks]\nleakage = { fail = 0 }\n")
    _, args, settings = parse_args(
        ["run", "--config", str(other), "--table", "t", "--probs", "p", "--out", "o"]
    )
    assert args.budget == 11 and [c.metric for c in settings.checks] == ["leakage"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("budgett = 5\n", "unknown option 'budgett'"),
        ('budget = "many"\n', "budget"),
        ('strategy = "nope"\n', "not one of"),
        ("force = 1\n", "true or false"),
        ("[columns]\nlabell = 'x'\n", "no role 'labell'"),
        ("budget = \n", "not valid TOML"),
    ],
)
def test_bad_config_files_are_named_errors(tmp_path, monkeypatch, text, match):
    monkeypatch.chdir(tmp_path)
    _write(tmp_path / "dataaudit.toml", text)
    with pytest.raises(ConfigFileError, match=match):
        parse_args(["run", "--table", "t", "--probs", "p", "--out", "o"])


def test_missing_explicit_config_exits_2(tmp_path, capsys):
    assert main(["run", "--config", str(tmp_path / "none.toml")]) == 2
    assert "none.toml" in capsys.readouterr().err


def test_config_options_are_the_run_commands_own():
    # Every `run` option can be set in a file: the parser's dests are the file's keys.
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    dests = {a.dest for a in run._actions}
    assert {"table", "probs", "budget", "strategy", "fail_on", "knn_mode"} <= dests


@pytest.fixture(scope="module")
def checked_run(demo_files, tmp_path_factory):
    """One demo run gated by a config file (pass, warn and fail) and a --fail-on condition."""
    folder = tmp_path_factory.mktemp("checked")
    config = _write(
        folder / "ci.toml",
        f'table = "{demo_files["table"]}"\nprobs = "{demo_files["probs"]}"\n'
        f'embeddings = "{demo_files["embeddings"]}"\nbudget = 30\n'
        "[checks]\n"
        "label_error_rate = { warn = 0.001, fail = 0.9 }\n"  # warn
        "leakage = { fail = 0 }\n"  # the demo plants 6 leaks: fail
        'accuracy = { fail = 0.5, direction = "below" }\n',  # pass
    )
    out = folder / "out"
    code = main(
        [
            "run",
            "--config",
            str(config),
            "--out",
            str(out),
            "--budget",
            "20",
            "-q",
            "--fail-on",
            "n_label_errors>100000",
        ]
    )
    return code, out, config


def test_a_failing_check_exits_1_and_every_output_carries_the_checks(checked_run):
    code, out, config = checked_run
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    statuses = {c["name"]: c["status"] for c in summary["checks"]}
    assert statuses == {
        "label_error_rate": "warn",
        "leakage": "fail",
        "accuracy": "pass",
        "fail_on: n_label_errors>100000": "pass",
    }
    leakage = next(c for c in summary["checks"] if c["name"] == "leakage")
    assert leakage["value"] == summary["metrics"]["leakage"] > 0 and leakage["fail"] == 0
    assert summary["metrics"]["label_next_budget"] == 20  # the flag beat the file's 30


def test_checks_xml_is_junit_with_one_testcase_per_check(checked_run):
    _, out, _ = checked_run
    root = ET.parse(out / "checks.xml").getroot()
    assert root.tag == "testsuites" and root.get("tests") == "4" and root.get("failures") == "1"
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {
        "label_error_rate",
        "leakage",
        "accuracy",
        "fail_on: n_label_errors>100000",
    }
    assert cases["leakage"].find("failure") is not None
    assert cases["accuracy"].find("failure") is None
    assert "WARN" in cases["label_error_rate"].find("system-out").text


def test_summary_md_has_checks_metrics_label_errors_and_slices(checked_run):
    _, out, _ = checked_run
    text = (out / "summary.md").read_text()
    assert text.startswith("## dataaudit: 1 check(s) failed")
    assert "| leakage |" in text and "**fail**" in text
    assert "model accuracy vs given labels" in text and "95% CI" in text
    relabel_top = (out / "relabel.csv").read_text().splitlines()[1].split(",")[1]
    assert relabel_top.replace("-", "") in text.replace("\\", "").replace("-", "")
    assert "### Worst slices" in text and "report.html" in text


def test_the_report_names_the_config_file(checked_run):
    _, out, config = checked_run
    from dataaudit.report import AuditReport

    assert AuditReport.load(out).run["config_file"] == str(config.resolve())
    assert str(config.resolve()) in (out / "report.html").read_text()


def test_markdown_cells_cannot_inject_markup_or_html():
    from dataaudit.render.summary_md import md

    cell = md("a|b <img src=x onerror=alert(1)> *x* [l](javascript:1) `c`\nnext")
    assert "<" not in cell and ">" not in cell and "\n" not in cell
    assert "\\|" in cell and "\\*x\\*" in cell and "\\[l\\]" in cell and "\\`c\\`" in cell


def test_summary_md_shows_deltas_against_the_baseline_and_checks_use_its_keys(demo_report):
    import copy

    from dataaudit.cli import _with_comparison
    from dataaudit.render.summary_md import summary_markdown

    baseline = copy.copy(demo_report)
    report = _with_comparison(baseline, copy.copy(demo_report), ".")
    results = evaluate(parse_checks({"regression": {"fail": 0}}, "f"), report.metrics())
    assert [(r.name, r.value, r.status) for r in results] == [("regression", 0.0, "pass")]
    report.checks = results
    text = summary_markdown(report)
    assert "vs baseline" in text and "+0.0 pp" in text
