"""Problems found in the inputs, the one error that carries all of them, and milder doubts.

A Problem stops the run (exit 2). An AuditWarning does not: it is data, carried by the dataset,
the analyses' results and the report, listed in summary.json, shown at the top of the report's
overview and printed on stderr. Tests assert on codes, never on the prose.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the inputs. Tests assert on `code`, users read `str(problem)`."""

    code: str
    message: str  # what is wrong, e.g. "3 rows do not sum to 1"
    source: str = ""  # file name (or "<in-memory ...>")
    column: str | None = None
    rows: tuple[int, ...] = field(default=())  # up to 5 example rows (0-based positions)
    values: tuple[str, ...] = field(default=())  # up to 5 example values found
    count: int | None = None  # how many rows are affected in all
    fix: str = ""  # what to do

    def __str__(self) -> str:
        where = self.source + (f", column {self.column!r}" if self.column else "")
        details = []
        if self.rows:
            more = "" if self.count is None or self.count <= len(self.rows) else ", …"
            details.append("rows " + ", ".join(str(r) for r in self.rows) + more)
        if self.values:
            details.append("e.g. " + ", ".join(self.values))
        detail = f" ({'; '.join(details)})" if details else ""
        fix = f" {self.fix}" if self.fix else ""
        return f"{where}: {self.message}{detail}.{fix} [{self.code}]"


class InputError(Exception):
    """Every problem found in the inputs, raised once after all checks ran."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        super().__init__(self.render())

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]

    def render(self) -> str:
        n = len(self.problems)
        lines = [f"dataaudit: {n} problem{'s' if n != 1 else ''} in the inputs"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class AuditWarning:
    """A doubt about the inputs or a result that does not stop the run."""

    code: str  # stable, e.g. "labels_read_as_unlabeled"
    message: str  # one or two sentences: what was found and what to do
    file: str = ""  # input file (or "<in-memory ...>") the warning is about, if any
    column: str | None = None

    def __str__(self) -> str:
        where = self.file + (f", column {self.column!r}" if self.column else "")
        return f"{where + ': ' if where else ''}{self.message} [{self.code}]"

    def to_dict(self) -> dict[str, str | None]:
        return {
            "code": self.code,
            "message": self.message,
            "file": self.file,
            "column": self.column,
        }

    @classmethod
    def from_dict(cls, values: dict) -> AuditWarning:
        return cls(
            values["code"], values["message"], values.get("file") or "", values.get("column")
        )


# -- Python warnings become coded AuditWarnings ---------------------------------------------------
# (category name, words in the message) -> code; the first match wins. Category names, not
# classes, so that mapping a warning never imports scikit-learn or PIL.
_PYTHON_WARNING_CODES = (
    ("RuntimeWarning", "overflow", "numeric_overflow"),
    ("RuntimeWarning", "invalid value", "numeric_invalid_value"),
    ("RuntimeWarning", "divide by zero", "numeric_divide_by_zero"),
    ("ComplexWarning", "", "complex_values_discarded"),
    ("ConvergenceWarning", "", "did_not_converge"),
    ("DecompressionBombWarning", "", "image_too_large"),
    ("FutureWarning", "", "library_warning"),
    ("DeprecationWarning", "", "library_warning"),
    ("PerformanceWarning", "", "library_warning"),
)
_MAX_MESSAGE = 300


def audit_warning_from_python(caught: warnings.WarningMessage, where: str) -> AuditWarning:
    """A Python warning (numpy overflow, scikit-learn convergence, ...) as a coded AuditWarning."""
    category = caught.category.__name__
    text = str(caught.message).strip().splitlines()[0] if str(caught.message).strip() else category
    code = "python_warning"
    for name, words, mapped in _PYTHON_WARNING_CODES:
        if category == name and words in text:
            code = mapped
            break
    module = Path(caught.filename).parent.name or Path(caught.filename).stem
    message = f"{where}: {category} in {module}: {text}"
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return AuditWarning(code, message + ". The results of this step may be affected.")


@contextmanager
def python_warnings_as(where: str, into: list[AuditWarning]) -> Iterator[None]:
    """Catch the Python warnings raised inside the block as coded AuditWarnings appended to
    `into` (each distinct one once), instead of letting them reach the terminal."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    seen = {(w.code, w.message) for w in into}
    for item in caught:
        found = audit_warning_from_python(item, where)
        if (found.code, found.message) not in seen:
            seen.add((found.code, found.message))
            into.append(found)
