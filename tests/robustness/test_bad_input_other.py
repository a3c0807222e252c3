"""Bad input for the other readers: DPR passage TSV and question files, baseline CSVs, configuration files."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main

from .test_bad_input import check, error_of

formats = pytest.importorskip("harness.odqa.formats")

PASSAGES = b"id\ttext\ttitle\n1\thello world\tGreeting\n2\t\"quoted, text\"\tQuote\n"


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ---- DPR passage TSV -------------------------------------------------------------------------------

def test_passages_bom_crlf_and_empty_text_tolerated(tmp_path):
    path = write(tmp_path / "p.tsv", b"\xef\xbb\xbf" + PASSAGES.replace(b"\n", b"\r\n") + b"3\t\tEmpty\r\n")
    docs = list(formats.iter_passages(path))
    assert [(d.doc_id, d.title, d.text) for d in docs] == [
        ("1", "Greeting", "hello world"), ("2", "Quote", "quoted, text"), ("3", "Empty", "")]


def test_passages_truncated_last_line(tmp_path):
    path = write(tmp_path / "p.tsv", PASSAGES + b"3\tcut he")
    check(error_of(formats.iter_passages, path), path, 4, "expected 3 tab-separated columns, got 2", "fix:")


def test_passages_duplicate_and_empty_id(tmp_path):
    path = write(tmp_path / "p.tsv", PASSAGES + b"1\tagain\tT\n")
    check(error_of(formats.iter_passages, path), path, 4, "duplicate passage id '1'", "fix:")
    path = write(tmp_path / "p.tsv", PASSAGES + b" \tno id\tT\n")
    check(error_of(formats.iter_passages, path), path, 4, "empty passage id")


def test_passages_missing_columns_and_empty_file(tmp_path):
    path = write(tmp_path / "p.tsv", b"pid\tbody\n1\tx\n")
    check(error_of(formats.iter_passages, path), path, 1, "lacks 'id' and 'text' columns", "fix:")
    path = write(tmp_path / "p.tsv", b"")
    check(error_of(formats.iter_passages, path), path, None, "the passage file is empty")


def test_passages_invalid_utf8_names_the_file(tmp_path):
    path = write(tmp_path / "p.tsv", PASSAGES + b"3\tcaf\xe9\tT\n")
    err = error_of(formats.iter_passages, path)
    assert err.path == str(path) and "utf-8" in str(err).lower()


def test_passages_huge_line_is_read(tmp_path):
    path = write(tmp_path / "p.tsv", PASSAGES + b"3\t" + b"x" * (2 << 20) + b"\tBig\n")
    assert len(list(formats.iter_passages(path))[-1].text) == 2 << 20


# ---- DPR / JSON question files -----------------------------------------------------------------------

def test_questions_malformed_answers_list(tmp_path):
    path = write(tmp_path / "q.qa.csv", b"who?\t['a']\nwhat?\t['b', 'c'\n")
    check(error_of(formats.read_questions, path), path, 2, "are not a Python list literal",
          "fix: the second column must look like ['answer one', 'answer two']")
    path = write(tmp_path / "q.qa.csv", b"who?\t[1, 2]\n")
    check(error_of(formats.read_questions, path), path, 1, "answers must be a list of strings")
    path = write(tmp_path / "q.qa.csv", b"who?\t[]\n")
    check(error_of(formats.read_questions, path), path, 1, "a question has no answers", "fix:")


def test_questions_answers_are_never_evaluated_as_code(tmp_path):
    marker = tmp_path / "pwned"
    path = write(tmp_path / "q.qa.csv", f"who?\t__import__('os').system('touch {marker}')\n".encode())
    check(error_of(formats.read_questions, path), path, 1, "are not a Python list literal")
    assert not marker.exists()


def test_questions_truncated_last_line(tmp_path):
    path = write(tmp_path / "q.qa.csv", b"who?\t['a']\nwhat?\t['b")
    check(error_of(formats.read_questions, path), path, 2, "are not a Python list literal")
    path = write(tmp_path / "q.jsonl", b'{"question": "who", "answers": ["a"]}\n{"question": "x", "answ')
    check(error_of(formats.read_questions, path), path, 2, "truncated last line")


def test_questions_bom_crlf_tolerated(tmp_path):
    path = write(tmp_path / "q.qa.csv", b"\xef\xbb\xbfwho?\t['a']\r\nwhat?\t['b']\r\n")
    assert [(q.qid, q.text, q.answers) for q in formats.read_questions(path)] == [
        ("0", "who?", ("a",)), ("1", "what?", ("b",))]


def test_questions_duplicates_empty_and_missing_fields(tmp_path):
    path = write(tmp_path / "q.jsonl", b'{"id": "1", "question": "a", "answers": ["x"]}\n'
                                       b'{"id": "1", "question": "b", "answers": ["y"]}\n')
    check(error_of(formats.read_questions, path), path, None, "duplicate question id '1'", "fix:")
    path = write(tmp_path / "q.qa.csv", b"")
    check(error_of(formats.read_questions, path), path, None, "no questions")
    path = write(tmp_path / "q.jsonl", b'{"question": "a", "answers": ["x"]}\n{"question": "b"}\n')
    check(error_of(formats.read_questions, path), path, 2, "needs 'question' and 'answers'")


def test_questions_invalid_utf8_names_the_file(tmp_path):
    path = write(tmp_path / "q.qa.csv", b"who?\t['a']\nwh\xff?\t['b']\n")
    err = error_of(formats.read_questions, path)
    assert err.path == str(path) and "utf-8" in str(err).lower()


# ---- baseline CSVs -----------------------------------------------------------------------------------

HEADER = "retriever,dataset,split,metric,expected,tolerance\n"
ROW = "bm25-flat,beir/scifact,test,ndcg@10,0.665,0.005\n"


def test_baselines_bad_rows(tmp_path):
    baselines = pytest.importorskip("harness.results.baselines")
    cases = [
        (HEADER + ROW + "bm25-flat,beir/nfcorpus,test,ndcg@1", 3, "4 fields, the header has 6"),
        (HEADER + ROW.replace("0.665", "66.5"), 2, "values are fractions"),
        (HEADER + ROW.replace("0.665", "high"), 2, "expected 'high' is not a number"),
        (HEADER + ROW + ROW.replace("ndcg@10", "nDCG@10"), 3, "duplicate of line 2"),
        (HEADER + ROW.replace("ndcg@10", "ndcgg@10"), 2, "unknown metric 'ndcgg@10'"),
        ("retriever,dataset\n" + ROW, 1, "the header lacks column(s) split, metric, expected, tolerance"),
    ]
    for i, (text, line, words) in enumerate(cases):
        path = write(tmp_path / f"b{i}.csv", text.encode())
        check(error_of(baselines.read_regression, path), path, line, words)


def test_baselines_empty_and_invalid_utf8(tmp_path):
    baselines = pytest.importorskip("harness.results.baselines")
    path = write(tmp_path / "b.csv", b"")
    check(error_of(baselines.read_regression, path), path, None, "empty; expected a header line")
    path = write(tmp_path / "b.csv", (HEADER + ROW).encode() + b"bm25,beir/sci\xff,test,ndcg@10,0.6,0.01\n")
    err = error_of(baselines.read_regression, path)
    assert err.path == str(path) and "utf-8" in str(err).lower()


def test_baselines_bom_and_crlf_tolerated(tmp_path):
    baselines = pytest.importorskip("harness.results.baselines")
    path = write(tmp_path / "b.csv", b"\xef\xbb\xbf" + (HEADER + ROW).replace("\n", "\r\n").encode())
    assert len(baselines.read_regression(path)) == 1


# ---- configuration files ----------------------------------------------------------------------------

def test_train_config_malformed_and_unsafe_yaml(tmp_path, capsys):
    bad = write(tmp_path / "bad.yaml", b"steps: [1, 2\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"harness: error: cannot read config {bad}") and "line 2" in err
    assert "Traceback" not in err
    marker = tmp_path / "pwned"
    evil = write(tmp_path / "evil.yaml", f"init: !!python/object/apply:os.system ['touch {marker}']\n".encode())
    assert main(["train", "--config", str(evil)]) == 2
    assert not marker.exists()
    assert "could not determine a constructor" in capsys.readouterr().err


def test_model_folder_with_broken_json_config(tmp_path, tiny_bert_dir):
    import shutil

    from harness.retrievers.config import read_encoder_config

    folder = Path(shutil.copytree(tiny_bert_dir, tmp_path / "m"))
    write(folder / "harness_checkpoint.json", b'{"encoder": \n')
    err = error_of(read_encoder_config, folder)
    check(err, folder / "harness_checkpoint.json", 2, "invalid JSON", "fix:")
