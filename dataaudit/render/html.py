"""report.html: one self-contained file (CSS, JavaScript and plotly.js inlined; no network)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from dataaudit.files import atomic_write_text
from dataaudit.render import format as fmt
from dataaudit.render.sections import SECTIONS
from dataaudit.render.sections.overview import build_overview
from dataaudit.render.view import ChartView, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: <, > and & cannot end the element or open a comment."""
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(value, cls=PlotlyJSONEncoder, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str
    kind: str
    snippet: str = ""  # for item cells: the item's text, truncated
    thumbnail: str = ""  # for item cells: a data: URI


def _environment() -> jinja2.Environment:
    folder = resources.files("dataaudit.templates")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,  # every user string is escaped; nothing is marked safe but our own assets
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def _asset(name: str) -> str:
    return resources.files("dataaudit.templates").joinpath(name).read_text(encoding="utf-8")


class ItemLookup:
    """Text snippet and thumbnail of an item by id, for cells of kind 'item'."""

    def __init__(self, report: AuditReport):
        items = report.items
        self.text = dict(zip(items["id"], items["text"])) if "text" in items else {}
        self.images = dict(zip(items["id"], items["image_path"])) if "image_path" in items else {}
        self.thumbnails = None
        if self.images:
            from dataaudit.render.thumbnails import ThumbnailCache

            self.thumbnails = ThumbnailCache()

    def cell(self, item_id: Any) -> Cell:
        snippet = self.text.get(item_id)
        thumb = ""
        if self.thumbnails is not None and item_id in self.images:
            thumb = self.thumbnails.data_uri(self.images[item_id])
        return Cell(
            text=str(item_id),
            sort=str(item_id),
            kind="item",
            snippet="" if fmt.is_missing(snippet) else fmt.truncate(snippet),
            thumbnail=thumb,
        )


def _table_rows(table: TableView, items: ItemLookup, max_rows: int) -> list[list[Cell]]:
    frame = table.frame.head(max_rows)
    rows = []
    columns = {c.key: frame[c.key].tolist() for c in table.columns if c.key in frame}
    for i in range(len(frame)):
        row = []
        for column in table.columns:
            value = columns[column.key][i] if column.key in columns else None
            if column.kind == "item":
                row.append(items.cell(value))
            else:
                row.append(
                    Cell(
                        fmt.format_value(value, column.kind),
                        fmt.sort_key(value, column.kind),
                        column.kind,
                    )
                )
        rows.append(row)
    return rows


def build_sections(report: AuditReport) -> list[SectionView]:
    sections = [build_overview(report)]
    for build in SECTIONS:
        sections.extend(build(report))
    return sections


def render_html(report: AuditReport) -> str:
    sections = build_sections(report)
    items = ItemLookup(report)
    max_rows = report.config.html_max_rows
    tables: dict[int, list[list[Cell]]] = {}
    charts: dict[int, str] = {}
    for section in sections:
        for block in section.blocks:
            if isinstance(block, TableView):
                tables[id(block)] = _table_rows(block, items, max_rows)
            elif isinstance(block, ChartView):
                charts[id(block)] = script_json(block.figure)
    uses_plotly = bool(charts)
    template = _environment().get_template("report.html.j2")
    return template.render(
        report=report,
        sections=sections,
        tables=tables,
        charts=charts,
        max_rows=max_rows,
        is_table=lambda b: isinstance(b, TableView),
        block_id=id,
        css=jinja2.utils.markupsafe.Markup(_asset("report.css")),
        script=jinja2.utils.markupsafe.Markup(_asset("report.js")),
        plotly_js=jinja2.utils.markupsafe.Markup(_plotly_js()) if uses_plotly else "",
        chart_json=lambda b: jinja2.utils.markupsafe.Markup(charts[id(b)]),
    )


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # A literal "</script" inside the library would close our element early.
    return get_plotlyjs().replace("</script", "<\\/script")


def write_html(report: AuditReport, path: str | Path) -> Path:
    atomic_write_text(path, render_html(report))
    return Path(path)
