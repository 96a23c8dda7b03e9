"""Look-alikes: unlabeled items nearest to known failures, to find "more like this" to label.

Known failures are label-error candidates (`is_label_error` in the label_errors analysis'
"items" table, ranked by error_score) and then misclassified labeled items (predicted class !=
given label, most confident first); at most MAX_FAILURES of them. For each, the
`config.lookalikes_per_item` most similar unlabeled items by cosine similarity of embeddings
(exact search, approximate above `config.knn_approx_threshold` unlabeled items).

Inputs: embeddings, probabilities, labels and unlabeled items; reads label_errors.
Tables: "pairs": id_a (the failure), kind ("label error" | "misclassified"), given_label,
predicted_label, rank (1 = most similar), id_b (the unlabeled look-alike), similarity.
Ranked by failure order, then rank.
Summary: n_lookalike_queries, n_lookalike_items (distinct unlabeled items listed),
lookalike_mean_similarity.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.neighbors import _exact, approx_knn, choose_method, normalize
from dataaudit.result import Analysis, AnalysisResult

# Failures searched; beyond this the list is more than a team reviews, and search cost grows.
MAX_FAILURES = 5000


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    failures, kind = failure_rows(
        data.ids, data.labels, data.predicted, data.probs, ctx.results.get("label_errors")
    )
    pool = np.flatnonzero(~data.labeled)
    k = getattr(config, "lookalikes_per_item", 5)
    sims = np.empty((0, 0), dtype=np.float32)
    found = np.empty((0, 0), dtype=np.int64)
    if len(failures) and len(pool):
        with ctx.progress.step("look-alikes"):
            queries = normalize(data.embeddings[failures])
            index = normalize(data.embeddings[pool])
            if choose_method(len(pool), config.knn_mode, config.knn_approx_threshold) == "approx":
                sims, found = approx_knn(
                    queries, index, k=k, device=config.knn_device, seed=config.seed
                )
            else:
                sims, found = _exact(queries, index, k, self_ids=None, device=config.knn_device)
    pairs = lookalike_pairs(
        failures,
        kind,
        sims,
        found,
        pool,
        ids=data.ids,
        given=data.label_names(data.labels),
        predicted=data.label_names(data.predicted),
    )
    return AnalysisResult(
        name="lookalikes",
        tables={"pairs": pairs},
        summary={
            "n_lookalike_queries": int(len(failures)) if len(pool) else 0,
            "n_lookalike_items": int(pairs["id_b"].nunique()),
            "lookalike_mean_similarity": float(pairs["similarity"].mean()) if len(pairs) else None,
        },
        params={"per_item": k, "max_failures": MAX_FAILURES},
        notes=(
            (
                f"For up to {MAX_FAILURES:,} label-error candidates and misclassified items, the "
                f"{k} most similar unlabeled items (cosine similarity of embeddings)."
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
