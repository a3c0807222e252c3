"""Attacks on the array fusion (``harness.retrievers.fusion``: ``line_up``, the score functions, ``ranked``) and
on the array rerank (``RerankRetriever.search``) against the per-query dict code they replaced
(tests/fusion_reference.py, and the old rerank loop written out below).

The contract: for every input the array path gives exactly the reference's fused run (queries, documents,
order, float64 scores bit for bit, the cut at depth), each hit list in the one order of runs (score
descending, equal scores in the order given). The tests under "defects" failed on commit 670bada (an attack
round on it) and hold since; the others are properties that held already."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.retrievers import fusion
from harness.retrievers.base import StageRun
from harness.retrievers.rerank import RerankRetriever
from harness.trec import RunArrays, in_score_order
from tests.fusion_reference import hybrid_ref, rrf_ref, wsum_ref

NORMS = ("none", "min-max", "max", "sum")


def _bits(run: dict[str, dict[str, float]]) -> list[tuple[str, list[tuple[str, bytes]]]]:
    """A run with every score as its float64 bytes (so -0.0 and 0.0 differ, as they do bit for bit)."""
    return [(q, [(d, np.float64(s).tobytes()) for d, s in hits.items()]) for q, hits in run.items()]


def _same(ours: RunArrays | dict, reference: dict[str, dict[str, float]]) -> None:
    got = ours.to_dict() if isinstance(ours, RunArrays) else ours
    assert _bits(got) == _bits(reference)


def _arrays(stages):
    return [RunArrays.from_dict(s) for s in stages]


def _all_methods(stages, asked, depth, k, weights, alpha):
    """Every method's array result next to the reference's, as (name, ours, reference)."""
    stages = [{q: in_score_order(h) for q, h in s.items()} for s in stages]  # a run's one order, as read
    arrays = _arrays(stages)
    lined = fusion.line_up(arrays, asked, sums=True)
    yield ("rrf", fusion.ranked(lined, fusion.rrf_scores(lined, k), depth),
           {q: rrf_ref([s.get(q, {}) for s in stages], k, depth) for q in asked})
    for norm in NORMS:
        yield (f"wsum {norm}", fusion.ranked(lined, fusion.weighted(fusion.normalised(lined, norm), weights), depth),
               {q: wsum_ref([s.get(q, {}) for s in stages], weights, norm, depth) for q in asked})
    if len(stages) >= 2:
        pair = fusion.line_up(arrays[:2], asked)
        for normalization in (False, True):
            for on_dense in (False, True):
                yield (f"hybrid {normalization} {on_dense}",
                       fusion.ranked(pair, fusion.hybrid_scores(pair, alpha, normalization, on_dense), depth),
                       {q: hybrid_ref(stages[0].get(q, {}), stages[1].get(q, {}), alpha, normalization, on_dense,
                                      depth) for q in asked})


# --- defects ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dense", [{"a": 0.0, "b": -0.0}, {"a": -0.0, "b": 0.0}, {"a": 1.0, "b": 0.0, "c": -0.0}])
@pytest.mark.parametrize("on_dense", [False, True])
def test_hybrid_missing_document_takes_the_reference_signed_zero_lowest_score(dense, on_dense):
    # the lowest score of a stage whose lowest scores are 0.0 and -0.0 (equal) is Python's min(): the
    # first of them in the stage's order (np.minimum.reduceat's was the last). A document the stage
    # lacks takes that lowest score in hybrid, and -0.0 + -0.0 is -0.0 where 0.0 + -0.0 is 0.0: the fused score's
    # sign bit differs from the reference's (and the written run file says "-0..." against "0...").
    sparse = {"z": -0.0, "y": -0.0}
    stages = [{"q": dense}, {"q": sparse}]
    pair = fusion.line_up(_arrays(stages), ["q"])
    ours = fusion.ranked(pair, fusion.hybrid_scores(pair, 1.3, False, on_dense), None)
    _same(ours, {"q": hybrid_ref(dense, sparse, 1.3, False, on_dense)})


def test_hybrid_one_query_helper_signed_zero():
    # the same through the one-query helper (fusion.hybrid) and a run as read from a file, where
    # Pyserini's six decimals write a tiny negative score as -0.000000.
    dense, sparse = {"b": 2.0, "a": -0.0, "e": 0.0}, {"z": -0.0}
    _same({"": fusion.hybrid(dense, sparse, 1.3)}, {"": hybrid_ref(dense, sparse, 1.3)})


@pytest.mark.parametrize("norm", ["none", "max"])
def test_a_nonfinite_score_the_depth_cut_removes_is_not_refused(norm):
    # an infinite fused score that the cut at depth removes is no reason to refuse (ranked() refused it before
    # the cut); the reference fuses, orders and cuts, and the -inf of the last document is cut away.
    # weights=1e6 is within the weights= parameter's range (kinds.FUSE_PARAMS: -1e6..1e6) and -1e303 is a
    # finite score a run file can hold.
    stage = {"q": {"a": 1.0, "b": -1e303}}
    reference = {"q": wsum_ref([stage["q"]], [1e6], norm, 1)}
    assert all(np.isfinite(v) for hits in reference.values() for v in hits.values())
    lined = fusion.line_up(_arrays([stage]), ["q"])
    with np.errstate(all="ignore"):
        fused = fusion.weighted(fusion.normalised(lined, norm), [1e6])
    _same(fusion.ranked(lined, fused, 1), reference)


def test_one_query_rrf_ranks_each_hit_list_by_score():
    # the one-query helpers take each hit list in the one order of runs (as ranx ranks a run, and as a run file
    # holds it), not in a dict's own order: decided after the attack round found that fusion.rrf before 670bada
    # ranked by dict order; the runner's stage runs are in that order either way
    hits = {"a": 1.0, "b": 2.0}
    assert fusion.rrf([hits]) == rrf_ref([in_score_order(hits)]) == {"b": 1 / 61, "a": 1 / 62}


def test_one_query_wsum_sum_adds_the_scores_in_score_order():
    # (the same decision) norm="sum" adds a list's scores in the one order of runs, where the sum's last bit
    # depends on it
    hits = {"y": 1e-16, "z": 1e-16, "x": 1.0}
    _same({"": fusion.wsum([hits], [1.0], "sum")}, {"": wsum_ref([in_score_order(hits)], [1.0], "sum")})
    assert fusion.wsum([hits], [1.0], "sum") != wsum_ref([hits], [1.0], "sum")  # the case tells the orders apart


def test_line_up_memory_is_linear_in_the_hits():
    # line_up's per-stage totals (norm=sum) filled a dense table of (queries with hits) x (the longest query's
    # hits), for every method: one long query among many short ones made it quadratic. 1000 queries of one hit
    # and one of 20,000 hits (21,000 hits) took a 160 MB table and as much again for its cumsum.
    docs = [f"d{i}" for i in range(20000)]
    qids = ["long"] + [f"q{i}" for i in range(1000)]
    run = RunArrays.from_lists(qids, [docs] + [["d0"]] * 1000,
                               [[1.0 - i * 1e-6 for i in range(len(docs))]] + [[1.0]] * 1000)
    tracemalloc.start()
    try:
        lined = fusion.line_up([run], qids, sums=True)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50e6, f"line_up of {len(run)} hits peaked at {peak / 1e6:.0f} MB"
    assert lined.totals is not None and lined.totals[0, 0] == sum(1.0 - i * 1e-6 for i in range(len(docs)))


# --- properties that hold ----------------------------------------------------------------------------------------

POOL = [f"d{i}" for i in range(12)] + ["é", "ée", "日本", "𝔘x", "a", "a" * 8, "a" * 9, "a" * 16, "a" * 17,
                                        "ab", "abcdefghi", "abcdefgh", "\x7f", "\x01", "a b", "\uffff"]
NUL = ["x\x00", "x", "x\x00\x00", "\x00", "x\x00y"]


def _stage(rng: random.Random, queries: list[str], nul: bool) -> dict[str, dict[str, float]]:
    kind = rng.choice(["few", "wide", "neg", "equal", "tiny", "ints", "big"])
    pool = POOL + (NUL if nul else [])
    run = {}
    for q in queries:
        if rng.random() < 0.2:
            continue
        docs = rng.sample(pool, rng.randint(0, 15))

        def value() -> float:
            if kind == "few":
                return rng.choice([0.5, 1.0, 1.5, 2.0])
            if kind == "wide":
                return rng.uniform(-1e3, 1e6)
            if kind == "neg":
                return -rng.random()
            if kind == "equal":
                return 3.25
            if kind == "tiny":
                return rng.random() * 1e-300
            if kind == "ints":
                return float(rng.randint(-3, 3))
            return rng.choice([1e150, -1e150, 1e149, 0.0, 1.0])
        run[q] = {d: value() for d in docs}
    return run


@pytest.mark.parametrize("block", range(8))
def test_random_runs_equal_the_reference(block):
    """Three to five stages as well as two, negative, zero and int weights, k=0 and a float k, depth 0, stage
    queries not asked for, asked queries no stage has, prefix / multi-word / Unicode ids, NUL ids."""
    for seed in range(block * 40, block * 40 + 40):
        rng = random.Random(seed)
        queries = [f"q{i}" for i in range(rng.randint(1, 6))]
        stages = [_stage(rng, queries + ["extra"], seed % 5 == 0) for _ in range(rng.randint(1, 5))]
        asked = rng.sample(queries, len(queries)) + ["none"]
        depth = rng.choice([None, 0, 1, 2, 5])
        k = rng.choice([0, 1, 60, 2.5])
        weights = [rng.choice([0.0, -1.0, 1, 2, 0.1, 0.3, -0.7]) for _ in stages]
        alpha = rng.choice([0.1, 1.3, -2.0, 0.0])
        for name, ours, reference in _all_methods(stages, asked, depth, k, weights, alpha):
            assert _bits(ours.to_dict()) == _bits(reference), (seed, name)


def test_edge_inputs_equal_the_reference():
    cases = [
        ([{"q": {"a": 1.0, "ab": 1.0, "a" * 8: 1.0, "a" * 9: 1.0, "a" * 17: 1.0}}, {"q": {"ab": 2.0, "a": 1.0}}],
         ["q"]),
        ([{"q": {"x" * 40: 1.0, "y": 0.5}}, {"q": {"y": 2.0, "z": 1.0}}, {"q": {"z": 9.0}}], ["q"]),  # widths
        ([{"q": {"é": 1.0, "e": 1.0, "\uffff": 1.0, "𝔘": 1.0}}, {"q": {"日本": 2.0, "é": 1.0}}], ["q"]),
        ([{"q": {"a": 1.0, "b": 1.0}}, {"q": {"a\x00": 2.0, "b": 1.0}}], ["q", "r"]),  # NUL in one stage
        ([{}, {}], ["q"]),
        ([{}, {"q": {"a": 1.0}}], ["q"]),
        ([{"q": {}}, {"q": {"a": 1.0}}, {"p": {"a": 1.0}}], ["q"]),
        ([{"q": {f"d{i}": 1.0 for i in range(50)}}, {"q": {f"d{i}": 1.0 for i in range(49, -1, -1)}}], ["q"]),
        ([{"q": {"a": 1e300, "b": -1e300}}, {"q": {"a": 5e-324, "b": 1e-300}}], ["q"]),
    ]
    for stages, asked in cases:
        for depth in (None, 0, 1, 3):
            for name, ours, reference in _all_methods(stages, asked, depth, 60, [1.0, -0.5, 2][:len(stages)],
                                                      1.3):
                assert _bits(ours.to_dict()) == _bits(reference), (stages, depth, name)


def test_stable_order_is_numpys_stable_argsort():
    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 3, 8, 100, 1000):
        for bound in (1, 2, 3, 2**20, 2**40, 2**54, 2**56, 2**57, 2**60, 2**63 - 1):
            values = rng.integers(0, bound, n, dtype=np.int64)
            if n > 2:
                values[: n // 2] = values[0]  # many equal values: the row order among them is what is tested
            got = fusion._stable_order(values, bound)
            assert np.array_equal(got, np.argsort(values, kind="stable")), (n, bound)


# --- rerank --------------------------------------------------------------------------------------------------------


class _Scorer:
    """A stub CandidateScorer: a fixed score per (query, document), in a chosen dtype."""

    device = "cpu"

    def __init__(self, table, dtype):
        self.table, self.dtype = table, dtype

    def scores(self, queries, candidates, context):
        return {q: np.array([self.table(q, d) for d in docs], dtype=self.dtype) for q, docs in candidates.items()}


def _old_rerank(first: RunArrays, top: int, scorer, queries, k: int) -> dict[str, dict[str, float]]:
    """RerankRetriever.search before 670bada, on the run as read_run's dict."""
    run = first.to_dict()
    candidates = {q: list(run.get(q, {}))[:top] for q in queries}
    scores = scorer.scores(queries, candidates, None)
    out = {}
    for q, docs in candidates.items():
        order = sorted(range(len(docs)), key=lambda i: -scores[q][i])  # stable: ties keep the first order
        out[q] = {docs[i]: float(scores[q][i]) for i in order[:k]}
    return out


