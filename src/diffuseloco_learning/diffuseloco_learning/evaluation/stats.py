"""Confidence bounds for counted outcomes (falls in n episodes).

"0 falls in 720" says little unless it comes with how large the fall rate could still be. The exact
(Clopper-Pearson) one-sided upper bound answers that: the largest rate p for which seeing k or fewer falls in n
episodes still has probability >= 1 - confidence. It is computed here exactly, by bisection on the binomial
distribution function in log space (math.lgamma), because the project's environment has no scipy; for k = 0 it
is 1 - (1 - confidence) ** (1 / n): 0 of 720 -> 0.415 %.
"""

from __future__ import annotations

import math
from typing import Optional

CONFIDENCE = 0.95


def binomial_cdf(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed in log space so that n in the thousands does not underflow."""
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 1.0 if k >= n else 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    log_terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
                 for i in range(k + 1)]
    top = max(log_terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in log_terms))


def upper_bound(k: int, n: int, confidence: float = CONFIDENCE) -> Optional[float]:
    """One-sided exact (Clopper-Pearson) upper confidence bound on a rate seen k times in n trials; None for
    n = 0 (nothing was tried, so nothing is bounded)."""
    if not (isinstance(k, int) and isinstance(n, int)) or k < 0 or n < 0 or k > n:
        raise ValueError(f"counts must be integers with 0 <= k <= n, got k={k!r}, n={n!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n == 0:
        return None
    if k == n:
        return 1.0
    alpha = 1.0 - confidence
    if k == 0:
        return 1.0 - alpha ** (1.0 / n)
    low, high = k / n, 1.0   # the CDF falls from >= 0.5 at the observed rate to 0 at 1
    for _ in range(100):
        middle = 0.5 * (low + high)
        if binomial_cdf(k, n, middle) > alpha:
            low = middle
        else:
            high = middle
    return high


def describe_bound(k: int, n: int, confidence: float = CONFIDENCE) -> str:
    """'0 / 720 (<= 0.42 %)': the count and its upper bound, for tables."""
    bound = upper_bound(k, n, confidence)
    return f"{k} / {n}" + ("" if bound is None else f" (<= {percent(bound)} %)")


def percent(rate: float) -> str:
    """A rate in percent with two significant digits below 10 % ('0.42', '4.2') and whole ones above ('42')."""
    value = 100.0 * rate
    return f"{value:.2f}" if value < 1.0 else f"{value:.1f}" if value < 10.0 else f"{value:.0f}"
