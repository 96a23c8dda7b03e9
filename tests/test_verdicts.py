"""The annotation round trip: export, review, import into the ledger, and the next run remembers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dataaudit.cli import main
from dataaudit.stats import wilson_interval
from dataaudit.verdicts import latest, read_ledger

K = 3
CLASSES = ["cat", "dog", "a&b"]  # a name that must be escaped in the labeling config
N = 900
N_FLIPS = 60


def _flips():
    return np.random.default_rng(2).choice(N, N_FLIPS, replace=False)


def _inputs(folder, labels):
    rng = np.random.default_rng(1)
    truth = np.random.default_rng(0).integers(0, K, N)
    probs = rng.dirichlet(np.ones(K) * 0.3, N) * 0.25
    # A good model (the truth gets most of the mass) that is confidently wrong on 40 items whose
    # given label is right: flagged, and a reviewer says ok.
    believed = truth.copy()
    candidates = np.setdiff1d(np.arange(N - 100), _flips())
    wrong = np.random.default_rng(3).choice(candidates, 40, replace=False)
    believed[wrong] = (truth[wrong] + 2) % K
    probs[np.arange(N), believed] += 0.75
    table = pd.DataFrame({"id": [f"{i:04d}" for i in range(N)], "label": labels, "split": "train"})
    table.to_csv(folder / "table.csv", index=False)
    np.save(folder / "probs.npy", probs.astype(np.float32))
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return truth


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    """Run 1, a review of the top 60 of relabel.csv with known truth, the import, run 2."""
    root = tmp_path_factory.mktemp("loop")
    truth = np.random.default_rng(0).integers(0, K, N)
    flips = _flips()
    given = truth.copy()
    given[flips] = (truth[flips] + 1) % K
    labels = np.array(CLASSES, dtype=object)[given]
    labels[-100:] = ""  # an unlabeled pool for the queue
    (root / "in1").mkdir()
    _inputs(root / "in1", labels)
    args = ["--probs", str(root / "in1" / "probs.npy"), "--budget", "20", "-q"]
    assert (
        main(
            ["run", "--table", str(root / "in1" / "table.csv"), "--out", str(root / "run1"), *args]
        )
        == 0
    )

    relabel = pd.read_csv(root / "run1" / "relabel.csv", dtype=str, keep_default_na=False)
    assert list(relabel.columns[-2:]) == ["verdict", "corrected_label"]
    reviewed = relabel.head(60).copy()
    row = reviewed["id"].astype(int).to_numpy()
    is_error = np.isin(row, flips)
    reviewed["verdict"] = np.where(is_error, "error", "ok")
    reviewed["corrected_label"] = np.where(is_error, np.array(CLASSES)[truth[row]], "")
    reviewed.to_csv(root / "reviewed.csv", index=False)
    ledger = root / "ledger.parquet"
    assert (
        main(
            [
                "verdicts",
                "import",
                str(root / "run1"),
                "--from",
                "csv",
                str(root / "reviewed.csv"),
                "--ledger",
                str(ledger),
                "-q",
            ]
        )
        == 0
    )
    # The queue goes out to Label Studio; nobody has answered yet.
    tasks = root / "queue.json"
    assert (
        main(
            [
                "export",
                "label-studio",
                str(root / "run1"),
                "--list",
                "label_next",
                "--out",
                str(tasks),
                "--ledger",
                str(ledger),
                "-q",
            ]
        )
        == 0
    )

    # The team fixes half of the confirmed errors before the next run.
    confirmed = row[is_error]
    fixed, still = confirmed[: len(confirmed) // 2], confirmed[len(confirmed) // 2 :]
    labels2 = labels.copy()
    labels2[fixed] = np.array(CLASSES, dtype=object)[truth[fixed]]
    (root / "in2").mkdir()
    _inputs(root / "in2", labels2)
    args2 = ["--probs", str(root / "in2" / "probs.npy"), "--budget", "20", "-q"]
    assert (
        main(
            [
                "run",
                "--table",
                str(root / "in2" / "table.csv"),
                "--out",
                str(root / "run2"),
                "--verdicts",
                str(ledger),
                *args2,
            ]
        )
        == 0
    )
    return {
        "root": root,
        "ledger": ledger,
        "reviewed": reviewed,
        "is_error": is_error,
        "fixed": {f"{i:04d}" for i in fixed},
        "still": {f"{i:04d}" for i in still},
        "ok": set(reviewed.loc[~is_error, "id"]),
        "tasks": tasks,
    }


def test_the_ledger_holds_every_verdict_and_the_pending_queue(loop):
    ledger = read_ledger(loop["ledger"])
    relabel = ledger[ledger["list"] == "relabel"]
    assert len(relabel) == 60 and set(relabel["verdict"]) <= {"error", "ok"}
    assert (relabel["run"] != "").all() and relabel["score"].notna().all()
    queued = ledger[ledger["list"] == "label_next"]
    assert len(queued) == 20 and set(queued["verdict"]) == {"pending"}


def test_next_run_leaves_out_reviewed_ok_keeps_confirmed_on_top_and_counts_fixed(loop):
    root = loop["root"]
    relabel = pd.read_csv(root / "run2" / "relabel.csv", dtype=str, keep_default_na=False)
    assert not loop["ok"] & set(relabel["id"])  # reviewed ok, unchanged: not back
    top = relabel.head(len(loop["still"]))
    assert set(top["id"]) == loop["still"] and set(top["review_status"]) == {"confirmed"}
    assert not loop["fixed"] & set(relabel["id"])
    summary = json.loads((root / "run2" / "summary.json").read_text())["metrics"]
    assert summary["n_fixed"] == len(loop["fixed"]) and summary["n_confirmed"] == len(loop["still"])
    assert summary["n_reviewed_kept"] == len(loop["ok"])


def test_reviewed_precision_is_the_share_of_errors_with_a_wilson_interval(loop):
    summary = json.loads((loop["root"] / "run2" / "summary.json").read_text())["metrics"]
    errors = int(loop["is_error"].sum())
    assert summary["reviewed_items"] == 60
    assert summary["reviewed_precision"] == pytest.approx(errors / 60)
    low, high = wilson_interval(np.array([errors]), np.array([60]), 0.95)
    assert summary["reviewed_precision_ci_low"] == pytest.approx(low[0])
    assert summary["reviewed_precision_ci_high"] == pytest.approx(high[0])
    assert summary["estimated_label_errors_ci_low"] < summary["estimated_label_errors"]
    flagged = summary["n_label_errors"]
    assert summary["estimated_label_errors"] == pytest.approx(flagged * errors / 60)
    assert 0 < errors < 60  # both kinds were reviewed: planted flips and the model's own errors


def test_the_queue_skips_items_still_out_for_labeling(loop):
    root = loop["root"]
    sent = {t["data"]["dataaudit_id"] for t in json.loads(loop["tasks"].read_text())}
    queue = pd.read_csv(root / "run2" / "label_next.csv", dtype=str)
    assert len(sent) == 20 and not sent & set(queue["id"])
    assert len(queue) == 20  # refilled from the rest of the pool


def test_label_studio_tasks_and_config_match(loop):
    tasks = json.loads(loop["tasks"].read_text())
    first = tasks[0]
    assert first["data"]["dataaudit_list"] == "label_next" and "text" in first["data"]
    result = first["predictions"][0]["result"][0]
    assert result["type"] == "choices" and result["from_name"] == "label"
    assert result["value"]["choices"][0] in CLASSES
    config = (loop["tasks"].parent / "queue.config.xml").read_text()
    assert '<Choices name="label" toName="text"' in config and '<Choice value="a&amp;b"' in config


def test_a_label_studio_export_imports(loop, tmp_path):
    """Label Studio's documented JSON export: tasks with annotations[].result[] choices."""
    root = loop["root"]
    tasks_path = tmp_path / "relabel.json"
    assert main(["export", "label-studio", str(root / "run2"), "--out", str(tasks_path), "-q"]) == 0
    tasks = json.loads(tasks_path.read_text())[:3]
    exported = []
    for n, (task, verdict) in enumerate(zip(tasks, ("error", "ok", "unsure"))):
        result = [
            {
                "from_name": "verdict",
                "to_name": "text",
                "type": "choices",
                "value": {"choices": [verdict]},
            }
        ]
        if verdict == "error":
            result.append(
                {
                    "from_name": "label",
                    "to_name": "text",
                    "type": "choices",
                    "value": {
                        "choices": [task["predictions"][0]["result"][0]["value"]["choices"][0]]
                    },
                }
            )
        exported.append(
            {
                "id": n + 1,
                "data": task["data"],
                "predictions": task.get("predictions", []),
                "annotations": [
                    {
                        "id": 1,
                        "result": [
                            {
                                "from_name": "verdict",
                                "to_name": "text",
                                "type": "choices",
                                "value": {"choices": ["ok"]},
                            }
                        ],
                        "was_cancelled": False,
                        "created_at": "2026-11-01T10:00:00Z",
                        "updated_at": "2026-11-01T10:00:00Z",
                        "completed_by": 3,
                    },
                    {
                        "id": 2,
                        "result": result,
                        "was_cancelled": False,
                        "created_at": "2026-11-02T10:00:00Z",
                        "updated_at": "2026-11-02T10:00:00Z",
                        "completed_by": {"id": 7, "email": "ann@example.com"},
                    },
                ],
            }
        )
    export = tmp_path / "export.json"
    export.write_text(json.dumps(exported))
    ledger = tmp_path / "ledger.parquet"
    assert (
        main(
            [
                "verdicts",
                "import",
                str(root / "run2"),
                "--from",
                "label-studio",
                str(export),
                "--ledger",
                str(ledger),
                "-q",
            ]
        )
        == 0
    )
    rows = latest(read_ledger(ledger)).set_index("id")
    ids = [t["data"]["dataaudit_id"] for t in tasks]
    assert list(rows.loc[ids, "verdict"]) == ["error", "ok", "unsure"]  # the later annotation wins
    assert rows.loc[ids[0], "corrected_label"] in CLASSES
    assert rows.loc[ids[0], "reviewer"] == "ann@example.com"


