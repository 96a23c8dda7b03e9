"""Comparing two runs: run 2 is derived from the planted demo data with known changes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

import dataaudit
from dataaudit.compare import REGRESSION, class_changes, compare, input_changes, mcnemar_pvalue
from dataaudit.report import AuditReport, ReportLoadError
from dataaudit.result import AnalysisResult

N_FIXED = 20
N_NEW = 60
N_QUEUE_LABELED = 10


@dataclass(frozen=True)
class Changes:
    """What run 2 changed, by id."""

    fixed: list[str]  # planted flips given their true label back
    corrupted: list[str]  # scanner-C items the model got right in run 1 and wrong in run 2
    queue_labeled: list[str]  # run 1's top queue items, labeled in run 2
    dropped: list[str]  # removed in run 2 (a leaked exact duplicate)
    added: list[str]  # new in run 2
    leak: tuple[str, str]  # (train item, its exact copy added to test)
    table: pd.DataFrame
    probs: np.ndarray
    embeddings: np.ndarray


def derive_run2(inputs, run1: AuditReport, seed: int = 1) -> Changes:
    rng = np.random.default_rng(seed)
    table = inputs.table.copy()
    probs = inputs.probs.copy()
    embeddings = inputs.embeddings.copy()
    row = pd.Index(table["id"])
    index = {c: i for i, c in enumerate(inputs.classes)}

    fixed = sorted(inputs.truth.flipped)[:N_FIXED]
    for item in fixed:
        table.loc[row.get_loc(item), "label"] = inputs.truth.flipped[item][0]

    # The regression: in scanner C, half the items the model got right now get a wrong, confident
    # prediction from every committee member.
    labels = table["label"].map(lambda v: index.get(v, -1)).to_numpy()
    right = (
        (table["scanner"].to_numpy() == "C")
        & (labels >= 0)
        & (probs.mean(axis=0).argmax(axis=1) == labels)
    )
    bad = np.sort(rng.choice(np.flatnonzero(right), size=int(right.sum()) // 2, replace=False))
    wrong = (labels[bad] + rng.integers(1, 10, size=len(bad))) % 10
    probs[:, bad] = 0.3 * probs[:, bad] + 0.7 * np.eye(10, dtype=np.float32)[wrong]

    queue = run1.results["label_next"].table("queue").head(N_QUEUE_LABELED)
    for item, label in zip(queue["id"], queue["predicted_label"]):
        table.loc[row.get_loc(item), "label"] = label

    dropped = [inputs.truth.leaked[0][1]]
    keep = ~table["id"].isin(dropped).to_numpy()
    corrupted = table["id"].to_numpy()[bad].tolist()
    table, probs, embeddings = table[keep].reset_index(drop=True), probs[:, keep], embeddings[keep]

    sources = rng.choice(
        np.flatnonzero((table["label"] != "").to_numpy() & (table["scanner"] != "C").to_numpy()),
        size=N_NEW,
        replace=False,
    )
    new = table.iloc[sources].copy()
    new["id"] = [f"new-{j:03d}" for j in range(N_NEW)]
    noise = rng.normal(0, 1.0, size=(N_NEW, embeddings.shape[1])).astype(np.float32)
    # ... and one exact copy of a train item, put in test: a new leak.
    original = int(
        np.flatnonzero((table["split"] == "train").to_numpy() & (table["label"] != "").to_numpy())[
            0
        ]
    )
    copy = table.iloc[[original]].assign(id="copy-000", split="test")
    rows = np.concatenate([sources, [original]])
    return Changes(
        fixed=fixed,
        corrupted=corrupted,
        queue_labeled=queue["id"].tolist(),
        dropped=dropped,
        added=[*new["id"], "copy-000"],
        leak=(table["id"].iloc[original], "copy-000"),
        table=pd.concat([table, new, copy], ignore_index=True),
        probs=np.concatenate([probs, probs[:, rows]], axis=1),
        embeddings=np.concatenate(
            [embeddings, embeddings[sources] + noise, embeddings[[original]]]
        ),
    )


@pytest.fixture(scope="module")
def run1(demo_inputs):
    i = demo_inputs
    return dataaudit.audit(i.table, i.probs, i.embeddings, classes=i.classes)


@pytest.fixture(scope="module")
def changes(demo_inputs, run1):
    return derive_run2(demo_inputs, run1)


@pytest.fixture(scope="module")
def run2(demo_inputs, changes):
    return dataaudit.audit(
        changes.table, changes.probs, changes.embeddings, classes=demo_inputs.classes
    )


@pytest.fixture(scope="module")
def diff(run1, run2):
    return compare(run1, run2)


def _ids(frame: pd.DataFrame, column: str, value: str) -> set:
    return set(frame.loc[frame[column] == value, "id"])


def _flagged(report: AuditReport) -> set:
    items = report.results["label_errors"].table("items")
    return set(items.loc[items["is_label_error"], "id"])


# -- the planted changes land in the right category ------------------------------------------------


def test_items_in_one_run_are_counted_and_listed(diff, changes, run1):
    membership = diff.table("membership")
    assert _ids(membership, "change", "only_new") == set(changes.added)
    assert _ids(membership, "change", "only_old") == set(changes.dropped)
    assert diff.summary["items_only_new"] == len(changes.added) == N_NEW + 1
    assert diff.summary["items_only_old"] == len(changes.dropped)
    assert diff.summary["items_common"] == len(run1.items) - len(changes.dropped)


def test_relabelled_flips_are_fixed_label_errors(diff, changes, run1, run2):
    labels = diff.table("labels")
    assert _ids(labels, "change", "relabelled") == set(changes.fixed)
    assert _ids(labels, "change", "newly_labeled") == set(changes.queue_labeled)
    statuses = diff.table("label_errors")
    flagged_before = set(changes.fixed) & _flagged(run1)
    assert len(flagged_before) >= N_FIXED // 2  # the planted flips were found in run 1
    # A relabelled item the model (and its newly labeled neighbours) still dispute is flagged
    # again in run 2: it persists instead of counting as fixed.
    fixed = flagged_before - _flagged(run2)
    assert len(fixed) >= 0.8 * len(flagged_before)
    assert _ids(statuses, "status", "fixed_relabelled") == fixed
    assert _ids(statuses, "status", "persisting") >= flagged_before - fixed
    assert diff.summary["label_errors_fixed_relabelled"] == len(fixed)


def test_label_error_categories_match_the_flags_of_both_runs(diff, run1, run2):
    before, after = _flagged(run1), _flagged(run2)
    new_labels = dict(zip(run2.items["id"], run2.items["given_label"]))
    old_labels = dict(zip(run1.items["id"], run1.items["given_label"]))
    statuses = diff.table("label_errors")
    assert _ids(statuses, "status", "persisting") == before & after
    assert _ids(statuses, "status", "new") == after - before
    fixed = _ids(statuses, "status", "fixed_relabelled") | _ids(
        statuses, "status", "fixed_unflagged"
    )
    gone = {i for i in before if not new_labels.get(i)}
    assert _ids(statuses, "status", "gone") == gone
    assert fixed == before - after - gone
    assert all(new_labels[i] != old_labels[i] for i in _ids(statuses, "status", "fixed_relabelled"))
    assert len(statuses) == len(before | after)  # each flagged item once


def test_planted_leak_appears_and_removed_duplicate_resolves(diff, changes, demo_inputs):
    dup = diff.table("duplicates")
    pairs = {(a, b): (status, leak) for a, b, status, leak in dup.itertuples(index=False)}
    assert pairs[tuple(sorted(changes.leak))] == ("appeared", True)
    removed = next(p for p in demo_inputs.truth.leaked if p[1] in changes.dropped)
    assert pairs[tuple(sorted(removed))] == ("resolved", True)
    # Nothing else was planted: noisy new items are not duplicates of anything.
    assert diff.summary["duplicates_appeared"] == diff.summary["leakage_appeared"] == 1
    assert diff.summary["duplicates_resolved"] == diff.summary["leakage_resolved"] == 1


def test_regression_in_one_slice_is_reported_first(diff, changes):
    groups = diff.table("groups").set_index(["scope", "group"])
    scanner_c = groups.loc[("slice", "scanner = C")]
    assert scanner_c["change"] == REGRESSION
    # Only the corrupted items went from right to wrong there; nothing in C was fixed.
    assert scanner_c["n_worse"] == len(changes.corrupted)
    assert scanner_c["n_better"] == 0
    for other in ("scanner = A", "scanner = B"):
        assert groups.loc[("slice", other), "change"] != REGRESSION
        assert groups.loc[("slice", other), "n_worse"] == 0
    assert diff.summary["regression_slices"] >= 1
    assert diff.summary["regression"] == int((diff.table("groups")["change"] == REGRESSION).sum())
    first = diff.table("groups")["change"].tolist()
    n_reg = diff.summary["regression"]
    assert first[:n_reg] == [REGRESSION] * n_reg


def test_relabelled_items_do_not_count_as_the_models_change(diff, changes, run1):
    overall = diff.table("groups").set_index(["scope", "group"]).loc[("overall", "all")]
    # The model changed only on the corrupted items; relabelled items are left out of the pairs.
    assert overall["n_worse"] == len(changes.corrupted)
    assert overall["n_better"] == 0
    labeled = run1.items.loc[run1.items["given_label"] != "", "id"]
    assert overall["n_paired"] == len(set(labeled) - set(changes.dropped) - set(changes.fixed))
    # ... but the aggregate error rates of each run include them.
    assert overall["old_n"] == len(labeled)


def test_queue_items_that_got_labeled_are_counted(diff, changes):
    queue = diff.table("queue")
    assert _ids(queue, "status", "labeled") == set(changes.queue_labeled)
    assert diff.summary["queue_labeled"] == N_QUEUE_LABELED
    assert (
        diff.summary["queue_old_size"]
        == diff.summary["queue_stayed"] + N_QUEUE_LABELED + (diff.summary["queue_left"])
    )


def test_split_sizes_and_inputs_changes(diff, changes, run1, run2):
    splits = diff.table("splits").set_index("split")
    added = changes.table.set_index("id").loc[changes.added, "split"].value_counts()
    dropped = pd.Series(dict(zip(run1.items["id"], run1.items["split"])))[changes.dropped]
    for split, row in splits.iterrows():
        expected = added.get(split, 0) - int((dropped == split).sum())
        assert row["difference"] == expected
    inputs = diff.table("inputs").set_index("role")
    assert inputs.loc["table", "status"] == "changed"  # the shapes differ
    assert diff.summary["classes_added"] == diff.summary["classes_removed"] == 0


# -- no change where there is none -----------------------------------------------------------------


@pytest.mark.parametrize("same", ["the same report", "a second audit of the same inputs"])
def test_identical_runs_report_no_significant_change(same, run1, demo_inputs):
    i = demo_inputs
    other = (
        run1
        if same == "the same report"
        else dataaudit.audit(i.table, i.probs, i.embeddings, classes=i.classes)
    )
    result = compare(run1, other)
    s = result.summary
    assert s["regression"] == s["improvement"] == 0
    for key in (
        "items_only_old",
        "items_only_new",
        "items_relabelled",
        "label_errors_new",
        "label_errors_fixed",
        "queue_entered",
        "queue_left",
        "classes_added",
    ):
        assert s[key] == 0, key
    assert s["items_common"] == len(run1.items)
    assert (result.table("groups")["n_worse"] == 0).all()
    assert (result.table("metrics")["difference"] == 0).all()


# -- pieces --------------------------------------------------------------------------------------


def test_mcnemar_is_exact_and_symmetric():
    p = mcnemar_pvalue(np.array([0, 10, 0, 3]), np.array([0, 0, 10, 3]))
    assert p[0] == 1.0 and p[3] == 1.0
    assert p[1] == pytest.approx(2 * 0.5**10)
    assert p[1] == p[2]


def test_duplicate_pairs_that_appear_or_resolve_are_reported_with_leakage(run1):
    def with_pairs(report, pairs):
        table = pd.DataFrame(pairs, columns=["id_a", "id_b"])
        result = AnalysisResult("duplicates", tables={"pairs": table}, summary={})
        return dataclasses.replace(report, results={**report.results, "duplicates": result})

    items = run1.items
    train = items.loc[items["split"] == "train", "id"].tolist()
    test = items.loc[items["split"] == "test", "id"].tolist()
    kept, resolved_leak, appeared_leak = (
        (train[0], train[1]),
        (train[2], test[0]),
        (test[1], train[3]),
    )
    result = compare(
        with_pairs(run1, [kept, resolved_leak]), with_pairs(run1, [kept[::-1], appeared_leak])
    )
    dup = result.table("duplicates")
    assert len(dup) == 2  # the kept pair, given in the other order, is not a change
    assert result.summary["duplicates_appeared"] == result.summary["leakage_appeared"] == 1
    assert result.summary["duplicates_resolved"] == result.summary["leakage_resolved"] == 1


def test_an_analysis_in_one_run_only_is_named_as_not_compared(run1):
    without = dataclasses.replace(
        run1, results={k: v for k, v in run1.results.items() if k != "label_next"}
    )
    result = compare(without, run1)
    assert "queue" not in result.tables
    assert any("label_next" in note and "not compared" in note for note in result.notes)


def test_class_set_and_fingerprint_changes():
    classes = class_changes(
        {"classes": ["a", "b"], "labeled_per_class": {"a": 3, "b": 4}},
        {"classes": ["a", "c"], "labeled_per_class": {"a": 5, "c": 1}},
    ).set_index("class")
    assert classes["status"].to_dict() == {"a": "kept", "b": "removed", "c": "added"}
    inputs = input_changes(
        [
            {"role": "table", "sha256": "x", "shape": [3, 2]},
            {"role": "probs", "sha256": "y", "shape": [3, 2]},
            {"role": "embeddings", "sha256": None, "shape": [3, 4]},
        ],
        [
            {"role": "table", "sha256": "x", "shape": [3, 2]},
            {"role": "probs", "sha256": "z", "shape": [3, 2]},
            {"role": "embeddings", "sha256": None, "shape": [3, 4]},
        ],
    ).set_index("role")
    assert inputs["status"].to_dict() == {
        "table": "same",
        "probs": "changed",
        "embeddings": "unknown",
    }


def test_ids_saved_as_numbers_by_one_run_match_as_text():
    rng = np.random.default_rng(0)
    n = 60
    probs = rng.dirichlet(np.ones(3), size=n).astype(np.float32)
    labels = np.array(["a", "b", "c"])[probs.argmax(axis=1)]
    new = dataaudit.audit(pd.DataFrame({"id": np.arange(n), "label": labels}), probs)
    # A report written by another tool version could hold its ids as numbers.
    errors = new.results["label_errors"]
    old = dataclasses.replace(
        new,
        items=new.items.assign(id=new.items["id"].astype(int)),
        results={
            **new.results,
            "label_errors": dataclasses.replace(
                errors, tables={"items": errors.table("items").astype({"id": int})}
            ),
        },
    )
    result = compare(old, new)
    assert result.summary["items_common"] == n
    assert result.summary["items_only_old"] == result.summary["items_only_new"] == 0
    assert result.summary["label_errors_new"] == result.summary["label_errors_fixed"] == 0
    assert any("matched as text" in note for note in result.notes)


# -- persistence --------------------------------------------------------------------------------


def test_report_with_its_comparison_round_trips(run2, diff, tmp_path):
    report = dataclasses.replace(run2, comparison=diff)
    report.save(tmp_path)
    loaded = AuditReport.load(tmp_path)
    assert loaded == report
    assert loaded.comparison.summary == diff.summary
    assert loaded.metrics()["regression"] == diff.summary["regression"]
    assert loaded != run2  # the comparison is part of the report


def test_version_1_report_loads_through_migration(run1, tmp_path):
    folder = run1.save(tmp_path)
    document = json.loads((folder / "report.json").read_text())
    document.pop("comparison", None)
    document["schema_version"] = 1
    (folder / "report.json").write_text(json.dumps(document))
    loaded = AuditReport.load(tmp_path)
    assert loaded.comparison is None
    assert loaded == run1


@pytest.mark.parametrize("version", [0, "1.0", None])
def test_unknown_old_schema_version_fails_naming_it(run1, tmp_path, version):
    folder = run1.save(tmp_path)
    document = json.loads((folder / "report.json").read_text())
    document["schema_version"] = version
    (folder / "report.json").write_text(json.dumps(document))
    with pytest.raises(ReportLoadError, match=f"version {version!r}"):
        AuditReport.load(tmp_path)


# -- report section and command line -------------------------------------------------------------


def test_report_shows_what_changed_first_with_regressions_on_top(run2, diff):
    from dataaudit.render.html import build_sections

    sections = build_sections(dataclasses.replace(run2, comparison=diff))
    assert [s.id for s in sections[:2]] == ["overview", "comparison"]
    groups = sections[1].blocks[0]
    changes = groups.frame["change"].tolist()
    assert changes[: diff.summary["regression"]] == [REGRESSION] * diff.summary["regression"]
    assert any("scanner = C" in note for note in sections[1].notes)
    assert "comparison" not in [s.id for s in build_sections(run2)]


@pytest.fixture(scope="module")
def saved(run1, run2, tmp_path_factory):
    folders = {}
    for name, report in (("run1", run1), ("run2", run2)):
        folders[name] = tmp_path_factory.mktemp(name)
        report.save(folders[name])
    return folders


def test_compare_command_writes_comparison_and_fails_on_regression(
    saved, diff, changes, tmp_path, capsys
):
    from dataaudit.cli import main

    out = tmp_path / "cmp"
    code = main(
        [
            "compare",
            str(saved["run1"]),
            str(saved["run2"]),
            "--out",
            str(out),
            "--fail-on",
            "regression>0",
        ]
    )
    assert code == 1
    assert "regression" in capsys.readouterr().err
    document = json.loads((out / "comparison.json").read_text())
    assert document["summary"]["regression"] == diff.summary["regression"]
    assert {"slice", "scanner = C"} <= {
        value for row in document["regressions"] for value in (row["scope"], row["group"])
    }
    items = pd.read_csv(out / "comparison_items.csv", keep_default_na=False)
    only_new = items[(items["what"] == "membership") & (items["change"] == "only_new")]
    assert set(only_new["id"]) == set(changes.added)
    assert AuditReport.load(out).comparison == compare(
        AuditReport.load(saved["run1"]), AuditReport.load(saved["run2"]),
        baseline_path=document["baseline"]["path"],
    )  # fmt: skip
    assert 'id="comparison"' in (out / "report.html").read_text()


def test_compare_command_passes_when_nothing_regressed(saved, tmp_path):
    from dataaudit.cli import main

    code = main(
        ["compare", str(saved["run1"]), str(saved["run1"]), "--out", str(tmp_path / "same"),
         "--fail-on", "regression>0", "-q"]
    )  # fmt: skip
    assert code == 0


def test_compare_command_names_an_unreadable_run(saved, tmp_path, capsys):
    from dataaudit.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["compare", str(empty), str(saved["run2"]), "--out", str(tmp_path / "o"), "-q"])
    assert code == 2
    assert str(empty) in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_run_with_baseline_embeds_the_comparison(saved, demo_files, tmp_path):
    from dataaudit.cli import main

    out = tmp_path / "run"
    # The same inputs as run 1, read from files: nothing should have changed.
    code = main(
        ["run", "--table", demo_files["table"], "--probs", demo_files["probs"],
         "--embeddings", demo_files["embeddings"], "--out", str(out),
         "--baseline", str(saved["run1"]), "--fail-on", "regression>0,items_only_new>0", "-q"]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["regression"] == 0
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["summary"]["items_common"] == comparison["current"]["n_items"]
    assert comparison["summary"]["label_errors_new"] == 0
    assert AuditReport.load(out).comparison is not None
