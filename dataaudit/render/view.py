"""The view model of the HTML report: what a section shows, already formatted for display.

Section builders (render/sections/*.py) turn the report model into these; the Jinja templates only
lay them out. Every string here is plain text: the templates escape it (autoescape is on), so a
builder never escapes and never builds HTML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Card:
    """One headline number: '3.1% label errors' with what it is computed on."""

    label: str
    value: str
    detail: str = ""  # e.g. "95% CI 2.8–3.4%, on 9,812 labeled items"
    tone: str = "neutral"  # neutral | good | warn | bad


@dataclass(frozen=True)
class Column:
    key: str  # column of the frame
    title: str
    kind: str = "text"  # text | number | percent | score | item | label | id
    help: str = ""  # tooltip: what the column means


@dataclass(frozen=True)
class TableView:
    """A table capped for the page; the CSV named in `export` holds every row."""

    title: str
    frame: pd.DataFrame  # raw values; formatting is done by render/format.py per Column.kind
    columns: tuple[Column, ...]
    total_rows: int
    export: str | None = None  # e.g. "relabel.csv"
    caption: str = ""  # what the rows are and how they are ranked
    empty_message: str = "Nothing found."


@dataclass(frozen=True)
class ChartView:
    """A plotly figure as a plain dict (fig.to_plotly_json()), drawn by the page's inlined plotly."""

    title: str
    figure: dict[str, Any]
    caption: str = ""


@dataclass(frozen=True)
class ItemGroup:
    """Items that belong together (a duplicate group), shown side by side as item cards."""

    title: str  # e.g. "group 3 · exact duplicates · spans train, test"
    ids: tuple[Any, ...]  # member ids, in display order
    captions: tuple[str, ...] = ()  # one line per member, e.g. "train · labeled 'three'"
    tone: str = "neutral"  # neutral | good | warn | bad


@dataclass(frozen=True)
class GroupsView:
    """Groups of items, each shown as a row of thumbnails / snippets; capped like a table."""

    title: str
    groups: tuple[ItemGroup, ...]  # at most report.config.html_max_rows groups
    total_groups: int
    export: str | None = None
    caption: str = ""
    empty_message: str = "Nothing found."
    max_members: int = 8  # members shown per group; the rest are counted


@dataclass(frozen=True)
class SectionView:
    id: str  # anchor, [a-z0-9-]
    title: str
    intro: str = ""  # one or two sentences: what this section finds and on which items
    cards: tuple[Card, ...] = ()
    notes: tuple[str, ...] = ()
    blocks: tuple[TableView | ChartView | GroupsView, ...] = field(default=())
