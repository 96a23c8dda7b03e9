"""Checks: thresholds on a run's metrics, from a config file's [checks] table or from --fail-on.

A check names a metric of summary.json (or of the comparison with --baseline) and up to two
thresholds, `warn` and `fail`. By default a value above a threshold trips it (error rates, counts);
`direction = "below"` flips that for metrics where lower is worse (accuracy). Its status is
`pass`, `warn` or `fail`; any `fail` makes the CLI exit 1. In a config file:

    [checks]
    label_error_rate = { warn = 0.03, fail = 0.05 }
    leakage = { fail = 0 }
    accuracy = { warn = 0.9, fail = 0.85, direction = "below" }

A `--fail-on 'label_error_rate>0.05'` condition is a check too (named after the condition), so
every gate of a run shows up in one list: summary.json "checks", checks.xml and summary.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dataaudit.fail_on import Condition, condition_holds

PASS, WARN, FAIL = "pass", "warn", "fail"
DIRECTIONS = ("above", "below")


class CheckError(ValueError):
    """A check that cannot be read or evaluated (a usage problem: exit 2)."""


@dataclass(frozen=True)
class CheckSpec:
    """What to check: a metric and the thresholds that trip a warning or a failure."""

    name: str  # stable: the metric key, or the --fail-on condition as written
    metric: str
    warn: float | None = None
    fail: float | None = None
    direction: str = "above"  # a value above (or below) a threshold trips it
    condition: Condition | None = None  # set for --fail-on checks, whose operator is explicit

    def status(self, value: float) -> str:
        if self.condition is not None:
            return FAIL if condition_holds(self.condition, value) else PASS
        if self.fail is not None and self._trips(value, self.fail):
            return FAIL
        if self.warn is not None and self._trips(value, self.warn):
            return WARN
        return PASS

    def _trips(self, value: float, threshold: float) -> bool:
        return value > threshold if self.direction == "above" else value < threshold


@dataclass(frozen=True)
class CheckResult:
    """One evaluated check, as summary.json, checks.xml and summary.md show it."""

    name: str
    metric: str
    value: float | None
    warn: float | None
    fail: float | None
    status: str  # pass | warn | fail
    direction: str = "above"
    message: str = ""  # one sentence: what the value is against the thresholds

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "value": self.value,
            "warn": self.warn,
            "fail": self.fail,
            "status": self.status,
            "direction": self.direction,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> CheckResult:
        return cls(
            name=values["name"],
            metric=values["metric"],
            value=values.get("value"),
            warn=values.get("warn"),
            fail=values.get("fail"),
            status=values["status"],
            direction=values.get("direction", "above"),
            message=values.get("message", ""),
        )


def parse_checks(table: Mapping[str, Any], source: str) -> list[CheckSpec]:
    """The [checks] table of a config file: `metric = { warn = x, fail = y, direction = ... }`."""
    specs = []
    for metric, entry in table.items():
        where = f"{source}: [checks] {metric}"
        if isinstance(entry, (int, float)) and not isinstance(entry, bool):
            entry = {"fail": entry}  # `leakage = 0` is short for `{ fail = 0 }`
        if not isinstance(entry, Mapping):
            raise CheckError(f"{where}: expected a table such as {{ warn = 0.03, fail = 0.05 }}")
        unknown = set(entry) - {"warn", "fail", "direction"}
        if unknown:
            raise CheckError(
                f"{where}: unknown key(s) {', '.join(sorted(unknown))}; use warn, fail, direction"
            )
        thresholds = {}
        for key in ("warn", "fail"):
            value = entry.get(key)
            if value is not None and (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise CheckError(f"{where}: {key} must be a number, got {value!r}")
            thresholds[key] = None if value is None else float(value)
        if thresholds["warn"] is None and thresholds["fail"] is None:
            raise CheckError(f"{where}: give warn, fail or both")
        direction = entry.get("direction", "above")
        if direction not in DIRECTIONS:
            raise CheckError(f"{where}: direction must be 'above' or 'below', got {direction!r}")
        specs.append(CheckSpec(str(metric), str(metric), direction=direction, **thresholds))
    return specs


def fail_on_checks(conditions: list[Condition]) -> list[CheckSpec]:
    """--fail-on conditions as checks: each fails when its condition holds."""
    return [
        CheckSpec(
            name=f"fail_on: {c}",
            metric=c.metric,
            fail=c.threshold,
            direction="below" if c.op.startswith("<") else "above",
            condition=c,
        )
        for c in conditions
    ]


def evaluate(specs: list[CheckSpec], metrics: Mapping[str, Any]) -> list[CheckResult]:
    """Each check against the run's metrics. A metric the run lacks is a CheckError (exit 2)."""
    results = []
    for spec in specs:
        if spec.metric not in metrics:
            known = ", ".join(sorted(k for k, v in metrics.items() if _is_number(v)))
            raise CheckError(
                f"check {spec.name!r}: no metric {spec.metric!r} in this run (its analysis may "
                f"have been skipped). Metrics: {known}"
            )
        value = metrics[spec.metric]
        if isinstance(value, bool):
            value = float(value)
        if value is None or not _is_number(value):
            raise CheckError(f"check {spec.name!r}: {spec.metric} has no numeric value ({value!r})")
        value = float(value)
        status = spec.status(value)
        results.append(
            CheckResult(
                spec.name,
                spec.metric,
                value,
                spec.warn,
                spec.fail,
                status,
                spec.direction,
                _describe(spec, value, status),
            )
        )
    return results


def _describe(spec: CheckSpec, value: float, status: str) -> str:
    if spec.condition is not None:
        held = "holds" if status == FAIL else "does not hold"
        return f"{spec.metric} = {value:g}: --fail-on {spec.condition} {held}"
    side = ">" if spec.direction == "above" else "<"
    limits = [
        f"{k} {side} {t:g}" for k, t in (("warn", spec.warn), ("fail", spec.fail)) if t is not None
    ]
    return f"{spec.metric} = {value:g} ({status}; {', '.join(limits)})"


def worst_status(results: list[CheckResult]) -> str:
    statuses = {r.status for r in results}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, str)
