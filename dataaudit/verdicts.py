"""Reviewers' verdicts on the ranked lists, and the ledger that remembers them across runs.

The ledger is a Parquet file the team keeps beside its data, one row per verdict, append-only:
the latest verdict for an id wins and the history stays.

    id, list (relabel | label_next), verdict (error | ok | unsure | label | pending),
    corrected_label, reviewer, reviewed_at (ISO 8601), run (the run the list came from),
    given_label and score (the item's label and score in that run), source (csv | label-studio)

Verdicts come back from the CSV route (relabel.csv / label_next.csv with the `verdict` column
filled in: `error`, `ok`, `unsure` or a class name, and an optional `corrected_label`) or from a
Label Studio JSON export of tasks written by `dataaudit export label-studio`. A row left without a
verdict was sent out and not answered yet: it is recorded as `pending`, and the next run's queue
skips it until a verdict arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from dataaudit.files import atomic_write

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

LEDGER_COLUMNS = (
    "id",
    "list",
    "verdict",
    "corrected_label",
    "reviewer",
    "reviewed_at",
    "run",
    "given_label",
    "score",
    "source",
)
LISTS = ("relabel", "label_next")
VERDICTS = ("error", "ok", "unsure", "label", "pending")
# Words reviewers write, read as one of VERDICTS (case-insensitive).
_SYNONYMS = {
    "error": "error",
    "wrong": "error",
    "mislabeled": "error",
    "ok": "ok",
    "correct": "ok",
    "right": "ok",
    "keep": "ok",
    "unsure": "unsure",
    "skip": "unsure",
    "?": "unsure",
}
# The spreadsheet escape of render/csv.py: a leading quote before a formula character.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
MAX_NAMED = 5


class VerdictError(ValueError):
    """Verdicts that cannot be imported: each problem names the file, the rows and what to do."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class RunLists:
    """What a saved run sent out: its ids, classes, and the two ranked lists."""

    run: str
    ids: set[str]
    classes: tuple[str, ...]
    lists: dict[str, pd.DataFrame]  # relabel / label_next: id, given_label, score, ...


def run_lists(report: AuditReport, run_dir: str | Path) -> RunLists:
    lists = {}
    relabel = report.relabel_list()
    if relabel is not None:
        lists["relabel"] = relabel.assign(score=relabel["error_score"])
    label_next = report.results.get("label_next")
    if label_next is not None:
        lists["label_next"] = label_next.table("queue").assign(given_label="")
    return RunLists(
        run=str(report.run.get("started_at") or Path(run_dir).name),
        ids=set(report.items["id"].astype(str)),
        classes=tuple(report.dataset["classes"]),
        lists=lists,
    )


def _unescape_id(value: str) -> str:
    """Undo the spreadsheet escape of an id ("'=x" was written for "=x")."""
    if value.startswith("'") and value[1:].startswith(_FORMULA_START):
        return value[1:]
    return value


def _rows_problem(source: str, what: str, rows: list, values: list, fix: str) -> str:
    shown = ", ".join(str(r) for r in rows[:MAX_NAMED]) + (", …" if len(rows) > MAX_NAMED else "")
    examples = ", ".join(repr(v) for v in dict.fromkeys(values[:MAX_NAMED]))
    return f"{source}: {len(rows)} rows {what} (rows {shown}; e.g. {examples}). {fix}"


