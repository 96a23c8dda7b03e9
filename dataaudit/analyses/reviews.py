"""Reviews: what reviewers already said about the ranked lists (the verdict ledger, --verdicts).

Requires: a verdict ledger (dataaudit/verdicts.py). Reads label_errors' candidates when present.
Engine form (`run_on`, any dataaudit.engine): the ledger is read on the driver; one pass looks up
the current labels of its ids.

Each reviewed item gets a status against this run's labels:
- relabel list: `confirmed` (verdict error, still the old label), `fixed` (its label now equals
  the correction), `kept` (verdict ok, label unchanged), `relabelled_since` (the label changed
  another way), `unsure`, `pending` (sent out, no verdict yet), `gone` (not in this run);
- label_next list: `labeled` (the label given is now in the table), `label_not_applied`,
  `pending`, `unsure`, `gone`.

Table "relabel": the relabel list after the reviews, as relabel.csv holds it: items reviewed
`ok` whose label has not changed are left out, unless the model's evidence became much stronger
since (error_score up by `config.review_return_margin`; they come back with that reason);
confirmed errors still carrying the old label stay at the top, marked `confirmed`.
Table "items": id, list, verdict, corrected_label, reviewer, reviewed_at, status.
Table "precision": per given class (and "all"), reviewed relabel flags, errors, ok, precision with
a Wilson interval.
Summary: reviewed_items, reviewed_precision (+ _ci_low, _ci_high), estimated_label_errors
(+ _ci_low, _ci_high: flagged count x measured precision), n_reviewed_kept, n_confirmed, n_fixed,
n_pending.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dataaudit.analyses.label_errors import relabel_candidates
from dataaudit.config import AuditConfig
from dataaudit.context import AuditContext
from dataaudit.dataset import AuditDataset
from dataaudit.engine import Chunk, Engine, concat, label_names
from dataaudit.result import Analysis, AnalysisResult
from dataaudit.stats import wilson_interval


def item_status(engine: Engine, verdicts: pd.DataFrame) -> pd.DataFrame:
    """The latest verdict per (id, list) with its status against this run's labels (looked up
    in one pass over the rows, for the ledger's ids only)."""
    verdicts = verdicts.copy()
    wanted = frozenset(verdicts["id"].astype(str))
    found = engine.map_reduce(_labels_now, concat, wanted, engine.classes)
    now = found.drop_duplicates("id").set_index("id")["label"]
    label_now = verdicts["id"].astype(str).map(now).to_numpy(dtype=object)
    present = pd.notna(label_now)
    label_now = np.where(present, label_now, None)
    verdict = verdicts["verdict"].to_numpy()
    corrected = verdicts["corrected_label"].to_numpy()
    at_review = verdicts["given_label"].to_numpy()
    relabel = verdicts["list"].to_numpy() == "relabel"
    unchanged = label_now == at_review
    status = np.select(
        [
            ~present,
            verdict == "pending",
            verdict == "unsure",
            relabel & (verdict == "error") & (corrected != "") & (label_now == corrected),
            relabel & (verdict == "error") & unchanged,
            relabel & (verdict == "ok") & unchanged,
            relabel,
            (verdict == "label") & (label_now == corrected),
        ],
        ["gone", "pending", "unsure", "fixed", "confirmed", "kept", "relabelled_since", "labeled"],
        default="label_not_applied",
    )
    verdicts["status"] = status
    return verdicts


def _labels_now(chunk: Chunk, wanted: frozenset, classes: tuple[str, ...]) -> pd.DataFrame:
    ids = pd.Series(chunk.ids).astype(str)
    rows = np.flatnonzero(ids.isin(wanted).to_numpy())
    return pd.DataFrame(
        {"id": ids.to_numpy()[rows], "label": label_names(classes, chunk.labels[rows])}
    )


