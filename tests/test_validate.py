"""Every bad input yields a coded problem naming the file, column and rows; never a traceback."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataaudit import AuditConfig, ColumnRoles, InputError
from dataaudit import validate as validate_module
from dataaudit.validate import load_dataset


def _table(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [f"x{i}" for i in range(n)],
            "label": ["cat", "dog"] * (n // 2),
            "split": ["train"] * (n - 2) + ["test"] * 2,
            "camera": ["A", "B", "A", "B", "A", "B"][:n],
        }
    )


def _probs(n: int = 6, k: int = 2) -> np.ndarray:
    p = np.full((n, k), 1.0 / k)
    p[:, 0] += 0.2
    p[:, 1] -= 0.2
    return p


def _problems(table, probs, embeddings=None, **config):
    with pytest.raises(InputError) as info:
        load_dataset(table, probs, embeddings, AuditConfig(**config))
    return {p.code: p for p in info.value.problems}


def _write(tmp_path, table):
    path = tmp_path / "examples.csv"
    table.to_csv(path, index=False)
    return path


def test_valid_inputs_make_a_dataset():
    data = load_dataset(_table(), _probs(), np.ones((6, 3)))
    assert data.n == 6 and data.k == 2
    assert data.classes == ("cat", "dog")
    assert data.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert data.metadata.columns.tolist() == ["camera"]
    assert data.probs.dtype == np.float32


def test_missing_file_is_named(tmp_path):
    problems = _problems(tmp_path / "nope.csv", _probs())
    assert "file_missing" in problems
    assert "nope.csv" in problems["file_missing"].source


def test_unsupported_format_is_reported(tmp_path):
    path = tmp_path / "examples.xlsx"
    path.write_text("x")
    assert "file_format" in _problems(path, _probs())


def test_unreadable_file_is_reported(tmp_path):
    path = tmp_path / "probs.npy"
    path.write_bytes(b"not a numpy file")
    problems = _problems(_write(tmp_path, _table()), path)
    assert "file_unreadable" in problems
    assert "probs.npy" in problems["file_unreadable"].source


def test_missing_column_lists_existing_columns():
    problems = _problems(_table().rename(columns={"label": "y"}), _probs())
    problem = problems["column_missing"]
    assert problem.column == "label"
    assert "y" in problem.message and "camera" in problem.message


def test_duplicate_ids_name_rows_and_values():
    table = _table()
    table.loc[4, "id"] = "x1"
    problem = _problems(table, _probs())["duplicate_ids"]
    assert problem.rows == (1, 4)
    assert problem.values == ("x1",)


def test_length_mismatch_between_table_and_probs():
    problem = _problems(_table(), _probs(n=5))["length_mismatch"]
    assert "5" in problem.message and "6" in problem.message


def test_length_mismatch_between_table_and_embeddings():
    problems = _problems(_table(), _probs(), np.ones((7, 3)))
    assert "length_mismatch" in problems
    assert problems["length_mismatch"].source.startswith("<in-memory embeddings")


def test_nan_probabilities_name_rows():
    probs = _probs()
    probs[3, 0] = np.nan
    problem = _problems(_table(), probs)["probs_not_finite"]
    assert problem.rows == (3,)


def test_negative_probabilities_hint_at_softmax():
    probs = _probs()
    probs[2] = [-1.5, 2.5]
    problem = _problems(_table(), probs)["probs_negative"]
    assert problem.rows == (2,)
    assert "softmax" in problem.fix


def test_rows_not_summing_to_one_state_tolerance():
    probs = _probs()
    probs[[1, 5]] = [0.5, 0.2]
    problem = _problems(_table(), probs)["probs_not_normalized"]
    assert problem.rows == (1, 5)
    assert "0.001" in problem.message
    assert problem.values[0] == "0.7"


def test_unknown_labels_are_listed():
    table = _table()
    table.loc[[2, 3], "label"] = ["cat ", "Dgo"]
    problem = _problems(table, _probs(), classes=("cat", "dog"))["unknown_labels"]
    assert problem.rows == (3,)  # "cat " is stripped and accepted
    assert "'Dgo'" in problem.values


def test_k_mismatch_names_the_class_source():
    problem = _problems(_table(), _probs(k=3))["k_mismatch"]
    assert "3 columns" in problem.message and "2 classes" in problem.message


def test_embeddings_with_nan_and_zero_rows():
    emb = np.ones((6, 4), dtype=np.float32)
    emb[1, 2] = np.inf
    emb[4] = 0
    problems = _problems(_table(), _probs(), emb)
    assert problems["embeddings_not_finite"].rows == (1,)
    assert problems["embeddings_zero_rows"].rows == (4,)


def test_fewer_than_two_classes():
    table = _table()
    table["label"] = ["cat", "", "cat", "", "cat", ""]
    problem = _problems(table, _probs(), classes=("cat", "dog"))["too_few_classes"]
    assert problem.column == "label"


def test_empty_table(tmp_path):
    path = tmp_path / "examples.csv"
    path.write_text("id,label,split\n")
    assert "empty_table" in _problems(path, np.zeros((0, 2)))


def test_all_problems_are_reported_at_once():
    table = _table()
    table.loc[4, "id"] = "x1"
    probs = _probs()
    probs[0] = [np.nan, 1]
    emb = np.zeros((6, 2))
    codes = set(_problems(table, probs, emb))
    assert {"duplicate_ids", "probs_not_finite", "embeddings_zero_rows"} <= codes


def test_keyed_probabilities_align_on_id(tmp_path):
    table = _table()
    keyed = pd.DataFrame({"id": table["id"][::-1], "cat": np.linspace(0.1, 0.9, 6), "dog": 0})
    keyed["dog"] = 1 - keyed["cat"]
    data = load_dataset(table, keyed)
    assert data.classes == ("cat", "dog")
    np.testing.assert_allclose(data.probs[:, 0], keyed["cat"].to_numpy()[::-1], rtol=1e-6)


def test_keyed_probabilities_missing_ids_are_named():
    table = _table()
    keyed = pd.DataFrame({"id": table["id"][:5], "cat": 0.5, "dog": 0.5})
    problem = _problems(table, keyed)["ids_not_matching"]
    assert problem.values == ("x5",)


def test_committee_probabilities_are_averaged():
    probs = np.stack([_probs(), _probs()[:, ::-1]])
    data = load_dataset(_table(), probs)
    assert data.n_models == 2
    np.testing.assert_allclose(data.probs, 0.5, atol=1e-6)


def test_integer_labels_index_named_classes(tmp_path):
    table = _table()
    table["label"] = ["0", "1", "1", "0", "", "1"]
    data = load_dataset(table, _probs(), config=AuditConfig(classes=("cat", "dog")))
    assert data.labels.tolist() == [0, 1, 1, 0, -1, 1]


def test_ids_keep_leading_zeros_from_csv(tmp_path):
    table = _table()
    table["id"] = ["001", "002", "003", "004", "005", "006"]
    data = load_dataset(_write(tmp_path, table), _probs())
    assert data.ids[0] == "001"


def test_npy_inputs_are_memory_mapped(tmp_path):
    np.save(tmp_path / "probs.npy", _probs().astype(np.float32))
    np.save(tmp_path / "emb.npy", np.ones((6, 3), dtype=np.float16))
    data = load_dataset(_write(tmp_path, _table()), tmp_path / "probs.npy", tmp_path / "emb.npy")
    assert isinstance(data.embeddings, np.memmap)


def test_classes_file_beside_probs_sets_order(tmp_path):
    np.save(tmp_path / "probs.npy", _probs())
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    data = load_dataset(_write(tmp_path, _table()), tmp_path / "probs.npy")
    assert data.classes == ("dog", "cat")
    assert "classes.txt" in data.class_source
    assert data.labels.tolist() == [1, 0, 1, 0, 1, 0]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=12, max_size=12))
def test_any_probability_values_give_a_dataset_or_coded_problems(values):
    probs = np.array(values, dtype=np.float64).reshape(6, 2)
    try:
        data = load_dataset(_table(), probs)
    except InputError as err:
        assert err.problems and all(p.code.startswith("probs_") for p in err.problems)
    else:
        assert np.isfinite(data.probs).all() and (data.probs >= 0).all()
        np.testing.assert_allclose(data.probs.sum(axis=1), 1, atol=2e-3)


def _text_one_by_one(value):
    """The reference: what _normalise_text must give for one value (None = missing)."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    if re.fullmatch(r"-?(0|[1-9][0-9]*)[.]0", text):  # '3.0' is how the float 3.0 is written
        text = text.split(".")[0]
    return text or None


