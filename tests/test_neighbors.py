from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dataaudit.neighbors import (
    approx_knn,
    build_graph,
    choose_method,
    exact_groups,
    hash_files,
    hash_rows,
    hash_strings,
    knn,
    normalize,
    recall_at_k,
)


def brute_force(q, x, k, self_join):
    s = normalize(q) @ normalize(x).T
    if self_join:
        np.fill_diagonal(s, -np.inf)
    order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


def clustered(n, d, seed=0, n_clusters=50):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, d)).astype(np.float32)
    return centers[rng.integers(0, n_clusters, n)] + 0.3 * rng.standard_normal((n, d)).astype(
        np.float32
    )


@pytest.mark.parametrize("n,d,k", [(300, 8, 5), (2100, 24, 10), (40, 3, 39)])
def test_exact_self_join_equals_brute_force(n, d, k):
    x = np.random.default_rng(n).standard_normal((n, d)).astype(np.float32)
    sims, idx = knn(x, k=k, chunk_rows=64)
    ref_s, ref_i = brute_force(x, x, k, self_join=True)
    np.testing.assert_array_equal(idx, ref_i)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    assert (idx != np.arange(n)[:, None]).all()


def test_exact_search_against_a_different_index_equals_brute_force():
    rng = np.random.default_rng(1)
    q, x = rng.standard_normal((123, 16)), rng.standard_normal((20_000, 16)).astype(np.float16)
    sims, idx = knn(q, x, k=7)
    ref_s, ref_i = brute_force(q, x.astype(np.float32), 7, self_join=False)
    np.testing.assert_array_equal(idx, ref_i)
    assert sims.dtype == np.float32 and idx.dtype == np.int64
    assert np.all(np.diff(sims, axis=1) <= 0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 60),
    d=st.integers(1, 6),
    k=st.integers(1, 70),
    seed=st.integers(0, 10_000),
)
def test_exact_knn_similarities_match_brute_force_for_any_shape(n, d, k, seed):
    x = np.random.default_rng(seed).integers(-3, 4, size=(n, d)).astype(np.float32)
    sims, idx = knn(x, k=k)
    ref_s, _ = brute_force(x, x, min(k, n - 1), self_join=True)
    assert sims.shape == (n, min(k, n - 1))
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)  # ties: compare values, not ids
    assert (idx != np.arange(n)[:, None]).all()
    assert np.all((sims <= 1 + 1e-5) & (sims >= -1 - 1e-5))


def test_normalize_keeps_zero_rows_zero_and_scales_others_to_unit_norm():
    x = np.array([[0, 0, 0], [1, 2, 2], [-3, 0, 4]], dtype=np.float16)
    out = normalize(x, chunk_rows=2)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), [0, 1, 1], atol=1e-6)


def test_approximate_search_recall_is_high_on_clustered_data():
    x = clustered(20_000, 32)
    sims, idx = approx_knn(x, k=10, n_lists=100, n_probe=12)
    assert (idx != np.arange(len(x))[:, None]).all()
    recall = recall_at_k(x, None, sims, sample=300)
    assert recall >= 0.9
    exact_s, _ = knn(x[:300], x, k=11)
    # Approximate similarities are real similarities: never above the exact ones.
    assert np.all(sims[:300, 0] <= exact_s[:, 1] + 1e-5)


def test_approximate_search_against_another_index_finds_planted_copies():
    x = clustered(8000, 16, seed=3)
    q = x[:200] + 1e-4
    sims, idx = approx_knn(q, x, k=3, n_lists=40, n_probe=4)
    assert (idx[:, 0] == np.arange(200)).mean() >= 0.99


def test_recall_at_k_detects_a_bad_search():
    x = clustered(3000, 8)
    sims, _ = knn(x, k=10)
    assert recall_at_k(x, None, sims, sample=200) == 1.0
    assert recall_at_k(x, None, sims - 0.5, sample=200) < 0.2


