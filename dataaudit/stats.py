"""Small statistics shared by analyses: intervals for rates, tests, and false-discovery control."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The normal CDF and its inverse; scipy.stats (norm.sf / norm.ppf wrap these) takes ~1 s to import.
from scipy.special import ndtr, ndtri


def wilson_interval(
    successes: ArrayLike, trials: ArrayLike, confidence: float = 0.95
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Wilson score interval for binomial rates; (nan, nan) where trials == 0.

    Chosen over the normal approximation because it stays inside [0, 1] and behaves at rates
    near 0 or 1 and at small counts, which is where per-class and per-slice rates live.
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    z = ndtri(0.5 + confidence / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1 + z**2 / n
        center = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        low = np.where(n > 0, np.clip(center - half, 0, 1), np.nan)
        high = np.where(n > 0, np.clip(center + half, 0, 1), np.nan)
    return low, high


def two_proportion_pvalue(
    x1: ArrayLike, n1: ArrayLike, x2: ArrayLike, n2: ArrayLike, alternative: str = "greater"
) -> NDArray[np.float64]:
    """z-test p-value that rate x1/n1 exceeds (or differs from) x2/n2, vectorised; nan where undefined."""
    x1, n1, x2, n2 = (np.asarray(a, dtype=np.float64) for a in (x1, n1, x2, n2))
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = (x1 + x2) / (n1 + n2)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        z = (x1 / n1 - x2 / n2) / se
    if alternative == "greater":
        p = ndtr(-z)
    elif alternative == "two-sided":
        p = 2 * ndtr(-np.abs(z))
    else:
        raise ValueError(f"alternative must be 'greater' or 'two-sided', not {alternative!r}")
    # se == 0: both rates are 0 or both 1 — no evidence of a difference.
    return np.where(np.isfinite(p), p, np.where((n1 > 0) & (n2 > 0), 1.0, np.nan))


def benjamini_hochberg(pvalues: ArrayLike, family: int | None = None) -> NDArray[np.float64]:
    """BH-adjusted p-values (q-values); nan inputs stay nan and do not count as tests.

    `family` (at least the number of finite p-values) is the number of hypotheses the
    correction answers for: hypotheses left untested count as p = 1, which can only raise q.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    valid = np.isfinite(p)
    n_valid = int(valid.sum())
    if n_valid == 0:
        return out
    m = max(n_valid, family or 0)
    pv = p[valid]
    order = np.argsort(pv)
    ranked = pv[order] * m / np.arange(1, n_valid + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1].clip(max=1.0)
    result = np.empty(n_valid)
    result[order] = adjusted
    out[valid] = result
    return out
