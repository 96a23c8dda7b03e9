"""Every input is read as the user meant it, or stopped with a coded problem: never misread.

Class order from headers and class lists, labels written as floats or signed numbers, class
names pandas would read as missing, ids across file types, classes.txt encodings.
"""

from __future__ import annotations

import codecs
import json

import numpy as np
import pandas as pd
import pytest

from dataaudit import AuditConfig, InputError
from dataaudit.cli import main
from dataaudit.load import parse_classes
from dataaudit.pipeline import describe_dataset, make_config
from dataaudit.validate import load_dataset

CLASSES = ("ant", "bee", "cat")


def _planted(n: int = 30, k: int = 3, seed: int = 0):
    """Labels 0..k-1 in a shuffled order and probabilities that put 0.8 on each row's label."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % k)
    probs = np.full((n, k), 0.2 / (k - 1))
    probs[np.arange(n), labels] = 0.8
    return labels, probs


def _table(labels, names=CLASSES, ids=None) -> pd.DataFrame:
    ids = [f"x{i}" for i in range(len(labels))] if ids is None else ids
    return pd.DataFrame({"id": ids, "label": [names[i] for i in labels]})


def _keyed(table: pd.DataFrame, probs: np.ndarray, columns) -> pd.DataFrame:
    keyed = pd.DataFrame(probs, columns=list(columns))
    keyed.insert(0, "id", table["id"].to_numpy())
    return keyed


def _problems(table, probs, embeddings=None, **config) -> dict:
    with pytest.raises(InputError) as info:
        load_dataset(table, probs, embeddings, make_config(**config))
    return {p.code: p for p in info.value.problems}


def _codes(data) -> set[str]:
    return {w.code for w in data.warnings}


def _agrees(data) -> bool:
    """The model's top class equals every given label: nothing was misread."""
    labeled = data.labeled
    return bool((data.predicted[labeled] == data.labels[labeled]).all())