def normalise(
    frame: pd.DataFrame, lists: RunLists, list_name: str, source: str, origin: str
) -> pd.DataFrame:
    """Raw verdict rows (id, verdict, corrected_label, reviewer, reviewed_at) -> ledger rows.

    `source` names the file in messages; `origin` is the ledger's source column.
    """
    problems = []
    classes = set(lists.classes)
    ids = frame["id"].astype(str).map(_unescape_id)
    unknown = ~ids.isin(lists.ids)
    if unknown.any():
        problems.append(
            _rows_problem(
                source,
                f"have ids that are not in the run {lists.run}",
                list(np.flatnonzero(unknown) + 2),
                list(ids[unknown]),
                "Give the run folder the list came from, and keep its id column as it was.",
            )
        )
    raw = frame["verdict"].fillna("").astype(str).str.strip()
    corrected = frame["corrected_label"].fillna("").astype(str).str.strip()
    sent = lists.lists.get(list_name, pd.DataFrame({"id": [], "given_label": [], "score": []}))
    at_run = sent.assign(id=sent["id"].astype(str)).drop_duplicates("id").set_index("id")
    given = ids.map(at_run["given_label"]).fillna("").astype(str)
    verdict = raw.str.lower().map(_SYNONYMS)
    is_class = verdict.isna() & raw.isin(classes)
    # A class name as the verdict: on the relabel list, the given label (ok) or the right one.
    if list_name == "relabel":
        verdict[is_class & (raw == given)] = "ok"
        verdict[is_class & (raw != given)] = "error"
    else:
        verdict[is_class] = "label"
    corrected = corrected.where(~is_class | (raw == given), raw)
    verdict[raw == ""] = "pending"
    bad = verdict.isna()
    if bad.any():
        problems.append(
            _rows_problem(
                source,
                "have a verdict that is neither error, ok, unsure nor a class",
                list(np.flatnonzero(bad) + 2),
                list(raw[bad]),
                f"Write error, ok, unsure or one of the {len(classes)} classes.",
            )
        )
    bad_class = (corrected != "") & ~corrected.isin(classes)
    if bad_class.any():
        problems.append(
            _rows_problem(
                source,
                "have a corrected_label that is not a class of the run",
                list(np.flatnonzero(bad_class) + 2),
                list(corrected[bad_class]),
                "Use a class name exactly as the run spells it.",
            )
        )
    if list_name == "label_next":
        verdict[(verdict == "ok") & (corrected == "")] = "pending"  # no label given yet
        verdict[(verdict == "error") & (corrected != "")] = "label"
    answered = verdict.isin(["error", "ok", "unsure", "label"])
    decided = pd.DataFrame({"id": ids[answered], "v": verdict[answered], "c": corrected[answered]})
    clash = decided.drop_duplicates().groupby("id").size()
    clash = clash[clash > 1]
    if len(clash):
        problems.append(
            f"{source}: {len(clash)} ids have contradictory verdicts in this import (e.g. "
            + ", ".join(map(repr, clash.index[:MAX_NAMED]))
            + "). Keep one verdict per id."
        )
    if problems:
        raise VerdictError(problems)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    reviewed_at = frame["reviewed_at"].fillna("").astype(str).replace("", now)
    rows = pd.DataFrame(
        {
            "id": ids,
            "list": list_name,
            "verdict": verdict.astype(str),
            "corrected_label": corrected,
            "reviewer": frame["reviewer"].fillna("").astype(str),
            "reviewed_at": reviewed_at,
            "run": lists.run,
            "given_label": given,
            "score": ids.map(at_run["score"]).astype(float),
            "source": origin,
        }
    )
    return rows.drop_duplicates().reset_index(drop=True)


