"""Metrics: hand-computed cases, and agreement with trec_eval (pytrec_eval) on random runs with ties."""

from __future__ import annotations

import math
import random
import re

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


# --- the measure language (issue 29): one parser, ir_measures' names, relevance levels, Judged@k ----------
LEVEL_CUTS = [1, 3, 10]


@pytest.mark.parametrize("rel", [1, 2])
@pytest.mark.parametrize("seed", range(30))
def test_every_qrels_measure_equals_pytrec_eval_at_relevance_levels(seed, rel):
    """ir_measures' spelling with (rel=N) against trec_eval's -l N (pytrec_eval's relevance_level) on random
    graded qrels (grades 0-3) and runs with many ties, to 1e-12. nDCG takes no level: trec_eval's nDCG is
    the same at every level, which this checks too."""
    qrels, run = _random_case(seed)
    cuts = ",".join(map(str, LEVEL_CUTS))
    trec = {f"ndcg_cut.{cuts}", f"recall.{cuts}", f"P.{cuts}", f"map_cut.{cuts}", "map", "recip_rank",
            "success.1,5,10"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, trec, relevance_level=rel).evaluate(run)
    level = f"(rel={rel})" if rel != 1 else ""
    names = {f"nDCG@{k}": f"ndcg_cut_{k}" for k in LEVEL_CUTS}
    for k in LEVEL_CUTS:
        names |= {f"R{level}@{k}": f"recall_{k}", f"P{level}@{k}": f"P_{k}", f"AP{level}@{k}": f"map_cut_{k}"}
    names |= {f"AP{level}": "map", f"RR{level}": "recip_rank"}
    names |= {f"Success{level}@{k}": f"success_{k}" for k in (1, 5, 10)}
    ours = evaluate(qrels, run, list(names))
    for qid, values in expected.items():
        for name, trec_name in names.items():
            assert ours[name][qid] == pytest.approx(values[trec_name], abs=1e-12), \
                (seed, rel, qid, name)
    cut = {q: dict(ranked(d)[:3]) for q, d in run.items()}  # RR@k: recip_rank of the run cut at k
    expected_cut = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=rel).evaluate(cut)
    rr3 = evaluate(qrels, run, [f"RR{level}@3"])[f"RR{level}@3"]
    for qid, values in expected_cut.items():
        assert rr3[qid] == pytest.approx(values["recip_rank"], abs=1e-12)


def test_judged_at_k_hand_computed():
    """Judged@k: judged documents (any grade, 0 included) in the top k, over k (fewer retrieved still /k)."""
    qrels = {"q1": {"a": 0, "b": 2, "c": 1}, "q2": {"x": 1}, "q3": {"a": 0}}
    run = {"q1": {"a": 5.0, "u": 4.0, "b": 3.0, "v": 2.0, "c": 1.0},  # a u b v c: judged at ranks 1, 3, 5
           "q2": {"y": 2.0, "x": 1.0},  # only two retrieved
           "q3": {}}
    got = evaluate(qrels, run, ["Judged@1", "Judged@3", "Judged@5", "Judged@10"])
    assert got["Judged@1"] == {"q1": 1.0, "q2": 0.0, "q3": 0.0}
    assert got["Judged@3"] == {"q1": 2 / 3, "q2": 1 / 3, "q3": 0.0}
    assert got["Judged@5"] == {"q1": 3 / 5, "q2": 1 / 5, "q3": 0.0}
    assert got["Judged@10"] == {"q1": 3 / 10, "q2": 1 / 10, "q3": 0.0}


@pytest.mark.parametrize("text,canonical,ir", [
    ("nDCG@10", "ndcg@10", "nDCG@10"), ("ndcg@10", "ndcg@10", "nDCG@10"), ("R@100", "recall@100", "R@100"),
    ("recall@100", "recall@100", "R@100"), ("R(rel=2)@1000", "recall(rel=2)@1000", "R(rel=2)@1000"),
    ("recall(rel=2)@1000", "recall(rel=2)@1000", "R(rel=2)@1000"), ("AP(rel=2)", "map(rel=2)", "AP(rel=2)"),
    ("AP", "map", "AP"), ("map@100", "map@100", "AP@100"), ("RR@10", "mrr@10", "RR@10"), ("mrr", "mrr", "RR"),
    ("P@10", "p@10", "P@10"), ("P(rel=1)@10", "p@10", "P@10"), ("Success@5", "success@5", "Success@5"),
    ("Judged@10", "judged@10", "Judged@10"),
    ("Accuracy@20", "accuracy@20", "Accuracy@20"), ("top-20 accuracy", "accuracy@20", "Accuracy@20"),
    ("top-k accuracy@20", "accuracy@20", "Accuracy@20"), ("acc@5", "accuracy@5", "Accuracy@5"),
    ("top100", "accuracy@100", "Accuracy@100"), (" R ( rel = 2 ) @ 10 ", "recall(rel=2)@10", "R(rel=2)@10")])
