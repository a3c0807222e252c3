"""Numbers in qrels, runs and topics are read as trec_eval reads them, or refused: Python's int() and float()
also take '1_0' (10) and other scripts' digits ('١٠'), where trec_eval's atol/atof read 1, so the same file
would score differently; a grade past a C int, or one whose exponential gain overflows a double, is refused
by line, not a traceback; and a topics TSV line of three columns is refused, not read as one query."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import DataError, HarnessError
from harness.metrics.evaluate import evaluate
from harness.trec import read_qrels, read_run, read_run_arrays, read_tsv_topics


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("grade", ["1_0", "١٠", "+1_0", "99999999999999999999999", "2147483648", "0x1"])
@pytest.mark.parametrize("columns", [None, 3, 4])
def test_a_qrels_grade_python_reads_but_trec_eval_does_not_is_refused_by_line(tmp_path, grade, columns):
    lines = ["q1\t0\td1\t1", f"q1\t0\td2\t{grade}"] if columns != 3 else ["q1\td1\t1", f"q1\td2\t{grade}"]
    path = _file(tmp_path, "qrels.txt", "\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"qrels.txt:2") as info:
        read_qrels(path, columns)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("score", ["1_0", "١٫٥", "1_000.5"])
def test_a_run_score_python_reads_but_trec_eval_does_not_is_refused_by_line(tmp_path, score):
    path = _file(tmp_path, "run.trec", f"q1 Q0 d1 1 2.5 t\nq1 Q0 d2 2 {score} t\n")
    for reader in (read_run, read_run_arrays):
        with pytest.raises(DataError, match=r"run.trec:2"):
            reader(path)


def test_plain_numbers_still_read():
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        qrels = _file(Path(folder), "q.txt", "q1 0 d1 2\nq1 0 d2 -1\nq1 0 d3 +1\n")
        assert read_qrels(qrels) == {"q1": {"d1": 2, "d2": -1, "d3": 1}}
        run = _file(Path(folder), "r.trec", "q1 Q0 d1 1 1e3 t\nq1 Q0 d2 2 -0.5 t\nq1 Q0 d3 3 +.25 t\n")
        assert read_run(run) == {"q1": {"d1": 1000.0, "d3": 0.25, "d2": -0.5}}


def test_an_exponential_gain_that_overflows_is_refused():
    with pytest.raises(HarnessError, match="grade 2000") as info:
        evaluate({"q": {"a": 2000, "b": 1}}, {"q": {"a": 2.0, "b": 1.0}}, ["nDCG(dcg=exp-log2)@10"])
    assert "\n" not in str(info.value)
    evaluate({"q": {"a": 1023}}, {"q": {"a": 2.0}}, ["nDCG(dcg=exp-log2)@10"])  # the largest that fits


def test_a_topics_tsv_line_of_three_columns_is_refused(tmp_path):
    path = _file(tmp_path, "topics.tsv", "1\tfirst query\n2\tsecond query\tsomething else\n")
    with pytest.raises(DataError, match=r"topics.tsv:2: expected 2 tab-separated columns .*got 3"):
        read_tsv_topics(path)


def test_a_parameter_or_baseline_value_python_alone_reads_is_refused(tmp_path):
    from harness.results.baselines import read_regression
    from harness.retrievers.registry import resolve_retriever

    with pytest.raises(HarnessError, match="k1"):
        resolve_retriever("bm25(k1=1_0)")
    assert resolve_retriever("bm25(k1=1.0)").params["k1"] == 1.0
    csv = _file(tmp_path, "regression.csv", "retriever,dataset,split,metric,expected,tolerance,source\n"
                "bm25,beir/scifact,test,ndcg@10,0.6_789,0.001,x\n")
    with pytest.raises(DataError, match=r"regression.csv:2"):
        list(read_regression(csv))


@pytest.mark.parametrize("argv", [["--depth", "3000000000"], ["--metric", "recall@3000000000"],
                                  ["--metric", "ndcg@99999999999999999999999"], ["--metric", "ndcg_cut.3000000000"]])
def test_a_depth_or_cut_off_past_a_java_int_is_refused_before_any_work(tmp_path, capsys, argv):
    """Lucene's search takes an int: a deeper --depth or cut-off failed after the index was built, with a JPype
    dump and no fix."""
    from harness.cli import main
    from tests.conftest import make_tiny_beir

    data = make_tiny_beir(tmp_path / "tiny", n_docs=10, n_queries=2)
    assert main(["run", "-r", "bm25", "-d", str(data), "--output-dir", str(tmp_path / "out"), *argv]) == 2
    assert not list((tmp_path / "out").rglob("*.trec"))
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "at most 2,147,483,647" in err


@pytest.mark.parametrize("title", ["0", "false", "[]", "{}", "5"])
def test_a_title_that_is_not_a_string_is_refused_whatever_its_truth(tmp_path, title):
    """A falsy title (0, false, [], {}) was read as no title while 5 was refused."""
    from harness.data.formats import iter_corpus

    path = _file(tmp_path, "corpus.jsonl", f'{{"_id": "d1", "title": {title}, "text": "x"}}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:1: .*must be strings"):
        list(iter_corpus(path))
    _file(tmp_path, "corpus.jsonl", '{"_id": "d1", "title": null, "text": "x"}\n')
    assert [d.title for d in iter_corpus(path)] == [""]


def test_a_folder_with_two_topic_files_is_refused_not_read_by_precedence(tmp_path):
    """queries.jsonl beside topics.tsv: the harness read queries.jsonl and said nothing."""
    from harness.datasets import resolve_dataset
    from tests.conftest import make_tiny_beir

    data = make_tiny_beir(tmp_path / "tiny", n_docs=10, n_queries=2)
    (data / "topics.tsv").write_text("0\tanother query\n")
    with pytest.raises(HarnessError, match="holds 2 topic files"):
        resolve_dataset(str(data)).queries()
