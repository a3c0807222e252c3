"""Fusion on runs as arrays (``line_up``, the score functions, ``ranked``) against the per-query dict fusion it
replaced, kept here as the reference: the same documents, the same order and the same float64 scores, bit for
bit, on random runs of many queries with ties, queries a stage lacks or has alone, Unicode and prefix ids, ids
with a NUL, and every depth (the runner's fused runs: tests/test_compose.py)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import numpy as np
import pytest

from harness.data.judgements import GradedJudgements
from harness.errors import HarnessError
from harness.retrievers import fusion
from harness.trec import RunArrays
from tests.fusion_reference import hybrid_ref, rrf_ref, wsum_ref

# --- random runs ---------------------------------------------------------------------------------------------


def _ids(rng: random.Random, n: int, odd: bool) -> list[str]:
    pool = [f"d{i}" for i in range(25)] + ["é", "ée", "日本", "d1\u00e9", "a" * 9, "a" * 8, "a" * 17, "𝔘x"]
    if odd:
        pool += ["nul\x00", "nul", "nul\x00x"]
    return rng.sample(pool, min(n, len(pool)))


def random_stage(rng: random.Random, queries: list[str], odd: bool) -> dict[str, dict[str, float]]:
    """One stage's run in the one order (score descending, ties in the given order), some queries left out,
    scores from few values (ties), from a wide range, negative, or all equal."""
    run = {}
    kind = rng.choice(["few", "wide", "negative", "equal", "tiny"])
    for q in queries:
        if rng.random() < 0.2:
            continue
        docs = _ids(rng, rng.randint(0 if rng.random() < 0.1 else 1, 30), odd)
        if kind == "few":
            scores = [rng.choice([0.5, 1.0, 1.5, 2.0]) for _ in docs]
        elif kind == "wide":
            scores = [rng.uniform(-1e3, 1e6) for _ in docs]
        elif kind == "negative":
            scores = [-rng.random() for _ in docs]
        elif kind == "equal":
            scores = [3.25 for _ in docs]
        else:
            scores = [rng.random() * 1e-10 for _ in docs]
        hits = sorted(zip(docs, scores, strict=True), key=lambda x: -x[1])
        run[q] = dict(hits)
    return run


def _check_same(ours: RunArrays, reference: dict[str, dict[str, float]]) -> None:
    got = ours.to_dict()
    assert list(got) == list(reference)
    for q in reference:
        assert list(got[q].items()) == list(reference[q].items()), q  # ids, order and scores, bit for bit


@pytest.mark.parametrize("seed", range(60))
def test_fused_arrays_equal_the_per_query_reference(seed):
    rng = random.Random(seed)
    odd = seed % 10 == 9  # ids with a NUL: lined up by their numbers in id order
    queries = [f"q{i}" for i in range(rng.randint(1, 12))]
    stages = [random_stage(rng, queries + ["extra"], odd) for _ in range(rng.randint(2, 4))]
    asked = rng.sample(queries, len(queries)) + ["nohits"]  # the searched queries, in an order of their own
    arrays = [RunArrays.from_dict(s) for s in stages]
    lined = fusion.line_up(arrays, asked, sums=True)
    depth = rng.choice([None, 1, 3, 10, 1000])
    k = rng.choice([0, 1, 60])
    _check_same(fusion.ranked(lined, fusion.rrf_scores(lined, k), depth),
                {q: rrf_ref([s.get(q, {}) for s in stages], k, depth) for q in asked})
    weights = [rng.choice([0.0, 0.1, 0.3, 1.0, 2.5]) for _ in stages]
    for norm in ("none", "min-max", "max", "sum"):
        _check_same(fusion.ranked(lined, fusion.weighted(fusion.normalised(lined, norm), weights), depth),
                    {q: wsum_ref([s.get(q, {}) for s in stages], weights, norm, depth) for q in asked})
    pair = fusion.line_up(arrays[:2], asked)
    for normalization in (False, True):
        for on_dense in (False, True):
            alpha = rng.choice([0.1, 1.3, 2.0])
            _check_same(fusion.ranked(pair, fusion.hybrid_scores(pair, alpha, normalization, on_dense), depth),
                        {q: hybrid_ref(stages[0].get(q, {}), stages[1].get(q, {}), alpha, normalization,
                                       on_dense, depth) for q in asked})


@pytest.mark.parametrize("seed", range(6))
def test_optimised_weights_and_trials_equal_the_per_query_reference(seed):
    rng = random.Random(seed)
    queries = [f"q{i}" for i in range(10)]
    stages = [random_stage(rng, queries, False) for _ in range(2 + seed % 2)]
    qrels = {q: {d: rng.randint(0, 2) for d in _ids(rng, 5, False)} for q in queries}
    judgements = GradedJudgements(Path("qrels.tsv"), given=qrels)
    norm = ["none", "min-max", "max", "sum"][seed % 4]
    got = fusion.optimise_wsum(stages, judgements, "ndcg@10", norm, 0.25, 20)
    union = list(dict.fromkeys(q for s in stages for q in s))
    name, _ = judgements.measure("ndcg@10")
    for weights, score in got.trials:
        run = {q: wsum_ref([s.get(q, {}) for s in stages], weights, norm, 20) for q in union}
        per_query, _ = judgements.evaluate(run, [name])
        values = list(per_query[name].values())
        assert score == (float(sum(values) / len(values)) if values else 0.0), weights


def test_the_one_query_helpers_are_the_array_fusion():
    dense, sparse = {"a": 2.0, "b": 1.0}, {"c": 5.0, "a": 1.0}
    assert fusion.hybrid(dense, sparse, 1.3, normalization=True) == hybrid_ref(dense, sparse, 1.3, True)
    assert fusion.rrf([dense, sparse], 60, 2) == rrf_ref([dense, sparse], 60, 2)
    assert fusion.wsum([dense, sparse], [0.3, 0.7], "sum") == wsum_ref([dense, sparse], [0.3, 0.7], "sum")
    assert fusion.rrf([{}, {}]) == {}


def test_line_up_refuses_what_it_cannot_line_up():
    run = RunArrays.from_dict({"q": {"a": 1.0}})
    with pytest.raises(ValueError, match="twice"):
        fusion.line_up([run, run], ["q", "q"])
    twice = RunArrays(("q",), np.array([0, 2]), np.array([2.0, 1.0]), np.vstack([run.keys, run.keys]))
    with pytest.raises(ValueError, match="document twice"):
        fusion.line_up([twice, run], ["q"])
    huge = RunArrays.from_dict({"q": {"a": 1e308, "b": -1e308}})
    lined = fusion.line_up([huge, huge], ["q"])
    with pytest.raises(HarnessError, match="query 'q', document 'a': the fused score is inf"):
        fusion.ranked(lined, fusion.weighted(fusion.normalised(lined, "none"), [1.5, 1.5]), None)
    odd = RunArrays.from_dict({"q": {"x\x00": 1e308, "y": 1.0}})  # ids with a NUL: named from their numbers
    lined = fusion.line_up([odd, odd], ["q"])
    with pytest.raises(HarnessError, match=re.escape("document 'x\\x00': the fused score is inf")):
        fusion.ranked(lined, fusion.weighted(fusion.normalised(lined, "none"), [1.5, 1.5]), 1)
    nan = fusion.line_up([huge, huge], ["q"])  # inf - inf: a NaN is refused wherever it is, cut or not
    with np.errstate(invalid="ignore"):
        scores = fusion.hybrid_scores(nan, -1.0) * np.inf  # 0 x inf
    with pytest.raises(HarnessError, match="document 'a': the fused score is nan"):
        fusion.ranked(nan, scores, 0)
