"""harness.results.stats against scipy on the same inputs, and the seeded tests' reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sp

from harness.errors import HarnessError
from harness.results.stats import (
    EXACT_MAX,
    bootstrap_ci,
    compare_records,
    holm,
    paired_t_test,
    randomization_test,
    wilcoxon,
    wins_ties_losses,
)

from .conftest import fake_record, scores

score = st.floats(0, 1, allow_nan=False).map(lambda x: round(x, 3))  # ties, as real per-query scores have
pairs = st.integers(2, 40).flatmap(lambda n: st.tuples(st.lists(score, min_size=n, max_size=n),
                                                       st.lists(score, min_size=n, max_size=n)))


@settings(max_examples=150, deadline=None)
@given(pairs)
def test_t_test_equals_scipy(ab):
    a, b = ab
    ours = paired_t_test(a, b)
    d = np.subtract(b, a)
    if np.all(d == d[0]):  # scipy: NaN or ±inf (no variance); we answer 1 or 0
        assert ours.pvalue == (1.0 if d[0] == 0 else 0.0)
        return
    ref = sp.ttest_rel(b, a)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-12, abs=1e-300)


@settings(max_examples=150, deadline=None)
@given(pairs)
def test_wilcoxon_equals_scipy(ab):
    a, b = ab
    ours = wilcoxon(a, b)
    d = np.subtract(b, a)
    if not np.any(d != 0):
        assert ours == (0.0, 1.0) or (ours.statistic, ours.pvalue) == (0.0, 1.0)
        return
    ref = sp.wilcoxon(d, zero_method="wilcox", correction=False)
    assert ours.statistic == pytest.approx(float(ref.statistic))
    assert ours.pvalue == pytest.approx(float(ref.pvalue), rel=1e-12)


# dyadic scores (k/64): every sum is exact in floating point, so a permuted statistic that equals the
# observed one compares equal in both implementations (scipy's tie slack is far below rounding error)
dyadic = st.integers(0, 64).map(lambda k: k / 64)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 10).flatmap(lambda n: st.tuples(st.lists(dyadic, min_size=n, max_size=n),
                                                      st.lists(dyadic, min_size=n, max_size=n))))
def test_exact_randomization_equals_scipy_permutation_test(ab):
    a, b = ab
    ours = randomization_test(a, b)
    ref = sp.permutation_test((np.array(b), np.array(a)), lambda x, y, axis: np.mean(x - y, axis=axis),
                              permutation_type="samples", n_resamples=np.inf, vectorized=True)
    assert ours.statistic == pytest.approx(float(np.mean(np.subtract(b, a))))
    assert ours.pvalue == pytest.approx(min(1.0, float(ref.pvalue)), rel=1e-9)


def test_randomization_reproducible_by_seed_and_close_to_exact():
    rng = np.random.default_rng(3)
    n = EXACT_MAX + 2  # Monte Carlo, but small enough for scipy to enumerate exactly
    a, b = rng.uniform(size=n), rng.uniform(size=n) + 0.15
    first = randomization_test(a, b, resamples=20_000, seed=7)
    assert randomization_test(a, b, resamples=20_000, seed=7) == first
    assert len({randomization_test(a, b, resamples=20_000, seed=s).pvalue for s in range(4)}) > 1
    exact = sp.permutation_test((b, a), lambda x, y, axis: np.mean(x - y, axis=axis), permutation_type="samples",
                                n_resamples=np.inf, vectorized=True).pvalue
    assert first.pvalue == pytest.approx(exact, abs=0.01)


def test_randomization_degenerate_and_monte_carlo_p_never_zero():
    assert randomization_test([0.5, 0.2], [0.5, 0.2]).pvalue == 1.0
    a = np.zeros(200)
    p = randomization_test(a, a + 1.0, resamples=999, seed=0).pvalue
    assert p == pytest.approx(1 / 1000)


def test_bootstrap_ci_reproducible_and_close_to_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=300), rng.uniform(size=300) + 0.05
    low, high = bootstrap_ci(a, b, resamples=20_000, seed=1)
    assert bootstrap_ci(a, b, resamples=20_000, seed=1) == (low, high)
    assert low < float(np.mean(b - a)) < high
    ref = sp.bootstrap((b - a,), np.mean, method="percentile", n_resamples=20_000, rng=np.random.default_rng(5))
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.004)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.004)


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> max so far 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.2]) == [0.2]
    assert holm([]) == []
    with pytest.raises(HarnessError):
        holm([1.5])


@given(st.lists(st.floats(0, 1), min_size=1, max_size=30))
def test_holm_bounds_and_order(ps):
    adj = holm(ps)
    assert all(p <= q + 1e-15 and q <= 1.0 for p, q in zip(ps, adj, strict=True))
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    assert all(adj[i] <= adj[j] for i, j in zip(order, order[1:], strict=False))
    assert max(adj) <= min(1.0, len(ps) * max(ps)) + 1e-12


def test_wins_ties_losses():
    assert wins_ties_losses([0.1, 0.5, 0.5, 1.0], [0.2, 0.5, 0.4, 1.0]) == (1, 2, 1)
    assert wins_ties_losses([0.1, 0.5], [0.12, 0.5], tie=0.05) == (0, 2, 0)


def test_t_test_degenerate_cases():
    assert paired_t_test([0.3, 0.4], [0.3, 0.4]).pvalue == 1.0
    res = paired_t_test([0.25, 0.5], [0.5, 0.75])
    assert res.pvalue == 0.0 and math.isinf(res.statistic) and res.statistic > 0
    assert paired_t_test([0.3], [0.9]).pvalue == 1.0
    with pytest.raises(HarnessError):
        paired_t_test([0.1, 0.2], [0.1])
    with pytest.raises(HarnessError):
        paired_t_test([float("nan"), 0.2], [0.1, 0.3])


def test_compare_records_aligns_on_query_id():
    a = fake_record("A", "beir/x", {"ndcg@10": scores(1, 50)})
    b_scores = scores(2, 50)
    b = fake_record("B", "beir/x", {"ndcg@10": dict(reversed(list(b_scores.items())))})  # other key order
    c = compare_records(a, b, "ndcg@10", resamples=2000, seed=0)
    qids = sorted(b_scores)
    diffs = [b_scores[q] - a.per_query["ndcg@10"][q] for q in qids]
    assert c.diffs == pytest.approx(diffs)
    assert c.t.pvalue == pytest.approx(sp.ttest_rel([b_scores[q] for q in qids],
                                                    [a.per_query["ndcg@10"][q] for q in qids]).pvalue)
    assert c.wins + c.ties + c.losses == 50
    bad = fake_record("B", "beir/x", {"ndcg@10": scores(2, 49)})
    with pytest.raises(HarnessError, match="different queries"):
        compare_records(a, bad, "ndcg@10")
    with pytest.raises(HarnessError, match="no per-query recall@100"):
        compare_records(a, b, "recall@100")
