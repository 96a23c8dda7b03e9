"""The run loop every engine shares: the registry's analyses in order, each skipped (saying
why), failed (with its traceback, shown in the report) or run, timed and measured."""

from __future__ import annotations

import dataclasses
import sys
import time
import traceback
from collections.abc import Callable

from dataaudit.context import AuditContext
from dataaudit.problems import AuditWarning, python_warnings_as
from dataaudit.report import jsonable
from dataaudit.result import Analysis, AnalysisResult


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux and macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def run_registry(
    ctx: AuditContext,
    has: Callable[[str], bool],
    run_one: Callable[[Analysis], AnalysisResult],
    selected: tuple[str, ...] | None = None,
    skip_reason: Callable[[Analysis], str | None] | None = None,
) -> tuple[dict[str, AnalysisResult], dict[str, str], dict[str, str], dict[str, str]]:
    """The run loop of every engine: (results, skipped, failed, titles) in registry order.

    `has(input)` says which inputs exist; `run_one(analysis)` runs one analysis.
    """
    # Imported here, not at the top: the analyses pull in torch and scipy (seconds), and bad
    # input should be named before paying for them.
    from dataaudit import analyses as registry

    results: dict[str, AnalysisResult] = {}
    skipped: dict[str, str] = {}
    failed: dict[str, str] = {}
    titles: dict[str, str] = {}
    for analysis in registry.ANALYSES:
        titles[analysis.name] = analysis.title
        missing = [name for name in analysis.requires if not has(name)]
        blocked = [name for name in analysis.after if name in skipped or name in failed]
        if selected is not None and analysis.name not in selected:
            skipped[analysis.name] = "not selected (--analyses)"
            continue
        if missing:
            skipped[analysis.name] = "needs " + ", ".join(_describe_input(m) for m in missing)
            continue
        if blocked:
            skipped[analysis.name] = "needs the results of " + ", ".join(blocked)
            continue
        reason = skip_reason(analysis) if skip_reason is not None else None
        if reason:
            skipped[analysis.name] = reason
            continue
        start = time.perf_counter()
        caught: list[AuditWarning] = []  # numpy overflow, scikit-learn convergence, ...
        try:
            with ctx.progress.step(analysis.title), python_warnings_as(analysis.title, caught):
                result = run_one(analysis)
        except Exception as exc:  # recorded, shown in the report, and the CLI exits non-zero
            failed[analysis.name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
            continue
        ctx.timings[analysis.name] = time.perf_counter() - start
        # The process's peak so far: where it rises is the analysis that raised it.
        ctx.peak_rss_mb[analysis.name] = peak_rss_mb()
        result = dataclasses.replace(
            result,
            summary=jsonable(dict(result.summary)),
            warnings=(*result.warnings, *caught),
        )
        ctx.record(result)
        results[analysis.name] = result
    return results, skipped, failed, titles


_INPUT_DESCRIPTIONS = {
    "probs": "predicted probabilities",
    "labels": "labeled items of at least 2 classes",
    "embeddings": "embeddings (--embeddings)",
    "committee": "probabilities from several models or MC-dropout passes (M x N x K)",
    "unlabeled": "unlabeled items (rows with an empty label)",
    "metadata": "metadata columns in the table",
    "text": "a text column (--text-col)",
    "images": "an image-path column (--image-col)",
    "verdicts": "a verdict ledger (--verdicts) with at least one verdict",
}


def _describe_input(name: str) -> str:
    return _INPUT_DESCRIPTIONS.get(name, name)