# -- class order: a keyed probability file's header ------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
@pytest.mark.parametrize("where", ["classes_txt", "classes_option"])
def test_header_in_another_order_than_the_class_list_wins_by_name(tmp_path, fmt, where):
    labels, probs = _planted()
    table = _table(labels)
    header_order = [2, 0, 1]  # columns cat, ant, bee
    keyed = _keyed(table, probs[:, header_order], [CLASSES[i] for i in header_order])
    path = tmp_path / f"probs.{fmt}"
    keyed.to_csv(path, index=False) if fmt == "csv" else keyed.to_parquet(path)
    if where == "classes_txt":
        (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
        data = load_dataset(table, path)
    else:
        data = load_dataset(table, path, config=make_config(classes=CLASSES))
    assert data.classes == CLASSES
    assert _agrees(data)
    np.testing.assert_allclose(data.probs, probs, rtol=1e-6)
    assert "class_order_from_header" in _codes(data)
    assert "matched by name" in data.class_source


def test_header_naming_other_classes_stops_naming_both_orders():
    labels, probs = _planted()
    table = _table(labels)
    keyed = _keyed(table, probs, ["ant", "bee", "dog"])
    problem = _problems(table, keyed, classes=CLASSES)["class_order_conflict"]
    assert "'dog'" in problem.message and "'cat'" in problem.message


def test_header_missing_a_class_stops():
    labels, probs = _planted(k=2)
    table = _table(labels)
    keyed = _keyed(table, probs, ["ant", "bee"])
    assert "class_order_conflict" in _problems(table, keyed, classes=CLASSES)


@pytest.mark.parametrize(
    "columns", [["0", "1", "2"], ["p0", "p1", "p2"], ["prob_0", "prob_1", "prob_2"], [0, 1, 2]]
)
def test_numbered_header_takes_the_given_order(columns):
    labels, probs = _planted()
    table = _table(labels)
    data = load_dataset(table, _keyed(table, probs, columns), config=make_config(classes=CLASSES))
    assert data.classes == CLASSES and _agrees(data)
    assert not data.warnings


@pytest.mark.parametrize("columns", [["p0", "p1", "p2"], ["0", "1", "2"]])
def test_numbered_header_without_a_class_list_uses_the_label_rule(columns):
    labels, probs = _planted()
    table = _table(labels)
    data = load_dataset(table, _keyed(table, probs, columns))
    assert data.classes == CLASSES and _agrees(data)
    assert "only numbered" in data.class_source


def test_header_0_to_k_with_a_permuted_numeric_class_list_is_ambiguous():
    labels, probs = _planted()
    table = _table(labels, names=("0", "1", "2"))
    keyed = _keyed(table, probs, ["0", "1", "2"])
    assert "class_order_conflict" in _problems(table, keyed, classes=("2", "0", "1"))
    data = load_dataset(table, keyed, config=make_config(classes=("0", "1", "2")))
    assert _agrees(data)


def test_header_with_a_shared_prefix_names_the_classes():
    labels, probs = _planted()
    table = _table(labels)
    order = [1, 2, 0]
    keyed = _keyed(table, probs[:, order], [f"prob_{CLASSES[i]}" for i in order])
    data = load_dataset(table, keyed)
    assert data.classes == ("bee", "cat", "ant") and _agrees(data)
    with_list = load_dataset(table, keyed, config=make_config(classes=CLASSES))
    assert with_list.classes == CLASSES and _agrees(with_list)


def test_pandas_index_column_in_a_keyed_csv_is_ignored(tmp_path):
    labels, probs = _planted()
    table = _table(labels)
    _keyed(table, probs, CLASSES).to_csv(tmp_path / "probs.csv")  # index=True: 'Unnamed: 0'
    data = load_dataset(table, tmp_path / "probs.csv")
    assert data.classes == CLASSES and _agrees(data)
    assert "index_column_ignored" in _codes(data)


def test_extra_numeric_columns_beside_the_named_classes_are_ignored_with_a_warning():
    labels, probs = _planted()
    table = _table(labels)
    keyed = _keyed(table, probs, CLASSES).assign(fold=3, model="m1")
    data = load_dataset(table, keyed, config=make_config(classes=CLASSES))
    assert _agrees(data)
    assert "probs_columns_ignored" in _codes(data)
    # Without a class list every column is a class: 'fold' is no probability, so the rows fail.
    assert "file_format" in _problems(table, keyed)


def test_repeated_header_names_are_a_problem_not_a_renamed_column(tmp_path):
    labels, probs = _planted()
    table = _table(labels)
    path = tmp_path / "probs.csv"
    path.write_text(
        "id,ant,bee,ant\n" + "".join(f"{i},{a},{b},{c}\n" for i, (a, b, c) in zip(table.id, probs))
    )
    assert "duplicate_columns" in _problems(table, path)


def test_repeated_column_names_in_an_in_memory_table_are_a_problem():
    labels, probs = _planted()
    table = _table(labels)
    table.insert(2, "dup", table["label"])
    table.columns = ["id", "label", "label"]
    assert "duplicate_columns" in _problems(table, probs)


def test_header_names_are_stripped_before_matching():
    labels, probs = _planted()
    table = _table(labels)
    keyed = _keyed(table, probs[:, ::-1], [" cat", "bee ", "ant"])
    data = load_dataset(table, keyed, config=make_config(classes=CLASSES))
    assert _agrees(data)


def test_table_index_column_is_not_metadata(tmp_path):
    labels, probs = _planted()
    _table(labels).to_csv(tmp_path / "examples.csv")  # 'Unnamed: 0' holds row numbers
    data = load_dataset(tmp_path / "examples.csv", probs)
    assert "Unnamed: 0" not in data.metadata.columns
    assert "index_column_ignored" in _codes(data)


def test_named_index_is_the_id_column(tmp_path):
    labels, probs = _planted()
    table = _table(labels)
    keyed = _keyed(table, probs, CLASSES).set_index("id")
    keyed.to_parquet(tmp_path / "probs.parquet")
    for source in (keyed, tmp_path / "probs.parquet"):
        data = load_dataset(table.set_index("id"), source)
        assert list(data.ids[:2]) == ["x0", "x1"] and _agrees(data)


# -- labels: numbers written as floats, signed binary labels ---------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_float_written_integer_labels_are_class_indices_in_numeric_order(tmp_path, fmt):
    labels, probs = _planted(n=60, k=12)
    table = pd.DataFrame({"id": [f"x{i}" for i in range(60)], "label": labels.astype(float)})
    table.loc[[5, 17], "label"] = np.nan  # unlabeled rows make pandas write 3.0, 11.0
    path = tmp_path / f"examples.{fmt}"
    table.to_csv(path, index=False) if fmt == "csv" else table.to_parquet(path)
    assert "11.0" in path.read_text() if fmt == "csv" else True
    data = load_dataset(path, probs)
    assert data.classes == tuple(str(i) for i in range(12))
    expected = labels.copy()
    expected[[5, 17]] = -1
    assert data.labels.tolist() == expected.tolist()


def test_integer_text_labels_sort_as_numbers_not_text():
    labels, probs = _planted(n=40, k=11)
    data = load_dataset(_table(labels, names=[str(i) for i in range(11)]), probs)
    assert data.classes.index("10") == 10 and data.classes.index("2") == 2 and _agrees(data)


@pytest.mark.parametrize(
    "names", [("-1", "+1"), ("-1", "1"), (-1, 1), ("-1.0", "1.0"), (-1.0, 1.0)], ids=repr
)
def test_signed_binary_labels_put_minus_one_in_column_zero(names, tmp_path):
    labels, probs = _planted(k=2)
    table = _table(labels, names=names)
    table.to_csv(tmp_path / "examples.csv", index=False)
    for source in (table, tmp_path / "examples.csv"):
        data = load_dataset(source, probs)
        assert data.classes == ("-1", "1") and _agrees(data)
        assert "numeric order" in data.class_source


def test_one_based_integer_labels_follow_numeric_order():
    labels, probs = _planted()
    data = load_dataset(_table(labels, names=("1", "2", "3")), probs)
    assert data.classes == ("1", "2", "3") and _agrees(data)


def test_integer_labels_that_fit_no_column_order_stop():
    labels, probs = _planted(k=2)
    table = _table(labels, names=("1", "5"))
    three = np.hstack([probs, np.zeros((len(probs), 1))])
    assert "class_order_unknown" in _problems(table, three)


def test_integer_labels_with_one_probability_column_are_a_problem_not_a_crash():
    labels, _ = _planted(k=2)
    table = _table(labels, names=("5", "7"))
    assert "k_mismatch" in _problems(table, np.ones((30, 1)))


def test_integer_labels_outside_the_named_classes_are_unknown():
    labels, probs = _planted()
    table = _table(labels, names=("0", "1", "3"))
    problem = _problems(table, probs, classes=CLASSES)["unknown_labels"]
    assert "'3'" in problem.values


def test_names_and_indices_mixed_in_one_label_column_are_unknown():
    labels, probs = _planted()
    table = _table(labels)
    table.loc[0, "label"] = "1"
    assert "unknown_labels" in _problems(table, probs, classes=CLASSES)


def test_integer_labels_index_named_classes_in_any_spelling():
    labels, probs = _planted()
    table = _table(labels, names=("0.0", "+1", "2"))
    data = load_dataset(table, probs, config=make_config(classes=CLASSES))
    assert _agrees(data) and "integer labels index them" in data.class_source


def test_zero_padded_class_names_match_integer_labels_by_value(tmp_path):
    labels, probs = _planted()
    table = pd.DataFrame({"id": [f"x{i}" for i in range(30)], "label": labels + 1})  # 1, 2, 3
    table.to_parquet(tmp_path / "examples.parquet")
    data = load_dataset(
        tmp_path / "examples.parquet", probs, config=make_config(classes=("01", "02", "03"))
    )
    assert _agrees(data)  # by value: label 1 is '01', not index 1


def test_class_names_equal_as_numbers_do_not_take_a_numeric_label():
    labels, probs = _planted()
    table = _table(labels, names=("1.0", "2", "3"))
    assert "unknown_labels" in _problems(table, probs, classes=("1", "01", "3"))


@pytest.mark.parametrize("dtype", ["category", "bool"])
def test_categorical_and_boolean_label_columns(tmp_path, dtype):
    labels, probs = _planted(k=2)
    if dtype == "bool":
        table = pd.DataFrame({"id": [f"x{i}" for i in range(30)], "label": labels.astype(bool)})
        expected = ("False", "True")
    else:
        values = pd.Series(labels.astype(float)).astype("category")
        table = pd.DataFrame({"id": [f"x{i}" for i in range(30)], "label": values})
        expected = ("0", "1")
    table.to_parquet(tmp_path / "examples.parquet")
    data = load_dataset(tmp_path / "examples.parquet", probs)
    assert data.classes == expected and _agrees(data)


def test_labels_with_surrounding_whitespace_are_stripped(tmp_path):
    labels, probs = _planted()
    table = _table(labels)
    table["label"] = "  " + table["label"] + " \t"
    table.to_csv(tmp_path / "examples.csv", index=False)
    data = load_dataset(tmp_path / "examples.csv", probs)
    assert data.classes == CLASSES and _agrees(data)


# -- what counts as unlabeled ------------------------------------------------------------------------
MISSING_LOOKING = ("NA", "None", "null", "nan", "n/a", "NULL", "NaN", "N/A")


@pytest.mark.parametrize("name", MISSING_LOOKING)
def test_class_names_pandas_reads_as_missing_stay_classes(tmp_path, name):
    labels, probs = _planted()
    names = (name, "bee", "cat")
    table = _table(labels, names=names)
    table.loc[3, "label"] = ""
    table.to_csv(tmp_path / "examples.csv", index=False)
    data = load_dataset(tmp_path / "examples.csv", probs, config=make_config(classes=names))
    assert data.classes == names
    assert int((~data.labeled).sum()) == 1  # only the empty cell
    assert data.unlabeled_by_value == (("", 1),)


def test_missing_looking_labels_become_unlabeled_only_when_asked(tmp_path):
    labels, probs = _planted()
    table = _table(labels)
    table.loc[[1, 2], "label"] = "NA"
    table.loc[4, "label"] = ""
    table.to_csv(tmp_path / "examples.csv", index=False)
    problem = _problems(tmp_path / "examples.csv", probs, classes=CLASSES)["unknown_labels"]
    assert "--unlabeled-values NA" in problem.fix
    data = load_dataset(
        tmp_path / "examples.csv", probs, config=make_config(classes=CLASSES, unlabeled_values="NA")
    )
    assert data.labels[[1, 2, 4]].tolist() == [-1, -1, -1]
    assert "labels_read_as_unlabeled" in _codes(data)
    assert describe_dataset(data)["unlabeled_by_value"] == {"": 1, "NA": 2}


def test_minus_one_as_unlabeled_matches_its_float_spelling():
    labels, probs = _planted(k=2)
    table = _table(labels, names=("0", "1"))
    table.loc[[0, 7], "label"] = ["-1", "-1.0"]
    assert "k_mismatch" in _problems(table, probs)  # -1 is a third class ...
    assert "--unlabeled-values -1" in _problems(table, probs)["k_mismatch"].fix
    data = load_dataset(table, probs, config=make_config(unlabeled_values=("-1",)))
    assert data.labels[[0, 7]].tolist() == [-1, -1] and data.classes == ("0", "1")


def test_class_names_that_look_missing_are_flagged_when_the_labels_decide():
    labels, probs = _planted()
    data = load_dataset(_table(labels, names=("NA", "bee", "cat")), probs)
    assert data.classes == ("NA", "bee", "cat")
    assert "label_looks_missing" in _codes(data)


def test_parquet_and_in_memory_labels_follow_the_same_unlabeled_rule(tmp_path):
    labels, probs = _planted()
    table = _table(labels, names=("None", "bee", "cat"))
    table.loc[2, "label"] = None
    table.to_parquet(tmp_path / "examples.parquet")
    for source in (table, tmp_path / "examples.parquet"):
        data = load_dataset(source, probs, config=make_config(classes=("None", "bee", "cat")))
        assert (~data.labeled).sum() == 1 and data.labels[2] == -1


# -- ids: one normalisation whatever the file type -------------------------------------------------
def test_zero_padded_text_ids_match_in_csv_files(tmp_path):
    labels, probs = _planted()
    table = _table(labels, ids=[f"{i:05d}" for i in range(30)])
    table.to_csv(tmp_path / "examples.csv", index=False)
    order = np.random.default_rng(1).permutation(30)
    _keyed(table, probs, CLASSES).iloc[order].to_csv(tmp_path / "probs.csv", index=False)
    data = load_dataset(tmp_path / "examples.csv", tmp_path / "probs.csv")
    assert data.ids[0] == "00000" and _agrees(data)


@pytest.mark.parametrize("kind", ["int", "float", "str", "Int64"])
def test_integer_ids_match_across_file_types(tmp_path, kind):
    labels, probs = _planted()
    table = _table(labels, ids=[str(i) for i in range(30)])
    table.to_csv(tmp_path / "examples.csv", index=False)
    keyed = _keyed(table, probs, CLASSES)
    keyed["id"] = {
        "int": np.arange(30),
        "float": np.arange(30, dtype=float),
        "str": [str(i) for i in range(30)],
        "Int64": pd.array(range(30), dtype="Int64"),
    }[kind]
    keyed.to_parquet(tmp_path / "probs.parquet")
    for table_source in (tmp_path / "examples.csv", table.assign(id=np.arange(30))):
        data = load_dataset(table_source, tmp_path / "probs.parquet")
        assert _agrees(data)


def test_float_ids_written_by_pandas_match_integer_ids(tmp_path):
    labels, probs = _planted()
    table = _table(labels, ids=[f"{i}.0" for i in range(30)])
    keyed = _keyed(table, probs, CLASSES).assign(id=np.arange(30))
    data = load_dataset(table, keyed)
    assert data.ids[3] == "3" and _agrees(data)


def test_zero_padded_ids_do_not_match_numbers_and_the_message_says_why(tmp_path):
    labels, probs = _planted()
    table = _table(labels, ids=[f"{i:05d}" for i in range(30)])
    table.to_csv(tmp_path / "examples.csv", index=False)
    keyed = _keyed(table, probs, CLASSES).assign(id=np.arange(30))
    keyed.to_parquet(tmp_path / "probs.parquet")
    problem = _problems(tmp_path / "examples.csv", tmp_path / "probs.parquet")["ids_not_matching"]
    assert problem.count == 30  # '00000' is not '0'
    assert "leading zeros" in problem.fix


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_missing_and_extra_ids_anywhere_in_the_file_are_named(where):
    labels, probs = _planted()
    table = _table(labels)
    at = {"first": [0, 1], "middle": [14, 15], "last": [28, 29]}[where]
    keyed = _keyed(table, probs, CLASSES)
    keyed.loc[at, "id"] = ["y1", "y2"]
    problem = _problems(table, keyed)["ids_not_matching"]
    assert problem.count == 2 and set(problem.values) == {f"x{i}" for i in at}
    assert "'y1'" in problem.message and "2 ids here are not in the table" in problem.message
    superset = pd.concat([_keyed(table, probs, CLASSES), keyed.loc[at]]).sample(
        frac=1, random_state=0
    )
    data = load_dataset(table, superset)
    assert _agrees(data) and "extra_ids_ignored" in _codes(data)


def test_keyed_embeddings_csv_reads_ids_as_text_and_skips_the_index(tmp_path):
    labels, probs = _planted()
    table = _table(labels, ids=[f"{i:03d}" for i in range(30)])
    emb = np.random.default_rng(0).normal(size=(30, 4))
    keyed = pd.DataFrame(emb, columns=[f"e{j}" for j in range(4)]).assign(id=table["id"])
    keyed.iloc[::-1].to_csv(tmp_path / "emb.csv")  # reversed, with pandas' index column
    data = load_dataset(table, probs, tmp_path / "emb.csv")
    np.testing.assert_allclose(data.embeddings, emb, rtol=1e-6)
    assert "index_column_ignored" in _codes(data)


def test_keyed_embeddings_holding_table_columns_stop():
    labels, probs = _planted()
    table = _table(labels).assign(label=labels)  # integer labels: numbers, like a dimension
    keyed = pd.DataFrame(np.ones((30, 4)), columns=["e0", "e1", "e2", "e3"])
    keyed = keyed.assign(id=table["id"], label=labels)
    assert "embedding_columns_not_vectors" in _problems(table, probs, keyed)


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-32"])
def test_csv_files_with_a_byte_order_mark_are_read(tmp_path, codec):
    labels, probs = _planted()
    table = _table(labels, names=("NA", "bée", "cat"), ids=[f"{i:03d}" for i in range(30)])
    (tmp_path / "examples.csv").write_bytes(table.to_csv(index=False).encode(codec))
    keyed = _keyed(table, probs, ("NA", "bée", "cat")).iloc[::-1]
    (tmp_path / "probs.csv").write_bytes(keyed.to_csv(index=False).encode(codec))
    data = load_dataset(tmp_path / "examples.csv", tmp_path / "probs.csv")
    assert data.classes == ("NA", "bée", "cat") and data.ids[0] == "000" and _agrees(data)


def test_a_table_without_labels_is_one_problem():
    labels, probs = _planted()
    table = _table(labels).assign(label="")
    assert set(_problems(table, probs)) == {"too_few_classes"}


# -- classes.txt and --classes -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("bom", "codec", "eol"),
    [
        (b"", "utf-8", "\n"),
        (codecs.BOM_UTF8, "utf-8", "\r\n"),
        (b"", "utf-8", "\r\n\r\n"),  # blank lines between names
        (codecs.BOM_UTF16_LE, "utf-16-le", "\n"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "\r\n"),
        (codecs.BOM_UTF32_LE, "utf-32-le", "\n"),
    ],
    ids=["utf8", "utf8-bom-crlf", "blank-lines", "utf16-le", "utf16-be-crlf", "utf32"],
)
def test_classes_file_encodings_are_read(tmp_path, bom, codec, eol):
    labels, probs = _planted()
    order = [2, 0, 1]  # the .npy's columns are cat, ant, bee; classes.txt says so
    np.save(tmp_path / "probs.npy", probs[:, order])
    names = [CLASSES[i] for i in order]
    (tmp_path / "classes.txt").write_bytes(bom + (eol.join(names) + eol).encode(codec))
    data = load_dataset(_table(labels), tmp_path / "probs.npy")
    assert data.classes == tuple(names) and _agrees(data)


