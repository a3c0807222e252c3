"""Paired significance tests over per-query scores, and Holm's multiple-testing correction.

Every test takes two equally long sequences of per-query scores of the same queries (system A, system B)
and looks at the differences ``b - a``. The t-test and the Wilcoxon signed-rank test are scipy's
(``scipy.stats.ttest_rel``; ``scipy.stats.wilcoxon`` with ``zero_method="wilcox"``, no continuity
correction, scipy's choice of exact or normal distribution); the wrappers only settle the degenerate
cases scipy answers with NaN or an error (no differences at all: p = 1). The randomization test and the
bootstrap are implemented here and seeded, so the same seed gives the same p-value and interval.

References: Smucker, Allan & Carterette, "A comparison of statistical significance tests for information
retrieval evaluation", CIKM 2007 (randomization test); Efron & Tibshirani 1993 (percentile bootstrap);
Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 1979.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.errors import HarnessError
from harness.settings import RESAMPLES, SEED

if TYPE_CHECKING:
    from harness.results.records import ResultRecord

#: exact enumeration of all 2**n sign flips up to this many non-zero differences
EXACT_MAX = 16
#: relative slack when comparing a permuted statistic with the observed one (as scipy does)
_REL_EPS = 1e-12


@dataclass(frozen=True)
class TestResult:
    """One test: its statistic and two-sided p-value."""

    statistic: float
    pvalue: float


def _diffs(a: Sequence[float], b: Sequence[float]) -> np.ndarray:
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise HarnessError(f"paired tests need two equally long score lists, got {x.shape} and {y.shape}")
    if x.size == 0:
        raise HarnessError("paired tests need at least one query")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise HarnessError("per-query scores must be finite numbers")
    return np.asarray(y - x, dtype=np.float64)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Student's paired t-test of mean(b - a) = 0 (``scipy.stats.ttest_rel(b, a)``).

    All differences equal: p = 1 when they are zero, else t = ±inf and p = 0 (no variance at all).
    A single query: no test (t = 0, p = 1).
    """
    from scipy.special import stdtr  # scipy.stats' own t distribution function, without importing scipy.stats

    d = _diffs(a, b)
    if d.size < 2 or np.all(d == d[0]):
        if d.size < 2 or d[0] == 0:
            return TestResult(0.0, 1.0)
        return TestResult(math.copysign(math.inf, d[0]), 0.0)
    # ttest_rel(b, a) is ttest_1samp(b - a): t = mean / sqrt(var(ddof=1) / n), p = 2 sf_t(|t|; n - 1)
    t = float(d.mean() / np.sqrt(d.var(ddof=1) / d.size))
    return TestResult(t, float(min(1.0, 2 * stdtr(d.size - 1, -abs(t)))))


def wilcoxon(a: Sequence[float], b: Sequence[float]) -> TestResult:
    """Wilcoxon signed-rank test of the differences b - a (``scipy.stats.wilcoxon``, zeros dropped).

    The statistic is scipy's: the smaller of the positive and negative rank sums. No non-zero
    difference: statistic 0, p = 1.
    """
    from scipy import stats

    d = _diffs(a, b)
    if not np.any(d != 0):
        return TestResult(0.0, 1.0)
    res = stats.wilcoxon(d, zero_method="wilcox", correction=False, alternative="two-sided")
    return TestResult(float(res.statistic), float(res.pvalue))