@pytest.mark.parametrize(
    "change, match",
    [
        ({"id": "no-such-id"}, "not in the run"),
        ({"verdict": "maybe"}, "neither error, ok, unsure nor a class"),
        ({"verdict": "error", "corrected_label": "horse"}, "not a class"),
    ],
)
def test_bad_verdicts_are_named_errors(loop, tmp_path, capsys, change, match):
    frame = loop["reviewed"].head(3).copy()
    for column, value in change.items():
        frame.loc[frame.index[0], column] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    ledger = tmp_path / "ledger.parquet"
    assert (
        main(
            [
                "verdicts",
                "import",
                str(loop["root"] / "run1"),
                "--from",
                "csv",
                str(path),
                "--ledger",
                str(ledger),
                "-q",
            ]
        )
        == 2
    )
    assert match in capsys.readouterr().err and not ledger.exists()


def test_contradictory_verdicts_in_one_import_are_refused(loop, tmp_path, capsys):
    frame = loop["reviewed"].head(2).copy()
    twice = pd.concat(
        [frame, frame.assign(verdict=np.where(frame["verdict"] == "ok", "error", "ok"))]
    )
    path = tmp_path / "twice.csv"
    twice.to_csv(path, index=False)
    assert (
        main(
            [
                "verdicts",
                "import",
                str(loop["root"] / "run1"),
                "--from",
                "csv",
                str(path),
                "--ledger",
                str(tmp_path / "l.parquet"),
                "-q",
            ]
        )
        == 2
    )
    assert "contradictory" in capsys.readouterr().err