_cells = {
    "float64": st.floats(min_value=-1e15, max_value=1e15) | st.just(float("nan")),
    "int64": st.integers(min_value=-(2**62), max_value=2**62),
    "str": st.text(alphabet=" \tab0123.-", max_size=6) | st.none(),
    "string": st.text(alphabet=" \tab0123.-", max_size=6) | st.none(),
    "object": st.one_of(
        st.text(alphabet=" ab01", max_size=4),
        st.integers(-5, 5),
        st.floats(-5, 5, allow_nan=False) | st.just(float("nan")),
        st.none(),
    ),
}


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(sorted(_cells)).flatmap(lambda d: st.tuples(st.just(d), st.lists(_cells[d])))
)
def test_ids_and_labels_become_the_same_text_as_one_by_one(case):
    dtype, cells = case
    series = pd.Series(cells, dtype=dtype, index=np.arange(len(cells)) * 7)  # not a RangeIndex
    got = validate_module._normalise_text(series)
    assert got.index.equals(series.index)
    assert [None if pd.isna(v) else v for v in got] == [_text_one_by_one(v) for v in series]


def test_memory_mapped_files_are_checked_chunk_by_chunk_at_the_right_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(validate_module, "CHUNK_ROWS", 4)  # 10 rows: three chunks
    committee = np.stack([_probs(10), _probs(10)])
    committee[1, 7] *= 1.5  # second model, third chunk
    embeddings = np.ones((10, 3), dtype=np.float32)
    embeddings[[5, 9]] = np.nan
    np.save(tmp_path / "probs.npy", committee)
    np.save(tmp_path / "emb.npy", embeddings)
    table = pd.DataFrame({"id": [f"x{i}" for i in range(10)], "label": ["cat", "dog"] * 5})
    problems = _problems(_write(tmp_path, table), tmp_path / "probs.npy", tmp_path / "emb.npy")
    assert problems["probs_not_normalized"].rows == (7,)
    assert problems["probs_not_normalized"].values == ("1.5",)
    assert problems["embeddings_not_finite"].rows == (5, 9)


def test_image_paths_are_made_absolute_beside_the_table(tmp_path):
    table = _table()
    table["path"] = ["a.png", "imgs/../b.png", str(tmp_path / "abs.png"), "", None, "./c.png"]
    config = AuditConfig(columns=ColumnRoles(image="path"))
    data = load_dataset(_write(tmp_path, table), _probs(), config=config)
    base = tmp_path.resolve()
    assert data.image_paths.tolist() == [
        str(base / "a.png"),
        str(base / "b.png"),
        str(tmp_path / "abs.png"),
        "",
        "",
        str(base / "c.png"),
    ]


def test_rows_without_id_are_not_duplicates_of_each_other():
    table = _table()
    table["id"] = ["x0", None, "x0", " ", "x4", "x5"]  # a blank id is no id
    problems = _problems(table, _probs())
    assert problems["missing_ids"].rows == (1, 3)
    assert problems["duplicate_ids"].rows == (0, 2)
    assert problems["duplicate_ids"].count == 2
