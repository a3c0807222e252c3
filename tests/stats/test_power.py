"""The power of a comparison: the detectable difference and the pairs needed, checked against a simulation
that draws paired samples with a known effect and counts how often the paired t-test finds it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.results.power import detectable_difference, paired_power, pairs_needed, power_paired_t, seed_summary


@pytest.mark.parametrize(("n", "sd"), [(40, 0.2), (300, 0.15), (3, 0.004)])
def test_the_detectable_difference_is_found_80_percent_of_the_time(n, sd):
    delta = detectable_difference(sd, n)
    rng = np.random.default_rng(n)
    draws = 4000
    found = sum(stats.ttest_1samp(rng.normal(delta, sd, n), 0.0).pvalue <= 0.05 for _ in range(draws))
    assert abs(found / draws - 0.8) < 0.025, (n, sd, delta, found / draws)  # 4 standard errors of 4,000 draws
    # half of it is found far less often: it is the smallest difference detected at 80%
    half = sum(stats.ttest_1samp(rng.normal(delta / 2, sd, n), 0.0).pvalue <= 0.05 for _ in range(1000))
    assert half / 1000 < 0.45


def test_the_normal_approximation_and_the_edges():
    # many pairs: (z_.975 + z_.8) sd / sqrt(n)
    assert detectable_difference(0.2, 10_000) == pytest.approx((1.959964 + 0.841621) * 0.2 / 100, rel=1e-3)
    assert detectable_difference(0.2, 1) == math.inf and detectable_difference(0.0, 5) == 0.0
    assert power_paired_t(0.0, 0.2, 50) == pytest.approx(0.05, abs=1e-9)  # no effect: the test's level


def test_pairs_needed_is_the_smallest_that_reaches_the_power():
    n = pairs_needed(0.02, 0.1)
    assert n is not None and power_paired_t(0.02, 0.1, n) >= 0.8 > power_paired_t(0.02, 0.1, n - 1)
    assert pairs_needed(0.0, 0.1) is None and pairs_needed(1e-9, 1.0, most=1000) is None


def test_three_seeds_and_the_trainer_experiments_difference():
    """The trainer experiment's +0.0035 nDCG@10 at p = 0.41 over three seeds: what three seeds detect, and
    how many the observed difference would need."""
    a = [0.6556, 0.6530, 0.6582]  # uniform arm, three seeds (illustrative values of the experiment's spread)
    b = [0.6592, 0.6555, 0.6629]
    s = seed_summary(a, b)
    assert s.seeds == 3 and s.mean_diff == pytest.approx(np.mean(b) - np.mean(a))
    assert s.detectable == pytest.approx(paired_power(np.subtract(b, a)).detectable)
    assert s.seeds_needed is not None and power_paired_t(s.target, paired_power(np.subtract(b, a)).sd,
                                                         s.seeds_needed) >= 0.8
