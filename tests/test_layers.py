"""The layers the folder layout promises: computation never imports a renderer, renderers read
the report model and never an analysis, and no analysis knows which engine runs it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dataaudit"
# Entry points and conveniences that hand a report to its renderers (report.to_html, ...).
RENDER_CALLERS = {"__init__.py", "cli.py", "outputs.py", "report.py"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def modules(folder: str) -> list[Path]:
    return sorted((PACKAGE / folder).glob("*.py"))


def _imports_any(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in imported_modules(path) if m.startswith(prefixes))


@pytest.mark.parametrize("path", modules("render"), ids=lambda p: p.name)
def test_renderers_read_the_report_model_not_the_analyses(path):
    assert _imports_any(path, ("dataaudit.analyses",)) == []


@pytest.mark.parametrize("path", modules("render/sections"), ids=lambda p: p.name)
def test_report_sections_read_the_report_model_not_the_analyses(path):
    assert _imports_any(path, ("dataaudit.analyses",)) == []


@pytest.mark.parametrize("path", modules("analyses"), ids=lambda p: p.name)
def test_analyses_know_neither_renderers_nor_dask(path):
    found = _imports_any(
        path,
        ("dataaudit.render", "dask", "distributed", "dataaudit.engine.dask_"),
    )
    assert found == []


@pytest.mark.parametrize(
    "path",
    [p for p in [*modules("."), *modules("engine")] if p.name not in RENDER_CALLERS],
    ids=lambda p: p.name,
)
def test_computation_never_imports_a_renderer(path):
    assert _imports_any(path, ("dataaudit.render",)) == []


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from dataaudit.analyses.slices import x\n    import dask\n")
    assert imported_modules(source) >= {"dataaudit.analyses.slices", "dask"}