@pytest.mark.parametrize(
    ("encoded", "code"),
    [
        ("ant\nbée\n".encode("latin-1"), "classes_file_encoding"),
        ("ant\nbee\n".encode("utf-16-le"), "classes_file_encoding"),  # no BOM
        (b"\n \r\n", "classes_file_empty"),
    ],
    ids=["latin1", "utf16-no-bom", "blank"],
)
def test_unreadable_classes_file_is_a_named_problem(tmp_path, encoded, code):
    labels, probs = _planted(k=2)
    np.save(tmp_path / "probs.npy", probs)
    (tmp_path / "classes.txt").write_bytes(encoded)
    problem = _problems(_table(labels), tmp_path / "probs.npy")[code]
    assert "classes.txt" in problem.source


def test_repeated_names_in_a_classes_file(tmp_path):
    labels, probs = _planted()
    np.save(tmp_path / "probs.npy", probs)
    (tmp_path / "classes.txt").write_text("ant\nbee\nant \n")
    assert "duplicate_classes" in _problems(_table(labels), tmp_path / "probs.npy")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("labels/classes.txt", "classes_file_missing"),
        ("classes.txt", "classes_file_missing"),
        ("my_classes.names", "classes_file_missing"),
        ("cat", "classes_not_a_list"),
    ],
)
def test_classes_value_that_is_no_list_and_no_file_is_an_error(value, code):
    names, problems = parse_classes(value)
    assert names is None and [p.code for p in problems] == [code]
    with pytest.raises(InputError) as info:
        make_config(classes=value)
    assert info.value.codes == [code]