def test_one_parser_reads_both_spellings(text, canonical, ir):
    m = parse_measure(text)
    assert (str(m), m.ir_measures) == (canonical, ir)
    assert parse_measure(str(m)) == m == parse_measure(m.ir_measures)  # either spelling reads back


@pytest.mark.parametrize("bad,why", [
    ("nDCG(rel=2)@10", "nDCG uses the grades"), ("Judged(rel=2)@10", "takes no relevance level"),
    ("R(foo=1)@10", "unknown parameter 'foo=1' (R takes rel=N, judged_only=true)"),
    ("R(rel=0)@10", "rel=0 is not a valid value; expected an integer >= 1"),
    ("R(rel=x)@10", "rel='x' is not a valid value; expected an integer >= 1"),
    ("R(rel=2,rel=3)@10", "the parameter rel is given twice"), ("nDCG(dcg=exp)@10", "expected one of log2, exp-log2"),
    ("Judged", "needs a cut-off"), ("Accuracy", "needs a cut-off"), ("ERR@10", "unknown metric"),
    ("R@0", "at least 1")])
def test_the_parser_refuses_with_the_reason(bad, why):
    with pytest.raises(HarnessError, match=re.escape(why)):
        parse_measure(bad)


def test_the_measure_parser_is_the_only_one_in_the_tree():
    """No module but harness/metrics/measures.py holds a pattern for measure names (the ODQA evaluator and the
    baseline reader used to have their own)."""
    import ast

    from tests.conftest import REPO

    for path in (REPO / "harness").rglob("*.py"):
        if path.name == "measures.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(
                    r"(accuracy|ndcg|recall)[^ ]*\\d|@\\?\(\\d|@\\s\*", node.value):
                raise AssertionError(f"{path.relative_to(REPO)}: a measure-name pattern {node.value!r}; parse "
                                     "with harness.metrics.parse_measure")


# --- the open measure language (issue 37): declared parameters, names read as before -------------------------
#: every spelling the parser read before the parameters were declared, with the measure it read (issue 37:
#: unchanged); "a|b" lists spellings of one measure
AS_BEFORE = {
    "ndcg@10|nDCG@10|NDCG@10|  nDCG@10 |ndcg @10|nDCG  @ 10|ndcg@010": "ndcg@10",
    "recall@10|r@10|R@10": "recall@10", "recall(rel=2)@10|r(rel=2)@10|R(rel=2)@10": "recall(rel=2)@10",
    "p@10|P@10|precision@10|P(rel=1)@10": "p@10", "p(rel=2)@10|P(rel=2)@10|precision(rel=2)@10": "p(rel=2)@10",
    "map@10|ap@10|AP@10": "map@10", "map(rel=2)@10|ap(rel=2)@10|AP(rel=2)@10": "map(rel=2)@10",
    "map|ap|AP": "map", "map(rel=2)|ap(rel=2)|AP(rel=2)": "map(rel=2)",
    "mrr@10|rr@10|RR@10|recip_rank@10": "mrr@10", "mrr|rr|RR|recip_rank": "mrr",
    "mrr(rel=2)|rr(rel=2)|RR(rel=2)|recip_rank(rel=2)": "mrr(rel=2)",
    "success@10|Success@10": "success@10", "success(rel=2)@10|Success(rel=2)@10": "success(rel=2)@10",
    "judged@10|Judged@10": "judged@10",
    "accuracy@10|Accuracy@10|acc@10|top@10|top-k accuracy@10|topk accuracy@10|top-k acc@10": "accuracy@10",
    "top-20 accuracy|top20 accuracy|accuracy-20|acc20|top20|top-20|Top-20 Accuracy": "accuracy@20",
    "top-5 acc": "accuracy@5",
}


