"""Near-duplicates, leakage and the label-next queue on real data and on synthetic traps.

Real sets (../shared/data/real, read here only, never copied): roman-numerals (49 byte-identical
image pairs, all train -> val leaks) and sms-spam (281 exact and 305 normalised text groups, plus
real near-duplicates the truth does not list). For each: recall of the truth's groups (a group
is found when all its members share one duplicate group), items in groups that no truth group
lists, leakage found, and the possible near-duplicates left for review.

Traps (3,000 items; 6,000 + 120 for the cluster; 40 planted copies: 20 exact, 20 with 1e-3 relative noise): offset features
(abs(normal) + 5), low-dimensional standardized features (2, 4 and 8 dims), anisotropic
features (scales 1 .. 1e-3 over 64 dims), and a tight novel cluster (offset features as in the
first trap, 120 production items a quarter as varied as the rest, around a new centre). For each: planted pairs found, unplanted items
in groups, and for the queue (1,000 labeled, the rest unlabeled, budget 200; 300 for the
cluster) the queue size and the cluster's share against random sampling's.

"before" is the rule that ran until this change: raw cosine >= 0.98 on the shared graph, plus
byte hashes. Run: python benchmarks/similarity.py [--real-only | --traps-only]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import dataaudit
from dataaudit.analyses.duplicates import components, near_pairs, pairs_from_groups
from dataaudit.neighbors import exact_groups, hash_rows, knn

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
if not REAL.exists():
    REAL = Path("/work/shared/data/real")


def old_groups(emb: np.ndarray, k: int = 10) -> np.ndarray:
    """The rule before this change: raw cosine >= 0.98 in the kNN graph, plus equal bytes."""
    sims, idx = knn(emb, k=k)
    a, b = near_pairs(sims, idx, 0.98)
    ea, eb = pairs_from_groups([exact_groups(hash_rows(emb))])
    return components(len(emb), np.r_[a, ea], np.r_[b, eb])


def group_recall(found: dict, truth_groups: list[list]) -> float:
    """Share of truth groups whose members all sit in one found group."""
    hit = 0
    for g in truth_groups:
        ids = [found.get(i) for i in g]
        hit += ids[0] is not None and all(x == ids[0] for x in ids)
    return hit / max(len(truth_groups), 1)


def real_row(name: str, rule: str, found: dict, truth: dict, splits: dict, n_review) -> dict:
    listed = {
        i
        for key in ("exact_dup_groups", "normalized_dup_groups")
        for g in truth.get(key, [])
        for i in g
    }
    row = {"set": name, "rule": rule}
    row["exact groups found"] = f"{group_recall(found, truth['exact_dup_groups']):.3f}"
    if "normalized_dup_groups" in truth:
        row["normalised groups found"] = (
            f"{group_recall(found, truth['normalized_dup_groups']):.3f}"
        )
    else:
        row["normalised groups found"] = "-"
    row["items in groups"] = len(found)
    row["not in truth"] = sum(1 for i in found if i not in listed)
    leaks = 0
    for g in truth["exact_dup_groups"]:
        if len({splits[i] for i in g}) > 1:
            gid = found.get(g[0])
            leaks += gid is not None and all(found.get(i) == gid for i in g)
    n_leak = sum(len({splits[i] for i in g}) > 1 for g in truth["exact_dup_groups"])
    row["truth leaks found"] = f"{leaks}/{n_leak}"
    row["possible pairs"] = n_review
    return row


def real_sets() -> list[dict]:
    rows = []
    for name, text_col in (("roman-numerals", None), ("sms-spam", "text")):
        folder = REAL / name
        table = pd.read_parquet(folder / "table.parquet")
        emb = np.load(folder / "embeddings.npy")
        probs = np.load(folder / "probs.npy")
        classes = (folder / "classes.txt").read_text().split()
        truth = json.loads((folder / "truth.json").read_text())
        splits = dict(zip(table["id"], table["split"]))
        g = old_groups(emb.astype(np.float32))
        ids = table["id"].to_numpy()
        found = {ids[i]: int(g[i]) for i in np.flatnonzero(g >= 0)}
        rows.append(real_row(name, "before (cos >= 0.98)", found, truth, splits, "-"))
        if text_col:  # the embeddings alone, without the text column's hashes
            report = dataaudit.audit(table.drop(columns=text_col), probs, emb, classes=classes)
            result = report.results["duplicates"]
            items = result.table("items")
            found = dict(zip(items["id"], items["group_id"]))
            n_review = len(result.table("review"))
            rows.append(
                real_row(name, "calibrated, embeddings only", found, truth, splits, n_review)
            )
        options = {"text_col": text_col} if text_col else {}
        t = time.perf_counter()
        report = dataaudit.audit(table, probs, emb, classes=classes, **options)
        seconds = time.perf_counter() - t
        result = report.results["duplicates"]
        items = result.table("items")
        found = dict(zip(items["id"], items["group_id"]))
        rule = "calibrated" + (f" + --text-col {text_col}" if text_col else "")
        rows.append(real_row(name, rule, found, truth, splits, len(result.table("review"))))
        print(f"{name}: audit {seconds:.1f} s; {result.notes[0]}", file=sys.stderr)
        review = result.table("review")
        listed = {
            i
            for key in ("exact_dup_groups", "normalized_dup_groups")
            for g in truth.get(key, [])
            for i in g
        }
        if text_col:
            text = dict(zip(table["id"], table["text"]))
            extra = items.loc[~items["id"].isin(listed)].head(6)
            for r in extra.itertuples():
                print(
                    f"  unlisted, in a group ({r.tier}, {r.score:.2f}): {text[r.id][:70]!r} ~ {text[r.match_id][:70]!r}",
                    file=sys.stderr,
                )
            for r in review.head(4).itertuples():
                print(
                    f"  review ({r.score:.2f}): {text[r.id][:70]!r} ~ {text[r.match_id][:70]!r}",
                    file=sys.stderr,
                )
    return rows


# -- traps ----------------------------------------------------------------------------------------
def plant(emb: np.ndarray, rng, n_exact: int = 20, n_near: int = 20) -> list[tuple[int, int]]:
    """Overwrite rows with copies of others: exact, and with 1e-3 relative noise."""
    n = len(emb)
    rows = rng.choice(n, 2 * (n_exact + n_near), replace=False)
    pairs = []
    for j in range(n_exact + n_near):
        src, dst = rows[2 * j], rows[2 * j + 1]
        emb[dst] = emb[src]
        if j >= n_exact:
            spread = np.linalg.norm(emb[src] - emb.mean(0))
            noise = rng.standard_normal(emb.shape[1])
            emb[dst] += 1e-3 * spread * noise / np.linalg.norm(noise)
        pairs.append((int(src), int(dst)))
    return pairs


def trap(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, extra = 3000, 0
    if kind == "offset":
        emb = np.abs(rng.standard_normal((n, 32))) + 5
    elif kind.startswith("low-dim"):
        emb = rng.standard_normal((n, int(kind.split("-")[-1])))
    elif kind == "anisotropic":
        emb = rng.standard_normal((n, 64)) * np.geomspace(1, 1e-3, 64)
    elif kind == "novel cluster":
        # Offset features, as post-ReLU ones are; the cluster: a new camera, items as varied
        # as a quarter of the others, around a centre a typical item's norm away.
        n, extra = 6000, 120
        base = np.abs(rng.standard_normal((n, 32))) + 5
        shift = rng.standard_normal(32)
        cluster = base.mean(0) + 8 * shift / np.linalg.norm(shift)
        cluster = cluster + 0.25 * np.abs(rng.standard_normal((extra, 32)))
        emb = np.vstack([base, cluster])
    else:
        raise ValueError(kind)
    emb = emb.astype(np.float32)
    planted = plant(emb[:n], rng)
    total = len(emb)
    # Labels from a random linear rule on the base items; the novel cluster is production.
    w = rng.standard_normal((emb.shape[1], 3))
    logits = (emb - emb[:n].mean(0)) @ w
    logits /= logits.std()
    y = logits.argmax(1)
    p = np.exp(2 * logits)
    probs = (p / p.sum(1, keepdims=True)).astype(np.float32)
    labeled = np.zeros(total, bool)
    labeled[rng.choice(n, 1000, replace=False)] = True
    split = np.where(labeled, "train", "unlabeled").astype(object)
    split[n:] = "production"
    table = pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(total)],
            "label": pd.array(np.where(labeled, y, -1), dtype="Int64").astype(object),
            "split": split,
        }
    )
    table.loc[~labeled, "label"] = None
    return table, probs, emb, planted, n


def traps() -> list[dict]:
    rows = []
    for kind in ("offset", "low-dim-2", "low-dim-4", "low-dim-8", "anisotropic", "novel cluster"):
        table, probs, emb, planted, n = trap(kind)
        ids = table["id"].to_numpy()
        planted_ids = {ids[i] for pair in planted for i in pair}
        budget = 300 if kind == "novel cluster" else 200
        g = old_groups(emb)
        old_items = {ids[i] for i in np.flatnonzero(g >= 0)}
        report = dataaudit.audit(table, probs, emb, classes=[0, 1, 2], budget=budget)
        items = report.results["duplicates"].table("items")
        group = dict(zip(items["id"], items["group_id"]))
        found = sum(group.get(ids[a], -1) == group.get(ids[b], -2) for a, b in planted)
        queue = report.results["label_next"].table("queue")
        row = {
            "trap": kind,
            "planted pairs found": f"{found}/{len(planted)}",
            "unplanted in groups": f"{len(set(items['id']) - planted_ids)} ({len(set(items['id']) - planted_ids) / len(ids):.2%})",
            "before: unplanted in groups": f"{len(old_items - planted_ids)}",
            "possible pairs": len(report.results["duplicates"].table("review")),
            "queue": f"{len(queue)}/{budget}",
        }
        if kind == "novel cluster":
            cluster = set(ids[n:])
            pool = int(table["label"].isna().sum())
            got = int(queue["id"].isin(cluster).sum())
            row["cluster in queue"] = f"{got} (random {len(cluster) / pool * budget:.1f})"
            spread = queue.loc[queue["id"].isin(cluster), "strategy"].value_counts().to_dict()
            print(f"  novel cluster picks by strategy: {spread}", file=sys.stderr)
        rows.append(row)
        print(f"{kind}: {report.results['duplicates'].notes[0]}", file=sys.stderr)
    return rows


def markdown(rows: list[dict]) -> str:
    cols = list(dict.fromkeys(c for r in rows for c in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    args = set(sys.argv[1:])
    if "--traps-only" not in args:
        print(markdown(real_sets()), flush=True)
        print()
    if "--real-only" not in args:
        print(markdown(traps()))


if __name__ == "__main__":
    main()
