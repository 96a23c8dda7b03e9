"""AuditContext: progress reporting and lazily cached work that several analyses share."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from dataaudit.config import AuditConfig

if TYPE_CHECKING:
    from dataaudit.result import AnalysisResult

T = TypeVar("T")


class Progress:
    """Step messages and progress bars on stderr. verbosity: 0 quiet, 1 normal, 2 verbose.

    Every step prints its elapsed time when it ends. A loop shows a bar (done/total,
    elapsed<remaining, rate) only once it has run `bar_delay` seconds, so quick steps stay one
    line and long ones show an ETA.
    """

    def __init__(self, verbosity: int = 1, stream=None, bar_delay: float = 1.0):
        self.verbosity = verbosity
        self.stream = stream if stream is not None else sys.stderr
        self.bar_delay = bar_delay

    def log(self, message: str, level: int = 1) -> None:
        if self.verbosity >= level:
            print(message, file=self.stream, flush=True)

    def bar(self, iterable: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
        if self.verbosity < 1:
            yield from iterable
            return
        from tqdm.auto import tqdm

        # mininterval keeps the bar cheap; leave=False so finished bars don't pile up.
        yield from tqdm(
            iterable,
            total=total,
            desc=desc,
            file=self.stream,
            leave=False,
            mininterval=0.5,
            delay=self.bar_delay,
        )

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        self.log(f"· {name} …", level=2)
        yield
        self.log(f"✓ {name} ({time.perf_counter() - start:.1f} s)")


class AuditContext:
    """Passed to every analysis: config, progress, earlier results, and a cache for shared work.

    Analyses never mutate it except through `cached`, which computes a value once per run
    (the kNN graph, for instance) and hands the same object to every later caller.
    """

    def __init__(self, config: AuditConfig, progress: Progress | None = None):
        self.config = config
        self.progress = progress or Progress(verbosity=0)
        self._results: dict[str, AnalysisResult] = {}
        self._cache: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}  # the process's peak after each step

    @property
    def results(self) -> Mapping[str, AnalysisResult]:
        """Results of the analyses that already ran (read-only view)."""
        return dict(self._results)

    def record(self, result: AnalysisResult) -> None:
        self._results[result.name] = result

    def cached(self, key: str, compute: Callable[[], T]) -> T:
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]