def test_classes_value_forms(tmp_path):
    (tmp_path / "c.txt").write_text("ant\nbee\n")
    assert parse_classes("ant, bee ,cat")[0] == CLASSES
    assert parse_classes(str(tmp_path / "c.txt"))[0] == ("ant", "bee")
    assert parse_classes(tmp_path / "c.txt")[0] == ("ant", "bee")
    assert parse_classes(["ant", "bee"])[0] == ("ant", "bee")
    assert parse_classes("a/b,c/d")[0] == ("a/b", "c/d")  # names with slashes, not a path


def test_classes_option_overrides_a_different_classes_file_with_a_warning(tmp_path):
    labels, probs = _planted()
    np.save(tmp_path / "probs.npy", probs)
    (tmp_path / "classes.txt").write_text("cat\nbee\nant\n")
    data = load_dataset(_table(labels), tmp_path / "probs.npy", config=make_config(classes=CLASSES))
    assert data.classes == CLASSES and "classes_file_overridden" in _codes(data)


def test_cli_missing_classes_file_and_unlabeled_values(tmp_path, capsys):
    labels, probs = _planted(n=120)
    flips = np.arange(10, 120, 12)  # label errors, so every analysis finds something
    probs[flips] = probs[flips][:, ::-1]
    table = _table(labels)
    table.loc[[0, 1], "label"] = "null"
    table.to_csv(tmp_path / "examples.csv", index=False)
    np.save(tmp_path / "probs.npy", probs)
    base = [
        "run",
        "--table",
        str(tmp_path / "examples.csv"),
        "--probs",
        str(tmp_path / "probs.npy"),
    ]
    code = main([*base, "--classes", "nope/classes.txt", "--out", str(tmp_path / "a"), "-q"])
    assert code == 2 and "[classes_file_missing]" in capsys.readouterr().err
    code = main([*base, "--classes", "ant,bee,cat", "--out", str(tmp_path / "b"), "-q"])
    assert code == 2 and "--unlabeled-values null" in capsys.readouterr().err
    argv = [*base, "--classes", "ant,bee,cat", "--unlabeled-values", "null", "--out"]
    assert main([*argv, str(tmp_path / "c"), "-q"]) in (0, 1)
    summary = json.loads((tmp_path / "c" / "summary.json").read_text())
    assert "labels_read_as_unlabeled" in {w["code"] for w in summary["warnings"]}
    saved = json.loads((tmp_path / "c" / "audit" / "report.json").read_text())
    assert saved["dataset"]["unlabeled_by_value"] == {"null": 2}


def test_unlabeled_values_from_a_config_file_list(tmp_path, monkeypatch):
    from dataaudit.cli import parse_args

    (tmp_path / "dataaudit.toml").write_text('unlabeled_values = ["NA", "-1"]\n')
    monkeypatch.chdir(tmp_path)
    _, args, _ = parse_args(["run", "--table", "t.csv", "--probs", "p.npy", "--out", "o"])
    assert make_config(unlabeled_values=args.unlabeled_values).unlabeled_values == ("NA", "-1")


def test_config_keeps_unlabeled_values_through_a_saved_report():
    config = AuditConfig(unlabeled_values=("NA", "-1"))
    assert AuditConfig.from_dict(config.to_dict()) == config
