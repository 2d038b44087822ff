"""Compare two models' scores over training seeds: mean ± sample sd, Welch's two-sided p-value, and a verdict.

The p-value is computed with the standard library alone (a bare ``pip install`` has no scipy): Student's t
distribution's tail through the regularized incomplete beta function, evaluated by its continued fraction (modified
Lentz). A verdict claims "ahead" or "behind" only when the difference is significant (p <= ``ALPHA``) and both sides
have at least ``MIN_SEEDS`` seeds; anything else reads "level".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import NamedTuple

ALPHA = 0.05  # the largest p-value a claim of "ahead"/"behind" may rest on
MIN_SEEDS = 3  # fewer seeds on either side: never a claim, whatever p says


def spread(values: Sequence[float]) -> float | None:
    """Return the sample standard deviation of ``values`` (None below two values)."""
    return statistics.stdev(values) if len(values) > 1 else None


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function I_x(a, b), by the modified Lentz method."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),  # even step
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):  # odd step
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            return h
    raise ArithmeticError(f"incomplete beta I_{x}({a}, {b}): continued fraction did not converge")


def incomplete_beta(a: float, b: float, x: float) -> float:
    """Return the regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    # the fraction converges fast for x below its mean a / (a + b); above it, use I_x(a, b) = 1 - I_{1-x}(b, a)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided(t: float, df: float) -> float:
    """Return P(|T| >= |t|) for Student's t distribution with ``df`` (real, > 0) degrees of freedom."""
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t))


def welch_p(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Return Welch's two-sided t-test p-value for equal means of ``a`` and ``b`` (unequal variances), as
    ``scipy.stats.ttest_ind(a, b, equal_var=False).pvalue``; None below two values each or when both are constant
    (no spread to test against)."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return None
    t = (statistics.fmean(a) - statistics.fmean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch-Satterthwaite
    return t_two_sided(t, df)


class Verdict(NamedTuple):
    """How ``scores`` compare with ``reference``: the word, the mean difference, p (None when untestable) and the
    smaller seed count."""

    word: str  # "ahead", "level" or "behind"
    difference: float
    p: float | None
    seeds: int


def verdict(scores: Sequence[float], reference: Sequence[float]) -> Verdict:
    """Return "ahead"/"behind" when the means differ with p <= ``ALPHA`` and both sides have ``MIN_SEEDS`` seeds or
    more; otherwise "level"."""
    if not scores or not reference:
        raise ValueError("verdict needs at least one score on each side")
    p = welch_p(scores, reference)
    diff = statistics.fmean(scores) - statistics.fmean(reference)
    seeds = min(len(scores), len(reference))
    claim = p is not None and p <= ALPHA and seeds >= MIN_SEEDS
    return Verdict(("ahead" if diff > 0 else "behind") if claim else "level", diff, p, seeds)
