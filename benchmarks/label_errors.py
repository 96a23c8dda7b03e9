"""Label-error ranking on every real set with human-verified label errors, with and without embeddings.

Sets (read from ../shared/data; nothing of them is kept in the repository):
- cifar10, mnist test sets (label-errors/, from cleanlab/label-errors, Northcutt, Athalye & Mueller
  2021): probabilities only. Only items an earlier confident-learning run flagged were reviewed,
  so AUROC and AP are computed over the reviewed items (confirmed error = positive), where that
  selection does not bias them; recall at the flagged count counts confirmed errors among the
  flagged items (it favours confident learning, which chose the reviewed items).
- Roman numerals (real/roman-numerals, DCAI 2021): every image reviewed; 1024-d embeddings.
  "fix" = the 108 "Fix Data Label" errors against the clean images, "bad" = the 263 "Remove Bad
  Data" images (not a numeral at all: closer to outliers) against the clean images, "all" = the
  372 against the clean images. Three models, each 5-fold CV on the embeddings and the given labels:
  `given` (the shipped probs.npy: StandardScaler + LogisticRegression C=1, accuracy 0.80),
  `weak` (StandardScaler + PCA 32 + LogisticRegression C=0.001, 0.67) and `strong` (C=0.01, 0.81),
  the latter two retrained here.
- sms-spam has no label-error truth and is left out.

    python benchmarks/label_errors.py [--data DIR]

Prints AUROC / AP per set for dataaudit's default (through `label_errors.run`, the shipped code
path, with the run's kNN graph where embeddings are given), the previous default, each cleanlab
rank method, the kNN agreement alone and the candidates considered; then the flagged count and
the recall at it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from cleanlab.rank import get_label_quality_scores
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dataaudit.analyses import label_errors
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CLEANLAB = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
DEFAULT = "dataaudit default (confidence_and_neighbors)"
BEFORE = "dataaudit before (flagged_then_margin)"
KNN = "kNN agreement alone"
MAIN = (DEFAULT, BEFORE, *(f"cleanlab {m}" for m in CLEANLAB), KNN)
WEIGHTS: list[str] = []  # the data-chosen pool weights, printed with the candidates
BOOTSTRAP = 1000


def dataset(probs, labels, embeddings=None) -> AuditDataset:
    n = len(labels)
    return AuditDataset(
        ids=np.array([f"item-{i}" for i in range(n)], dtype=object),
        classes=tuple(str(c) for c in range(probs.shape[1])),
        class_source="benchmark",
        labels=labels.astype(np.int64),
        splits=np.full(n, "train", dtype=object),
        metadata=pd.DataFrame(index=pd.RangeIndex(n)),
        probs=probs.astype(np.float32),
        embeddings=embeddings,
    )


def audit(data: AuditDataset, **changes) -> pd.DataFrame:
    config = AuditConfig().replace(**changes)
    return label_errors.run(data, AuditContext(config), config).table("items")


def scores(probs, labels, embeddings) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """error scores (higher = more likely mislabeled) and flags of every method compared."""
    data = dataset(probs, labels, embeddings)
    default = audit(data)
    before = audit(data, label_error_score="flagged_then_margin")
    out = {DEFAULT: default["error_score"].to_numpy(), BEFORE: before["error_score"].to_numpy()}
    flags = {
        DEFAULT: default["is_label_error"].to_numpy(bool),
        BEFORE: before["is_label_error"].to_numpy(bool),
    }
    for method in CLEANLAB:
        out[f"cleanlab {method}"] = 1 - get_label_quality_scores(labels, probs, method=method)
    sc = out["cleanlab self_confidence"]
    # Model-only candidates considered for the model part (not used by dataaudit).
    ranks = {m: rankdata(out[f"cleanlab {m}"]) for m in CLEANLAB[:2]}
    out["rank mean of self_confidence and normalized_margin"] = sum(ranks.values())
    out["self_confidence + adjust_pred_probs"] = 1 - get_label_quality_scores(
        labels, probs, method="self_confidence", adjust_pred_probs=True
    )
    out["per-class percentile of self_confidence"] = _per_class_percentile(sc, labels)
    if embeddings is None:
        return out, flags
    agreement = default["neighbor_agreement"].to_numpy()
    out[KNN] = 1 - agreement
    # Pool candidates: other fixed weights, weights from the data, rank mean (not used).
    for weight in (0.1, 0.25, 0.5):
        pooled = audit(data, label_error_neighbor_weight=weight)["error_score"].to_numpy()
        out[f"pool, weight {weight}"] = pooled
    acc_model = np.mean(probs.argmax(axis=1) == labels)
    acc_knn = np.mean(
        default["neighbor_label"].to_numpy() == default["given_label"].to_numpy()
    )  # the vote's top label, unweighted
    w_acc = acc_knn / (acc_knn + acc_model)
    out["pool, weight by accuracy"] = (1 - w_acc) * sc + w_acc * (1 - agreement)
    w_ml = _likelihood_weight(1 - sc, agreement)
    out["pool, weight maximising p(given)"] = (1 - w_ml) * sc + w_ml * (1 - agreement)
    out["rank mean of self_confidence and kNN agreement"] = rankdata(sc) + rankdata(1 - agreement)
    WEIGHTS.append(f"accuracy weight {w_acc:.2f}, likelihood weight {w_ml:.2f}")
    return out, flags


def _per_class_percentile(score, labels):
    out = np.empty(len(score))
    for c in np.unique(labels):
        rows = labels == c
        out[rows] = rankdata(score[rows]) / rows.sum()
    return out


def _likelihood_weight(p_given, q_given, iterations=200):
    """Mixture weight w maximising mean log((1 - w) p + w q) over items (EM on one weight)."""
    w = 0.5
    for _ in range(iterations):
        mix = (1 - w) * p_given + w * q_given
        w = float(np.mean(w * q_given / np.maximum(mix, 1e-12)))
    return w


def cv_probs(x, labels, make_model, k) -> np.ndarray:
    probs = np.zeros((len(labels), k), dtype=np.float32)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    for train, test in folds.split(x, labels):
        model = make_model().fit(x[train], labels[train])
        probs[np.ix_(test, model.classes_)] = model.predict_proba(x[test])
    return probs


def label_error_sets(root: Path):
    for name in ("cifar10", "mnist"):
        folder = root / "label-errors" / name
        truth = pd.read_csv(folder / "truth.csv")
        reviewed = truth["reviewed"].to_numpy(bool)
        confirmed = truth["confirmed_error"].to_numpy(bool)
        # float32, as AuditDataset holds them.
        probs = np.load(folder / "pred_probs.npy").astype(np.float32)
        labels = np.load(folder / "labels.npy").astype(np.int64)
        yield name, probs, labels, None, {"": (reviewed, confirmed)}


def roman_sets(root: Path):
    folder = root / "real" / "roman-numerals"
    table = pd.read_parquet(folder / "table.parquet")
    classes = (folder / "classes.txt").read_text().split()
    labels = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy(np.int64)
    truth = json.loads((folder / "truth.json").read_text())
    row = {item: i for i, item in enumerate(table["id"])}
    error, fix, bad = (np.zeros(len(table), bool) for _ in range(3))
    for entry in truth["label_errors"]:
        i = row[entry["id"]]
        error[i] = True
        fix[i] = entry["action"] == "Fix Data Label"
        bad[i] = entry["action"] == "Remove Bad Data"
    # The benchmark's review covers all images but 49 exact copies (their twins are covered).
    covered = np.ones(len(table), bool)
    covered[[row[entry["id"]] for entry in truth["not_in_benchmark"]]] = False
    clean = covered & ~error
    evals = {
        ":fix": (clean | fix, fix),
        ":bad": (clean | bad, bad),
        ":all": (covered, error),
    }
    embeddings = np.load(folder / "embeddings.npy")
    x = embeddings.astype(np.float32)
    k = len(classes)
    models = {
        "given": np.load(folder / "probs.npy"),
        "weak": cv_probs(
            x,
            labels,
            lambda: make_pipeline(
                StandardScaler(),
                PCA(32, random_state=0),
                LogisticRegression(C=0.001, max_iter=2000),
            ),
            k,
        ),
        "strong": cv_probs(
            x,
            labels,
            lambda: make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=2000)),
            k,
        ),
    }
    for model, probs in models.items():
        accuracy = np.mean(probs.argmax(axis=1) == labels)
        name = f"roman {model} ({accuracy:.2f})"
        yield f"{name}, no embeddings", probs, labels, None, evals
        yield f"{name}", probs, labels, embeddings, evals


def evaluate(score, n_flagged, flag, mask, positive) -> dict[str, float]:
    """AUROC and AP over `mask`; recall among the flagged (`flag`, else the top n_flagged)."""
    if flag is None:
        flag = np.zeros(len(score), bool)
        flag[np.argsort(-score, kind="stable")[:n_flagged]] = True
    return {
        "AUROC": roc_auc_score(positive[mask], score[mask]),
        "AP": average_precision_score(positive[mask], score[mask]),
        "R@n": (flag & positive).sum() / positive.sum(),
    }


def ap_gain_interval(score, others, mask, positive, seed=0) -> tuple[float, float, float]:
    """AP(score) - max AP(others) and its 95% paired-bootstrap interval over the masked items."""
    rows = np.flatnonzero(mask)
    rng = np.random.default_rng(seed)

    def gain(sample):
        best = max(average_precision_score(positive[sample], o[sample]) for o in others)
        return average_precision_score(positive[sample], score[sample]) - best

    draws = [gain(s) for s in (rng.choice(rows, len(rows)) for _ in range(BOOTSTRAP))]
    return gain(rows), *np.percentile(draws, [2.5, 97.5])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()

    rows = []
    sets = [*label_error_sets(args.data), *roman_sets(args.data)]
    for name, probs, labels, embeddings, evals in sets:
        score, flags = scores(probs, labels, embeddings)
        n_flagged = int(flags[DEFAULT].sum())
        for suffix, (mask, positive) in evals.items():
            gain = ap_gain_interval(
                score[DEFAULT],
                [score[f"cleanlab {m}"] for m in CLEANLAB],
                mask,
                positive,
            )
            for method, values in score.items():
                result = evaluate(values, n_flagged, flags.get(method), mask, positive)
                rows.append(
                    {"set": name + suffix, "method": method, "n": n_flagged, "gain": gain, **result}
                )
    frame = pd.DataFrame(rows)
    set_names = list(dict.fromkeys(frame["set"]))

    print("AUROC / AP / recall at the flagged count n (bold: the default ties or beats every")
    print("cleanlab method in AUROC and AP; ΔAP: default minus the best cleanlab AP, 95% CI)")
    print()
    print("| set | n | " + " | ".join(MAIN) + " | ΔAP [95% CI] |")
    print("|---|---:|" + "---:|" * (len(MAIN) + 1))
    for name in set_names:
        part = frame[frame["set"] == name].set_index("method")
        best = part.loc[[f"cleanlab {m}" for m in CLEANLAB], ["AUROC", "AP"]].max()
        cells = []
        for method in MAIN:
            if method not in part.index:
                cells.append("")
                continue
            row = part.loc[method]
            cell = f"{row['AUROC']:.3f} / {row['AP']:.3f} / {row['R@n']:.2f}"
            if method == DEFAULT and row["AUROC"] >= best["AUROC"] and row["AP"] >= best["AP"]:
                cell = f"**{cell}**"
            cells.append(cell)
        gain, low, high = part.loc[DEFAULT, "gain"]
        cells.append(f"{gain:+.3f} [{low:+.3f}, {high:+.3f}]")
        print(f"| {name} | {part.loc[DEFAULT, 'n']} | " + " | ".join(cells) + " |")

    print()
    print("Candidates considered (AUROC / AP), not used by dataaudit")
    print()
    candidates = [m for m in dict.fromkeys(frame["method"]) if m not in MAIN]
    print("| set | " + " | ".join(candidates) + " |")
    print("|---|" + "---:|" * len(candidates))
    for name in set_names:
        part = frame[frame["set"] == name].set_index("method")
        cells = [
            f"{part.loc[m, 'AUROC']:.3f} / {part.loc[m, 'AP']:.3f}" if m in part.index else ""
            for m in candidates
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    for line in WEIGHTS:
        print(f"<!-- {line} -->")


if __name__ == "__main__":
    main()
