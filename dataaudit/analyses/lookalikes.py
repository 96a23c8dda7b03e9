"""Look-alikes: unlabeled items nearest to known failures, to find "more like this" to label.

Known failures are label-error candidates (`is_label_error` in the label_errors analysis'
"items" table, ranked by error_score) and then misclassified labeled items (predicted class !=
given label, most confident first); at most MAX_FAILURES of them. For each, the
`config.lookalikes_per_item` most similar unlabeled items by cosine similarity of embeddings
(exact search).

Inputs: embeddings, probabilities, labels and unlabeled items; reads label_errors.
Tables: "pairs": id_a (the failure), kind ("label error" | "misclassified"), given_label,
predicted_label, rank (1 = most similar), id_b (the unlabeled look-alike), similarity.
Ranked by failure order, then rank.
Summary: n_lookalike_queries, n_lookalike_items (distinct unlabeled items listed),
lookalike_mean_similarity.

Engine form (`run_on`, any dataaudit.engine; `run` is it on an InProcessEngine): failures from
one pass (misclassified rows as an exact top-k by confidence, ties by table order), their
vectors from a second, and the search as per-chunk exact top-k lists merged per failure. It
used to switch to approximate search above config.knn_approx_threshold unlabeled items; the
chunked exact search costs failures x unlabeled x d multiply-adds and is exact at every size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, Engine, label_names, select_top
from dataaudit.engine.inprocess import InProcessEngine
from dataaudit.neighbors import _exact, normalize
from dataaudit.result import Analysis, AnalysisResult

# Failures searched; beyond this the list is more than a team reviews, and search cost grows.
MAX_FAILURES = 5000


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    """Three engine passes: the failures (flagged ids found, misclassified rows as an exact
    top-k by confidence) and the unlabeled count; the failures' vectors; per chunk the k most
    similar unlabeled rows of every failure, merged as exact per-failure top-k lists."""
    k = getattr(config, "lookalikes_per_item", 5)
    flagged = _flagged_ranks(ctx.results.get("label_errors"))

    def merge(a, b):
        return (
            pd.concat([a[0], b[0]], ignore_index=True),
            select_top(pd.concat([a[1], b[1]], ignore_index=True), MAX_FAILURES, "confidence"),
            a[2] + b[2],
        )

    found, wrong, n_unlabeled = engine.map_reduce(_failure_candidates, merge, flagged)
    found = found.sort_values(["rank", "pos"], kind="stable")
    found["kind"] = "label error"
    wrong = wrong.assign(kind="misclassified")
    failures = pd.concat([found, wrong], ignore_index=True).iloc[:MAX_FAILURES]
    failures = failures.reset_index(drop=True)
    pairs = pd.DataFrame(columns=PAIR_COLUMNS)
    if len(failures) and n_unlabeled:
        with ctx.progress.step("look-alikes"):
            wanted = failures["pos"].to_numpy(np.int64)
            vectors = engine.map_reduce(_vectors_of, _concat_pairs, np.sort(wanted))
            order = np.searchsorted(vectors[0], wanted)
            queries = normalize(vectors[1][order])

            def nearest(a, b):
                return select_top(
                    pd.concat([a, b], ignore_index=True), k, "similarity", group="query"
                )

            hits = engine.map_reduce(_nearest_unlabeled, nearest, queries, k, config.knn_device)
        hits = hits.sort_values(["query", "similarity", "pos"], ascending=[True, False, True])
        hits["rank"] = hits.groupby("query").cumcount() + 1
        q = hits["query"].to_numpy()
        classes = engine.classes
        pairs = pd.DataFrame(
            {
                "id_a": failures["id"].to_numpy(object)[q],
                "kind": failures["kind"].to_numpy(object)[q],
                "given_label": label_names(classes, failures["label"].to_numpy()[q]),
                "predicted_label": label_names(classes, failures["predicted"].to_numpy()[q]),
                "rank": hits["rank"].to_numpy(),
                "id_b": hits["id"].to_numpy(object),
                "similarity": hits["similarity"].to_numpy(np.float32),
            },
            columns=PAIR_COLUMNS,
        )
    return AnalysisResult(
        name="lookalikes",
        tables={"pairs": pairs},
        summary={
            "n_lookalike_queries": int(len(failures)) if n_unlabeled else 0,
            "n_lookalike_items": int(pairs["id_b"].nunique()),
            "lookalike_mean_similarity": float(pairs["similarity"].mean()) if len(pairs) else None,
        },
        params={"per_item": k, "max_failures": MAX_FAILURES},
        notes=(
            (
                f"For up to {MAX_FAILURES:,} label-error candidates and misclassified items, the "
                f"{k} most similar unlabeled items (cosine similarity of embeddings, exact search)."
            ),
        ),
    )


ANALYSIS = Analysis(
    name="lookalikes",
    title="Look-alikes of failures among unlabeled items",
    run=run,
    requires=("embeddings", "probs", "labels", "unlabeled"),
    after=("label_errors",),
)


# -- kernels --------------------------------------------------------------------------------------
PAIR_COLUMNS = ["id_a", "kind", "given_label", "predicted_label", "rank", "id_b", "similarity"]


def _flagged_ranks(label_errors) -> dict[str, int]:
    """id -> rank of the label-error candidates (by error_score), as failure_rows orders them."""
    table = None if label_errors is None else label_errors.tables.get("items")
    if table is None or not {"id", "is_label_error"} <= set(table.columns):
        return {}
    chosen = table.loc[table["is_label_error"].fillna(False).astype(bool)]
    if "error_score" in chosen.columns:
        chosen = chosen.sort_values("error_score", ascending=False, kind="stable")
    return {i: r for r, i in reversed(list(enumerate(chosen["id"])))}


def _failure_candidates(chunk: Chunk, flagged: dict[str, int]):
    """(flagged rows with their rank, the chunk's MAX_FAILURES most confident misclassified
    labeled rows, the number of unlabeled rows)."""
    probs = chunk.probs
    predicted = probs.argmax(axis=1).astype(np.int64)
    rank = np.array([flagged.get(i, -1) for i in chunk.ids], dtype=np.int64)
    is_flagged = rank >= 0
    wrong = chunk.labeled & (predicted != chunk.labels) & ~is_flagged

    def rows(mask, **extra):
        return pd.DataFrame(
            {
                "pos": chunk.pos[mask],
                "id": np.asarray(chunk.ids[mask], dtype=object),
                "label": chunk.labels[mask],
                "predicted": predicted[mask],
                **{name: values[mask] for name, values in extra.items()},
            }
        )

    top = select_top(rows(wrong, confidence=probs.max(axis=1)), MAX_FAILURES, "confidence")
    return rows(is_flagged, rank=rank), top, int((~chunk.labeled).sum())


def _vectors_of(chunk: Chunk, wanted: NDArray[np.int64]):
    at = np.flatnonzero(np.isin(chunk.pos, wanted))
    return chunk.pos[at], np.asarray(chunk.embeddings[at], dtype=np.float32)


def _concat_pairs(a, b):
    pos, vectors = np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])
    order = np.argsort(pos)
    return pos[order], vectors[order]


def _nearest_unlabeled(chunk: Chunk, queries: NDArray[np.float32], k: int, device: str):
    """Per query, the k most similar unlabeled rows of the chunk (exact cosine)."""
    pool = np.flatnonzero(~chunk.labeled)
    sims, found = _exact(
        queries, normalize(chunk.embeddings[pool]), k, self_ids=None, device=device
    )
    n, kk = sims.shape
    q = np.repeat(np.arange(n), kk)
    rows = pool[found.ravel()] if kk else np.zeros(0, np.int64)
    return pd.DataFrame(
        {
            "query": q,
            "pos": chunk.pos[rows],
            "id": np.asarray(chunk.ids[rows], dtype=object),
            "similarity": sims.ravel(),
        }
    )


# -- pure helpers on arrays ---------------------------------------------------------------------
def failure_rows(ids, labels, predicted, probs, label_errors) -> tuple[NDArray[np.int64], NDArray]:
    """Rows of label-error candidates (by error_score), then misclassified items (by confidence)."""
    flagged = np.empty(0, dtype=np.int64)
    table = None if label_errors is None else label_errors.tables.get("items")
    if table is not None and {"id", "is_label_error"} <= set(table.columns):
        chosen = table.loc[table["is_label_error"].fillna(False).astype(bool)]
        if "error_score" in chosen.columns:
            chosen = chosen.sort_values("error_score", ascending=False, kind="stable")
        pos = pd.Index(ids).get_indexer(pd.Index(chosen["id"]))
        flagged = pos[pos >= 0].astype(np.int64)
    wrong = np.flatnonzero((labels >= 0) & (predicted != labels))
    wrong = wrong[~np.isin(wrong, flagged)]
    wrong = wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")]
    rows = np.concatenate([flagged, wrong])[:MAX_FAILURES]
    kind = np.where(np.arange(len(rows)) < len(flagged), "label error", "misclassified")
    return rows, kind.astype(object)


def lookalike_pairs(
    failures: NDArray[np.int64],
    kind: NDArray,
    sims: NDArray[np.float32],
    found: NDArray[np.int64],
    pool: NDArray[np.int64],
    *,
    ids: NDArray,
    given: NDArray,
    predicted: NDArray,
) -> pd.DataFrame:
    """One row per (failure, look-alike) from search results over the unlabeled `pool`."""
    columns = ["id_a", "kind", "given_label", "predicted_label", "rank", "id_b", "similarity"]
    if sims.size == 0:
        return pd.DataFrame(columns=columns)
    n, k = sims.shape
    q = np.repeat(np.arange(n), k)
    slot = np.tile(np.arange(k), n)
    ok = found.ravel() >= 0
    q, slot = q[ok], slot[ok]
    rows = failures[q]
    return pd.DataFrame(
        {
            "id_a": ids[rows],
            "kind": kind[q],
            "given_label": given[rows],
            "predicted_label": predicted[rows],
            "rank": slot + 1,
            "id_b": ids[pool[found[q, slot]]],
            "similarity": sims[q, slot],
        },
        columns=columns,
    )
