"""Problems found in the inputs, the one error that carries all of them, and milder doubts.

A Problem stops the run (exit 2). An AuditWarning does not: it is data, carried by the dataset,
the analyses' results and the report, listed in summary.json, shown at the top of the report's
overview and printed on stderr. Tests assert on codes, never on the prose.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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
