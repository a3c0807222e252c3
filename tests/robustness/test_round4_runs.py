"""Exact or refuse, round 4 (issue 35), run files and the inputs of a run: one reading of a TREC run file for
every stage (class 1), a protocol rule only where the dataset's protocol or an option asks for it (class 2),
and empty qrels, topics or runs refused with the file named (class 4)."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.metrics import evaluate, mean
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_qrels, read_run

CPU = Execution(device="cpu", progress=False)
QUIET = {"execution": CPU, "log": lambda m: None}


def _ids(folder, name: str) -> list[str]:
    return [json.loads(x)["_id"] for x in (folder / name).read_text().splitlines()]


def _file(path, lines: list[tuple[str, str, int, float]]):
    path.write_text("".join(f"{q} Q0 {d} {r} {s!r} other\n" for q, d, r, s in lines))
    return path


def _disagreeing_pair(folder, tmp_path):
    """Two files with the same (query, document, score) lines: in one the rank column follows the scores, in
    the other it runs against them (rank 1 on the lowest score)."""
    docs, queries = _ids(folder, "corpus.jsonl"), _ids(folder, "queries.jsonl")
    agree, against = [], []
    for n, q in enumerate(queries):
        hits = [(d, float(20 - i) + n / 100) for i, d in enumerate(docs[n:n + 15])]
        agree += [(q, d, i, s) for i, (d, s) in enumerate(hits, start=1)]
        against += [(q, d, len(hits) - i + 1, s) for i, (d, s) in enumerate(hits, start=1)]
    return _file(tmp_path / "agree.trec", agree), _file(tmp_path / "against.trec", against)


# class 1: one file, one reading (score descending, the rank column ignored, as trec_eval reads it)


def test_the_rank_column_is_ignored_by_every_reader(tmp_path):
    path = _file(tmp_path / "r.trec", [("q", "a", 1, 0.5), ("q", "b", 2, 3.0), ("q", "c", 3, 1.0)])
    assert list(read_run(path)["q"]) == ["b", "c", "a"]


def test_a_fused_file_is_read_as_the_file_alone_is_scored(tiny_beir, tmp_path):
    agree, against = _disagreeing_pair(tiny_beir, tmp_path)
    other = _file(tmp_path / "other.trec", [(q, d, i, 1.0 / i) for q in _ids(tiny_beir, "queries.jsonl")
                                            for i, d in enumerate(_ids(tiny_beir, "corpus.jsonl")[::-3][:12], 1)])
    fused = [run([f"fuse:rrf(run:{other},run:{b})"], [str(tiny_beir)], ["ndcg@10"], tmp_path / name, **QUIET)[0]
             for name, b in (("a", agree), ("b", against))]
    assert fused[0].per_query == fused[1].per_query
    alone = [run([f"run:{b}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "alone", **QUIET)[0] for b in (agree, against)]
    assert alone[0].per_query == alone[1].per_query
    qrels = read_qrels(tiny_beir / "qrels" / "test.tsv")
    scored = evaluate(qrels, read_run(against), ["ndcg@10"])["ndcg@10"]
    assert alone[1].metrics["ndcg@10"] == pytest.approx(mean(scored))


def test_a_file_cut_to_depth_keeps_its_highest_scores(tiny_beir, tmp_path):
    agree, against = _disagreeing_pair(tiny_beir, tmp_path)
    cut = [run([f"run:{b}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / n, depth=10, **QUIET)[0]
           for n, b in (("a", agree), ("b", against))]
    written = [read_run(tmp_path / n / c.dataset / "test" / c.run_file) for n, c in zip("ab", cut, strict=True)]
    assert written[0] == written[1]
    assert cut[0].metrics == cut[1].metrics


def test_harness_evaluate_reads_the_file_as_run_does(tiny_beir, tmp_path, capsys):
    _, against = _disagreeing_pair(tiny_beir, tmp_path)
    assert main(["evaluate", "--qrels", str(tiny_beir / "qrels" / "test.tsv"), "--run", str(against),
                 "--metric", "ndcg@10", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["metrics"]["ndcg@10"]
    (rec,) = run([f"run:{against}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", **QUIET)
    assert printed == pytest.approx(rec.metrics["ndcg@10"], abs=1e-12)


# class 4: empty inputs are refused with the file named, never answered with a mean over no queries


def _one_line_error(capsys, *names: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for name in names:
        assert name in err, err
    return err


@pytest.mark.parametrize("content", ["", "\n\n", "query-id\tcorpus-id\tscore\n"])
def test_harness_evaluate_refuses_empty_qrels(tmp_path, capsys, content):
    qrels = tmp_path / "empty.qrels"
    qrels.write_text(content)
    r = _file(tmp_path / "r.trec", [("q1", "d1", 1, 1.0)])
    assert main(["evaluate", "--qrels", str(qrels), "--run", str(r)]) == 2
    assert "no relevance judgements" in _one_line_error(capsys, str(qrels))


def test_harness_evaluate_refuses_an_empty_run(tmp_path, capsys):
    qrels = tmp_path / "q.qrels"
    qrels.write_text("q1 0 d1 1\n")
    r = tmp_path / "empty.trec"
    r.write_text("")
    assert main(["evaluate", "--qrels", str(qrels), "--run", str(r)]) == 2
    _one_line_error(capsys, str(r), "empty")


def test_harness_evaluate_refuses_a_run_that_answers_no_judged_query(tmp_path, capsys):
    qrels = tmp_path / "q.qrels"
    qrels.write_text("q1 0 d1 1\nq2 0 d2 1\n")
    r = _file(tmp_path / "other.trec", [("x1", "d1", 1, 1.0)])
    assert main(["evaluate", "--qrels", str(qrels), "--run", str(r)]) == 2
    _one_line_error(capsys, str(r), "none of the 2 judged queries")


def test_the_python_api_refuses_empty_inputs(tmp_path):
    import harness
    from harness.errors import HarnessError

    with pytest.raises(HarnessError, match="no relevance judgements"):
        harness.evaluate({}, {"q": {"d": 1.0}})
    with pytest.raises(HarnessError, match="empty"):
        harness.evaluate({"q": {"d": 1}}, {})
    with pytest.raises(HarnessError, match="not a number"):
        mean([])


@pytest.mark.parametrize("name", ["topics.tsv", "topics.txt", "queries.jsonl"])
def test_an_empty_topics_file_is_refused_naming_it(tiny_beir, tmp_path, capsys, name):
    (tiny_beir / "queries.jsonl").unlink()
    (tiny_beir / name).write_text("")
    r = _file(tmp_path / "r.trec", [("q0", "d1", 1, 1.0)])
    assert main(["run", "-r", f"run:{r}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "out")]) == 2
    assert "no topics" in _one_line_error(capsys, str(tiny_beir / name))


# class 2: a protocol rule only where the dataset's protocol or an explicit option asks for it, counted and said


def _self_judged_folder(folder):
    """A folder whose query 'q1' judges relevant the document whose id is also 'q1', and a run finding it."""
    (folder / "qrels").mkdir(parents=True)
    docs = ["q1", "d1", "d2", "d3"]
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "title": "", "text": f"text of {d}"}) + "\n"
                                                 for d in docs))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "one"}) + "\n"
                                          + json.dumps({"_id": "q2", "text": "two"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tq1\t1\nq2\td2\t1\n")
    r = _file(folder.parent / "found.trec", [("q1", "q1", 1, 3.0), ("q1", "d1", 2, 2.0), ("q2", "d2", 1, 3.0)])
    return folder, r


def test_a_local_folder_gets_no_identical_id_rule_it_did_not_ask_for(tmp_path, capsys):
    folder, r = _self_judged_folder(tmp_path / "mine")
    out = tmp_path / "out"
    assert main(["run", "-r", f"run:{r}", "-d", str(folder), "--metric", "ndcg@10", "--output-dir", str(out)]) == 0
    assert "identical-id" not in capsys.readouterr().err
    (rec_file,) = (out / "local" / "mine" / "test").glob("*.json")
    rec = json.loads(rec_file.read_text())
    assert rec["metrics"]["ndcg@10"] == 1.0 and rec["protocol"]["drop_self_hits"] is False
    assert rec["removed_by_protocol"] == {}
    assert main(["evaluate", "--qrels", str(folder / "qrels" / "test.tsv"), "--run", str(r), "--metric", "ndcg@10",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["ndcg@10"] == 1.0


def test_the_option_applies_the_rule_counts_it_and_says_it_once(tmp_path, capsys):
    folder, r = _self_judged_folder(tmp_path / "mine")
    out = tmp_path / "out"
    other = _file(tmp_path / "other.trec", [("q1", "q1", 1, 1.0), ("q1", "d3", 2, 0.5), ("q2", "d1", 1, 1.0)])
    assert main(["run", "-r", f"run:{r}", "-r", f"run:{other}", "-d", str(folder), "--metric", "ndcg@10",
                 "--drop-self-hits", "--output-dir", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("identical-id rule") == 1, err
    records = [json.loads(p.read_text()) for p in (out / "local" / "mine" / "test").glob("*.json")]
    assert len(records) == 2
    for rec in records:
        assert rec["protocol"]["drop_self_hits"] is True and rec["settings"] == {"drop_self_hits": True}
        assert rec["removed_by_protocol"] == {"drop_self_hits": {"q1": 1}}
        assert rec["metrics"]["ndcg@10"] < 1.0
    # the rule is a setting of its own: the record without it is another file, kept
    assert main(["run", "-r", f"run:{r}", "-d", str(folder), "--metric", "ndcg@10", "--output-dir", str(out)]) == 0
    assert len(list((out / "local" / "mine" / "test").glob("*.json"))) == 3


def test_a_registered_beir_dataset_keeps_beirs_rule_recorded_and_said(tmp_path, capsys, monkeypatch):
    _self_judged_folder(tmp_path / "data" / "beir" / "scifact")
    r = tmp_path / "data" / "beir" / "found.trec"
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    out = tmp_path / "out"
    assert main(["run", "-r", f"run:{r}", "-d", "beir/scifact", "--metric", "ndcg@10", "--output-dir", str(out)]) == 0
    assert capsys.readouterr().err.count("identical-id rule") == 1
    (rec_file,) = (out / "beir" / "scifact" / "test").glob("*.json")
    rec = json.loads(rec_file.read_text())
    assert rec["settings"] == {} and rec["protocol"]["drop_self_hits"] is True
    assert rec["removed_by_protocol"] == {"drop_self_hits": {"q1": 1}}
    assert rec["metrics"]["ndcg@10"] < 1.0
