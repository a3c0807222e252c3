"""Metrics: hand-computed cases, and agreement with trec_eval (pytrec_eval) on random runs with ties."""

from __future__ import annotations

import math
import random

import pytest

from harness.errors import HarnessError
from harness.metrics import evaluate, mean, parse_measure
from harness.trec import ranked

pytrec_eval = pytest.importorskip("pytrec_eval")


def test_ndcg_hand_computed_graded():
    qrels = {"q": {"a": 2, "b": 1, "c": 0}}
    run = {"q": {"c": 3.0, "b": 2.0, "a": 1.0}}
    dcg = 0 / math.log2(2) + 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert evaluate(qrels, run, ["ndcg@10"])["ndcg@10"]["q"] == pytest.approx(dcg / idcg)


def test_ties_are_broken_by_docid_descending_like_trec_eval():
    assert [d for d, _ in ranked({"a": 1.0, "c": 1.0, "b": 1.0, "z": 0.5})] == ["c", "b", "a", "z"]
    # with a tie at the cut-off, the lexicographically larger id wins the slot
    qrels = {"q": {"a": 1}}
    assert evaluate(qrels, {"q": {"a": 1.0, "b": 1.0}}, ["p@1"])["p@1"]["q"] == 0.0
    assert evaluate(qrels, {"q": {"a": 1.0, "0": 1.0}}, ["p@1"])["p@1"]["q"] == 1.0


def test_recall_precision_map_mrr_hand_computed():
    qrels = {"q": {"a": 1, "b": 1, "c": 1, "x": 0}}
    run = {"q": {"x": 5.0, "a": 4.0, "y": 3.0, "b": 2.0}}
    got = evaluate(qrels, run, ["recall@2", "recall@10", "p@2", "p@10", "map@10", "mrr@10", "mrr@1"])
    assert got["recall@2"]["q"] == pytest.approx(1 / 3)
    assert got["recall@10"]["q"] == pytest.approx(2 / 3)
    assert got["p@2"]["q"] == pytest.approx(1 / 2)
    assert got["p@10"]["q"] == pytest.approx(2 / 10)  # trec_eval divides by k even past the run's end
    assert got["map@10"]["q"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert got["mrr@10"]["q"] == pytest.approx(1 / 2)
    assert got["mrr@1"]["q"] == 0.0


def test_missing_queries_score_zero_and_unjudged_queries_are_ignored():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}}
    run = {"q1": {"a": 1.0}, "other": {"a": 1.0}}
    got = evaluate(qrels, run, ["ndcg@10"])["ndcg@10"]
    assert got == {"q1": 1.0, "q2": 0.0}
    assert mean(got) == 0.5


def test_evaluate_does_not_modify_inputs():
    qrels = {"q": {"a": 1}}
    run = {"q": {"b": 2.0, "a": 1.0}}
    before = (repr(qrels), repr(run))
    evaluate(qrels, run, ["ndcg@10", "recall@1"])
    assert (repr(qrels), repr(run)) == before


@pytest.mark.parametrize("text,name,k", [("nDCG@10", "ndcg", 10), ("R@100", "recall", 100), ("P@5", "p", 5),
                                         ("MAP@1000", "map", 1000), ("MRR@10", "mrr", 10), ("map", "map", None)])
def test_parse_measure(text, name, k):
    m = parse_measure(text)
    assert (m.name, m.k) == (name, k)


@pytest.mark.parametrize("bad", ["ndcg", "foo@10", "ndcg@0", "ndcg@x", ""])
def test_parse_measure_rejects(bad):
    with pytest.raises(HarnessError):
        parse_measure(bad)


TREC_NAMES = {"ndcg": "ndcg_cut_{k}", "recall": "recall_{k}", "p": "P_{k}", "map": "map_cut_{k}"}
CUTS = [1, 3, 5, 10, 20]


def _random_case(seed: int):
    rng = random.Random(seed)
    docs = [f"d{i:02d}" for i in range(rng.randint(5, 40))]
    qrels, run = {}, {}
    for q in range(rng.randint(1, 12)):
        qid = f"q{q}"
        judged = rng.sample(docs, rng.randint(1, len(docs)))
        qrels[qid] = {d: rng.choice([0, 0, 1, 2, 3]) for d in judged}
        if rng.random() < 0.15:
            continue  # a judged query the run does not answer
        retrieved = rng.sample(docs, rng.randint(0, len(docs)))
        # coarse scores so that ties are frequent
        run[qid] = {d: float(rng.randint(0, 5)) / 2 for d in retrieved}
    return qrels, run


@pytest.mark.parametrize("seed", range(40))
def test_agrees_with_pytrec_eval_on_random_runs(seed):
    qrels, run = _random_case(seed)
    trec_measures = {f"ndcg_cut.{','.join(map(str, CUTS))}", f"recall.{','.join(map(str, CUTS))}",
                     f"P.{','.join(map(str, CUTS))}", f"map_cut.{','.join(map(str, CUTS))}", "recip_rank"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, trec_measures).evaluate(run)
    ours = evaluate(qrels, run, [f"{n}@{k}" for n in TREC_NAMES for k in CUTS] + ["mrr"])
    for qid, values in expected.items():
        for name, pattern in TREC_NAMES.items():
            for k in CUTS:
                assert ours[f"{name}@{k}"][qid] == pytest.approx(values[pattern.format(k=k)], abs=1e-12), \
                    (qid, name, k)
        assert ours["mrr"][qid] == pytest.approx(values["recip_rank"], abs=1e-12)
    for qid in set(qrels) - set(expected):  # not in the run: trec_eval -c counts them as zero
        assert all(ours[m][qid] == 0.0 for m in ours)


@pytest.mark.parametrize("seed", range(10))
def test_mrr_at_k_equals_recip_rank_of_the_cut_run(seed):
    qrels, run = _random_case(seed)
    k = 3
    cut = {q: dict(ranked(d)[:k]) for q, d in run.items()}
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(cut)
    ours = evaluate(qrels, run, [f"mrr@{k}"])[f"mrr@{k}"]
    for qid, values in expected.items():
        assert ours[qid] == pytest.approx(values["recip_rank"], abs=1e-12)
