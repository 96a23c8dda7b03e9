"""Number and text formatting for the page, in one place (templates never format numbers)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(isinstance(value, (float, np.floating)) and math.isnan(value))
    except TypeError:
        return False


def format_value(value: Any, kind: str = "text") -> str:
    if is_missing(value):
        return "—"
    if kind == "percent":
        return f"{float(value) * 100:.1f}%"
    if kind == "score":
        return f"{float(value):.3f}"
    if kind == "number":
        if isinstance(value, (bool, np.bool_)):
            return "yes" if value else "no"
        if isinstance(value, (int, np.integer)) or float(value).is_integer():
            return f"{int(value):,}"
        return f"{float(value):,.3g}"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.3g}"
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in value)
    return str(value)


def sort_key(value: Any, kind: str) -> str:
    """The value the page's JavaScript sorts on: a plain number for numeric kinds."""
    if is_missing(value):
        return ""
    if kind in ("percent", "score", "number") and not isinstance(value, str):
        return repr(float(value))
    return str(value)


def format_rate_ci(rate: float, low: float, high: float) -> str:
    if is_missing(rate):
        return "—"
    return f"{rate * 100:.1f}% (95% CI {low * 100:.1f}–{high * 100:.1f}%)"


def truncate(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
