"""report.html: one self-contained file (CSS, JavaScript and plotly.js inlined; no network).

Section builders give view models (render/view.py); this module turns them into display-ready
cells (formatted text, sort keys, thumbnails, snippets) and the Jinja template lays them out.
Safety: autoescape is on and nothing built from user data is marked safe; figures reach the page's
script only as JSON with <, > and & escaped, inside a non-executable application/json element.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import pandas as pd
from markupsafe import Markup

from dataaudit.files import atomic_write_text
from dataaudit.render import format as fmt
from dataaudit.render.sections import SECTIONS
from dataaudit.render.sections.overview import build_overview
from dataaudit.render.view import ChartView, GroupsView, SectionView, TableView

if TYPE_CHECKING:
    from dataaudit.report import AuditReport


def script_json(value: Any) -> str:
    """JSON safe inside a <script> element: <, > and & cannot end the element or open a comment."""
    from plotly.utils import PlotlyJSONEncoder

    text = json.dumps(value, cls=PlotlyJSONEncoder, allow_nan=False)
    # U+2028/2029 are line terminators in older JavaScript parsers.
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


@dataclass(frozen=True)
class Cell:
    text: str
    sort: str
    kind: str
    snippet: str = ""  # for item cells: the item's text, truncated
    thumbnail: str = ""  # for item cells: the CSS class drawing its thumbnail (see thumbnail_css)
    no_image: str = ""  # for item cells with an image path but no thumbnail: why


@dataclass(frozen=True)
class Member:
    cell: Cell
    caption: str


@dataclass(frozen=True)
class Block:
    """A view block with what the template needs to draw it."""

    kind: str  # table | chart | groups
    view: TableView | ChartView | GroupsView
    dom_id: str
    rows: tuple[tuple[Cell, ...], ...] = ()  # table
    groups: tuple[tuple[tuple[Member, ...], int], ...] = ()  # groups: (members shown, hidden count)
    figure_json: str = ""  # chart


@dataclass(frozen=True)
class Section:
    view: SectionView
    id: str
    blocks: tuple[Block, ...]


def _environment() -> jinja2.Environment:
    folder = resources.files("dataaudit.templates")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        autoescape=True,  # every user string is escaped; nothing is marked safe but our own assets
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _asset(name: str) -> str:
    return resources.files("dataaudit.templates").joinpath(name).read_text(encoding="utf-8")


class ItemLookup:
    """Text snippet and thumbnail of an item by id, for cells of kind 'item' and item groups.

    Only the ids the page shows are looked up, so a 1M-item report costs one vectorised `isin`.
    """

    def __init__(self, items: pd.DataFrame, ids: set[Any]):
        content = [c for c in ("text", "image_path") if c in items.columns]
        self.text: dict[Any, Any] = {}
        self.images: dict[Any, Any] = {}
        self.thumbnails = None
        if content and ids:
            shown = items.loc[items["id"].isin(list(ids)), ["id", *content]]
            if "text" in shown:
                self.text = dict(zip(shown["id"].tolist(), shown["text"].tolist()))
            if "image_path" in shown:
                self.images = {
                    k: v
                    for k, v in zip(shown["id"].tolist(), shown["image_path"].tolist())
                    if not fmt.is_missing(v) and str(v) != ""
                }
        if "image_path" in items.columns:
            from dataaudit.render.thumbnails import ThumbnailCache

            self.thumbnails = ThumbnailCache()
        # Each image is embedded once, as a CSS rule, however many tables show its item.
        self.classes: dict[str, str] = {}  # data: URI -> class name

    def cell(self, item_id: Any) -> Cell:
        snippet = self.text.get(item_id)
        thumb, no_image = "", ""
        path = self.images.get(item_id)
        if self.thumbnails is not None:
            if path is None:
                no_image = "no image path"
            else:
                uri = self.thumbnails.data_uri(path)
                no_image = self.thumbnails.problem(path)
                if uri:
                    thumb = self.classes.setdefault(uri, f"t{len(self.classes)}")
        return Cell(
            text=fmt.format_value(item_id, "id"),
            sort=fmt.sort_key(item_id, "id"),
            kind="item",
            snippet="" if fmt.is_missing(snippet) else fmt.truncate(snippet),
            thumbnail=thumb,
            no_image=no_image,
        )

    def thumbnail_css(self) -> str:
        """One rule per distinct thumbnail; the URIs are base64 we made, safe in CSS url()."""
        return "\n".join(
            f".{name}{{background-image:url({uri})}}" for uri, name in self.classes.items()
        )

    def notice(self) -> str:
        """One sentence on images that could not be shown, or ""."""
        cache = self.thumbnails
        if cache is None:
            return ""
        parts = []
        if cache.missing:
            parts.append(f"{len(cache.missing):,} missing")
        if cache.unreadable:
            parts.append(f"{len(cache.unreadable):,} unreadable")
        sentence = ""
        if parts:
            sentence = (
                f"Images: {' and '.join(parts)} of the {len(cache._uris):,} image files this page "
                "shows; they appear as a grey placeholder."
            )
        if cache.over_budget:
            sentence += (
                f" {len(cache.over_budget):,} thumbnails were left out to keep the page under "
                f"{cache.budget_bytes / 1e6:.0f} MB of images."
            )
        return sentence.strip()


# Groups cost ~8 item cards each; fewer fit the page than table rows.
MAX_GROUPS = 200


def _group_cap(max_rows: int) -> int:
    return min(max_rows, MAX_GROUPS)


def _item_ids(sections: list[SectionView], max_rows: int) -> set[Any]:
    ids: set[Any] = set()
    for section in sections:
        for block in section.blocks:
            if isinstance(block, TableView):
                frame = block.frame.head(max_rows)
                for column in block.columns:
                    if column.kind == "item" and column.key in frame:
                        ids.update(frame[column.key].tolist())
            elif isinstance(block, GroupsView):
                for group in block.groups[: _group_cap(max_rows)]:
                    ids.update(group.ids[: block.max_members])
    return ids


def _table_rows(table: TableView, items: ItemLookup, max_rows: int) -> tuple[tuple[Cell, ...], ...]:
    frame = table.frame.head(max_rows)
    columns = {c.key: frame[c.key].tolist() for c in table.columns if c.key in frame}
    rows = []
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
        rows.append(tuple(row))
    return tuple(rows)


def _group_members(view: GroupsView, items: ItemLookup, max_rows: int):
    groups = []
    for group in view.groups[: _group_cap(max_rows)]:
        shown = group.ids[: view.max_members]
        captions = tuple(group.captions) + ("",) * len(shown)
        members = tuple(Member(items.cell(i), captions[n]) for n, i in enumerate(shown))
        groups.append((members, len(group.ids) - len(shown)))
    return tuple(groups)


def _anchor(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-") or "section"
    anchor, n = base, 2
    while anchor in taken:
        anchor, n = f"{base}-{n}", n + 1
    taken.add(anchor)
    return anchor


def build_sections(report: AuditReport) -> list[SectionView]:
    sections = [build_overview(report)]
    for build in SECTIONS:
        sections.extend(build(report))
    return sections


def prepare(report: AuditReport) -> tuple[list[Section], ItemLookup]:
    """The report's view models -> display-ready sections; thumbnails are read here."""
    return prepare_views(build_sections(report), report.items, report.config.html_max_rows)


