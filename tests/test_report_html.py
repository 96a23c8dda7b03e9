"""report.html without a browser: escaping, row caps, no remote resources, thumbnails, charts."""

from __future__ import annotations

import dataclasses
import json
import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from _hostile import N_MISSING_IMAGES, N_UNREADABLE_IMAGES, PAYLOADS, make_hostile_report

from dataaudit.render import charts
from dataaudit.render import html as html_render
from dataaudit.render.thumbnails import ThumbnailCache
from dataaudit.render.view import Column, GroupsView, ItemGroup, SectionView, TableView


class Page(HTMLParser):
    """Every start tag with its attributes, and the text of each <script> element."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str | None] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)
        else:
            self.text.append(data)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    report = make_hostile_report(tmp_path_factory.mktemp("hostile"))
    return report, html_render.render_html(report)


@pytest.fixture(scope="module")
def demo_html(demo_report):
    return html_render.render_html(demo_report)


def test_no_payload_becomes_markup(hostile):
    _, text = hostile
    page = Page(text)
    for tag, attrs in page.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert tag != "svg"
        assert tag != "img", attrs  # thumbnails are CSS backgrounds of our own spans
    # Our scripts only: plotly, our own code, and non-executable JSON data blocks.
    executable = [a for a, _ in page.scripts if a.get("type") != "application/json"]
    assert len(executable) == 2
    assert all(not a for a in executable)


def test_every_payload_is_shown_as_text(hostile):
    _, text = hostile
    visible = "".join(Page(text).text)
    for payload in PAYLOADS:
        assert payload in visible, payload  # in ids, labels, text snippets, metadata
    assert "<script>window.__pwned" not in text.replace("\\u003c", "")


def test_data_reaches_scripts_only_as_escaped_json(hostile):
    _, text = hostile
    blocks = [body for attrs, body in Page(text).scripts if attrs.get("type") == "application/json"]
    assert blocks, "the hostile report has charts"
    decoded = ""
    for body in blocks:
        assert "<" not in body and ">" not in body and "&" not in body
        decoded += json.dumps(json.loads(body), ensure_ascii=False)
    # Class names (payloads) are in the figures, intact once parsed.
    assert "c0<script>window.__pwned=1;alert(1)</script>" in decoded


def test_page_loads_nothing_from_the_network(demo_html):
    page = Page(demo_html)
    for tag, attrs in page.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = (attrs.get(name) or "").strip().lower()
            if value:
                assert value.startswith(("#", "data:")), (tag, name, value[:80])
    policy = next(
        a["content"] for t, a in page.tags if a.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in policy and "connect-src 'none'" in policy
    assert demo_html.count("Plotly.newPlot") == 1  # plotly.js is inlined once, drawn by our script


def test_tables_are_capped_and_say_so(demo_report):
    capped = dataclasses.replace(demo_report, config=demo_report.config.replace(html_max_rows=7))
    text = html_render.render_html(capped)
    errors = int(demo_report.metrics()["n_label_errors"])
    assert errors > 7
    assert f"Showing 7 of {errors:,} rows (this page shows at most 7" in text
    sections, _ = html_render.prepare(capped)
    tables = [b for s in sections for b in s.blocks if b.kind == "table"]
    assert max(len(b.rows) for b in tables) == 7
    assert "relabel.csv" in text


def test_every_analysis_that_ran_has_a_section_in_the_contents(demo_report, demo_html):
    page = Page(demo_html)
    section_ids = [a["id"] for t, a in page.tags if t == "section"]
    toc = [
        a["href"][1:] for t, a in page.tags if t == "a" and (a.get("href") or "").startswith("#")
    ]
    assert section_ids[0] == "overview"
    assert toc == section_ids
    assert len(set(section_ids)) == len(section_ids)
    assert "embedding-map" in section_ids
    assert len(section_ids) >= 1 + len({"label_errors", "per_class"} & set(demo_report.results))


def test_missing_and_unreadable_images_are_placeholders_and_counted(hostile):
    _, text = hostile
    assert text.count('class="thumb placeholder"') >= N_MISSING_IMAGES + N_UNREADABLE_IMAGES
    assert f"Images: {N_MISSING_IMAGES} missing and {N_UNREADABLE_IMAGES} unreadable of the" in text
    assert text.count("data:image/jpeg;base64,") > 0


def test_thumbnails_are_small_and_the_page_budget_holds(tmp_path):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (900, 1200, 3), np.uint8)).save(big)
    cache = ThumbnailCache(budget_bytes=1)
    first = cache.data_uri(str(big))
    assert first.startswith("data:image/jpeg;base64,") and len(first) < 12_000
    copy = tmp_path / "copy.png"
    copy.write_bytes(big.read_bytes())
    assert cache.data_uri(str(copy)) == ""  # budget spent
    assert cache.problem(str(copy)).startswith("left out")
    assert cache.problem(str(tmp_path / "nope.png")) == ""  # never asked for
    fresh = ThumbnailCache()
    assert fresh.data_uri(str(tmp_path / "nope.png")) == ""
    assert fresh.problem(str(tmp_path / "nope.png")) == "missing file"
    assert fresh.missing == {str(tmp_path / "nope.png")}


def test_numeric_cells_sort_on_numbers_not_display_text(demo_html):
    cells = re.findall(r'<td class="percent" data-sort="([^"]*)">([^<]*)</td>', demo_html)
    assert cells
    for key, shown in cells[:50]:
        assert key == "" or float(key) * 100 == pytest.approx(float(shown.rstrip("%")), abs=0.06)


def test_groups_show_members_side_by_side(monkeypatch, hostile):
    report, _ = hostile
    ids = report.items["id"].tolist()

    def build(_report):
        groups = tuple(
            ItemGroup(
                f"group {g}", tuple(ids[g % 2 * 10 : g % 2 * 10 + 10]), ("train",) * 10, "warn"
            )
            for g in range(3)
        )
        return [
            SectionView(
                "dupes", "Duplicates", blocks=(GroupsView("Groups", groups, 40, "dupes.csv"),)
            )
        ]

    monkeypatch.setattr(html_render, "SECTIONS", (build,))
    text = html_render.render_html(report)
    assert "Showing 3 of 40 groups" in text and "dupes.csv" in text
    group_html = text.split('<div class="group warn">')[1:]
    assert len(group_html) == 3
    first = group_html[0]
    assert first.count('class="member"') == 8  # GroupsView.max_members
    assert "+2 more" in first
    assert first.count('class="thumb t') + first.count("thumb placeholder") == 8
    # Group 2 repeats group 0's members: each image is embedded once all the same.
    uris = re.findall(r"data:image/jpeg;base64,[A-Za-z0-9+/=]+", text)
    assert uris and len(uris) == len(set(uris))


def test_unknown_block_types_fail_loudly(monkeypatch, demo_report):
    monkeypatch.setattr(
        html_render, "SECTIONS", (lambda r: [SectionView("x", "X", blocks=("oops",))],)
    )
    with pytest.raises(TypeError, match="unknown block type"):
        html_render.render_html(demo_report)


def test_score_histogram_size_does_not_grow_with_rows():
    rng = np.random.default_rng(0)
    small = charts.score_histogram({"a": rng.random(1_000)}, bins=30)
    large = charts.score_histogram({"a": rng.random(1_000_000)}, bins=30)
    assert len(html_render.script_json(large)) < 1.2 * len(html_render.script_json(small))
    assert sum(large["data"][0]["y"]) == 1_000_000


def test_rate_bars_keep_the_worst_categories_and_draw_the_overall_line():
    frame = pd.DataFrame({"c": [f"k{i}" for i in range(100)], "r": np.linspace(0, 0.99, 100)})
    frame["lo"], frame["hi"] = frame["r"] * 0.9, np.minimum(frame["r"] * 1.1, 1)
    figure = charts.rate_bars(frame, "c", "r", "lo", "hi", overall=0.3, max_bars=10)
    assert figure["data"][0]["x"] == [f"k{i}" for i in range(90, 100)]
    assert figure["layout"]["shapes"][0]["y0"] == pytest.approx(0.3)
    assert "template" not in figure["layout"]


def test_embedding_scatter_caps_points_and_keeps_flagged_first():
    n = 20_000
    rng = np.random.default_rng(0)
    flagged = np.zeros(n, dtype=bool)
    flagged[rng.choice(n, 300, replace=False)] = True
    figure = charts.embedding_scatter(
        rng.random(n),
        rng.random(n),
        np.arange(n),
        np.where(np.arange(n) % 2, "a", "b"),
        flags={"label error": flagged},
        max_points=2000,
    )
    counts = {t["name"]: len(t["text"]) for t in figure["data"]}
    assert counts["label error (300)"] == 300
    assert sum(v for k, v in counts.items() if not k.startswith("label error")) == 2000


def test_heatmap_keeps_the_busiest_classes():
    matrix = np.zeros((60, 60))
    matrix[5, 7] = 9
    figure = charts.heatmap(matrix, [f"k{i}" for i in range(60)], [f"k{i}" for i in range(60)])
    assert len(figure["data"][0]["x"]) == charts.MAX_HEATMAP
    assert "k7" in figure["data"][0]["x"] and "k5" in figure["data"][0]["y"]


def test_overview_states_what_each_number_is_computed_on(demo_report):
    from dataaudit.render.sections.overview import build_overview

    overview = build_overview(demo_report)
    health = next(
        b for b in overview.blocks if isinstance(b, TableView) and b.title == "Health summary"
    )
    assert health.frame["computed_on"].str.len().min() > 0
    label_errors = health.frame.set_index("check").loc["label-error candidates"]
    assert "95% CI" in label_errors["result"]
    assert f"{demo_report.dataset['n_labeled']:,} labeled" in label_errors["computed_on"]
    splits = overview.blocks[0].frame
    assert splits["n_items"].sum() == demo_report.dataset["n_items"]
    assert isinstance(overview.blocks[0].columns[0], Column)


def test_overview_confidence_chart_bins_every_item(demo_report):
    from dataaudit.render.sections.overview import confidence_chart

    chart = confidence_chart(demo_report)
    counts = {t["name"].split(" (")[0]: sum(t["y"]) for t in chart.figure["data"]}
    assert sum(counts.values()) == demo_report.dataset["n_items"]
    assert counts["unlabeled"] == demo_report.dataset["n_unlabeled"]


def test_groups_are_capped_below_tables_and_say_so(monkeypatch, hostile):
    report, _ = hostile
    report = dataclasses.replace(report, config=report.config.replace(html_max_rows=500))
    ids = report.items["id"].tolist()
    groups = tuple(ItemGroup(f"g{i}", (ids[i % 50], ids[i % 50 + 1])) for i in range(260))
    section = SectionView("d", "D", blocks=(GroupsView("Groups", groups, 260, "d.csv"),))
    monkeypatch.setattr(html_render, "SECTIONS", (lambda r: [section],))
    text = html_render.render_html(report)
    capped = html_render.MAX_GROUPS
    assert capped < 260 and capped < report.config.html_max_rows
    assert f"Showing {capped} of 260 groups (this page shows at most {capped};" in text
    assert text.count('<div class="group neutral">') == capped


def test_skipped_analyses_are_listed_with_their_reason(demo_inputs):
    import dataaudit

    report = dataaudit.audit(demo_inputs.table, demo_inputs.probs, classes=demo_inputs.classes)
    assert "embedding_map" in report.skipped
    text = html_render.render_html(report)
    assert 'id="embedding-map"' not in text
    assert "Skipped or failed analyses" in text
    assert (
        'Embedding map</td><td class="text">skipped</td><td class="text">needs embeddings' in text
    )
    assert "No embeddings were given" in text
