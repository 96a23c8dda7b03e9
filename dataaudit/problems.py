"""Problems found in the inputs, and the one error that carries all of them."""

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
