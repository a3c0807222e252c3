"""A trec_eval, ir_measures or BEIR user's habits (issue 36): their measure names read as the same measures,
trec_eval's -l, -m and -q on `harness evaluate` (and -m wherever --metric is), results keyed by the names given
while records and the leaderboard keep one column, and BEIR's measure set with one name."""

from __future__ import annotations

import json
import random

import pytest

import harness
from harness.cli import main
from harness.errors import HarnessError
from harness.metrics import evaluate, parse_measure
from harness.metrics.measures import expand_measures

pytrec_eval = pytest.importorskip("pytrec_eval")

#: the same measure in every spelling: trec_eval's -m, trec_eval's output, ir_measures', BEIR's, the harness's
SAME = [
    ("ndcg_cut.10", "ndcg_cut_10", "nDCG@10", "NDCG@10", "ndcg@10"),
    ("P.10", "P_10", "P@10", "p@10"),
    ("recall.1000", "recall_1000", "R@1000", "Recall@1000", "recall@1000"),
    ("map", "AP", "MAP", "map"),
    ("map_cut.100", "map_cut_100", "AP@100", "MAP@100", "map@100"),
    ("recip_rank", "RR", "MRR", "mrr"),
    ("success.5", "success_5", "Success@5", "success@5"),
]


@pytest.mark.parametrize("spellings", SAME, ids=lambda s: s[0])
def test_trec_evals_and_ir_measures_names_read_as_the_same_measure(spellings):
    assert len({parse_measure(s) for s in spellings}) == 1


def _case(seed: int):
    rng = random.Random(seed)
    docs = [f"d{i}" for i in range(30)]
    qrels, run = {}, {}
    for q in range(8):
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 2, 3]) for d in rng.sample(docs, 12)}
        run[f"q{q}"] = {d: float(rng.randint(0, 6)) for d in rng.sample(docs, 20)}  # ties
    return qrels, run


