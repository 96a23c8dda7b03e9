"""`--fail-on` conditions: 'label_error_rate>0.05' checked against the report's metrics."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

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


def check_conditions(conditions: list[Condition], metrics: dict[str, Any]) -> list[str]:
    """The conditions that are met, as sentences. Unknown or unavailable metrics raise FailOnError."""
    met = []
    for condition in conditions:
        if condition.metric not in metrics:
            known = ", ".join(sorted(k for k, v in metrics.items() if _is_number(v)))
            raise FailOnError(
                f"--fail-on {condition}: no metric {condition.metric!r} in this run "
                f"(its analysis may have been skipped). Metrics: {known}"
            )
        value = metrics[condition.metric]
        if value is None:
            raise FailOnError(f"--fail-on {condition}: {condition.metric} has no value in this run")
        if isinstance(value, bool) or not _is_number(value):
            value = float(bool(value)) if isinstance(value, bool) else value
        if not _is_number(value):
            raise FailOnError(
                f"--fail-on {condition}: {condition.metric} is not a number ({value!r})"
            )
        if _OPERATORS[condition.op](float(value), condition.threshold):
            met.append(f"{condition.metric} = {float(value):g} ({condition})")
    return met


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, str)
