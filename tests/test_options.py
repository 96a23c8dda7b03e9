"""Options are checked before any data is read: every problem at once, coded, exit 2."""

from __future__ import annotations

from fnmatch import fnmatchcase

import numpy as np
import pytest
from _small_inputs import small_argv, write_small_inputs

import dataaudit
from dataaudit.analyses import METRICS
from dataaudit.cli import main
from dataaudit.compare import SUMMARY_KEYS, compare
from dataaudit.config import AuditConfig
from dataaudit.options import config_problems, n_models, strategy_problems
from dataaudit.problems import InputError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_small_inputs(tmp_path_factory.mktemp("small-inputs"))


@pytest.fixture
def no_data_read(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the inputs were read")

    monkeypatch.setattr("dataaudit.pipeline.load_dataset", refuse)


def _codes(err: str) -> list[str]:
    return [line.rsplit("[", 1)[1].rstrip("]") for line in err.splitlines() if line.endswith("]")]


@pytest.mark.parametrize(
    ("extra", "code", "named"),
    [
        (["--seed", "-1"], "option_invalid", "--seed"),
        (["--seed", str(2**32)], "option_invalid", "--seed"),
        (["--html-max-rows", "0"], "option_invalid", "--html-max-rows"),
        (["--html-max-rows", "-5"], "option_invalid", "--html-max-rows"),
        (["--knn-approx-above", "-1"], "option_invalid", "--knn-approx-above"),
        (["--fail-on", "no_such_metric>1"], "fail_on_unknown_metric", "no_such_metric"),
        (["--fail-on", "label_eror_rate>0.1"], "fail_on_unknown_metric", "label_error_rate"),
        (["--fail-on", "regression>0"], "fail_on_unknown_metric", "--baseline"),
        (["--strategy", "bald"], "strategy_needs_input", "probs.npy"),
        (["--strategy", "vote_entropy"], "strategy_needs_input", "M x N x K"),
        (["--classes", ","], "classes_not_a_list", "--classes"),
    ],
)
def test_bad_option_exits_2_before_reading_data(
    files, tmp_path, capsys, no_data_read, extra, code, named
):
    out = tmp_path / "out"
    assert main(small_argv(files, out, *extra)) == 2
    err = capsys.readouterr().err
    assert _codes(err) == [code] and named in err and "Traceback" not in err
    assert not out.exists()  # nor was the output folder touched


def test_strategy_needing_embeddings_without_them(files, tmp_path, capsys, no_data_read):
    assert main(small_argv(files, tmp_path / "o", "--strategy", "ood", embeddings=False)) == 2
    assert _codes(capsys.readouterr().err) == ["strategy_needs_input"]


def test_every_option_problem_is_listed_at_once(files, tmp_path, capsys, no_data_read):
    argv = small_argv(
        files,
        tmp_path / "o",
        *("--seed", "-1", "--html-max-rows", "0", "--strategy", "bald"),
        *("--fail-on", "nope>1", "--knn-approx-above", "-2"),
    )
    assert main(argv) == 2
    assert sorted(_codes(capsys.readouterr().err)) == [
        "fail_on_unknown_metric",
        "option_invalid",
        "option_invalid",
        "option_invalid",
        "strategy_needs_input",
    ]


def test_python_api_checks_options_before_reading(tmp_path):
    with pytest.raises(InputError) as info:
        dataaudit.audit(tmp_path / "not-there.csv", tmp_path / "not-there.npy", seed=-3, budget=-1)
    assert info.value.codes == ["option_invalid", "option_invalid"]  # no file_missing yet


def test_config_ranges_accept_the_defaults_and_refuse_out_of_range():
    assert config_problems(AuditConfig()) == []
    bad = AuditConfig(confidence_level=1.0, knn_k=0, outlier_z=0.0, slice_fdr=0.0, budget=2.5)
    named = {p.source.split()[0] for p in config_problems(bad)}
    assert named == {
        "--confidence-level",
        "--knn-k",
        "--outlier-z",
        "--slice-fdr",
        "--budget",
    }


def test_committee_is_read_from_the_npy_header(tmp_path):
    committee = tmp_path / "committee.npy"
    np.save(committee, np.full((3, 4, 2), 0.5, dtype=np.float32))
    single = tmp_path / "single.npy"
    np.save(single, np.full((4, 2), 0.5, dtype=np.float32))
    assert n_models(str(committee)) == 3 and n_models(str(single)) == 1
    assert (
        n_models(str(tmp_path / "probs.parquet")) == 1 and n_models(str(tmp_path / "x.npy")) is None
    )
    bald = AuditConfig(strategy="bald")
    assert strategy_problems(bald, str(committee), None) == []
    assert [p.code for p in strategy_problems(bald, str(single), None)] == ["strategy_needs_input"]


def test_declared_metric_keys_are_exactly_what_the_analyses_produce(demo_report):
    """Contract: --fail-on is checked against METRICS; it must match the real summaries."""
    from dataaudit.analyses import _ORDER

    assert set(METRICS) == set(_ORDER)  # every analysis declares its keys
    assert set(_ORDER) - set(demo_report.results) == {"reviews"}  # runs with --verdicts only
    for name, result in demo_report.results.items():
        patterns = METRICS[name]
        for key in result.summary:
            assert any(fnmatchcase(key, p) for p in patterns), (name, key)
        for pattern in patterns:
            assert any(fnmatchcase(key, pattern) for key in result.summary), (name, pattern)


def test_declared_comparison_keys_are_exactly_what_compare_produces(demo_report):
    summary = compare(demo_report, demo_report).summary
    for key in summary:
        assert any(fnmatchcase(key, p) for p in SUMMARY_KEYS), key
    for pattern in SUMMARY_KEYS:
        assert any(fnmatchcase(key, pattern) for key in summary), pattern
