"""The power of a paired comparison: what difference it could have detected.

A difference without its power is a claim without its error bar: "no significant difference" over 300
queries whose per-query differences spread widely says little. For the two-sided paired t-test at level
``alpha`` (the test ``harness compare`` reports first), the power to detect a true mean difference
``delta`` from ``n`` paired observations whose differences have standard deviation ``sd`` is

    power(delta) = P(|T| > t_{1 - alpha/2, n-1}),  T ~ noncentral t(df = n - 1, nc = delta * sqrt(n) / sd)

(exact for normal differences; per-query metric differences are not normal, but over tens of queries the
t-test's level and power hold well, which the simulation test checks). The *detectable difference* is the
smallest ``delta`` with ``power(delta) >= power`` (80% by convention, Cohen 1988); the same function gives
how many paired runs (queries, or training seeds) a given difference needs. These are the figures
``harness compare``, the report and the trainer experiment print beside each difference.

References: Cohen, "Statistical Power Analysis for the Behavioral Sciences", 1988; Sakai, "Statistical
reform in information retrieval?", SIGIR Forum 2014 (power and sample size for IR test collections).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.errors import HarnessError

POWER = 0.8  # the conventional target
ALPHA = 0.05


def power_paired_t(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """The power of the two-sided paired t-test at level ``alpha`` to detect a mean difference ``delta`` from
    ``n`` pairs whose differences have standard deviation ``sd``."""
    from scipy import stats

    if n < 2:
        return 0.0
    if sd <= 0:
        return 1.0 if delta != 0 else alpha
    df = n - 1
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    nc = abs(delta) * math.sqrt(n) / sd
    exact = float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))
    if math.isfinite(exact):
        return min(1.0, exact)
    # scipy's noncentral t gives NaN far in its tails (large nc): there the power is the normal's to 1e-6
    return float(stats.norm.sf(crit - nc) + stats.norm.cdf(-crit - nc))


def detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest mean difference the paired t-test detects with probability ``power``: infinite with fewer
    than 2 pairs, 0 when every difference is the same."""
    from scipy.optimize import brentq

    if not 0 < alpha < 1 or not 0 < power < 1:
        raise HarnessError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")
    if n < 2 or not math.isfinite(sd):
        return math.inf
    if sd == 0:
        return 0.0
    high = sd
    while power_paired_t(high, sd, n, alpha) < power:
        high *= 2
    return float(brentq(lambda d: power_paired_t(d, sd, n, alpha) - power, 0.0, high, xtol=1e-12 * high))


def pairs_needed(delta: float, sd: float, alpha: float = ALPHA, power: float = POWER,
                 most: int = 1_000_000) -> int | None:
    """How many pairs (queries, or seeds) the paired t-test needs to detect ``delta`` with probability
    ``power``; None when more than ``most`` would be needed (or ``delta`` is 0)."""
    if delta == 0 or not math.isfinite(sd):
        return None
    if sd == 0:
        return 2
    guess = max(2, math.ceil(((2.8 * sd) / abs(delta)) ** 2))  # the normal approximation, z_.975 + z_.8 = 2.8
    if guess > most:
        return None
    n = max(2, guess - 2)
    while power_paired_t(delta, sd, n, alpha) < power:
        n += 1
        if n > most:
            return None
    while n > 2 and power_paired_t(delta, sd, n - 1, alpha) >= power:
        n -= 1
    return n


@dataclass(frozen=True)
class Power:
    """What a paired comparison could detect: its pairs, the standard deviation of their differences, and
    the smallest mean difference found at ``power`` (two-sided paired t-test at ``alpha``)."""

    pairs: int
    sd: float
    detectable: float
    alpha: float = ALPHA
    power: float = POWER


def paired_power(diffs: Sequence[float] | np.ndarray, alpha: float = ALPHA, power: float = POWER) -> Power:
    """The :class:`Power` of a comparison from its paired differences (per query, or per seed)."""
    d = np.asarray(diffs, dtype=np.float64)
    sd = float(d.std(ddof=1)) if d.size > 1 else math.inf
    return Power(int(d.size), sd, detectable_difference(sd, int(d.size), alpha, power), alpha, power)


@dataclass(frozen=True)
class SeedSummary:
    """Repeated training runs of two arms with paired seeds: each arm's mean and standard deviation across
    seeds, the paired difference, what these seeds could detect, and how many seeds the observed difference
    (or ``target``, when given) would need."""

    seeds: int
    mean_a: float
    sd_a: float
    mean_b: float
    sd_b: float
    mean_diff: float
    detectable: float
    seeds_needed: int | None
    target: float


def seed_summary(a: Sequence[float], b: Sequence[float], target: float | None = None, alpha: float = ALPHA,
                 power: float = POWER) -> SeedSummary:
    """Arms ``a`` and ``b`` over the same seeds (paired: seed i of both); differences are b - a."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise HarnessError(f"paired seeds need two equally long lists, got {x.shape} and {y.shape}")
    p = paired_power(y - x, alpha, power)
    goal = float(y.mean() - x.mean()) if target is None else target
    return SeedSummary(int(x.size), float(x.mean()), _sd(x), float(y.mean()), _sd(y), float(y.mean() - x.mean()),
                       p.detectable, pairs_needed(goal, p.sd, alpha, power), goal)


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else math.nan
