"""Gzipped inputs that are damaged (cut short, corrupted, not gzip at all) or hold a bad line are one line
naming the file, never a traceback: passages, DPR questions, question JSONL."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from harness.data.tsv import iter_passages
from harness.errors import DataError
from harness.odqa.formats import read_questions

PASSAGES = "id\ttext\ttitle\n" + "".join(f"{i}\tpassage number {i} about things\tTitle {i}\n" for i in range(1, 400))
QUESTIONS = "".join(f"question {i}?\t['answer {i}']\n" for i in range(400))


def _damaged(path: Path, text: str, how: str) -> Path:
    data = gzip.compress(text.encode())
    if how == "cut":
        data = data[: len(data) // 2]
    elif how == "corrupt":
        data = data[:20] + bytes(b ^ 0x5A for b in data[20:60]) + data[60:]
    elif how == "plain":
        data = text.encode()
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("how", ["cut", "corrupt", "plain"])
def test_damaged_gzipped_passages_are_one_line(tmp_path, how):
    path = _damaged(tmp_path / "psgs.tsv.gz", PASSAGES, how)
    with pytest.raises(DataError) as info:
        list(iter_passages(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("how", ["cut", "corrupt", "plain"])
def test_damaged_gzipped_questions_are_one_line(tmp_path, how):
    path = _damaged(tmp_path / "q.qa.csv.gz", QUESTIONS, how)
    with pytest.raises(DataError) as info:
        read_questions(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("line", ['{"question": "q", "answers": ["a"]', b'\xff\xfe{"question": 1}'])
def test_a_bad_line_in_gzipped_question_jsonl_names_its_line(tmp_path, line):
    good = '{"question": "first?", "answers": ["a"]}\n'
    raw = good.encode() + (line if isinstance(line, bytes) else line.encode()) + b"\n"
    path = tmp_path / "q.jsonl.gz"
    path.write_bytes(gzip.compress(raw))
    with pytest.raises(DataError, match=r"q.jsonl.gz:2"):
        read_questions(path)


@pytest.mark.parametrize("name, text, count", [
    ("corpus.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"}\n{"_id": "3", "text": "c"}', 3),
    ("corpus.jsonl", '{"_id": "1", "text": "a"}\n{"_id": "2", "text": "b"}\n', 2),
    ("psgs.tsv", "id\ttext\ttitle\n1\ta\tA\n2\tb\tB\n", 2),
    ("collection.tsv", "1\ta\n2\tb\n3\tc\n", 3),
])
def test_the_plan_counts_every_document_of_a_corpus(tmp_path, name, text, count):
    """`harness encode --plan` counted a BEIR corpus.jsonl one short (a header taken off that it has not)."""
    from harness.odqa.shards import count_passages

    path = tmp_path / name
    path.write_text(text)
    assert count_passages(path) == count
    gz = tmp_path / (name + ".gz")
    gz.write_bytes(gzip.compress(text.encode()))
    assert count_passages(gz) == count
