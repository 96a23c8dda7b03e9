"""Python warnings never reach the terminal raw: each becomes a coded AuditWarning."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _small_inputs import CLASSES, small_argv, small_frame, write_small_inputs

import dataaudit
from dataaudit import analyses as registry
from dataaudit.result import Analysis, AnalysisResult


@pytest.fixture(scope="module")
def inputs():
    return small_frame()


@pytest.fixture(scope="module")
def baseline(inputs):
    table, probs, embeddings = inputs
    return dataaudit.audit(table, probs, embeddings, classes=CLASSES)


@pytest.mark.parametrize("scale", [1e30, 1e-30])
def test_huge_or_tiny_embeddings_are_rescaled_with_the_same_results(inputs, baseline, scale):
    table, probs, embeddings = inputs
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping the run fails the test
        report = dataaudit.audit(table, probs, embeddings * scale, classes=CLASSES)
    assert not report.failed
    assert [w.code for w in report.all_warnings()] == ["embeddings_rescaled"]
    for key in ("n_outliers", "n_duplicate_groups", "n_failure_slices", "n_lookalike_items"):
        assert report.metrics()[key] == baseline.metrics()[key], key
    queue = report["label_next"].table("queue")["id"].tolist()
    assert queue == baseline["label_next"].table("queue")["id"].tolist()


def test_a_warning_inside_an_analysis_is_coded_on_its_result(inputs, monkeypatch):
    table, probs, embeddings = inputs

    def noisy(data, ctx, config):
        np.float32(3e38) * np.float32(10)  # numpy: overflow encountered
        warnings.warn("Number of distinct clusters (1) found smaller", RuntimeWarning, stacklevel=1)
        return AnalysisResult(name="noisy", summary={"n": 1})

    monkeypatch.setattr(registry, "ANALYSES", (Analysis("noisy", "Noisy step", run=noisy),))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = dataaudit.audit(table, probs, embeddings, classes=CLASSES)
    codes = [w.code for w in report["noisy"].warnings]
    assert codes == ["numeric_overflow", "python_warning"]
    assert all("Noisy step" in w.message for w in report["noisy"].warnings)


def test_an_uncaught_warning_in_the_cli_is_one_coded_line(tmp_path, capsys, monkeypatch):
    from dataaudit import outputs

    files = write_small_inputs(tmp_path / "in")
    original = outputs.write_summary

    def summary_with_a_warning(report, path):
        warnings.warn("a future pandas will change this", FutureWarning, stacklevel=1)
        return original(report, path)

    monkeypatch.setattr(outputs, "write_summary", summary_with_a_warning)
    from dataaudit.cli import main

    assert main(small_argv(files, tmp_path / "out", "-q")) == 0
    err = capsys.readouterr().err
    assert "[library_warning]" in err and "a future pandas will change this" in err
    assert "FutureWarning:" not in err  # the raw format: "file.py:12: FutureWarning: ..."


def _wide(table, n_columns: int = 150):
    rng = np.random.default_rng(1)
    extra = {f"f{j}": rng.integers(0, 4, len(table)) for j in range(n_columns)}
    return pd.concat([table, pd.DataFrame(extra)], axis=1)


def test_a_wide_table_runs_without_pandas_fragmentation_warnings(inputs):
    """150 metadata columns: building frames a column at a time made pandas warn (on stderr, or
    as a python_warning on the report) in the items table and the shift analysis."""
    table, probs, embeddings = inputs
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        report = dataaudit.audit(_wide(table), probs, embeddings, classes=CLASSES)
    assert not report.failed and "shift" in report.results
    assert not [w for w in report.all_warnings() if w.code == "python_warning"]


def test_a_wide_table_part_is_read_without_fragmentation_warnings(inputs, tmp_path):
    pytest.importorskip("dask")
    from dataaudit.engine.inputs import Part, _metadata_schema, _table_part

    table = _wide(inputs[0])
    path = tmp_path / "part.parquet"
    table.to_parquet(path, index=False)
    roles = dataaudit.AuditConfig().columns
    metadata, _ = _metadata_schema(str(path), roles)
    part = Part(str(path), 0, len(table), tuple(table.columns))
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        frame = _table_part(
            part, 0, roles, {c: i for i, c in enumerate(CLASSES)}, None, None, metadata
        )
    assert len(frame.columns) == 5 + 151 and len(frame) == len(table)
