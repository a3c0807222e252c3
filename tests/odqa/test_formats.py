"""Readers for DPR passages TSV, DPR *.qa.csv, JSON(L) and EntityQuestions files."""

from __future__ import annotations

import gzip
import json

import pytest

from harness.errors import DataError
from harness.odqa.formats import iter_passages, parse_answer_list, read_questions

from .conftest import PASSAGES


def test_passages_csv_quoted_tabs_newlines_quotes(tiny_odqa):
    docs = list(iter_passages(tiny_odqa / "passages.tsv"))
    assert [(d.doc_id, d.text, d.title) for d in docs] == PASSAGES


def test_passages_gzip_and_column_order(tmp_path):
    path = tmp_path / "p.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("title\tid\ttext\nT\t7\thello world\n")
    (doc,) = iter_passages(path)
    assert (doc.doc_id, doc.title, doc.text) == ("7", "T", "hello world")


@pytest.mark.parametrize("body,problem", [
    ("id\ttext\ttitle\n1\ta\tA\n1\tb\tB\n", "duplicate passage id '1'"),
    ("id\ttext\ttitle\nx1\ta\tA\nx1\tb\tB\n", "duplicate passage id 'x1'"),
    ("text\ttitle\na\tA\n", "lacks 'id' and 'text'"),
    ("id\ttext\ttitle\n1\n", "expected 3 tab-separated columns"),
])
def test_passage_errors_name_file_and_line(tmp_path, body, problem):
    path = tmp_path / "passages.tsv"
    path.write_text(body)
    with pytest.raises(DataError, match=problem):
        list(iter_passages(path))


def test_qa_csv_read_as_dpr(tiny_odqa):
    qs = read_questions(tiny_odqa / "questions.qa.csv")
    assert [q.qid for q in qs] == ["0", "1", "2", "3", "4"]
    assert qs[1].answers == ("Wilhelm Röntgen", "Röntgen")
    assert qs[2].text == '"MVP" of super bowl 50?'   # csv.writer quoted it; csv.reader gives it back


def test_answer_list_is_parsed_safely():
    assert parse_answer_list("['a', \"b's\"]", None, 1) == ("a", "b's")
    with pytest.raises(DataError, match="not a Python list literal"):
        parse_answer_list("__import__('os').system('echo pwned')", None, 1)
    with pytest.raises(DataError, match="list of strings"):
        parse_answer_list("[1, 2]", None, 1)
    with pytest.raises(DataError, match="no answers"):
        parse_answer_list("[]", None, 1)


def test_qa_csv_errors(tmp_path):
    bad = tmp_path / "bad.qa.csv"
    bad.write_text("q1\t['a']\nq2 without answers\n")
    with pytest.raises(DataError, match=r"bad.qa.csv:2: expected 2"):
        read_questions(bad)


def test_json_jsonl_and_entityquestions(tmp_path):
    eq = tmp_path / "P17.test.json"   # EntityQuestions' layout: a JSON list
    eq.write_text(json.dumps([{"question": "Which country is Bonn in?", "answers": ["Germany"]}]))
    (q,) = read_questions(eq)
    assert (q.qid, q.answers) == ("0", ("Germany",))
    jl = tmp_path / "questions.jsonl"
    jl.write_text(json.dumps({"id": "a1", "question": "x?", "answers": ["y"]}) + "\n\n"
                  + json.dumps({"id": "a2", "question": "z?", "answers": "w"}) + "\n")
    assert [(q.qid, q.answers) for q in read_questions(jl)] == [("a1", ("y",)), ("a2", ("w",))]
    dup = tmp_path / "dup.jsonl"
    dup.write_text(json.dumps({"id": "a", "question": "x", "answers": ["y"]}) + "\n"
                   + json.dumps({"id": "a", "question": "z", "answers": ["y"]}) + "\n")
    with pytest.raises(DataError, match="duplicate question id"):
        read_questions(dup)


def test_empty_answer_warns(tmp_path):
    path = tmp_path / "q.qa.csv"
    path.write_text("q\t['']\n")
    with pytest.warns(UserWarning, match="matches every passage"):
        read_questions(path)


# --- what DPR's own reader (csv.reader, tab-delimited, not strict) would misread: refused here ------------------

def _passages(tmp_path, body: str):
    path = tmp_path / "p.tsv"
    path.write_text("id\ttext\ttitle\n" + body, encoding="utf-8")
    return path


def test_a_raw_tab_inside_a_passage_text_is_refused_not_shifted(tmp_path):
    path = _passages(tmp_path, "1\tsome text\twith a tab\tTitle\n2\tother\tT2\n")
    with pytest.raises(DataError, match=r"p.tsv:2: expected 3 tab-separated columns, got 4"):
        list(iter_passages(path))


@pytest.mark.parametrize("body", ['1\t"unbalanced quote text\tTitle\n2\tsecond passage\tT2\n3\tthird "q\tT3\n',
                                  '1\ttext\t"Title with a quote\n2\tsecond\tT2\n3\tx\ty"\n'])
def test_an_unbalanced_quote_that_swallows_later_passages_is_refused(tmp_path, body):
    with pytest.raises(DataError, match="swallow the passages after it"):
        list(iter_passages(_passages(tmp_path, body)))


def test_a_quoted_question_is_read_as_dpr_reads_it(tmp_path):
    path = tmp_path / "q.qa.csv"
    path.write_text('"An Account" was published by who?\t[\'Joseph Priestley\']\nplain\t[\'a\']\n', encoding="utf-8")
    questions = read_questions(path)
    assert [q.text for q in questions] == ["An Account was published by who?", "plain"]  # csv.reader's reading


@pytest.mark.parametrize("body,match", [("\t['a']\n", "a question with empty text"),
                                        ("   \t['a']\n", "a question with empty text"),
                                        ('"open quote\t[\'a\']\nnext question\t[\'b\']\n', "columns, got 1")])
def test_empty_or_swallowing_questions_are_refused(tmp_path, body, match):
    path = tmp_path / "q.qa.csv"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        read_questions(path)


def test_the_empty_answer_warning_is_one_harness_line(tmp_path):
    """Printed by the command, the warning is one line (Python's own format adds the raising source line)."""
    import subprocess
    import sys

    path = tmp_path / "q.qa.csv"
    path.write_text("q\t['a', '']\n")
    code = ("import sys; from harness.cli import main; import harness.odqa.formats as f; "
            "main(['config']); f.read_questions(__import__('pathlib').Path(sys.argv[1]))")
    err = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True).stderr
    lines = [x for x in err.splitlines() if "matches every passage" in x or "formats.py" in x]
    assert lines == [f"harness: warning: {path}:1: an empty answer matches every passage under DPR's rule"]