def run(data: AuditDataset, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    from dataaudit.engine.inprocess import InProcessEngine

    return run_on(InProcessEngine(data), ctx, config)


def run_on(engine: Engine, ctx: AuditContext, config: AuditConfig) -> AnalysisResult:
    """Engine form: the ledger (small: reviewed items only) is on the driver; this run's labels
    of its ids come from one pass over the rows."""
    items = item_status(engine, engine.verdicts)
    relabel_items = items[items["list"] == "relabel"].set_index("id")
    notes = []
    tables = {"items": items}
    summary: dict = {
        "reviewed_items": int(items.loc[~items["verdict"].isin(["pending"]), "id"].nunique()),
        "n_reviewed_kept": int((relabel_items["status"] == "kept").sum()),
        "n_confirmed": int((relabel_items["status"] == "confirmed").sum()),
        "n_fixed": int((relabel_items["status"] == "fixed").sum()),
        "n_pending": int((items["status"] == "pending").sum()),
    }
    tables["precision"] = precision_table(relabel_items, config.confidence_level)
    overall = tables["precision"].set_index("class").loc["all"]
    summary["reviewed_precision"] = overall["precision"]
    summary["reviewed_precision_ci_low"] = overall["precision_low"]
    summary["reviewed_precision_ci_high"] = overall["precision_high"]
    label_errors = ctx.results.get("label_errors")
    if label_errors is not None:
        relabel, returned = reviewed_relabel_list(
            label_errors.tables["items"], relabel_items, config.review_return_margin
        )
        tables["relabel"] = relabel
        flagged = int(label_errors.tables["items"]["is_label_error"].sum())
        for key, p in (
            ("", "precision"),
            ("_ci_low", "precision_low"),
            ("_ci_high", "precision_high"),
        ):
            value = overall[p]
            summary[f"estimated_label_errors{key}"] = None if pd.isna(value) else flagged * value
        notes.append(
            f"{summary['n_reviewed_kept']} items reviewed ok and unchanged are left out of "
            f"relabel.csv ({returned} came back: the model's evidence grew by at least "
            f"{config.review_return_margin:.2f} in error score); {summary['n_confirmed']} "
            "confirmed errors still carry the old label and stay at the top."
        )
    if summary["n_pending"]:
        notes.append(f"{summary['n_pending']} items were sent out and have no verdict yet.")
    return AnalysisResult(
        name="reviews",
        tables=tables,
        summary=summary,
        params={"review_return_margin": config.review_return_margin},
        notes=tuple(notes),
    )


def precision_table(relabel_items: pd.DataFrame, confidence: float) -> pd.DataFrame:
    """How often a reviewed flag was a real error: per class at review time, and overall."""
    decided = relabel_items[relabel_items["verdict"].isin(["error", "ok"])]
    groups = [("all", decided)] + [
        (name, group) for name, group in decided.groupby("given_label", sort=True)
    ]
    rows = []
    for name, group in groups:
        errors = int((group["verdict"] == "error").sum())
        n = len(group)
        low, high = wilson_interval(np.array([errors]), np.array([n]), confidence)
        rows.append(
            {
                "class": name,
                "n_reviewed": n,
                "n_errors": errors,
                "n_ok": n - errors,
                "precision": errors / n if n else None,
                "precision_low": float(low[0]) if n else None,
                "precision_high": float(high[0]) if n else None,
            }
        )
    return pd.DataFrame(rows)


def reviewed_relabel_list(
    label_items: pd.DataFrame, reviewed: pd.DataFrame, margin: float
) -> tuple[pd.DataFrame, int]:
    """relabel.csv after the reviews, and how many kept items came back on stronger evidence."""
    status = label_items["id"].astype(str).map(reviewed["status"])
    at_review = label_items["id"].astype(str).map(reviewed["score"]).astype(float)
    kept = (status == "kept").to_numpy()
    stronger = kept & (label_items["error_score"].to_numpy(float) >= at_review.to_numpy() + margin)
    confirmed = (status == "confirmed").to_numpy()
    flagged = label_items["is_label_error"].to_numpy(bool)
    # Confirmed errors stay listed even when this run's model no longer flags them.
    listed = label_items.assign(is_label_error=(flagged & ~kept) | stronger | confirmed)
    ranked = relabel_candidates(listed)
    ids = ranked["id"].astype(str)
    ranked_status = ids.map(reviewed["status"])
    ranked["review_status"] = np.select(
        [ranked_status == "confirmed", ranked_status == "kept"], ["confirmed", "returned"], ""
    )
    ranked["reviewed_at"] = ids.map(reviewed["reviewed_at"]).fillna("")
    before = ids.map(reviewed["score"]).astype(float)
    reason = np.array(ranked["reason"], dtype=object)
    back = (ranked["review_status"] == "returned").to_numpy()
    reason[back] = [
        f"reviewed ok, but the model's evidence is much stronger now (score {b:.2f} -> {a:.2f}); "
        + r
        for b, a, r in zip(before[back], ranked["error_score"][back], reason[back])
    ]
    sure = (ranked["review_status"] == "confirmed").to_numpy()
    reason[sure] = ["confirmed as an error by a reviewer; " + r for r in reason[sure]]
    ranked["reason"] = reason
    ranked = ranked.iloc[np.argsort(~sure, kind="stable")].reset_index(drop=True)
    ranked["rank"] = np.arange(1, len(ranked) + 1)
    return ranked, int(stronger.sum())


ANALYSIS = Analysis(
    name="reviews",
    title="Reviews",
    run=run,
    requires=("verdicts",),
    after=(),
)