def from_csv(path: str | Path, lists: RunLists, list_name: str | None = None) -> pd.DataFrame:
    """Verdicts from relabel.csv / label_next.csv with the `verdict` column filled in."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise VerdictError([f"{path}: cannot be read as CSV ({exc})."]) from exc
    missing = [c for c in ("id", "verdict") if c not in frame.columns]
    if missing:
        raise VerdictError(
            [
                (
                    f"{path}: no column {', '.join(missing)}; fill in the verdict column of "
                    "relabel.csv or label_next.csv and import that file."
                )
            ]
        )
    if list_name is None:
        list_name = "label_next" if "priority" in frame.columns else "relabel"
    for column in ("corrected_label", "reviewer", "reviewed_at"):
        if column not in frame.columns:
            frame[column] = ""
    return normalise(frame, lists, list_name, str(path), "csv")


def from_label_studio(path: str | Path, lists: RunLists) -> pd.DataFrame:
    """Verdicts from a Label Studio JSON export of tasks made by `dataaudit export label-studio`.

    Each task's `data` carries `dataaudit_id` and `dataaudit_list`; the latest annotation that was
    not cancelled gives the verdict (the `verdict` choice) and the label (the `label` choice).
    """
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VerdictError([f"{path}: cannot be read as Label Studio JSON ({exc})."]) from exc
    if not isinstance(tasks, list):
        raise VerdictError([f"{path}: expected a JSON list of tasks (Label Studio's JSON export)."])
    rows = []
    for n, task in enumerate(tasks):
        data = task.get("data", {}) if isinstance(task, dict) else {}
        if "dataaudit_id" not in data:
            raise VerdictError(
                [
                    (
                        f"{path}: task {n} has no data.dataaudit_id; import the export of a project "
                        "made from `dataaudit export label-studio` tasks."
                    )
                ]
            )
        done = [
            a
            for a in task.get("annotations", []) or []
            if isinstance(a, dict) and not a.get("was_cancelled")
        ]
        done.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
        choices: dict[str, str] = {}
        reviewer, when = "", ""
        if done:
            last = done[-1]
            for result in last.get("result", []) or []:
                picked = (result.get("value") or {}).get("choices") or []
                if picked:
                    choices[str(result.get("from_name"))] = str(picked[0])
            who = last.get("completed_by")
            reviewer = (
                str(who.get("email", who.get("id", "")))
                if isinstance(who, dict)
                else ("" if who is None else str(who))
            )
            when = str(last.get("updated_at") or last.get("created_at") or "")
        rows.append(
            {
                "id": str(data["dataaudit_id"]),
                "list": str(data.get("dataaudit_list", "relabel")),
                "verdict": choices.get("verdict", choices.get("label", "")),
                "corrected_label": choices.get("label", ""),
                "reviewer": reviewer,
                "reviewed_at": when,
            }
        )
    frame = pd.DataFrame(
        rows, columns=["id", "list", "verdict", "corrected_label", "reviewer", "reviewed_at"]
    )
    parts = [
        normalise(group.reset_index(drop=True), lists, name, str(path), "label-studio")
        for name, group in frame.groupby("list", sort=False)
    ]
    return (
        pd.concat(parts, ignore_index=True)
        if parts
        else normalise(frame, lists, "relabel", str(path), "label-studio")
    )


def read_ledger(path: str | Path) -> pd.DataFrame:
    """The ledger's rows (empty when the file does not exist yet)."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype=object) for c in LEDGER_COLUMNS})
    try:
        ledger = pd.read_parquet(path)
    except Exception as exc:  # the library's message says what is wrong with the bytes
        raise VerdictError([f"{path}: cannot be read as a verdict ledger ({exc})."]) from exc
    missing = [c for c in LEDGER_COLUMNS if c not in ledger.columns]
    if missing:
        raise VerdictError(
            [f"{path}: not a dataaudit verdict ledger (no column {', '.join(missing)})."]
        )
    ledger = ledger[list(LEDGER_COLUMNS)].copy()
    for column in LEDGER_COLUMNS:
        if column != "score":
            ledger[column] = ledger[column].fillna("").astype(str)
    return ledger


def append(path: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Append rows to the ledger (written aside and renamed: an interrupted append loses nothing)."""
    ledger = pd.concat([read_ledger(path), rows[list(LEDGER_COLUMNS)]], ignore_index=True)
    ledger["score"] = ledger["score"].astype(float)
    atomic_write(path, lambda handle: ledger.to_parquet(handle, index=False), mode="wb")
    return ledger


def latest(ledger: pd.DataFrame) -> pd.DataFrame:
    """One row per (id, list): the latest verdict (by reviewed_at, then by order in the file)."""
    order = ledger.assign(_row=np.arange(len(ledger)))
    order = order.sort_values(["reviewed_at", "_row"], kind="stable")
    return (
        order.groupby(["id", "list"], sort=False)
        .tail(1)
        .drop(columns="_row")
        .reset_index(drop=True)
    )


def describe(rows: pd.DataFrame) -> str:
    counts = rows["verdict"].value_counts()
    return ", ".join(f"{int(counts[v])} {v}" for v in VERDICTS if v in counts) or "no rows"