def _new_rerank(first: RunArrays, top: int, scorer, queries, k: int):
    reranker = object.__new__(RerankRetriever)  # the search alone: no model, the stub scorer
    reranker.top, reranker.scorer = top, scorer
    reranker.first = StageRun("first", "fp", "run.txt", {}, 1, 1, False, first)
    return reranker.search(queries, k, None).run


def test_rerank_equals_the_per_query_rerank():
    for seed in range(200):
        rng = random.Random(seed)
        pool = [f"d{i}" for i in range(15)] + ["é", "a" * 9, "a" * 17, "a"] + (["x\x00", "x"] if seed % 5 == 0 else [])
        run = {}
        for q in [f"q{i}" for i in range(rng.randint(0, 5))]:
            if rng.random() < 0.2:
                continue
            run[q] = in_score_order({d: rng.choice([1.0, 2.0, 0.5, -0.0, 0.0])
                                     for d in rng.sample(pool, rng.randint(0, 10))})
        first = RunArrays.from_dict(run)
        queries = {q: "text" for q in rng.sample([f"q{i}" for i in range(6)], rng.randint(0, 6))}
        values = rng.choice([[0.0, 1.0, -0.0], [0.1, 0.2, 0.3, 1e-8], [float(i) for i in range(30)]])
        table: dict = {}
        scorer = _Scorer(lambda q, d, table=table, rng=rng, values=values: table.setdefault((q, d), rng.choice(values)),
                         rng.choice([np.float32, np.float64]))
        top, k = rng.choice([0, 1, 3, 100]), rng.choice([0, 1, 2, 10])
        expected = _old_rerank(first, top, scorer, queries, k)
        assert _bits(_new_rerank(first, top, scorer, queries, k).to_dict()) == _bits(expected), seed


def test_rerank_refuses_a_nan_score_as_a_harness_error():
    first = RunArrays.from_dict({"q": {"a": 2.0, "b": 1.0}})
    scorer = _Scorer(lambda q, d: float("nan") if d == "b" else 1.0, np.float64)
    with pytest.raises(HarnessError, match="non-finite"):
        _new_rerank(first, 10, scorer, {"q": "text"}, 10)
