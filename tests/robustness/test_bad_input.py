"""Bad input: every reader answers a malformed file with a message naming the file, the line and the fix,
or tolerates the case in a documented, counted way. Never a traceback, never a partial result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness import lines
from harness.cli import main
from harness.data.beir import iter_corpus, read_queries
from harness.datasets import resolve_dataset
from harness.errors import DataError, HarnessError
from harness.runner import corpus_stats
from harness.trec import read_qrels, read_run

QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n"
QUERIES = '{"_id": "q1", "text": "first"}\n{"_id": "q2", "text": "second"}\n'
CORPUS = '{"_id": "d1", "title": "t", "text": "one"}\n{"_id": "d2", "title": "", "text": "two"}\n'


def beir(folder: Path, *, corpus: str | bytes = CORPUS, queries: str | bytes = QUERIES,
         qrels: str | bytes = QRELS) -> Path:
    """A small BEIR folder whose three files are written byte for byte."""
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for name, content in (("corpus.jsonl", corpus), ("queries.jsonl", queries), ("qrels/test.tsv", qrels)):
        (folder / name).write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return folder


def error_of(fn, *args) -> DataError:
    with pytest.raises(DataError) as info:
        result = fn(*args)
        if hasattr(result, "__next__"):
            list(result)
    return info.value


def check(err: DataError, path: Path, line: int | None, *words: str) -> None:
    """The message names the file and line, and says what is wrong."""
    assert err.path == str(path)
    assert err.line == line
    text = str(err)
    assert text.startswith(f"{path}:{line}: " if line is not None else f"{path}: ")
    for w in words:
        assert w in text, (w, text)
    assert "\n" not in text


# ---- BEIR corpus -------------------------------------------------------------------------------------

def test_corpus_truncated_last_line(tmp_path):
    path = beir(tmp_path, corpus=CORPUS + '{"_id": "d3", "text": "thr') / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "truncated last line", "fix: re-download or repair")


def test_corpus_invalid_utf8(tmp_path):
    path = beir(tmp_path, corpus=CORPUS.encode() + b'{"_id": "d3", "text": "caf\xe9"}\n') / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "invalid UTF-8", "fix: re-encode the file as UTF-8")


def test_corpus_bom_and_crlf_are_tolerated(tmp_path):
    path = beir(tmp_path, corpus=b"\xef\xbb\xbf" + CORPUS.replace("\n", "\r\n").encode()) / "corpus.jsonl"
    docs = list(iter_corpus(path))
    assert [d.doc_id for d in docs] == ["d1", "d2"] and docs[1].text == "two"


def test_queries_and_qrels_bom_and_crlf_are_tolerated(tmp_path):
    folder = beir(tmp_path, queries=b"\xef\xbb\xbf" + QUERIES.replace("\n", "\r\n").encode(),
                  qrels=b"\xef\xbb\xbf" + QRELS.replace("\n", "\r\n").encode())
    ds = resolve_dataset(str(folder))
    assert ds.queries() == {"q1": "first", "q2": "second"}
    assert ds.qrels() == {"q1": {"d1": 1}, "q2": {"d2": 2}}


def test_corpus_missing_id(tmp_path):
    path = beir(tmp_path, corpus=CORPUS + '{"title": "x", "text": "no id"}\n') / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "no '_id'", "fix:")


def test_corpus_missing_text(tmp_path):
    path = beir(tmp_path, corpus=CORPUS + '{"_id": "d3", "title": "only a title"}\n') / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "'d3' has no 'text'", "fix: add a 'text' field")


def test_corpus_empty_text_is_allowed_and_counted(tmp_path):
    folder = beir(tmp_path, corpus=CORPUS + '{"_id": "d3", "title": "", "text": ""}\n'
                                            '{"_id": "d4", "text": null}\n')
    ds = resolve_dataset(str(folder))
    stats = corpus_stats(ds)
    assert stats["documents"] == 4 and stats["empty_documents"] == 2


def test_corpus_duplicate_id(tmp_path):
    path = beir(tmp_path, corpus=CORPUS + '{"_id": "d1", "text": "again"}\n') / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "duplicate document id 'd1'", "fix: document ids must be unique")


def test_corpus_huge_line(tmp_path, monkeypatch):
    monkeypatch.setattr(lines, "MAX_LINE_BYTES", 1000)
    path = beir(tmp_path, corpus=CORPUS + json.dumps({"_id": "d3", "text": "x" * 5000}) + "\n") / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "line longer than 1000 bytes", "HARNESS_MAX_LINE_BYTES")


def test_corpus_not_an_object_and_wrong_types(tmp_path):
    path = beir(tmp_path, corpus=CORPUS + '["d3", "text"]\n') / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "expected a JSON object")
    path = beir(tmp_path, corpus=CORPUS + '{"_id": "d3", "text": 7}\n') / "corpus.jsonl"
    check(error_of(iter_corpus, path), path, 3, "must be strings")


def test_empty_corpus(tmp_path):
    ds = resolve_dataset(str(beir(tmp_path, corpus="")))
    with pytest.raises(HarnessError, match="corpus.jsonl: the corpus is empty"):
        corpus_stats(ds)


# ---- queries and qrels -----------------------------------------------------------------------------

def test_queries_missing_text_and_duplicates(tmp_path):
    path = beir(tmp_path, queries=QUERIES + '{"_id": "q3"}\n') / "queries.jsonl"
    check(error_of(read_queries, path), path, 3, "'q3' has no 'text'")
    path = beir(tmp_path, queries=QUERIES + '{"_id": "q1", "text": "x"}\n') / "queries.jsonl"
    check(error_of(read_queries, path), path, 3, "duplicate query id 'q1'", "fix:")


def test_queries_truncated_last_line(tmp_path):
    path = beir(tmp_path, queries=QUERIES + '{"_id": "q3", "te') / "queries.jsonl"
    check(error_of(read_queries, path), path, 3, "truncated last line")


def test_qrels_naming_unknown_queries_is_an_error(tmp_path):
    folder = beir(tmp_path, qrels=QRELS + "q9\td1\t1\n")
    ds = resolve_dataset(str(folder))
    err = error_of(ds.queries)
    check(err, folder / "qrels" / "test.tsv", None, "1 judged queries are missing from queries.jsonl", "'q9'",
          "fix: use the queries file that belongs to these qrels")


def test_qrels_naming_unknown_documents_are_counted(tmp_path):
    folder = beir(tmp_path, qrels=QRELS + "q1\tgone\t1\nq2\talso-gone\t0\n")
    ds = resolve_dataset(str(folder))
    stats = corpus_stats(ds)
    assert stats["judged_documents_not_in_corpus"] == 2


def test_qrels_non_integer_relevance(tmp_path):
    path = beir(tmp_path, qrels=QRELS + "q1\td2\t0.5\n") / "qrels" / "test.tsv"
    check(error_of(read_qrels, path), path, 4, "relevance '0.5' is not an integer", "fix: relevance grades")


def test_qrels_truncated_last_line(tmp_path):
    path = beir(tmp_path, qrels=QRELS + "q1\td") / "qrels" / "test.tsv"
    check(error_of(read_qrels, path), path, 4, "expected 3 (BEIR) or 4 (TREC) columns, got 2")


def test_qrels_invalid_utf8(tmp_path):
    path = beir(tmp_path, qrels=QRELS.encode() + b"q\xff\td1\t1\n") / "qrels" / "test.tsv"
    check(error_of(read_qrels, path), path, 4, "invalid UTF-8")


def test_empty_qrels_and_empty_query_set(tmp_path):
    folder = beir(tmp_path / "a", qrels="query-id\tcorpus-id\tscore\n")
    path = folder / "qrels" / "test.tsv"
    check(error_of(resolve_dataset(str(folder)).qrels), path, None, "no relevance judgements")
    folder = beir(tmp_path / "b", queries="")
    err = error_of(resolve_dataset(str(folder)).queries)  # the empty file itself is named (issue 35)
    check(err, folder / "queries.jsonl", None, "no topics")


# ---- TREC run files --------------------------------------------------------------------------------

RUN = "q1 Q0 d1 1 2.5 tag\nq1 Q0 d2 2 1.5 tag\n"


def test_run_truncated_last_line(tmp_path):
    path = tmp_path / "r.trec"
    path.write_text(RUN + "q2 Q0 d1 1 0.")
    check(error_of(read_run, path), path, 3, "expected 6 columns")


def test_run_bad_score_and_duplicate(tmp_path):
    path = tmp_path / "r.trec"
    path.write_text(RUN + "q2 Q0 d1 1 high tag\n")
    check(error_of(read_run, path), path, 3, "score 'high' is not a number")
    path.write_text(RUN + "q1 Q0 d1 3 0.5 tag\n")
    check(error_of(read_run, path), path, 3, "'d1' appears twice for query 'q1'", "fix:")
    path.write_text(RUN + "q2 Q0 d1 1 nan tag\n")
    check(error_of(read_run, path), path, 3, "NaN")


def test_run_bom_crlf_tolerated_and_invalid_utf8_refused(tmp_path):
    path = tmp_path / "r.trec"
    path.write_bytes(b"\xef\xbb\xbf" + RUN.replace("\n", "\r\n").encode())
    assert read_run(path) == {"q1": {"d1": 2.5, "d2": 1.5}}
    path.write_bytes(RUN.encode() + b"q2 Q0 d\xc3 1 1 tag\n")
    check(error_of(read_run, path), path, 3, "invalid UTF-8")


# ---- through the command line: one line, exit code 2, nothing written --------------------------------

def test_cli_reports_bad_corpus_in_one_line_and_writes_nothing(tmp_path, tiny_bert_dir, capsys):
    folder = beir(tmp_path / "data", corpus=CORPUS + '{"_id": "d3", "text": "thr')
    out = tmp_path / "results"
    rc = main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(folder), "--output-dir", str(out),
               "--metric", "ndcg@10", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("harness: error:")]
    assert lines == [f"harness: error: {folder / 'corpus.jsonl'}:3: truncated last line (no closing brace / "
                     "newline): Unterminated string starting at (fix: re-download or repair the file; each line "
                     "must be one JSON object)"]
    assert not list(out.rglob("*.trec")) and not [p for p in out.rglob("*.json")]


def test_cli_evaluate_reports_bad_run(tmp_path, capsys):
    qrels = beir(tmp_path)
    run = tmp_path / "r.trec"
    run.write_text(RUN + "q2 Q0 d1\n")
    rc = main(["evaluate", "--qrels", str(qrels / "qrels" / "test.tsv"), "--run", str(run)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.strip() == f"harness: error: {run}:3: expected 6 columns 'qid Q0 docid rank score tag', got 3"


def test_cli_missing_file_is_one_line(tmp_path, capsys):
    rc = main(["evaluate", "--qrels", str(tmp_path / "nope.tsv"), "--run", str(tmp_path / "r.trec")])
    err = capsys.readouterr().err
    assert rc == 2 and err.strip() == f"harness: error: {tmp_path / 'nope.tsv'}: file not found"