@pytest.mark.parametrize("spellings,canonical", AS_BEFORE.items())
def test_every_name_read_before_reads_the_same_measure(spellings, canonical):
    for text in spellings.split("|"):
        assert str(parse_measure(text)) == canonical, text


@pytest.mark.parametrize("text,canonical,ir", [
    ("nDCG(judged_only=True)@10", "ndcg(judged_only=true)@10", "nDCG(judged_only=True)@10"),
    ("nDCG(dcg='exp-log2')@10", "ndcg(dcg=exp-log2)@10", "nDCG(dcg='exp-log2')@10"),
    ("ndcg(judged_only=true,dcg=exp-log2)@5", "ndcg(dcg=exp-log2,judged_only=true)@5",
     "nDCG(dcg='exp-log2',judged_only=True)@5"),
    ("nDCG(dcg=log2, judged_only=false)@10", "ndcg@10", "nDCG@10"),  # defaults are not written
    ("AP(judged_only=yes,rel=2)", "map(rel=2,judged_only=true)", "AP(rel=2,judged_only=True)")])
def test_declared_parameters_read_in_either_spelling_and_write_back_one_way(text, canonical, ir):
    m = parse_measure(text)
    assert (str(m), m.ir_measures) == (canonical, ir)
    assert parse_measure(str(m)) == m == parse_measure(m.ir_measures)


@pytest.mark.parametrize("rel", [1, 2])
@pytest.mark.parametrize("seed", range(25))
def test_judged_only_equals_trec_eval_minus_j(seed, rel):
    """judged_only=true is trec_eval's -J (pytrec_eval's judged_docs_only_flag), for every measure that takes it."""
    qrels, run = _random_case(seed)
    trec = {f"ndcg_cut.{','.join(map(str, LEVEL_CUTS))}", f"recall.{','.join(map(str, LEVEL_CUTS))}",
            f"P.{','.join(map(str, LEVEL_CUTS))}", "map", "recip_rank", "success.1,5,10"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, trec, relevance_level=rel,
                                              judged_docs_only_flag=True).evaluate(run)
    level = f"rel={rel}," if rel != 1 else ""
    names = {f"nDCG(judged_only=true)@{k}": f"ndcg_cut_{k}" for k in LEVEL_CUTS}
    names |= {f"R({level}judged_only=true)@{k}": f"recall_{k}" for k in LEVEL_CUTS}
    names |= {f"P({level}judged_only=true)@{k}": f"P_{k}" for k in LEVEL_CUTS}
    names |= {f"AP({level}judged_only=true)": "map", f"RR({level}judged_only=true)": "recip_rank"}
    names |= {f"Success({level}judged_only=true)@{k}": f"success_{k}" for k in (1, 5, 10)}
    ours = evaluate(qrels, run, list(names))
    for qid, values in expected.items():
        for name, trec_name in names.items():
            assert ours[name][qid] == pytest.approx(values[trec_name], abs=1e-12), (qid, name)


@pytest.mark.parametrize("seed", range(25))
def test_exp_log2_gains_equal_trec_eval_on_qrels_graded_two_to_the_grade_minus_one(seed):
    qrels, run = _random_case(seed)
    exponential = {q: {d: 2 ** g - 1 for d, g in docs.items()} for q, docs in qrels.items()}
    expected = pytrec_eval.RelevanceEvaluator(exponential, {"ndcg_cut.1,3,10"}).evaluate(run)
    ours = evaluate(qrels, run, [f"nDCG(dcg=exp-log2)@{k}" for k in (1, 3, 10)])
    for qid, values in expected.items():
        for k in (1, 3, 10):
            assert ours[f"nDCG(dcg=exp-log2)@{k}"][qid] == pytest.approx(values[f"ndcg_cut_{k}"], abs=1e-12)


def test_the_help_and_the_listing_read_the_registry():
    from harness.metrics.measures import FAMILIES, measure_help, measure_rows

    rows = {r.name: r for r in measure_rows()}
    assert list(rows) == FAMILIES.names()
    assert rows["ndcg"].parameters == "dcg=log2|exp-log2, judged_only=true" and rows["map"].syntax == "AP[@k]"
    shown = measure_help()
    assert all(f.ir_name in shown for _, f in FAMILIES.items()) and "R/P/AP/RR/Success(rel=N" in shown


