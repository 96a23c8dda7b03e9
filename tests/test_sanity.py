"""The safety net: misread inputs stop with a code, honest data (even weak or noisy) never does."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from dataaudit.cli import main
from dataaudit.sanity import check_labels, held_out_permutation, judge, measure


def honest(seed, n, k, strength, mix=None, noise=0.0, sharpen=1.0):
    """Calibrated by construction: each probability row is drawn, then its label from that row;
    then `noise` of the labels flipped at random and the rows sharpened (p ** sharpen)."""
    rng = np.random.default_rng(seed)
    mix = np.full(k, 1.0 / k) if mix is None else np.asarray(mix, dtype=float)
    logits = rng.normal(size=(n, k)) * strength + np.log(mix)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    labels = (p.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1).clip(max=k - 1)
    flip = rng.random(n) < noise
    labels[flip] = (labels[flip] + rng.integers(1, k, flip.sum())) % k
    p = p**sharpen
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32), labels.astype(np.int64)


def codes(probs, labels):
    k = probs.shape[1]
    problems, warnings = judge(
        measure(probs, labels, k), tuple(f"c{j}" for j in range(k)), "probs.npy", "test"
    )
    return [p.code for p in problems], [w.code for w in warnings]


HONEST = {
    "strong": dict(n=3000, k=10, strength=4.0),
    "weak (agreement ~0.3, chance 0.1)": dict(n=3000, k=10, strength=1.0),
    "weak and overconfident": dict(n=3000, k=10, strength=1.0, sharpen=3.0),
    "20% flips": dict(n=3000, k=10, strength=4.0, noise=0.2),
    "30% flips, overconfident": dict(n=3000, k=10, strength=4.0, noise=0.3, sharpen=2.0),
    "K=2 95/5 weak": dict(n=3000, k=2, strength=1.0, mix=(0.95, 0.05)),
    "K=2 70/30 30% flips": dict(n=2000, k=2, strength=3.0, mix=(0.7, 0.3), noise=0.3),
    "one class 90%": dict(n=3000, k=5, strength=1.5, mix=(0.9, 0.025, 0.025, 0.025, 0.025)),
    "K=500, 10 per class": dict(n=5000, k=500, strength=3.0),
    "K=500, 4 per class, weak": dict(n=2000, k=500, strength=1.5),
}


@pytest.mark.parametrize("case", sorted(HONEST))
def test_honest_data_never_stops(case):
    for seed in range(5):
        problems, _ = codes(*honest(seed, **HONEST[case]))
        assert problems == [], (case, seed)


@pytest.mark.parametrize("n,k", [(20, 2), (20, 5), (50, 10)])
def test_few_labeled_items_do_not_stop_by_noise(n, k):
    # Weak and overconfident: the hardest honest case on few items.
    for seed in range(200):
        problems, _ = codes(*honest(seed, n, k, strength=1.0, sharpen=3.0))
        assert problems == [], seed


def test_reversed_binary_columns_stop_with_the_order_that_fits():
    probs, labels = honest(0, 2000, 2, 3.0)
    check = measure(probs[:, ::-1], labels, 2)
    problems, _ = judge(check, ("ham", "spam"), "probs.npy", "sorted label names")
    assert [p.code for p in problems] == ["class_order_permuted"]
    assert check.permutation == (1, 0)
    assert "--classes spam,ham" in problems[0].fix
    assert problems[0].source == "probs.npy"


def test_permuted_columns_are_found_with_their_permutation():
    probs, labels = honest(1, 5000, 10, 4.0)
    order = np.array([3, 7, 0, 9, 1, 8, 2, 6, 4, 5])  # no class stays in place
    check = measure(probs[:, order], labels, 10)
    # column j holds class order[j]: the permutation found maps it back.
    assert check.permutation == tuple(int(j) for j in order)
    assert check.permuted_agreement > 0.6 > 0.2 > check.agreement
    assert codes(probs[:, order], labels)[0] == ["class_order_permuted"]


def test_two_swapped_columns_warn():
    probs, labels = honest(2, 5000, 10, 4.0)
    swapped = probs[:, [0, 1, 2, 7, 4, 5, 6, 3, 8, 9]]
    assert codes(swapped, labels) == ([], ["class_columns_swapped"])


@pytest.mark.parametrize(
    "reorder",
    [
        lambda p, rng: p[np.argsort(p.argmax(axis=1), kind="stable")],  # saved after a sort
        lambda p, rng: p[rng.permutation(len(p))],
    ],
    ids=["rows sorted", "rows shuffled"],
)
@pytest.mark.parametrize("k,mix", [(10, None), (2, (0.95, 0.05))])
def test_rows_out_of_table_order_stop_at_chance(reorder, k, mix):
    probs, labels = honest(3, 5000, k, 3.0, mix=mix)
    moved = reorder(probs, np.random.default_rng(0))
    assert codes(moved, labels)[0] == ["label_agreement_at_chance"]


def test_a_few_reversed_labeled_items_still_stop():
    probs, labels = honest(4, 20, 2, 3.0)
    assert codes(probs[:, ::-1], labels)[0] != []


def test_uniform_probabilities_warn_but_do_not_stop():
    labels = np.repeat([0, 1, 1, 1, 2], 100)
    probs = np.full((len(labels), 3), 1 / 3, dtype=np.float32)
    assert codes(probs, labels) == ([], ["probabilities_uninformative"])


def test_a_constant_model_is_not_a_permutation():
    # Every row says class 0 at 0.6 while most labels are 1: uninformative, not misread columns.
    labels = np.repeat([0, 1, 1, 1], 200)
    probs = np.tile(np.float32([0.6, 0.3, 0.1]), (len(labels), 1))
    assert codes(probs, labels)[0] == []


def test_held_out_permutation_keeps_only_cycles_that_win_on_the_other_half():
    # On the fitting half columns 0 and 1 look swapped; on the test half they do not.
    fit = np.array([[10, 30, 0], [30, 10, 0], [0, 0, 50]])
    test_same = fit.copy()
    test_identity = np.array([[30, 10, 0], [10, 30, 0], [0, 0, 50]])
    assign = __import__("scipy.optimize", fromlist=["x"]).linear_sum_assignment
    assert held_out_permutation(fit, test_same, assign).tolist() == [1, 0, 2]
    assert held_out_permutation(fit, test_identity, assign).tolist() == [0, 1, 2]


def test_unlabeled_rows_are_ignored():
    probs, labels = honest(5, 3000, 5, 3.0)
    labels[::2] = -1
    probs[::2] = probs[::2, ::-1]  # nonsense on unlabeled rows does not count
    assert codes(probs, labels)[0] == []
    assert measure(probs, labels, 5).n_labeled == 1500


# -- end to end: the CLI stops with exit 2, the fix works, the override continues ------------------
NAMES = tuple(f"class_{j}" for j in range(12))  # sorted as text: class_0, class_1, class_10, ...


def _files(tmp_path, probs, labels):
    names = np.array(NAMES[: probs.shape[1]], dtype=object)
    table = pd.DataFrame({"id": [f"r{i}" for i in range(len(labels))], "label": names[labels]})
    table.to_csv(tmp_path / "table.csv", index=False)
    np.save(tmp_path / "probs.npy", probs)
    return ["run", "--table", str(tmp_path / "table.csv"), "--probs", str(tmp_path / "probs.npy")]


def test_classes_sorted_as_text_stop_and_the_suggested_order_runs(tmp_path, capsys):
    probs, labels = honest(6, 1200, 12, 4.0)
    argv = _files(tmp_path, probs, labels)
    assert main([*argv, "--out", str(tmp_path / "a"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "[class_order_permuted]" in err and "probs.npy" in err
    suggested = err.rsplit("--classes ", 1)[1].split(". ")[0]
    assert suggested == ",".join(NAMES)  # the columns' real order
    assert main([*argv, "--classes", suggested, "--out", str(tmp_path / "b"), "-q"]) == 0


def test_override_continues_with_the_code_as_a_warning(tmp_path):
    probs, labels = honest(7, 1000, 3, 3.0)
    argv = _files(tmp_path, probs[np.random.default_rng(0).permutation(1000)], labels)
    assert main([*argv, "--out", str(tmp_path / "a"), "-q"]) == 2
    out = tmp_path / "b"
    assert main([*argv, "--allow-label-mismatch", "--out", str(out), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert "label_agreement_at_chance" in [w["code"] for w in summary["warnings"]]


def test_swapped_columns_reach_summary_json_as_a_warning(tmp_path):
    probs, labels = honest(8, 2000, 5, 4.0)
    argv = _files(tmp_path, probs[:, [1, 0, 2, 3, 4]], labels)
    out = tmp_path / "out"
    assert main([*argv, "--out", str(out), "-q"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [w["code"] for w in summary["warnings"]] == ["class_columns_swapped"]


def test_check_labels_records_what_it_measured(demo_inputs):
    from dataaudit.config import AuditConfig
    from dataaudit.validate import load_dataset

    data = load_dataset(
        demo_inputs.table, demo_inputs.probs, config=AuditConfig(classes=demo_inputs.classes)
    )
    check, warnings = check_labels(data, AuditConfig())
    assert warnings == []
    assert check.kappa > 0.5 and check.permutation == tuple(range(data.k))