def randomization_test(a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES,
                       seed: int = SEED) -> TestResult:
    """Paired randomization (sign-flip permutation) test of the mean difference, two-sided.

    Under the null hypothesis each query's pair of scores is exchangeable, so each difference keeps or
    flips its sign with probability 1/2. With at most ``EXACT_MAX`` non-zero differences all 2**n sign
    patterns are enumerated and p is exact (equal to ``scipy.stats.permutation_test`` with
    ``permutation_type="samples"``); otherwise ``resamples`` random patterns drawn with
    ``numpy.random.default_rng(seed)`` give p = (hits + 1) / (resamples + 1). The statistic is mean(b - a).
    """
    d = _diffs(a, b)
    observed = float(d.mean())
    nz = d[d != 0]
    if nz.size == 0:
        return TestResult(observed, 1.0)
    threshold = abs(nz.sum()) * (1 - _REL_EPS)
    if nz.size <= EXACT_MAX:
        n = nz.size
        patterns = (np.arange(2 ** n)[:, None] >> np.arange(n)[None, :]) & 1
        sums = np.abs(((1 - 2 * patterns) * nz).sum(axis=1))
        return TestResult(observed, float(np.count_nonzero(sums >= threshold)) / 2 ** n)
    if resamples < 1:
        raise HarnessError("the randomization test needs at least one resample")
    rng = np.random.default_rng(seed)
    hits, done, batch = 0, 0, max(1, min(resamples, 2_000_000 // nz.size))
    while done < resamples:
        m = min(batch, resamples - done)
        signs = rng.integers(0, 2, size=(m, nz.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ nz) >= threshold))
        done += m
    return TestResult(observed, (hits + 1) / (resamples + 1))


def bootstrap_ci(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, resamples: int = RESAMPLES,
                 seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of mean(b - a): queries resampled with replacement."""
    if not 0 < confidence < 1:
        raise HarnessError(f"confidence must be between 0 and 1, got {confidence}")
    d = _diffs(a, b)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    batch = max(1, min(resamples, 2_000_000 // d.size))
    for start in range(0, resamples, batch):
        m = min(batch, resamples - start)
        means[start:start + m] = d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def wins_ties_losses(a: Sequence[float], b: Sequence[float], *, tie: float = 0.0) -> tuple[int, int, int]:
    """Queries where b beats a, ties (|b - a| <= ``tie``), and loses."""
    d = _diffs(a, b)
    wins = int(np.count_nonzero(d > tie))
    losses = int(np.count_nonzero(d < -tie))
    return wins, d.size - wins - losses, losses


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Sorted ascending, the i-th smallest (0-based) becomes max over j <= i of min(1, (m - j) * p_(j)); a
    hypothesis is rejected at level alpha when its adjusted p-value is <= alpha.
    """
    p = [float(x) for x in pvalues]
    if any(not 0 <= x <= 1 for x in p):
        raise HarnessError(f"p-values must lie in [0, 1], got {p}")
    m = len(p)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda j: p[j])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted


@dataclass
class PairedComparison:
    """A and B on one dataset and metric, over the same queries. Differences are B - A."""

    dataset: str
    split: str
    metric: str
    a: str
    b: str
    queries: int
    mean_a: float
    mean_b: float
    mean_diff: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int
    t: TestResult
    wilcoxon: TestResult
    randomization: TestResult
    diffs: list[float]
    holm: dict[str, float] | None = None  # test name -> Holm-adjusted p, across the compared datasets
    #: the smallest mean difference the paired t-test would detect at 80% power with these queries
    #: (``harness.results.power``), and the per-query differences' standard deviation it comes from
    detectable: float = math.inf
    sd_diff: float = math.nan

    TESTS = ("t", "wilcoxon", "randomization")

    def pvalue(self, test: str) -> float:
        return {"t": self.t, "wilcoxon": self.wilcoxon, "randomization": self.randomization}[test].pvalue

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("diffs")
        return d


def paired_pvalue(test: str, a: Sequence[float], b: Sequence[float], *, resamples: int = RESAMPLES,
                  seed: int = SEED) -> float:
    """The two-sided p-value of one paired test ("t", "wilcoxon" or "randomization"), as
    :func:`compare_records` computes it (for tables that need one test, not every statistic)."""
    if test == "t":
        return paired_t_test(a, b).pvalue
    if test == "wilcoxon":
        return wilcoxon(a, b).pvalue
    if test == "randomization":
        return randomization_test(a, b, resamples=resamples, seed=seed).pvalue
    raise HarnessError(f"unknown test {test!r}; known: {', '.join(PairedComparison.TESTS)}")


def paired_scores(record_a: ResultRecord, record_b: ResultRecord, metric: str
                  ) -> tuple[list[str], list[float], list[float]]:
    """The per-query scores of ``metric`` of two result records, aligned on query id."""
    for rec in (record_a, record_b):
        if metric not in rec.per_query:
            raise HarnessError(f"{rec.label} on {rec.dataset}: no per-query {metric} "
                               "(rerun with --metric " + metric + ")")
    pa, pb = record_a.per_query[metric], record_b.per_query[metric]
    if set(pa) != set(pb):
        only_a, only_b = sorted(set(pa) - set(pb)), sorted(set(pb) - set(pa))
        raise HarnessError(f"{record_a.dataset}: the two runs were scored on different queries "
                           f"({len(only_a)} only in {record_a.label}, {len(only_b)} only in "
                           f"{record_b.label}); rerun both with the same dataset files")
    qids = sorted(pa)
    return qids, [float(pa[q]) for q in qids], [float(pb[q]) for q in qids]


def compare_records(record_a: ResultRecord, record_b: ResultRecord, metric: str, *, resamples: int = RESAMPLES,
                    seed: int = SEED,
                    confidence: float = 0.95) -> PairedComparison:
    """Every paired statistic of B against A on one dataset and metric, and what the comparison could detect."""
    from harness.results.power import paired_power

    _, a, b = paired_scores(record_a, record_b, metric)
    d = np.asarray(b) - np.asarray(a)
    power = paired_power(d)
    low, high = bootstrap_ci(a, b, confidence=confidence, resamples=resamples, seed=seed)
    w, t, loss = wins_ties_losses(a, b)
    return PairedComparison(
        dataset=record_a.dataset, split=record_a.split, metric=metric, a=record_a.label,
        b=record_b.label, queries=len(a), mean_a=float(np.mean(a)), mean_b=float(np.mean(b)),
        mean_diff=float(d.mean()), ci_low=low, ci_high=high, wins=w, ties=t, losses=loss,
        t=paired_t_test(a, b), wilcoxon=wilcoxon(a, b),
        randomization=randomization_test(a, b, resamples=resamples, seed=seed), diffs=d.tolist(),
        detectable=power.detectable, sd_diff=power.sd)


def apply_holm(comparisons: Sequence[PairedComparison]) -> None:
    """Fill ``holm`` of each comparison: per metric and test, adjusted across the comparisons given."""
    for metric in {c.metric for c in comparisons}:
        group = [c for c in comparisons if c.metric == metric]
        adjusted = {test: holm([c.pvalue(test) for c in group]) for test in PairedComparison.TESTS}
        for i, c in enumerate(group):
            c.holm = {test: adjusted[test][i] for test in PairedComparison.TESTS}