@pytest.mark.parametrize("rel", [1, 2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_trec_eval_names_and_lists_give_what_trec_eval_gives_under_its_own_names(seed, rel):
    """``P.1,3,10`` and friends, at trec_eval's -l: keyed as trec_eval prints them, equal to pytrec_eval."""
    qrels, run = _case(seed)
    asked = ["ndcg_cut.1,3,10", "P.1,3,10", "recall.3,10", "map", "map_cut.5,10", "recip_rank", "success.1,5"]
    expected = pytrec_eval.RelevanceEvaluator(qrels, set(asked), relevance_level=rel).evaluate(run)
    ours = evaluate(qrels, run, asked, rel=rel)
    assert set(ours) == set(next(iter(expected.values())))  # ndcg_cut_1, P_3, map, recip_rank, success_5, ...
    for name, values in ours.items():
        for qid in qrels:
            assert values[qid] == pytest.approx(expected[qid][name], abs=1e-12), (name, qid)


def test_a_relevance_level_is_rel_for_the_measures_that_take_one():
    assert str(parse_measure("P.10", rel=2)) == "p(rel=2)@10" == str(parse_measure("P(rel=2)@10"))
    assert str(parse_measure("map", rel=3)) == "map(rel=3)"
    assert str(parse_measure("R(rel=1)@5", rel=2)) == "recall@5"  # a name that gives its own keeps it
    assert str(parse_measure("ndcg_cut.10", rel=2)) == "ndcg@10"  # nDCG: the grades themselves (trec_eval too)
    assert str(parse_measure("Judged@10", rel=2)) == "judged@10"


def _files(tmp_path, qrels, run):
    q, r = tmp_path / "q.txt", tmp_path / "r.trec"
    q.write_text("".join(f"{qid} 0 {d} {g}\n" for qid, docs in qrels.items() for d, g in docs.items()))
    r.write_text("".join(f"{qid} Q0 {d} {i} {s} t\n" for qid, docs in run.items()
                         for i, (d, s) in enumerate(docs.items(), 1)))
    return q, r


def test_harness_evaluate_takes_trec_evals_m_l_and_q(tmp_path, capsys):
    qrels, run = _case(1)
    q, r = _files(tmp_path, qrels, run)
    assert main(["evaluate", "--qrels", str(q), "--run", str(r), "-m", "P.5,10", "-m", "ndcg_cut.10", "-m", "map",
                 "-l", "2", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["metrics"]
    expected = pytrec_eval.RelevanceEvaluator(qrels, {"P.5,10", "ndcg_cut.10", "map"}, relevance_level=2).evaluate(run)
    assert list(got) == ["P_5", "P_10", "ndcg_cut.10", "map"]
    for name, trec in (("P_5", "P_5"), ("P_10", "P_10"), ("ndcg_cut.10", "ndcg_cut_10"), ("map", "map")):
        assert got[name] == pytest.approx(sum(v[trec] for v in expected.values()) / len(qrels), abs=1e-12)
    assert main(["evaluate", "--qrels", str(q), "--run", str(r), "-m", "P@5", "-q"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [x.split("\t")[:2] for x in lines[:2]] == [["P@5", "q0"], ["P@5", "q1"]] and lines[-2].startswith("P@5\tall")
    assert main(["evaluate", "--qrels", str(q), "--run", str(r), "-m", "P@5", "-l", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "-l: rel=0" in err and ">= 1" in err


def test_results_are_keyed_by_the_names_given(tmp_path, capsys):
    qrels, run = _case(2)
    q, r = _files(tmp_path, qrels, run)
    got = harness.evaluate(q, r, ["P@1", "P.1", "p@1", "nDCG@10"])
    assert list(got) == ["P@1", "P.1", "p@1", "nDCG@10"] and got["P@1"] == got["P.1"] == got["p@1"]
    assert harness.evaluate(qrels, run, ["R@10"])["R@10"] == harness.evaluate(qrels, run, ["recall@10"])["recall@10"]
    per_query = evaluate(qrels, run, ["P@1", "P.1"])
    per_query["P@1"]["q0"] = -1.0
    assert per_query["P.1"]["q0"] != -1.0  # one dict each
    assert main(["evaluate", "--qrels", str(q), "--run", str(r), "-m", "nDCG@10", "-m", "recip_rank"]) == 0
    assert [x.split("\t")[0] for x in capsys.readouterr().out.splitlines()] == ["nDCG@10", "recip_rank", "queries"]


def test_records_and_the_leaderboard_keep_one_column_whatever_the_spelling(tiny_beir, tmp_path, capsys):
    from harness.trec import write_run

    run = {f"q{j}": {f"d{(j + i) % 40}": 1.0 / (i + 1) for i in range(30)} for j in range(8)}
    path = tmp_path / "r.trec"
    write_run(path, run, "t")
    out = tmp_path / "out"
    assert main(["run", "-r", f"run:{path}", "-d", str(tiny_beir), "-m", "ndcg_cut.10", "-m", "P_5",
                 "-m", "recip_rank", "--output-dir", str(out)]) == 0
    (record,) = (out / "local" / "tiny" / "test").glob("*.json")
    metrics = json.loads(record.read_text())["metrics"]
    assert list(metrics) == ["ndcg@10", "p@5", "mrr"]
    capsys.readouterr()
    tables = []
    for spelling in ("ndcg@10", "ndcg_cut.10", "nDCG@10", "ndcg_cut_10"):
        assert main(["leaderboard", "--output-dir", str(out), "--metric", spelling]) == 0
        tables.append(capsys.readouterr().out)
    assert len(set(tables)) == 1 and "local/tiny" in tables[0]


def test_the_beir_set_is_beirs_measures_under_beirs_names():
    """``--metric beir``: nDCG, MAP, Recall and P at 1, 3, 5, 10, 100, 1000, as beir's EvaluateRetrieval.evaluate
    names and computes them (it rounds to 5 decimals and averages over the queries the run answers: here all)."""
    from beir.retrieval.evaluation import EvaluateRetrieval

    qrels, run = _case(3)
    ours = {m: sum(v.values()) / len(v) for m, v in evaluate(qrels, run, ["beir"]).items()}
    ndcg, map_, recall, p = EvaluateRetrieval.evaluate(qrels, run, [1, 3, 5, 10, 100, 1000], ignore_identical_ids=False)
    theirs = {**ndcg, **map_, **recall, **p}
    assert list(ours) == list(theirs) and len(ours) == 24
    assert {k: round(v, 5) for k, v in ours.items()} == theirs


def test_the_beir_set_on_every_command_with_metric(tiny_beir, tmp_path, capsys):
    from harness.trec import write_run

    path = tmp_path / "r.trec"
    write_run(path, {f"q{j}": {f"d{(j + i) % 40}": 1.0 / (i + 1) for i in range(30)} for j in range(8)}, "t")
    out = tmp_path / "out"
    assert main(["run", "-r", f"run:{path}", "-d", str(tiny_beir), "--metric", "beir", "--output-dir", str(out)]) == 0
    (record,) = (out / "local" / "tiny" / "test").glob("*.json")
    assert list(json.loads(record.read_text())["metrics"]) == [str(m) for _, m in expand_measures(["beir"])]
    capsys.readouterr()
    assert main(["evaluate", "--qrels", str(tiny_beir / "qrels" / "test.tsv"), "--run", str(path), "-m", "beir",
                 "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out)["metrics"])[:2] == ["NDCG@1", "NDCG@3"]


@pytest.mark.parametrize("command", ["run", "compare", "evaluate"])
def test_m_is_the_short_flag_of_metric(command):
    from harness.cli import build_parser

    need = {"run": ["-r", "bm25", "-d", "x"], "compare": ["-r", "a", "-r", "b", "-d", "x"],
            "evaluate": ["--qrels", "q", "--run", "r"]}[command]
    args = build_parser().parse_args([command, *need, "-m", "P.10", "--metric", "ndcg_cut.5,10", "-m", "beir"])
    assert args.metrics[:3] == ["P.10", "ndcg_cut_5", "ndcg_cut_10"] and len(args.metrics) == 27


@pytest.mark.parametrize("bad,why", [
    ("beir", "is a set of measures"), ("P.5,10", "names 2 measures (trec_eval's list of cut-offs)"),
    ("ndcg_cut.0", "at least 1"), ("ndcg.10", "unknown metric"), ("P", "needs a cut-off")])
def test_a_name_for_several_measures_or_none_is_refused_with_the_reason(bad, why):
    with pytest.raises(HarnessError, match=why.replace("(", r"\(").replace(")", r"\)")):
        parse_measure(bad)
