"""The report model saves and loads back equal, and renderers read only from it."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dataaudit.render.csv import spreadsheet_safe, write_csv
from dataaudit.report import AuditReport, ReportLoadError


def test_report_round_trips_equal(demo_report, tmp_path):
    demo_report.save(tmp_path)
    loaded = AuditReport.load(tmp_path)
    assert loaded == demo_report
    assert set(loaded.results) == set(demo_report.results)


def test_changed_report_is_not_equal(demo_report, tmp_path):
    demo_report.save(tmp_path)
    loaded = AuditReport.load(tmp_path)
    loaded.items.loc[0, "given_label"] = "something else"
    assert loaded != demo_report


def test_saving_again_replaces_the_report_whole(demo_report, tmp_path):
    demo_report.save(tmp_path)
    demo_report.save(tmp_path)
    assert AuditReport.load(tmp_path) == demo_report
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]


def test_newer_schema_version_fails_naming_the_version(demo_report, tmp_path):
    folder = demo_report.save(tmp_path)
    document = json.loads((folder / "report.json").read_text())
    document["schema_version"] = 99
    (folder / "report.json").write_text(json.dumps(document))
    with pytest.raises(ReportLoadError, match="version 99"):
        AuditReport.load(tmp_path)


def test_missing_report_says_what_to_give(tmp_path):
    with pytest.raises(ReportLoadError, match="--out folder"):
        AuditReport.load(tmp_path)


def test_metrics_merge_every_analysis_summary(demo_report):
    metrics = demo_report.metrics()
    for result in demo_report.results.values():
        for key in result.summary:
            assert key in metrics


def test_analyses_are_skipped_with_reasons_without_embeddings(demo_inputs):
    import dataaudit

    # The probabilities' columns follow demo_inputs.classes (sorted names would misread them).
    report = dataaudit.audit(demo_inputs.table, demo_inputs.probs, classes=demo_inputs.classes)
    needing = [
        a.name
        for a in __import__("dataaudit.analyses").analyses.ANALYSES
        if "embeddings" in a.requires
    ]
    for name in needing:
        assert "embeddings" in report.skipped[name]
    assert "label_errors" in report.results


@pytest.mark.parametrize("cell", ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_cells_that_start_a_formula_are_neutralised(cell, tmp_path):
    frame = pd.DataFrame({"id": [cell, "plain"], "score": [-0.5, 1.0]})
    safe = spreadsheet_safe(frame)
    assert safe["id"][0] == "'" + cell
    assert safe["id"][1] == "plain"
    assert safe["score"].tolist() == [-0.5, 1.0]  # numbers stay numbers
    write_csv(frame, tmp_path / "x.csv")
    assert pd.read_csv(tmp_path / "x.csv")["id"][0].startswith("'")


@pytest.mark.parametrize(
    "cell", ["=1+1", "-5", "'", "'quoted", "''=x", "a  b\tc", "007", "NA", "", "1e5", " lead"]
)
def test_csv_escape_is_undone_exactly_by_read_export(cell, tmp_path):
    from dataaudit import read_export

    frame = pd.DataFrame({"id": [cell, "plain"], "score": [-0.5, 1.0]})
    write_csv(frame, tmp_path / "x.csv")
    raw = pd.read_csv(tmp_path / "x.csv", dtype=str, keep_default_na=False)
    assert not raw["id"].str.startswith(("=", "+", "-", "@", "\t", "\r")).any()  # still safe
    back = read_export(tmp_path / "x.csv")
    assert back["id"].tolist() == [cell, "plain"]
    assert back["score"].tolist() == ["-0.5", "1.0"]  # every cell as text, as written


def test_warnings_round_trip_and_reach_summary_and_page(demo_report, tmp_path):
    import copy
    import dataclasses

    from dataaudit.problems import AuditWarning
    from dataaudit.render.html import render_html
    from dataaudit.render.summary import build_summary

    report = copy.copy(demo_report)
    report.warnings = [AuditWarning("labels_read_as_unlabeled", "<b>3</b> rows", "t.csv", "label")]
    first = next(iter(report.results))
    report.results = dict(report.results)
    report.results[first] = dataclasses.replace(
        report.results[first], warnings=(AuditWarning("result_doubt", "a doubt"),)
    )
    report.save(tmp_path)
    loaded = AuditReport.load(tmp_path)
    assert loaded == report
    assert [w.code for w in loaded.all_warnings()] == ["labels_read_as_unlabeled", "result_doubt"]
    assert loaded != demo_report
    summary = build_summary(loaded)
    assert summary["warnings"][0] == {
        "code": "labels_read_as_unlabeled",
        "message": "<b>3</b> rows",
        "file": "t.csv",
        "column": "label",
    }
    page = render_html(loaded)
    assert "labels_read_as_unlabeled" in page and "&lt;b&gt;3&lt;/b&gt; rows" in page
    assert page.index("labels_read_as_unlabeled") < page.index("Items per split")


def test_reports_of_schema_2_load_with_no_warnings(demo_report, tmp_path):
    folder = demo_report.save(tmp_path)
    document = json.loads((folder / "report.json").read_text())
    document["schema_version"] = 2
    del document["warnings"]
    for saved in document["analyses"].values():
        del saved["warnings"]
    (folder / "report.json").write_text(json.dumps(document))
    assert AuditReport.load(tmp_path).all_warnings() == []


def test_reports_of_schema_3_load_with_the_tables_of_the_ranked_csvs(demo_report, tmp_path):
    # Version 4 added label_errors' "relabel" and slices' "ranked" (relabel.csv, slices.csv):
    # a report saved before holds neither, and loads with both built as a run builds them.
    assert len(demo_report.relabel_list()) == demo_report.metrics()["n_label_errors"] > 0
    assert (demo_report["slices"].table("ranked")["kind"] != "given").sum() > 0
    folder = demo_report.save(tmp_path)
    document = json.loads((folder / "report.json").read_text())
    document["schema_version"] = 3
    for name, table in (("label_errors", "relabel"), ("slices", "ranked")):
        document["analyses"][name]["tables"].remove(table)
        (folder / f"{name}.{table}.parquet").unlink()
    (folder / "report.json").write_text(json.dumps(document))
    loaded = AuditReport.load(tmp_path)
    assert loaded == demo_report
    pd.testing.assert_frame_equal(loaded.relabel_list(), demo_report.relabel_list())