def test_a_name_another_family_has_is_refused_at_registration():
    from harness.metrics.measures import Family, register_measure

    with pytest.raises(ValueError, match="is recall's already"):
        register_measure(Family("recall2", "R", None, "a clash"))
    with pytest.raises(ValueError, match="not a name the parser reads"):
        register_measure(Family("2fast", "Fast", None, "a bad name"))


# --- measures over arrays (issue 38): the vectorised path equals the per-query functions bit for bit ----------
ARRAY_MEASURES = ["nDCG@1", "nDCG@3", "nDCG@10", "nDCG@100", "nDCG(dcg=exp-log2)@5", "nDCG(judged_only=true)@3",
                  "R@1", "R@5", "R(rel=2)@10", "R(judged_only=true)@3", "P@1", "P@5", "P(rel=2)@3",
                  "P(rel=2,judged_only=true)@5", "AP", "AP@3", "AP(rel=2)", "AP(judged_only=true)", "RR", "RR@3",
                  "RR(rel=3)", "RR(judged_only=true)@2", "Success@1", "Success(rel=2)@5", "Judged@1", "Judged@10"]


def _query_by_query(qrels, run, names):
    """What ``evaluate`` computed before issue 38: each measure's per-query function on trec_eval's ranking."""
    measures = {n: parse_measure(n) for n in names}
    out = {n: {} for n in names}
    for qid, rels in qrels.items():
        ranking = [d for d, _ in ranked(run.get(qid, {}))]
        for n, m in measures.items():
            out[n][qid] = m(rels, ranking)
    return out


def _tied_case(rng: random.Random):
    """Graded qrels and a run with many ties, ids of one to three words (8 bytes each), judged queries the run
    misses, run queries nobody judged, a query judged with nothing."""
    docs = ["".join(rng.choice("ab9_é") for _ in range(rng.randint(1, 20))) for _ in range(rng.randint(3, 40))]
    docs = list(dict.fromkeys(docs))
    qrels, run = {}, {}
    for q in range(rng.randint(1, 10)):
        qid = f"q{q}"
        qrels[qid] = {d: rng.choice([0, 0, 1, 2, 3]) for d in rng.sample(docs, rng.randint(0, len(docs)))}
        if rng.random() < 0.15:
            continue
        scale = rng.choice([1, 2, 1000])
        run[qid] = {d: float(rng.randint(-2, 5)) / scale for d in rng.sample(docs, rng.randint(0, len(docs)))}
    run["unjudged"] = {d: 1.0 for d in docs[:3]}
    return qrels, run


@pytest.mark.parametrize("seed", range(150))
def test_measures_over_arrays_equal_the_per_query_functions_exactly(tmp_path, seed):
    """Every built-in measure, over a run read as arrays and over the dict, equals the per-query function exactly
    (==, not approximately) on random runs with ties."""
    from harness.trec import RunArrays, read_run_arrays, write_run

    qrels, run = _tied_case(random.Random(seed))
    expected = _query_by_query(qrels, run, ARRAY_MEASURES)
    path = tmp_path / "r.trec"
    write_run(path, {q: d for q, d in run.items() if d}, "t", score_format="%r")
    from_file = read_run_arrays(path)
    assert from_file.source is None  # read by the vectorised reader
    for given in (run, from_file, RunArrays.from_dict(run)):
        assert evaluate(qrels, given, ARRAY_MEASURES) == expected


def test_measures_over_arrays_on_a_run_of_thousands_of_hits_equal_the_per_query_functions():
    """Deep rankings (1,000 hits a query, ties at six decimals), where sums run long."""
    from harness.trec import RunArrays

    rng = random.Random(7)
    qrels, run = {}, {}
    for q in range(30):
        docs = [f"doc{rng.randrange(10**6)}" for _ in range(1200)]
        run[f"q{q}"] = {d: round(rng.gauss(10, 3), 3) for d in docs[:1000]}
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 2, 3]) for d in rng.sample(docs, 100)}
    names = ["nDCG@10", "nDCG@1000", "R@1000", "AP", "AP@100", "RR", "P@100", "nDCG(dcg=exp-log2)@1000"]
    assert evaluate(qrels, RunArrays.from_dict(run), names) == _query_by_query(qrels, run, names)
    assert evaluate(qrels, run, names) == _query_by_query(qrels, run, names)
