"""The Dask engine on a LocalCluster of 2 worker processes gives the in-process numbers.

One cluster for the test session (`dask_client` in conftest.py: starting worker processes costs
seconds); inputs are small Parquet
part files written to tmp folders, as a user would hand a partitioned table to the cluster.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _planted_labels import CLASSES, planted_data

import dataaudit
from dataaudit.problems import InputError

pytest.importorskip("distributed")

PORTED = ("label_errors", "per_class", "swapped_pairs")


@pytest.fixture(scope="module")
def client(dask_client):
    return dask_client


def _planted_table():
    planted = planted_data()
    n = len(planted.labels)
    names = np.asarray(CLASSES, dtype=object)[planted.labels]
    names[-50:] = ""  # unlabeled
    table = pd.DataFrame(
        {
            "id": [f"item-{i}" for i in range(n)],
            "label": names,
            "split": np.where(np.arange(n) % 4 == 0, "test", "train"),
        }
    )
    return table, planted.probs


def _write_parts(table: pd.DataFrame, folder, rows_per_part: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, len(table), rows_per_part)):
        table.iloc[start : start + rows_per_part].to_parquet(
            folder / f"part-{i:03d}.parquet", index=False
        )


def _assert_same_results(ours, reference) -> None:
    for name in PORTED:
        assert ours[name].summary == reference[name].summary, name
    pd.testing.assert_frame_equal(
        ours["per_class"].table("classes"), reference["per_class"].table("classes")
    )
    pd.testing.assert_frame_equal(
        ours["swapped_pairs"].table("pairs"), reference["swapped_pairs"].table("pairs")
    )
    # The in-process items table in label_errors' ranking is the Dask engine's ranked table.
    expected = (
        reference["label_errors"]
        .table("items")
        .sort_values("error_score", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    pd.testing.assert_frame_equal(ours["label_errors"].table("items"), expected)
    assert ours.dataset == reference.dataset


@pytest.fixture(scope="module")
def planted_runs(client, tmp_path_factory):
    """The planted data audited in process and on the cluster (table in 4 part files, .npy)."""
    folder = tmp_path_factory.mktemp("planted")
    table, probs = _planted_table()
    _write_parts(table, folder / "table", 300)
    table.to_parquet(folder / "table.parquet", index=False)  # for the in-process CLI run
    np.save(folder / "probs.npy", probs)
    reference = dataaudit.audit(table, probs, classes=CLASSES, analyses=PORTED)
    ours = dataaudit.audit(
        str(folder / "table"),
        str(folder / "probs.npy"),
        classes=CLASSES,
        engine="dask",
        client=client,
        analyses=PORTED,
        parts_dir=str(folder / "parts"),
    )
    return reference, ours, folder


def test_dask_engine_equals_in_process_on_planted_label_errors(planted_runs):
    reference, ours, _ = planted_runs
    _assert_same_results(ours, reference)
    assert ours.run["engine"]["partitions"] == 4
    assert ours["swapped_pairs"].summary["top_pair"] == "ant / bee"  # the planted swap
    assert set(ours.skipped) == {a for a in reference.skipped}


def test_workers_write_every_labeled_item_as_parquet_parts(planted_runs):
    reference, ours, folder = planted_runs
    parts = sorted((folder / "parts" / "label_errors.all_items.parquet").glob("part-*.parquet"))
    assert len(parts) == 4
    written = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(written, reference["label_errors"].table("items"))
    assert ours["label_errors"].params["items_parts"].endswith("label_errors.all_items.parquet")
    peaks = ours.run["engine"]["worker_peak_rss_mb"]
    assert len(peaks) == 2 and all(mb > 50 for mb in peaks.values())


def test_the_run_records_where_the_cluster_spent_its_time(planted_runs):
    _, ours, _ = planted_runs
    costs = ours.run["engine"]["task_costs"]
    # Every partition ran the map/reduce kernel (_apply) and wrote its parts (_write); Dask names
    # a task by its function without leading underscores.
    assert costs["apply"]["tasks"] >= 4 and costs["write"]["tasks"] >= 4
    assert all(c["compute_s"] >= 0 and c["output_mb"] >= 0 for c in costs.values())
    assert sum(c["compute_s"] for c in costs.values()) > 0
    order = [c["compute_s"] for c in costs.values()]
    assert order == sorted(order, reverse=True)
    assert ours.run["engine"]["bytes_sent_by_workers"] > 0  # partials sent to the driver


def test_keyed_parquet_probabilities_are_joined_by_id(client, tmp_path):
    """K=2, ids and labels that look like numbers, probabilities in another order and split."""
    rng = np.random.default_rng(3)
    n = 400
    labels = rng.integers(0, 2, n)
    p1 = np.clip(np.where(labels == 1, 0.8, 0.2) + rng.normal(0, 0.2, n), 0.01, 0.99)
    flip = rng.choice(n, 30, replace=False)
    labels[flip] = 1 - labels[flip]
    table = pd.DataFrame(
        {"id": [f"{i:03d}" for i in range(n)], "label": labels.astype(str), "split": "train"}
    )
    table.loc[:19, "label"] = None
    probs = np.column_stack([1 - p1, p1]).astype(np.float32)
    _write_parts(table, tmp_path / "table", 150)
    keyed = pd.DataFrame({"id": table["id"], "0": probs[:, 0], "1": probs[:, 1]})
    _write_parts(keyed.sample(frac=1.0, random_state=0), tmp_path / "probs", 100)

    reference = dataaudit.audit(table, probs, analyses=PORTED)
    ours = dataaudit.audit(
        str(tmp_path / "table" / "*.parquet"),
        str(tmp_path / "probs"),
        engine="dask",
        client=client,
        analyses=PORTED,
    )
    assert ours["label_errors"].summary["n_label_errors"] > 10
    assert ours.dataset["classes"] == ["0", "1"]
    for name in PORTED:
        assert ours[name].summary == reference[name].summary, name
    pd.testing.assert_frame_equal(
        ours["per_class"].table("classes"), reference["per_class"].table("classes")
    )


def test_bad_rows_are_named_by_part_file_and_row(client, tmp_path):
    table, probs = _planted_table()
    table.loc[310, "label"] = "cow"  # part 1, row 10
    probs = probs.copy()
    probs[905] *= 0.5  # part 3, row 5
    _write_parts(table, tmp_path / "table", 300)
    np.save(tmp_path / "probs.npy", probs)
    with pytest.raises(InputError) as caught:
        dataaudit.audit(
            str(tmp_path / "table"),
            str(tmp_path / "probs.npy"),
            classes=CLASSES,
            engine="dask",
            client=client,
            analyses=PORTED,
        )
    found = {p.code: p for p in caught.value.problems}
    assert set(found) == {"unknown_labels", "probs_not_normalized"}
    assert found["unknown_labels"].source.endswith("part-001.parquet")
    assert found["unknown_labels"].rows == (10,)
    assert found["probs_not_normalized"].source.endswith("part-003.parquet")
    assert found["probs_not_normalized"].rows == (5,)


def test_duplicate_ids_across_part_files_are_named(client, tmp_path):
    table, probs = _planted_table()
    table.loc[650, "id"] = "item-3"
    _write_parts(table, tmp_path / "table", 300)
    np.save(tmp_path / "probs.npy", probs)
    with pytest.raises(InputError) as caught:
        dataaudit.audit(
            str(tmp_path / "table"),
            str(tmp_path / "probs.npy"),
            classes=CLASSES,
            engine="dask",
            client=client,
            analyses=PORTED,
        )
    found = {(p.code, p.source.rsplit("/", 1)[-1], p.rows, p.values) for p in caught.value.problems}
    assert found == {
        ("duplicate_ids", "part-000.parquet", (3,), ("item-3",)),
        ("duplicate_ids", "part-002.parquet", (50,), ("item-3",)),
    }


@pytest.mark.parametrize(
    ("options", "code"),
    [
        ({}, "analysis_not_on_dask"),
        ({"analyses": ("label_errors", "embedding_map")}, "analysis_not_on_dask"),
        ({"analyses": PORTED, "label_error_filter": "prune_by_noise_rate"}, "option_not_on_dask"),
        ({"analyses": ("label_errors", "nonsense")}, "unknown_analysis"),
    ],
)
def test_dask_engine_refuses_what_it_cannot_run_by_name(
    client, tmp_path, options, code, monkeypatch
):
    from dataaudit import analyses as registry

    # An analysis without an engine form (every analysis may have one by now): embedding_map's
    # is hidden for this test.
    forms = {k: v for k, v in registry.engine_forms().items() if k != "embedding_map"}
    monkeypatch.setattr(registry, "engine_forms", lambda: forms)
    with pytest.raises(InputError) as caught:
        dataaudit.audit(
            str(tmp_path / "never-read"), "p.npy", engine="dask", client=client, **options
        )
    assert caught.value.codes == [code]


def test_cli_runs_on_a_scheduler_and_moves_the_parts_into_the_report(
    client, planted_runs, tmp_path, capsys
):
    from dataaudit.cli import main

    _, ours, folder = planted_runs
    argv = [
        "run",
        "--probs",
        str(folder / "probs.npy"),
        "--classes",
        ",".join(CLASSES),
        "--analyses",
        ",".join(PORTED),
        "-q",
    ]
    address = client.scheduler.address
    assert (
        main(
            [
                *argv,
                "--table",
                str(folder / "table"),
                "--engine",
                "dask",
                "--scheduler",
                address,
                "--out",
                str(tmp_path / "d"),
            ]
        )
        == 0
    )
    assert (
        main([*argv, "--table", str(folder / "table.parquet"), "--out", str(tmp_path / "p")]) == 0
    )
    relabel = pd.read_csv(tmp_path / "d" / "relabel.csv")
    pd.testing.assert_frame_equal(relabel, pd.read_csv(tmp_path / "p" / "relabel.csv"))
    assert len(relabel) == ours["label_errors"].summary["n_label_errors"]
    every = pd.read_parquet(tmp_path / "d" / "audit" / "label_errors.all_items.parquet")
    assert len(every) == ours["label_errors"].summary["n_labeled"]
    assert not list((tmp_path / "d").glob(".dataaudit-staging-*"))
    assert client.status == "running"  # a cluster the run did not start is left running


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--workers", "2"], "need --engine dask"),
        (["--engine", "dask"], "either --scheduler ADDRESS or --workers N"),
        (["--engine", "dask", "--workers", "0"], "at least 1"),
    ],
)
def test_cli_engine_flags_that_cannot_work_exit_2(tmp_path, capsys, flags, message):
    from dataaudit.cli import main

    argv = ["run", "--table", "t.parquet", "--probs", "p.npy", "--out", str(tmp_path / "o")]
    assert main([*argv, *flags]) == 2
    assert message in capsys.readouterr().err


def test_cli_dask_run_without_analyses_names_what_does_not_run_yet(
    client, tmp_path, capsys, monkeypatch
):
    from dataaudit import analyses as registry
    from dataaudit.cli import main

    forms = {k: v for k, v in registry.engine_forms().items() if k != "slices"}
    monkeypatch.setattr(registry, "engine_forms", lambda: forms)

    argv = ["run", "--table", "t.parquet", "--probs", "p.npy", "--out", str(tmp_path / "o")]
    assert main([*argv, "--engine", "dask", "--scheduler", client.scheduler.address]) == 2
    err = capsys.readouterr().err
    assert "[analysis_not_on_dask]" in err and "slices" in err
    assert not list((tmp_path / "o").glob(".dataaudit-staging-*"))


def test_compare_of_two_dask_runs_equals_compare_of_two_in_process_runs(client, tmp_path):
    """The Dask engine's saved report holds capped tables; `compare` (and --baseline) read the
    workers' partitioned per-item tables, so a comparison of two cluster runs is the in-process
    comparison: the same fixed label errors, label changes and metric changes."""
    from dataaudit.cli import main
    from dataaudit.report import AuditReport

    planted = planted_data()
    table, probs = _planted_table()
    np.save(tmp_path / "probs.npy", probs)
    fixed = table.copy()
    relabelled = np.flatnonzero(planted.flipped)[:25]  # the annotators fixed 25 planted errors
    fixed.loc[relabelled, "label"] = np.asarray(CLASSES, dtype=object)[
        planted.true_labels[relabelled]
    ]
    for name, frame in (("before", table), ("after", fixed)):
        _write_parts(frame, tmp_path / name, 300)
        frame.to_parquet(tmp_path / f"{name}.parquet", index=False)
    argv = ["run", "--probs", str(tmp_path / "probs.npy"), "--classes", ",".join(CLASSES)]
    argv += ["--analyses", ",".join(PORTED), "-q"]
    dask = ["--engine", "dask", "--scheduler", client.scheduler.address]
    for engine, suffix, extra in (("dask", "", dask), ("inprocess", ".parquet", [])):
        before, after = tmp_path / f"{engine}-before", tmp_path / f"{engine}-after"
        assert (
            main(
                [*argv, *extra, "--table", str(tmp_path / f"before{suffix}"), "--out", str(before)]
            )
            == 0
        )
        after_argv = ["--table", str(tmp_path / f"after{suffix}"), "--out", str(after)]
        assert main([*argv, *extra, *after_argv, "--baseline", str(before)]) == 0
        assert (
            main(
                ["compare", str(before), str(after), "--out", str(tmp_path / f"{engine}-cmp"), "-q"]
            )
            == 0
        )

    loaded = AuditReport.load(tmp_path / "dask-before")
    assert len(loaded.items) < len(table) == len(loaded.full_items())  # capped, and complete
    for which in ("after", "cmp"):
        ours = AuditReport.load(tmp_path / f"dask-{which}").comparison
        reference = AuditReport.load(tmp_path / f"inprocess-{which}").comparison
        assert ours.summary == reference.summary, which
        for name in ("labels", "label_errors", "metrics", "membership"):
            pd.testing.assert_frame_equal(ours.table(name), reference.table(name), obj=name)
        statuses = ours.table("label_errors").set_index("id")["status"]
        fixed_ids = table["id"].to_numpy()[relabelled]
        assert (statuses.reindex(fixed_ids) == "fixed_relabelled").mean() > 0.8


def _rounded_probs_key(chunk):
    from dataaudit.neighbors import hash_rows

    return pd.DataFrame({"key": hash_rows(np.round(chunk.probs[:, :2], 1)), "pos": chunk.pos})


def _shared_keys(frame):
    shared = frame[frame.duplicated("key", keep=False)]
    return shared.groupby("key", as_index=False).agg(first=("pos", "min"), size=("pos", "size"))


def _text_and_image(chunk):
    return pd.DataFrame(
        {"pos": chunk.pos, "text": chunk.column("text"), "image": chunk.column("image")}
    )


def test_group_by_key_and_table_columns_on_the_cluster_equal_in_process(client, tmp_path):
    from dataaudit.config import AuditConfig, ColumnRoles
    from dataaudit.engine.dask_engine import DaskEngine
    from dataaudit.engine.inputs import read_partitioned
    from dataaudit.neighbors import hash_rows

    table, probs = _planted_table()
    table["text"] = [f"text {i % 300}" for i in range(len(table))]
    table["image"] = [f"img/{i}.png" for i in range(len(table))]
    _write_parts(table, tmp_path / "table", 300)
    np.save(tmp_path / "probs.npy", probs)
    config = AuditConfig(classes=CLASSES, columns=ColumnRoles(text="text", image="image"))
    inputs = read_partitioned(
        str(tmp_path / "table"), str(tmp_path / "probs.npy"), None, config, client
    )
    ours = DaskEngine(inputs, client)
    found = ours.group_by_key(_rounded_probs_key, _shared_keys).sort_values("first")
    everything = pd.DataFrame(
        {"key": hash_rows(np.round(probs[:, :2], 1)), "pos": range(len(probs))}
    )
    expected = _shared_keys(everything).sort_values("first")
    assert expected["size"].sum() > 100
    pd.testing.assert_frame_equal(found.reset_index(drop=True), expected.reset_index(drop=True))
    columns = ours.map_reduce(_text_and_image, lambda a, b: pd.concat([a, b])).sort_values("pos")
    assert columns["text"].tolist() == table["text"].tolist()
    assert columns["image"].iloc[7] == str(tmp_path / "table" / "img" / "7.png")