@pytest.mark.parametrize("index", ["self", "other"])
def test_recall_at_k_reads_the_index_in_blocks_without_changing_the_answer(monkeypatch, index):
    # The index is normalised and searched a block at a time (no whole copy): blocks smaller
    # than k, a sample row's own block and the rows beyond it must give the one-block answer.
    import dataaudit.neighbors as nb

    x = clustered(1500, 8, seed=3)
    other = None if index == "self" else clustered(700, 8, seed=4)
    approx, _ = approx_knn(x, other, k=10, n_lists=30, n_probe=1)
    one_block = recall_at_k(x, other, approx, sample=300)
    exact, _ = knn(x, other, k=10)
    for block in (7, 64, 999):
        monkeypatch.setattr(nb, "_RECALL_BLOCK_ROWS", block)
        assert recall_at_k(x, other, approx, sample=300) == one_block
        assert recall_at_k(x, other, exact, sample=300) == 1.0
    assert one_block < 1.0  # one probe of 30 lists misses neighbours: the test can fail


def test_auto_mode_switches_to_approximate_above_the_threshold():
    assert choose_method(10, "auto", 100) == "exact"
    assert choose_method(1000, "auto", 100) == "approx"
    assert choose_method(10, "approx", 100) == "approx"
    with pytest.raises(ValueError, match="exact, approx or auto"):
        choose_method(10, "fast", 100)
    graph = build_graph(clustered(6000, 16), 5, mode="auto", threshold=1000, recall_sample=200)
    assert graph.method == "approx-ivf" and graph.recall_at_k is not None
    assert graph.recall_at_k >= 0.9


def test_exact_duplicate_hashes_group_equal_rows_only():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 7)).astype(np.float16)  # 14 bytes a row: not a multiple of 8
    x[500] = x[3]
    x[900] = x[3]
    x[10] = x[20]
    x[11, 0] = x[12, 0]  # near, not equal
    groups = exact_groups(hash_rows(x, chunk_rows=64))
    assert groups[3] == groups[500] == groups[900] == 0
    assert groups[10] == groups[20] == 1
    assert (groups >= 0).sum() == 5


def test_text_and_file_hashes_find_equal_content(tmp_path):
    texts = np.array(["a cat", "a dog", "a cat", None, None], dtype=object)
    groups = exact_groups(hash_strings(texts), valid=~np.equal(texts, None))
    assert groups.tolist() == [0, -1, 0, -1, -1]
    (tmp_path / "a.png").write_bytes(b"same")
    (tmp_path / "b.png").write_bytes(b"same")
    (tmp_path / "c.png").write_bytes(b"other")
    paths = np.array([str(tmp_path / n) for n in ("a.png", "b.png", "c.png", "missing.png")])
    hashes = hash_files(paths)
    assert hashes[3] == 0
    assert exact_groups(hashes, valid=hashes != 0).tolist() == [0, 0, -1, -1]


@pytest.mark.parametrize("k", [1, 10, 33])
def test_exact_search_over_many_tiles_equals_brute_force(monkeypatch, k):
    import dataaudit.neighbors as nb

    monkeypatch.setattr(nb, "_TILE_COLUMNS", 200)  # 1,000 rows -> 5 tiles, last one padded
    x = clustered(1000, 12, seed=k)
    x[7] = x[3]  # an exact copy: its twin must still be found, itself never
    sims, idx = knn(x, k=k, chunk_rows=96)
    ref_s, _ = brute_force(x, x, k, self_join=True)
    np.testing.assert_allclose(sims, ref_s, atol=1e-5)
    assert (idx != np.arange(1000)[:, None]).all()
    assert idx[7, 0] == 3 and idx[3, 0] == 7
    q = clustered(50, 12, seed=99)
    sims_q, _ = knn(q, x, k=k)
    np.testing.assert_allclose(sims_q, brute_force(q, x, k, self_join=False)[0], atol=1e-5)


