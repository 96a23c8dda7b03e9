"""report.html in a real headless Chromium: renders, sorts, stays offline, runs no injected code.

Needs Debian's chromium at /usr/bin/chromium (or DATAAUDIT_CHROMIUM) and the python playwright
package; never downloads a browser. Skipped with the reason when either is missing.
Set DATAAUDIT_SCREENSHOT_DIR to keep the screenshots.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _hostile import PAYLOADS, make_hostile_report

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("DATAAUDIT_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-gpu",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: apt-get install chromium (or set DATAAUDIT_CHROMIUM)"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="python playwright is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


class Watched:
    """A page that records console errors, uncaught exceptions, dialogs and every request."""

    def __init__(self, browser, path: Path):
        self.url = path.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": 1280, "height": 900})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type in ("error", "warning") else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", self._dialog)
        self.page.goto(self.url, wait_until="load")
        self.page.wait_for_timeout(300)

    def _dialog(self, dialog):
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def foreign_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url and not u.startswith("data:")]


def _screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    keep = os.environ.get("DATAAUDIT_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    return path


def test_demo_report_renders_every_section_sorts_and_stays_offline(browser, demo_report, tmp_path):
    report_path = demo_report.to_html(tmp_path / "report.html")
    watched = Watched(browser, report_path)
    page = watched.page

    assert watched.errors == []
    assert watched.foreign_requests() == []

    toc = page.eval_on_selector_all("nav.toc a", "as => as.map(a => a.getAttribute('href'))")
    sections = page.eval_on_selector_all("main > section", "ss => ss.map(s => '#' + s.id)")
    assert toc == sections and len(sections) >= 4
    for anchor in sections:
        section = page.locator(anchor)
        assert section.is_visible()
        assert section.locator("h2").inner_text().strip()
        assert section.locator(".table-block, .chart-block, .groups-block, .card").count() > 0
    # Every chart was drawn by plotly (under the page's Content-Security-Policy).
    charts = page.eval_on_selector_all(
        "div.chart", "ds => ds.map(d => d.querySelectorAll('svg.main-svg').length)"
    )
    assert charts and all(n > 0 for n in charts)
    # The page as a reviewer first sees it (before any sorting or filtering).
    shot = _screenshot(page, tmp_path, "demo-report.png")
    assert shot.stat().st_size > 10_000

    # Clicking a numeric header sorts the rows by it, descending first, then ascending.
    table = page.locator("#label-errors table.data").first
    headers = table.locator("thead th")
    column = next(
        i
        for i in range(headers.count())
        if "score" in headers.nth(i).inner_text()
        or "number" in (headers.nth(i).get_attribute("class") or "")
    )

    def keys() -> list[float]:
        return table.evaluate(
            "(t, i) => Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[i].dataset.sort))",
            column,
        )

    headers.nth(column).locator("button").click()
    assert keys() == sorted(keys(), reverse=True)
    headers.nth(column).locator("button").click()
    ascending = keys()
    assert ascending == sorted(ascending) and ascending[0] < ascending[-1]
    assert headers.nth(column).get_attribute("aria-sort") == "ascending"

    # Filtering hides the rows that do not match.
    block = page.locator("#label-errors .table-block").first
    first_id = block.locator("tbody tr td.item .id").first.inner_text()
    block.locator("input.filter").fill(first_id)
    visible = block.locator("tbody tr:visible").count()
    assert 1 <= visible < block.locator("tbody tr").count()

    assert watched.errors == []
    page.close()


def test_injected_payloads_never_run(browser, tmp_path):
    report = make_hostile_report(tmp_path / "inputs")
    report_path = report.to_html(tmp_path / "report.html")
    watched = Watched(browser, report_path)
    page = watched.page

    # Exercise the page: hover chart points, sort every column, filter every table.
    for button in page.locator("table.data th button.sort").all()[:40]:
        button.click()
    for box in page.locator("input.filter").all():
        box.fill("script")
        box.fill("")
    for chart in page.locator("div.chart").all():
        chart.hover()
    page.wait_for_timeout(300)

    assert watched.dialogs == []
    assert page.evaluate("() => window.__pwned") is None
    # No element the payloads describe exists: every <img> is one of our data: thumbnails, and
    # no element anywhere (HTML or plotly's SVG) carries an event-handler attribute.
    assert page.evaluate(
        """() => Array.from(document.querySelectorAll('img')).every(
            i => i.classList.contains('thumb') && i.getAttribute('src').startsWith('data:image/jpeg'))"""
    )
    assert (
        page.evaluate(
            """() => Array.from(document.querySelectorAll('*')).filter(
            e => Array.from(e.attributes).some(a => a.name.startsWith('on'))).length"""
        )
        == 0
    )
    assert (
        page.evaluate("() => document.scripts.length")
        == 2 + page.locator("script[type='application/json']").count()
    )
    assert watched.foreign_requests() == []
    assert watched.errors == []

    body = page.inner_text("body")
    for payload in PAYLOADS:
        assert payload in body, payload
    _screenshot(page, tmp_path, "hostile-report.png")
    page.close()
