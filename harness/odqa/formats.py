"""ODQA file formats: the question files of DPR, EntityQuestions and JSON(L), each question with its answers
(DPR's passage TSV is read by ``harness.data.tsv.iter_passages``, re-exported here).

Questions, one ``Question(qid, text, answers)`` each, in file order:
- DPR ``*.qa.csv``: ``question \\t ['answer', ...]``, read with ``csv.reader`` as DPR reads it, the list
  parsed with ``ast.literal_eval`` (a Python literal, never evaluated as code). qids are 0-based line
  positions, as in DPR's result files.
- JSON: a list of objects with ``question`` and ``answers`` (EntityQuestions' ``P*.test.json`` is one);
- JSONL: one such object per line.
An explicit ``id``/``qid`` field is used as the qid when present.
"""

from __future__ import annotations

import ast
import csv
import json
import warnings
from pathlib import Path
from typing import NamedTuple

from harness.data.jsonl import iter_jsonl
from harness.data.tsv import SWALLOWED, iter_passages, open_text
from harness.errors import DataError
from harness.lines import check_id

__all__ = ["QUESTION_SUFFIXES", "Question", "find_questions_file", "iter_passages", "parse_answer_list",
           "read_qa_csv", "read_questions", "read_questions_json", "read_questions_jsonl"]

QUESTION_SUFFIXES = (".qa.csv", ".qa.csv.gz", ".jsonl", ".json", ".jsonl.gz", ".json.gz")


class Question(NamedTuple):
    qid: str
    text: str
    answers: tuple[str, ...]


def parse_answer_list(value: str, path: Path, line: int) -> tuple[str, ...]:
    """A Python list literal of strings (``['a', "b"]``), parsed safely."""
    try:
        answers = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        raise DataError(path, f"answers {value[:80]!r} are not a Python list literal", line=line,
                        fix="the second column must look like ['answer one', 'answer two']") from None
    return _check_answers(answers, path, line)


def _check_answers(answers: object, path: Path, line: int | None) -> tuple[str, ...]:
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(answers, list | tuple) or not all(isinstance(a, str) for a in answers):
        raise DataError(path, "answers must be a list of strings", line=line)
    if not answers:
        raise DataError(path, "a question has no answers", line=line, fix="every question needs at least one answer")
    if any(not a.strip() for a in answers):
        warnings.warn(f"{path}:{line}: an empty answer matches every passage under DPR's rule", stacklevel=3)
    return tuple(answers)


def read_qa_csv(path: Path) -> list[Question]:
    """DPR's ``question \\t [answers]`` file."""
    path = Path(path)
    out: list[Question] = []
    with open_text(path) as f:
        reader = csv.reader(f, delimiter="\t")  # not strict: DPR reads as csv.reader does
        try:
            for row in reader:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 2:
                    raise DataError(path, f"expected 2 tab-separated columns, got {len(row)}", line=reader.line_num,
                                    fix="each line is 'question<TAB>[answers]'")
                answers = parse_answer_list(row[1], path, reader.line_num)
                if not row[0].strip():
                    raise DataError(path, "a question with empty text", line=reader.line_num,
                                    fix="each line is 'question<TAB>[answers]' with a question")
                if SWALLOWED.search(row[0]) or SWALLOWED.search(row[1]):
                    raise DataError(path, "a question runs over several lines (an unbalanced quote)",
                                    line=reader.line_num, fix="balance the quote, or CSV-quote the question")
                out.append(Question(str(len(out)), row[0], answers))
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(path, f"malformed line ({e})", line=reader.line_num) from None
    return out


def _from_object(obj: object, n: int, path: Path, line: int | None) -> Question:
    if not isinstance(obj, dict) or "question" not in obj or "answers" not in obj:
        raise DataError(path, "each record needs 'question' and 'answers'", line=line)
    question = obj["question"]
    if not isinstance(question, str) or not question.strip():
        raise DataError(path, "'question' must be a non-empty string", line=line)
    qid = obj.get("id", obj.get("qid", n))
    return Question(str(qid), question, _check_answers(obj["answers"], path, line))


def read_questions_json(path: Path) -> list[Question]:
    """A JSON list of ``{"question", "answers"}`` (EntityQuestions' per-relation files)."""
    path = Path(path)
    with open_text(path) as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(path, f"invalid JSON ({e.msg})", line=e.lineno) from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list):
        raise DataError(path, "expected a JSON list of question objects")
    return [_from_object(obj, n, path, None) for n, obj in enumerate(data)]


def read_questions_jsonl(path: Path) -> list[Question]:
    path = Path(path)
    objs = list(iter_jsonl(path))  # gzipped or not: each line checked and named
    return [_from_object(obj, n, path, line) for n, (line, obj) in enumerate(objs)]


def read_questions(path: Path) -> list[Question]:
    """Read any supported question file, chosen by its name; duplicate qids are errors."""
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".qa.csv", ".qa.csv.gz", ".csv", ".tsv")):
        questions = read_qa_csv(path)
    elif name.endswith((".jsonl", ".jsonl.gz")):
        questions = read_questions_jsonl(path)
    elif name.endswith((".json", ".json.gz")):
        questions = read_questions_json(path)
    else:
        raise DataError(path, "unknown question file type", fix=f"name it *{' or *'.join(QUESTION_SUFFIXES)}")
    seen: set[str] = set()
    for q in questions:
        if q.qid in seen:
            raise DataError(path, f"duplicate question id {q.qid!r}", fix="question ids must be unique")
        check_id(q.qid, path, None, "question id")
        seen.add(q.qid)
    if not questions:
        raise DataError(path, "no questions")
    return questions


def find_questions_file(folder: Path) -> Path | None:
    """The one question file in ``folder`` (``*.qa.csv``, ``questions.json(l)``, ...), or None."""
    found = sorted(p for p in Path(folder).iterdir()
                   if p.is_file() and p.name.lower().endswith(QUESTION_SUFFIXES) and not p.name.startswith("."))
    preferred = [p for p in found if p.name.lower().startswith("questions")]
    if len(preferred) == 1:
        return preferred[0]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise DataError(folder, f"several question files ({names})", fix="keep one, or name it questions.qa.csv")
    return found[0] if found else None
