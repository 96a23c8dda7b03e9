"""`dataaudit history`: three planted runs with a falling error rate, in one page and one CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import dataaudit
from dataaudit.cli import main
from dataaudit.history import build_history, learning_curve, load_runs

K = 4
# (folder name, started_at, labeled items, accuracy): names out of time order on purpose.
RUNS = (
    ("c-first", "2026-01-01T10:00:00+00:00", 300, 0.70),
    ("a-second", "2026-01-08T10:00:00+00:00", 600, 0.80),
    ("b-third", "2026-01-15T10:00:00+00:00", 1200, 0.86),
)
PERSISTENT_IDS = ["00007", "00042"]  # flagged in every run with the same wrong label


def _run(n_labeled: int, accuracy: float, seed: int) -> dataaudit.AuditReport:
    n = 1500
    truth = np.random.default_rng(0).integers(0, K, n)  # the same items in every run
    rng = np.random.default_rng(seed)
    correct = np.zeros(n, dtype=bool)  # exactly `accuracy` of the labeled items
    correct[rng.choice(n_labeled, round(accuracy * n_labeled), replace=False)] = True
    correct[n_labeled:] = True
    predicted = np.where(correct, truth, (truth + rng.integers(1, K, n)) % K)
    probs = np.full((n, K), 0.05 / (K - 1))
    probs[np.arange(n), predicted] = 0.95
    labels = truth.astype(object)
    for item in (7, 42):  # a confident model against a wrong given label, in every run
        labels[item] = (truth[item] + 1) % K
        probs[item] = 0.05 / (K - 1)
        probs[item, truth[item]] = 0.95
    labels[n_labeled:] = None
    table = pd.DataFrame({"id": [f"{i:05d}" for i in range(n)], "label": labels, "split": "train"})
    return dataaudit.audit(table, probs.astype(np.float32), classes=[str(k) for k in range(K)])


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    folders = []
    for seed, (name, started, n_labeled, accuracy) in enumerate(RUNS):
        report = _run(n_labeled, accuracy, seed)
        report.run["started_at"] = started
        report.save(root / name)
        folders.append(root / name)
    return root, folders


def test_runs_are_ordered_by_start_and_the_error_rate_falls_with_intervals(run_dirs):
    root, _ = run_dirs
    runs = load_runs([str(root / "*")])
    assert [r.name for r in runs] == ["c-first", "a-second", "b-third"]
    history = build_history(runs).metrics
    accuracy = history[history["metric"] == "accuracy"].set_index("run")
    values = accuracy.loc[["c-first", "a-second", "b-third"], "value"].to_numpy()
    assert np.all(np.diff(values) > 0)  # planted: 0.70 -> 0.80 -> 0.86
    assert np.allclose(values, [0.70, 0.80, 0.86], atol=0.01)
    assert (accuracy["ci_low"] < accuracy["value"]).all()
    assert (accuracy["value"] < accuracy["ci_high"]).all()
    # The first run's interval is wider: it has a quarter of the labels.
    width = (accuracy["ci_high"] - accuracy["ci_low"]).loc[["c-first", "b-third"]].to_numpy()
    assert width[0] > width[1]
    per_class = history[history["metric"].str.startswith("class_error_rate:")]
    assert set(per_class["metric"]) == {f"class_error_rate:{k}" for k in range(K)}
    assert per_class["ci_low"].notna().all()


def test_learning_curve_estimates_the_next_labels_with_an_interval(run_dirs):
    root, _ = run_dirs
    curve = learning_curve(load_runs([str(root / "*")]), next_labels=1200)
    assert list(curve.points["n_labeled"]) == [300, 600, 1200]
    assert curve.gain is not None and curve.gain_low <= curve.gain <= curve.gain_high
    assert 0 < curve.gain < 0.15  # error 0.30 -> 0.14 over 4x labels: a few points more
    assert curve.flattened is False and "1,200 labels" in curve.message


def test_two_runs_give_no_curve_and_say_why(run_dirs):
    _, folders = run_dirs
    curve = learning_curve(load_runs([str(f) for f in folders[:2]]))
    assert curve.gain is None and "at least 3 runs" in curve.message


def test_label_errors_that_persisted_are_listed(run_dirs):
    root, _ = run_dirs
    persisted = build_history(load_runs([str(root / "*")])).persistent_label_errors
    top = persisted[persisted["n_runs_flagged"] == 3]
    assert set(PERSISTENT_IDS) <= set(top["id"])
    assert top["flagged_in_latest"].all()


def test_cli_writes_page_and_csv_and_refuses_to_overwrite(run_dirs, tmp_path, capsys):
    root, _ = run_dirs
    out = tmp_path / "history"
    assert main(["history", str(root / "*"), "--out", str(out), "-q"]) == 0
    csv = pd.read_csv(out / "history.csv", dtype={"run": str})
    assert list(csv.columns) == ["run", "started_at", "metric", "value", "ci_low", "ci_high"]
    assert set(csv["run"]) == {"c-first", "a-second", "b-third"}
    page = (out / "history.html").read_text()
    assert "Learning curve" in page and "Label errors that persisted" in page
    # Offline like the report: the same policy forbids fetching, and nothing is linked.
    assert "default-src 'none'" in page and "<script src" not in page and "<link" not in page
    (out / "notes.txt").write_text("mine")
    assert main(["history", str(root / "*"), "--out", str(out), "-q"]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["history", str(root / "*"), "--out", str(out), "-q", "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_names_a_folder_that_is_not_a_run(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["history", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no saved report" in capsys.readouterr().err
    assert main(["history", str(tmp_path / "nothing-*"), "--out", str(tmp_path / "o")]) == 2