def prepare_views(
    views: list[SectionView], items_frame: pd.DataFrame, max_rows: int
) -> tuple[list[Section], ItemLookup]:
    """View models -> display-ready sections (any page: the report, the history)."""
    items = ItemLookup(items_frame, _item_ids(views, max_rows))
    taken: set[str] = set()
    sections, counter = [], 0
    for view in views:
        anchor = _anchor(view.id, taken)
        blocks = []
        for block in view.blocks:
            counter += 1
            dom_id = f"{anchor}-b{counter}"
            if isinstance(block, TableView):
                blocks.append(
                    Block("table", block, dom_id, rows=_table_rows(block, items, max_rows))
                )
            elif isinstance(block, GroupsView):
                groups = _group_members(block, items, max_rows)
                blocks.append(Block("groups", block, dom_id, groups=groups))
            elif isinstance(block, ChartView):
                blocks.append(Block("chart", block, dom_id, figure_json=script_json(block.figure)))
            else:
                raise TypeError(f"section {view.id!r}: unknown block type {type(block).__name__}")
        sections.append(Section(view, anchor, tuple(blocks)))
    notice = items.notice()
    if notice and sections:
        first = sections[0]
        view = dataclasses.replace(first.view, notes=(*first.view.notes, notice))
        sections[0] = dataclasses.replace(first, view=view)
    return sections, items


def render_html(report: AuditReport) -> str:
    sections, items = prepare(report)
    d, run = report.dataset, report.run
    return render_page(
        sections,
        items,
        title=f"dataaudit report — {d['n_items']:,} items",
        heading="dataaudit report",
        meta=f"{d['n_items']:,} items · {len(d['classes'])} classes · generated "
        f"{run.get('started_at', '')} · dataaudit {run.get('dataaudit_version', '')}",
        max_rows=report.config.html_max_rows,
    )


def render_page(
    sections: list[Section],
    items: ItemLookup,
    *,
    title: str,
    heading: str,
    meta: str,
    max_rows: int,
) -> str:
    """One self-contained page of prepared sections."""
    uses_plotly = any(b.kind == "chart" for s in sections for b in s.blocks)
    template = _environment().get_template("report.html.j2")
    return template.render(
        title=title,
        heading=heading,
        meta=meta,
        sections=sections,
        max_rows=max_rows,
        max_groups=_group_cap(max_rows),
        number=lambda n: f"{int(n):,}",
        css=Markup(_asset("report.css")),
        thumbnail_css=Markup(items.thumbnail_css()),
        script=Markup(_script_asset("report.js")),
        plotly_js=Markup(_plotly_js()) if uses_plotly else "",
        # Our own JSON, already escaped for a <script> element by script_json.
        as_script_json=Markup,
    )


def _script_asset(name: str) -> str:
    return _asset(name).replace("</script", "<\\/script")


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    # A literal "</script" inside the library would close our element early.
    return get_plotlyjs().replace("</script", "<\\/script")


def write_html(report: AuditReport, path: str | Path) -> Path:
    atomic_write_text(path, render_html(report))
    return Path(path)
