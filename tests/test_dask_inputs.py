"""The Dask engine reads inputs by the same rules as the in-process engine (README, "How inputs
are read"), and its safety net stops the same misreads: class lists beside the probabilities, a
keyed header in another order, float-written labels, --unlabeled-values, reversed columns and
shuffled rows. Each case runs on a LocalCluster of 2 processes against the in-process run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _planted_labels import CLASSES, planted_data

import dataaudit
from dataaudit.problems import InputError

pytest.importorskip("distributed")

ANALYSES = ("label_errors", "per_class")


@pytest.fixture(scope="module")
def planted():
    data = planted_data()
    n = len(data.labels)
    table = pd.DataFrame(
        {
            "id": [f"{i:05d}" for i in range(n)],  # ids that look like numbers
            "label": np.asarray(CLASSES, dtype=object)[data.labels],
            "split": np.where(np.arange(n) % 4 == 0, "test", "train"),
        }
    )
    return table, data.probs


def _parts(frame: pd.DataFrame, folder, rows: int = 300):
    folder.mkdir(parents=True, exist_ok=True)
    for i, start in enumerate(range(0, len(frame), rows)):
        frame.iloc[start : start + rows].to_parquet(folder / f"part-{i:03d}.parquet", index=False)
    return str(folder)


def _both(dask_client, table, probs_in_process, table_parts, probs_source, **options):
    reference = dataaudit.audit(table, probs_in_process, analyses=ANALYSES, **options)
    ours = dataaudit.audit(
        table_parts, probs_source, engine="dask", client=dask_client, analyses=ANALYSES, **options
    )
    return reference, ours


def _same(reference, ours) -> None:
    assert ours.dataset["classes"] == reference.dataset["classes"]
    assert ours.dataset["labeled_per_class"] == reference.dataset["labeled_per_class"]
    for name in ANALYSES:
        assert ours[name].summary == reference[name].summary, name
    assert sorted(w.code for w in ours.warnings) == sorted(w.code for w in reference.warnings)


def test_classes_txt_beside_the_npy_probabilities(dask_client, planted, tmp_path):
    table, probs = planted
    np.save(tmp_path / "probs.npy", probs)
    (tmp_path / "classes.txt").write_text("\ufeff" + "\r\n".join(CLASSES) + "\r\n")
    table_parts = _parts(table, tmp_path / "table")
    reference = dataaudit.audit(table, str(tmp_path / "probs.npy"), analyses=ANALYSES)
    ours = dataaudit.audit(
        table_parts, str(tmp_path / "probs.npy"), engine="dask", client=dask_client,
        analyses=ANALYSES,
    )  # fmt: skip
    assert ours.dataset["class_source"] == reference.dataset["class_source"]
    _same(reference, ours)


def test_keyed_header_in_another_order_is_aligned_by_name(dask_client, planted, tmp_path):
    table, probs = planted
    order = [3, 0, 4, 1, 2]
    keyed = pd.DataFrame({"id": table["id"]})
    for j in order:
        keyed[f"prob_{CLASSES[j]}"] = probs[:, j]
    _parts(keyed.sample(frac=1.0, random_state=1), tmp_path / "probs", 250)
    keyed.to_parquet(tmp_path / "probs.parquet", index=False)
    reference, ours = _both(
        dask_client, table, str(tmp_path / "probs.parquet"), _parts(table, tmp_path / "t"),
        str(tmp_path / "probs"), classes=CLASSES,
    )  # fmt: skip
    assert ours.dataset["classes"] == list(CLASSES)
    _same(reference, ours)
    assert ours["per_class"].summary["accuracy"] > 0.8  # read right, not merely alike


def test_float_written_labels_and_unlabeled_values(dask_client, planted, tmp_path):
    """Class indices written by pandas as floats (3.0), and 'NA' declared as unlabeled."""
    table, probs = planted
    indexed = table.copy()
    codes = pd.Index(CLASSES).get_indexer(table["label"]).astype(float)
    indexed["label"] = [f"{c:.1f}" for c in codes]
    indexed.loc[::7, "label"] = "NA"
    np.save(tmp_path / "probs.npy", probs)
    reference, ours = _both(
        dask_client, indexed, probs, _parts(indexed, tmp_path / "t"), str(tmp_path / "probs.npy"),
        unlabeled_values=("NA",),
    )  # fmt: skip
    _same(reference, ours)
    assert ours.dataset["n_unlabeled"] == reference.dataset["n_unlabeled"] == len(table[::7])
    assert ours.dataset["unlabeled_by_value"] == reference.dataset["unlabeled_by_value"]
    assert "labels_read_as_unlabeled" in {w.code for w in ours.warnings}


@pytest.mark.parametrize(
    ("misread", "code"),
    [("reversed", "class_order_permuted"), ("rows_shuffled", "label_agreement_at_chance")],
)
def test_misread_inputs_stop_on_dask_as_in_process(dask_client, planted, tmp_path, misread, code):
    table, probs = planted
    bad = probs[:, ::-1] if misread == "reversed" else np.random.default_rng(0).permutation(probs)
    np.save(tmp_path / "probs.npy", np.ascontiguousarray(bad))
    for source in (table, _parts(table, tmp_path / "t")):
        options = {"engine": "dask", "client": dask_client} if isinstance(source, str) else {}
        with pytest.raises(InputError) as caught:
            dataaudit.audit(
                source, str(tmp_path / "probs.npy"), classes=CLASSES, analyses=ANALYSES, **options
            )
        assert caught.value.codes == [code]
    allowed = dataaudit.audit(
        _parts(table, tmp_path / "t2"), str(tmp_path / "probs.npy"), classes=CLASSES,
        analyses=ANALYSES, engine="dask", client=dask_client, allow_label_mismatch=True,
    )  # fmt: skip
    assert code in {w.code for w in allowed.warnings}


def test_a_table_in_fewer_files_than_workers_is_named_with_what_to_do(
    dask_client, planted, tmp_path
):
    table, probs = planted
    np.save(tmp_path / "probs.npy", probs)
    table.to_parquet(tmp_path / "one.parquet", index=False)  # one file, 2 workers
    reference, ours = _both(
        dask_client, table, probs, str(tmp_path / "one.parquet"), str(tmp_path / "probs.npy")
    )
    for name in ANALYSES:  # the same results; the warning says how to use the cluster
        assert ours[name].summary == reference[name].summary, name
    (warning,) = [w for w in ours.warnings if w.code == "table_parts_too_few"]
    assert "1 file(s) for 2 worker(s)" in warning.message and "max_rows_per_file" in warning.message
    assert warning.file.endswith("one.parquet")
    assert not [w for w in reference.warnings if w.code == "table_parts_too_few"]


def test_large_part_files_are_named_and_enough_small_ones_are_not():
    from dataaudit.engine.inputs import LARGE_PART_ROWS, Part, partition_warnings

    small = [Part(f"p{i}", i * 10, 10) for i in range(4)]
    assert partition_warnings(small, 4, "t/") == []
    assert [w.code for w in partition_warnings(small, 8, "t/")] == ["table_parts_too_few"]
    big = [*small, Part("big", 40, LARGE_PART_ROWS + 1)]
    (warning,) = partition_warnings(big, 2, "t/")
    assert f"{LARGE_PART_ROWS + 1:,} rows" in warning.message


@pytest.mark.parametrize("role", ["text", "image"])
def test_a_text_or_image_column_the_table_lacks_is_named_on_dask_as_in_process(
    dask_client, planted, tmp_path, role
):
    table, probs = planted
    np.save(tmp_path / "probs.npy", probs)
    parts = _parts(table, tmp_path / "t")
    option = {f"{role}_col": "caption"}
    with pytest.raises(InputError) as in_process:
        dataaudit.audit(table, probs, classes=CLASSES, analyses=ANALYSES, **option)
    with pytest.raises(InputError) as on_dask:
        dataaudit.audit(
            parts, str(tmp_path / "probs.npy"), classes=CLASSES, analyses=ANALYSES,
            engine="dask", client=dask_client, **option,
        )  # fmt: skip
    assert set(on_dask.value.codes) == set(in_process.value.codes) == {"column_missing"}
    named = [p for p in on_dask.value.problems if p.column == "caption"]
    assert len(named) == len(table) // 300 + (len(table) % 300 > 0)  # every part file
    assert f"no {role} column 'caption'" in named[0].message


def test_the_run_facts_say_which_content_columns_came_on_both_engines(
    dask_client, planted, tmp_path
):
    table, probs = planted
    table = table.assign(caption=[f"item {i}" for i in range(len(table))], path="")
    np.save(tmp_path / "probs.npy", probs)
    reference, ours = _both(
        dask_client, table, probs, _parts(table, tmp_path / "t"), str(tmp_path / "probs.npy"),
        classes=CLASSES, text_col="caption", image_col="path",
    )  # fmt: skip
    assert ours.dataset == reference.dataset
    assert ours.dataset["has_text"] and ours.dataset["has_images"]


@pytest.mark.parametrize("broken", ["table part", "probs npy", "keyed embeddings"])
def test_an_unreadable_file_is_named_on_dask(dask_client, planted, tmp_path, broken):
    table, probs = planted
    parts = _parts(table, tmp_path / "t")
    np.save(tmp_path / "probs.npy", probs)
    keyed = tmp_path / "emb.parquet"
    pd.DataFrame(
        {"id": table["id"], "e0": 1.0, "e1": np.arange(len(table), dtype=float)}
    ).to_parquet(keyed, index=False)
    target = {
        "table part": tmp_path / "t" / "part-001.parquet",
        "probs npy": tmp_path / "probs.npy",
        "keyed embeddings": keyed,
    }[broken]
    target.write_bytes(b"not what it says " * 8)
    with pytest.raises(InputError) as caught:
        dataaudit.audit(
            parts, str(tmp_path / "probs.npy"), str(keyed), classes=CLASSES,
            analyses=ANALYSES, engine="dask", client=dask_client,
        )  # fmt: skip
    assert caught.value.codes == ["file_unreadable"]
    assert caught.value.problems[0].source == str(target)


def test_embeddings_of_huge_magnitude_are_rescaled_on_dask_as_in_process(
    dask_client, planted, tmp_path
):
    table, probs = planted
    rng = np.random.default_rng(3)
    embeddings = (rng.normal(size=(len(table), 12)) * 1e30).astype(np.float32)
    np.save(tmp_path / "probs.npy", probs)
    np.save(tmp_path / "emb.npy", embeddings)
    options = {"classes": CLASSES, "analyses": ("outliers",)}
    reference = dataaudit.audit(table, probs, str(tmp_path / "emb.npy"), **options)
    ours = dataaudit.audit(
        _parts(table, tmp_path / "t"), str(tmp_path / "probs.npy"), str(tmp_path / "emb.npy"),
        engine="dask", client=dask_client, **options,
    )  # fmt: skip
    rescaled = [w for w in ours.all_warnings() if w.code == "embeddings_rescaled"]
    assert [w.message for w in rescaled] == [
        w.message for w in reference.all_warnings() if w.code == "embeddings_rescaled"
    ]
    assert "numeric_overflow" not in {w.code for w in ours.all_warnings()}
    pd.testing.assert_frame_equal(
        ours["outliers"].table("items").head(50),
        reference["outliers"].table("items").head(50),
        check_exact=False,
        atol=1e-6,
    )


def test_keyed_rows_whose_ids_are_not_in_the_table_are_named_on_dask(
    dask_client, planted, tmp_path
):
    table, probs = planted
    keyed = pd.DataFrame(probs, columns=CLASSES).assign(id=table["id"].to_numpy())
    extra = pd.DataFrame([[1.0] + [0.0] * (len(CLASSES) - 1)] * 3, columns=CLASSES)
    keyed = pd.concat([keyed, extra.assign(id=["x1", "x2", "x3"])], ignore_index=True)
    keyed.to_parquet(tmp_path / "probs.parquet", index=False)
    ours = dataaudit.audit(
        _parts(table, tmp_path / "t"), str(tmp_path / "probs.parquet"), classes=CLASSES,
        analyses=ANALYSES, engine="dask", client=dask_client,
    )  # fmt: skip
    (warning,) = [w for w in ours.warnings if w.code == "extra_ids_ignored"]
    assert warning.message.startswith("3 rows have ids that are not in t")
    assert "x1, x2, x3" in warning.message


@pytest.mark.parametrize("index", ["stored, named", "stored, unnamed", "Unnamed: 0 column"])
def test_row_numbers_pandas_wrote_are_not_read_as_classes_on_dask(
    dask_client, planted, tmp_path, index
):
    """A keyed file's stored index (or a CSV-born 'Unnamed: 0' column) is row numbers, as in
    process: not a class column (it was read as one: k_mismatch)."""
    table, probs = planted
    rows = np.arange(len(table)) * 3  # not a RangeIndex: pandas stores it in the file
    keyed = pd.DataFrame(probs, columns=CLASSES).assign(id=table["id"].to_numpy())
    if index == "Unnamed: 0 column":
        keyed.insert(0, "Unnamed: 0", rows)
    else:
        keyed.index = pd.Index(rows, name="row" if index == "stored, named" else None)
    keyed.to_parquet(tmp_path / "probs.parquet", index=index != "Unnamed: 0 column")
    source = str(tmp_path / "probs.parquet")
    reference, ours = _both(
        dask_client, table, source, _parts(table, tmp_path / "t"), source, classes=CLASSES
    )
    _same(reference, ours)
    pd.testing.assert_frame_equal(
        ours["label_errors"].table("relabel"), reference["label_errors"].table("relabel")
    )


def test_a_row_number_column_in_the_table_parts_is_left_out_with_a_warning(
    dask_client, planted, tmp_path
):
    table, probs = planted
    np.save(tmp_path / "probs.npy", probs)
    numbered = table.assign(**{"Unnamed: 0": np.arange(len(table))})
    reference, ours = _both(
        dask_client, numbered, probs, _parts(numbered, tmp_path / "t"),
        str(tmp_path / "probs.npy"), classes=CLASSES,
    )  # fmt: skip
    _same(reference, ours)
    assert "index_column_ignored" in {w.code for w in ours.warnings}
    assert ours.dataset["metadata_columns"] == reference.dataset["metadata_columns"]


def test_a_column_of_numbers_in_one_part_and_text_in_another_is_named(
    dask_client, planted, tmp_path
):
    table, probs = planted
    np.save(tmp_path / "probs.npy", probs)
    table = table.assign(age=np.arange(len(table)) % 90)
    folder = tmp_path / "t"
    _parts(table, folder)
    second = table.iloc[300:600].assign(age=lambda f: f["age"].astype(str))
    second.to_parquet(folder / "part-001.parquet", index=False)
    with pytest.raises(InputError) as caught:
        dataaudit.audit(
            str(folder), str(tmp_path / "probs.npy"), classes=CLASSES, analyses=ANALYSES,
            engine="dask", client=dask_client,
        )  # fmt: skip
    (problem,) = caught.value.problems
    assert problem.code == "column_types_differ" and problem.column == "age"
    assert "numbers in part-000.parquet and text in part-001.parquet" in problem.message


def test_integers_in_one_part_and_floats_in_another_are_one_numeric_column(
    dask_client, planted, tmp_path
):
    """pandas writes a column with a missing value as floats: parts differ, the column does not."""
    table, probs = planted
    np.save(tmp_path / "probs.npy", probs)
    age = (np.arange(len(table)) % 90).astype(float)
    age[310] = np.nan  # part-001 is float64, the others int64
    table = table.assign(age=age)
    folder = tmp_path / "t"
    _parts(table, folder)
    for i in (0, 2):
        rows = table.iloc[300 * i : 300 * (i + 1)]
        rows.assign(age=rows["age"].astype(np.int64)).to_parquet(
            folder / f"part-{i:03d}.parquet", index=False
        )
    options = {"classes": CLASSES, "analyses": ("label_errors", "slices")}
    reference = dataaudit.audit(table, probs, **options)
    ours = dataaudit.audit(
        str(folder), str(tmp_path / "probs.npy"), engine="dask", client=dask_client, **options
    )
    assert ours["slices"].summary == reference["slices"].summary
    pd.testing.assert_frame_equal(
        ours["slices"].table("ranked"), reference["slices"].table("ranked"), check_dtype=False
    )
