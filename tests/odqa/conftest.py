"""A tiny ODQA folder: passages.tsv (DPR layout, CSV-quoted) and questions.qa.csv (DPR layout)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

PASSAGES = [
    ("1", 'Super Bowl 50 was won by the "Denver Broncos" 24–10 at Levi\'s Stadium.', "Super Bowl 50"),
    ("2", "The Carolina Panthers lost; quarterback Cam Newton was the MVP.", "Super Bowl 50"),
    ("3", "Wilhelm Conrad Röntgen discovered X-rays in 1895.", "Röntgen"),
    ("4", "The game ended and the crowd went home from the stadium in", "Super Bowl 50"),
    ("5", "Santa Clara, California hosts many events\twith tabs and\nnewlines inside.", "Santa Clara"),
]
QUESTIONS = [
    ("who won super bowl 50", ["Denver Broncos"]),
    ("who discovered x-rays", ["Wilhelm Röntgen", "Röntgen"]),
    ('"MVP" of super bowl 50?', ["Cam Newton"]),
    ("where is levi's stadium", ["Santa Clara, California"]),
    ("unanswerable question here", ["Nobody Anywhere"]),
]


def write_odqa(folder: Path, passages=PASSAGES, questions=QUESTIONS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "passages.tsv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        w.writerow(["id", "text", "title"])
        w.writerows(passages)
    with open(folder / "questions.qa.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, delimiter="\t", lineterminator="\n")
        for q, answers in questions:
            w.writerow([q, repr(answers)])
    return folder


@pytest.fixture()
def tiny_odqa(tmp_path) -> Path:
    return write_odqa(tmp_path / "tiny-odqa")
