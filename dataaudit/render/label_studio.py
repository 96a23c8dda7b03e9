"""Label Studio tasks from a saved run's ranked list, and the labeling config that matches them.

One task per row of relabel.csv or label_next.csv, in Label Studio's JSON import format
(https://labelstud.io/guide/task_format): `data` holds the item (image URL or path, or text),
its id and the audit's context; `predictions` carries the suggested label (relabel) or the
predicted label (label next) as a pre-annotation with its score. The config asks for a `verdict`
(error / ok / unsure; relabel list only) and a `label` (the classes). `dataaudit verdicts import
--from label-studio` reads Label Studio's JSON export of the annotated tasks back.
"""

from __future__ import annotations

import json
import math
import os
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from dataaudit.files import atomic_write_text

if TYPE_CHECKING:
    from dataaudit.report import AuditReport

VERDICT_CHOICES = ("error", "ok", "unsure")


def _table_folder(report: AuditReport) -> str | None:
    for source in report.run.get("inputs", []):
        if source.get("role") == "table" and source.get("path"):
            return os.path.dirname(source["path"])
    return None


def _media(path: str, media_root: str | None, folder: str | None) -> str:
    """The image as Label Studio should fetch it: PREFIX + path below the table's folder."""
    if media_root is None:
        return path
    relative = os.path.relpath(path, folder) if folder else os.path.basename(path)
    return media_root.rstrip("/") + "/" + PurePosixPath(*Path(relative).parts).as_posix()


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def label_studio_tasks(
    report: AuditReport, list_name: str, media_root: str | None = None
) -> tuple[list[dict[str, Any]], str]:
    """(tasks, labeling config XML) for the run's `relabel` or `label_next` list."""
    from dataaudit.render.csv import EXPORTS

    rows = EXPORTS["relabel.csv" if list_name == "relabel" else "label_next.csv"](report)
    if rows is None:
        raise ValueError(f"this run has no {list_name} list (its analysis did not run)")
    items = report.items.assign(_key=report.items["id"].astype(str)).set_index("_key")
    has_image = "image_path" in items.columns
    has_text = "text" in items.columns
    target = "image" if has_image else "text"
    folder = _table_folder(report)
    version = f"dataaudit {report.run.get('dataaudit_version', '')}".strip()
    predicted_column = "suggested_label" if list_name == "relabel" else "predicted_label"
    score_column = "error_score" if list_name == "relabel" else "score"
    tasks = []
    for row in rows.itertuples(index=False):
        item = items.loc[str(row.id)] if str(row.id) in items.index else None
        given = "" if item is None else str(item.get("given_label", "") or "")
        data: dict[str, Any] = {
            "dataaudit_id": str(row.id),
            "dataaudit_list": list_name,
            "dataaudit_run": str(report.run.get("started_at", "")),
            "rank": int(row.rank),
            "given_label": given,
            "reason": str(row.reason),
            "score": _number(getattr(row, score_column, None)),
        }
        if has_image and item is not None and isinstance(item.get("image_path"), str):
            data["image"] = _media(item["image_path"], media_root, folder)
        if has_text and item is not None and isinstance(item.get("text"), str):
            data["text"] = item["text"]
        if "image" not in data and "text" not in data:
            data[target] = f"{row.id}"  # nothing to show but the id
        label = getattr(row, predicted_column, None)
        task: dict[str, Any] = {"data": data}
        if isinstance(label, str) and label:
            task["predictions"] = [
                {
                    "model_version": version,
                    "score": _number(getattr(row, score_column, None)),
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": target,
                            "type": "choices",
                            "value": {"choices": [label]},
                        }
                    ],
                }
            ]
        tasks.append(task)
    return tasks, labeling_config(report.dataset["classes"], target, list_name)


def labeling_config(classes: list[str], target: str, list_name: str) -> str:
    """<View> with the item, its context, a verdict (relabel list) and the classes."""
    view = ET.Element("View")
    if target == "image":
        ET.SubElement(view, "Image", name="image", value="$image")
    else:
        ET.SubElement(view, "Text", name="text", value="$text")
    ET.SubElement(view, "Header", value="Given label: $given_label · $reason")
    if list_name == "relabel":
        ET.SubElement(view, "Header", value="Is the given label wrong?", size="5")
        verdict = ET.SubElement(
            view, "Choices", name="verdict", toName=target, choice="single", showInLine="true"
        )
        for choice in VERDICT_CHOICES:
            ET.SubElement(verdict, "Choice", value=choice)
    ET.SubElement(view, "Header", value="The right label", size="5")
    labels = ET.SubElement(view, "Choices", name="label", toName=target, choice="single")
    for name in classes:
        ET.SubElement(labels, "Choice", value=str(name))
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def write_label_studio(
    report: AuditReport, out: Path, list_name: str, media_root: str | None = None
) -> tuple[Path, Path, list[dict[str, Any]]]:
    tasks, config = label_studio_tasks(report, list_name, media_root)
    config_path = out.with_name(out.stem + ".config.xml")
    atomic_write_text(out, json.dumps(tasks, indent=1, ensure_ascii=False, allow_nan=False))
    atomic_write_text(config_path, config)
    return out, config_path, tasks