def test_per_query_probing_takes_over_when_list_unions_are_large(monkeypatch):
    import dataaudit.neighbors as nb

    x = clustered(6000, 16, seed=2)
    union_s, _ = approx_knn(x, k=10, n_lists=60, n_probe=2)
    calls = []
    real = nb._search_per_probe
    monkeypatch.setattr(nb, "_MAX_UNION", 1)  # every union is "too large"
    monkeypatch.setattr(nb, "_search_per_probe", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    sims, idx = approx_knn(x, k=10, n_lists=60, n_probe=2)
    assert calls  # the per-probe plan ran
    assert (idx != np.arange(len(x))[:, None]).all()
    assert np.all(np.diff(sims, axis=1) <= 0)
    exact_s, _ = knn(x, k=10)
    assert (sims <= exact_s + 1e-5).all()  # never better than the truth
    assert recall_at_k(x, None, sims) >= 0.9
    assert recall_at_k(x, None, union_s) >= 0.9


def test_lists_hold_256_rows_up_to_a_million_then_grow_as_four_root_n():
    from dataaudit.neighbors import ivf_lists, list_rows

    assert ivf_lists(100) == 1 and ivf_lists(51_200) == 200
    assert ivf_lists(1_000_000) == 3906  # n / 256 rows: below 4 x sqrt(n) = 4,000
    assert ivf_lists(10_000_000) == 12_649  # 4 x sqrt(n): n / 256 would be 39,062
    assert ivf_lists(100_000_000) == 40_000
    # The union test counts the lists' real size once they outgrow 256 rows.
    assert list_rows(1_000_000, 3906) == 256
    assert list_rows(10_000_000, 12_649) == pytest.approx(10_000_000 / 12_649)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64, ">f4"])
@pytest.mark.parametrize("d", [2, 9, 128])
def test_unit_rows_read_on_demand_are_the_normalised_copys_bits(tmp_path, dtype, d):
    # The graph's search reads rows through UnitRows instead of a normalised copy: every read
    # (slices, positions, torch gathers) must give normalize's bits, the input left untouched.
    from dataaudit.neighbors import UnitRows

    rng = np.random.default_rng(d)
    x = (rng.standard_normal((3000, d)) * 3 + 5).astype(dtype)
    x[5] = 0
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")  # read-only, as a user's .npy arrives
    for center in (None, mm[:100].astype(np.float32).mean(axis=0)):
        expected = normalize(mm, center=center)
        rows = UnitRows(mm, center)
        np.testing.assert_array_equal(rows[:], expected)
        np.testing.assert_array_equal(rows[100:2500], expected[100:2500])
        pick = rng.permutation(3000)[:700]
        np.testing.assert_array_equal(rows[np.sort(pick)], expected[np.sort(pick)])
        out = torch.empty((700, d), dtype=torch.float32)
        got = rows.gather(torch.from_numpy(pick), out=out)
        np.testing.assert_array_equal(got.numpy(), expected[pick])
        np.testing.assert_array_equal(rows.gather(torch.from_numpy(pick)).numpy(), expected[pick])
    np.testing.assert_array_equal(np.load(path), x)


@pytest.mark.parametrize("plan", ["unions", "per probe"])
def test_the_search_over_unit_rows_equals_the_search_over_the_normalised_copy(monkeypatch, plan):
    import dataaudit.neighbors as nb
    from dataaudit.neighbors import UnitRows

    called = []
    search = nb._search_per_probe if plan == "per probe" else nb._search_unions
    name = search.__name__
    monkeypatch.setattr(nb, name, lambda *a, **kw: called.append(1) or search(*a, **kw))
    if plan == "per probe":
        monkeypatch.setattr(nb, "_MAX_UNION", 0)
    # approx_knn normalises an array itself; UnitRows of the same array read the same bits.
    x = clustered(5000, 16, seed=6) * 3 + 2.0
    for n_probe in (2, 40):
        expected = approx_knn(x, k=10, n_lists=60, n_probe=n_probe)
        got = approx_knn(UnitRows(x), k=10, n_lists=60, n_probe=n_probe)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    assert len(called) == 4
    few_lists = approx_knn(UnitRows(x), k=10, n_lists=2, n_probe=2)  # exact search
    np.testing.assert_array_equal(few_lists[1], knn(x, k=10)[1])