def test_the_ledger_is_append_only_and_the_latest_verdict_wins(loop, tmp_path):
    ledger = tmp_path / "ledger.parquet"
    frame = loop["reviewed"].head(1).copy()
    for verdict, when in (("ok", "2026-01-01T00:00:00Z"), ("error", "2026-02-01T00:00:00Z")):
        path = tmp_path / f"{verdict}.csv"
        frame.assign(verdict=verdict, corrected_label="", reviewed_at=when).to_csv(
            path, index=False
        )
        assert (
            main(
                [
                    "verdicts",
                    "import",
                    str(loop["root"] / "run1"),
                    "--from",
                    "csv",
                    str(path),
                    "--ledger",
                    str(ledger),
                    "-q",
                ]
            )
            == 0
        )
    history = read_ledger(ledger)
    assert list(history["verdict"]) == ["ok", "error"]
    assert list(latest(history)["verdict"]) == ["error"]


def test_the_report_shows_the_reviews(loop):
    page = (loop["root"] / "run2" / "report.html").read_text()
    assert "Precision of the flags per class" in page and "Reviewed, kept" in page
    assert '<button type="button" class="sort">review</button>' in page


def test_reviews_on_the_dask_engine_equal_the_in_process_run(loop, dask_client):
    """The second run on a cluster (table as Parquet parts): the same statuses, precision and
    relabel list after the reviews, and the queue still skips the pending items."""
    import dataaudit
    from dataaudit.report import AuditReport

    root = loop["root"]
    table = pd.read_csv(root / "in2" / "table.csv", dtype=str, keep_default_na=False)
    table["label"] = table["label"].replace("", None)
    parts = root / "in2-parts"
    parts.mkdir(exist_ok=True)
    for i, start in enumerate(range(0, len(table), 250)):
        table.iloc[start : start + 250].to_parquet(parts / f"part-{i}.parquet", index=False)
    ours = dataaudit.audit(
        str(parts),
        str(root / "in2" / "probs.npy"),
        engine="dask",
        client=dask_client,
        verdicts=str(loop["ledger"]),
        budget=20,
        analyses=("label_errors", "reviews", "label_next"),
    )
    reference = AuditReport.load(root / "run2")
    assert ours["reviews"].summary == reference["reviews"].summary
    assert ours["reviews"].summary["n_reviewed_kept"] > 0
    for name in ("items", "precision", "relabel"):
        pd.testing.assert_frame_equal(
            ours["reviews"].table(name), reference["reviews"].table(name), check_dtype=False
        )
    queued = set(ours["label_next"].table("queue")["id"].astype(str))
    pending = ours["reviews"].table("items").query("status == 'pending'")["id"]
    assert len(pending) and not queued & set(pending)
