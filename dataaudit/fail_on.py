"""`--fail-on` conditions: 'label_error_rate>0.05' checked against the report's metrics."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

_OPERATORS = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
_PATTERN = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|==|!=|>|<)\s*(-?[0-9.eE+-]+)\s*$")


class FailOnError(ValueError):
    """A --fail-on condition that cannot be parsed or checked."""


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    threshold: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"


def parse_conditions(texts: list[str]) -> list[Condition]:
    """Parse 'a>0.1' items; several may be given, or joined by commas."""
    conditions = []
    for text in texts:
        for part in filter(None, (p.strip() for p in text.split(","))):
            match = _PATTERN.match(part)
            if not match:
                raise FailOnError(
                    f"--fail-on {part!r}: expected METRIC OP NUMBER, e.g. label_error_rate>0.05"
                )
            try:
                threshold = float(match.group(3))
            except ValueError as exc:
                raise FailOnError(
                    f"--fail-on {part!r}: {match.group(3)!r} is not a number"
                ) from exc
            conditions.append(Condition(match.group(1), match.group(2), threshold))
    return conditions


def condition_holds(condition: Condition, value: float) -> bool:
    return _OPERATORS[condition.op](value, condition.threshold)
