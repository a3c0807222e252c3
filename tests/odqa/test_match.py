"""DPR has_answer: string mode (NFD, uncased SimpleTokenizer tokens) and regex mode (CuratedTREC)."""

from __future__ import annotations

import unicodedata

import pytest

from harness.odqa.match import first_hit_rank, has_answer, tokens


def test_tokenizer_pattern():
    assert tokens("Hello, World! It's 3.5km") == ["hello", ",", "world", "!", "it", "'", "s", "3", ".", "5km"]


@pytest.mark.parametrize("answer,text,expected", [
    ("Denver Broncos", "The Denver Broncos won.", True),                 # multi-token answer
    ("denver broncos", "THE DENVER BRONCOS WON", True),                   # case
    ("Broncos Denver", "The Denver Broncos won.", False),                 # order matters
    ("Denver", "Denverites cheered", False),                              # whole tokens only
    ("Levi's Stadium", "at Levi's Stadium in", True),                     # punctuation inside the answer
    ("Levi's Stadium", "at Levis Stadium in", False),
    ("gold", '"gold"-themed initiatives', True),                          # punctuation around the answer
    ("Santa Clara, California.", "at Santa Clara, California. As", True),
    ("Santa Clara, California.", "at Santa Clara California As", False),
    ("24–10", "defeated them 24–10 to earn", True),                       # en dash is its own token
    ("24-10", "defeated them 24–10 to earn", False),
    ("$1.5 billion", "cost $1.5 billion in total", True),
])
def test_string_mode(answer, text, expected):
    assert has_answer([answer], text) is expected


def test_unicode_nfd_and_accents():
    composed = "Wilhelm Conrad Röntgen"                   # ö as one code point (NFC)
    decomposed = unicodedata.normalize("NFD", composed)    # o + combining diaeresis
    assert composed != decomposed
    assert has_answer([composed], f"won by {decomposed} in 1901")
    assert has_answer([decomposed], f"won by {composed} in 1901")
    # the accent is a mark inside the token, so it still matters: Rontgen is not Röntgen
    assert not has_answer(["Rontgen"], f"won by {composed}")
    # non-Latin scripts and uppercase accents
    assert has_answer(["ÉCOLE"], "l'école normale")
    assert has_answer(["東京"], "首都は 東京 です")


def test_answer_spanning_a_passage_boundary_is_not_a_hit():
    passages = ["... the game was won by the Denver", "Broncos, who scored 24 points"]
    assert not has_answer(["Denver Broncos"], passages[0])
    assert not has_answer(["Denver Broncos"], passages[1])
    assert first_hit_rank(["Denver Broncos"], passages) is None
    assert first_hit_rank(["Denver Broncos", "Broncos"], passages) == 2


def test_any_of_several_answers():
    assert has_answer(["Carolina Panthers", "Broncos"], "the Broncos defense")
    assert not has_answer(["Carolina Panthers", "Steelers"], "the Broncos defense")


def test_empty_answer_matches_everything_as_in_dpr():
    assert has_answer([""], "anything")
    assert has_answer(["  "], "")


def test_regex_mode():
    assert has_answer([r"Mich(ael|ele) Jordan"], "MICHAEL JORDAN played", mode="regex")  # case-insensitive
    assert has_answer([r"19[0-9]{2}"], "born in 1963 in", mode="regex")
    assert not has_answer([r"^born"], "he was born", mode="regex")
    assert has_answer([r"^born"], "he was\nborn", mode="regex")                 # MULTILINE, as DPR
    assert has_answer(["Röntgen"], unicodedata.normalize("NFD", "Röntgen rays"), mode="regex")  # NFD both sides
    assert has_answer([r"cat"], "concatenate", mode="regex")                     # substring search, not tokens
    assert not has_answer([r"Jordan("], "Jordan(", mode="regex")                  # invalid regex: no match
    assert has_answer([r"Jordan(", "Jordan"], "Jordan", mode="regex")


def test_unknown_mode():
    with pytest.raises(ValueError):
        has_answer(["x"], "x", mode="fuzzy")
