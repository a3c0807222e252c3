"""DPR's answer matching (``has_answer`` of DPR ``dpr/data/qa_validation.py``, used by Spider and Pyserini).

String mode: the passage text and every answer are NFD-normalised, tokenised with DrQA's
``SimpleTokenizer`` (``[\\p{L}\\p{N}\\p{M}]+`` runs, or any single non-space, non-control character),
lowercased token by token, and a hit is an answer's token sequence appearing contiguously in the text's.
Regex mode (CuratedTREC): each answer is a pattern, NFD-normalised, compiled with the ``regex`` package
(IGNORECASE | UNICODE | MULTILINE) and searched in the NFD text; a pattern that does not compile never
matches (DPR swallows the error). Only the passage text is matched, never the title.

Quirk kept for fidelity: an answer with no tokens (empty or whitespace) matches every passage in string
mode, as in DPR; ``formats`` warns about such answers when it reads a question file.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import regex

TOKEN_PATTERN = r"([\p{L}\p{N}\p{M}]+)|([^\p{Z}\p{C}])"
_TOKEN_RE = regex.compile(TOKEN_PATTERN, flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)
MATCH_MODES = ("string", "regex")


def tokens(text: str) -> list[str]:
    """DPR's uncased SimpleTokenizer words of ``text`` after NFD normalisation."""
    return [m.group().lower() for m in _TOKEN_RE.finditer(unicodedata.normalize("NFD", text))]


@lru_cache(maxsize=65536)
def _answer_tokens(answer: str) -> tuple[str, ...]:
    return tuple(tokens(answer))


@lru_cache(maxsize=65536)
def _compile(pattern: str) -> Any:
    try:
        return regex.compile(unicodedata.normalize("NFD", pattern),
                             flags=regex.IGNORECASE | regex.UNICODE | regex.MULTILINE)
    except Exception:  # DPR: `except BaseException: return False`
        return None


def _contains(seq: Sequence[str], sub: tuple[str, ...]) -> bool:
    n = len(sub)
    if n == 0:
        return True  # DPR: range(len(text) + 1) compares [] == [] -> True
    first = sub[0]
    return any(seq[i] == first and tuple(seq[i:i + n]) == sub for i in range(len(seq) - n + 1))


def has_answer(answers: Sequence[str], text: str, mode: str = "string") -> bool:
    """True when any of ``answers`` occurs in ``text`` under DPR's rule for ``mode`` ("string" or "regex")."""
    if mode == "string":
        words = tokens(text)
        return any(_contains(words, _answer_tokens(a)) for a in answers)
    if mode == "regex":
        nfd = unicodedata.normalize("NFD", text)
        for a in answers:
            pattern = _compile(a)
            if pattern is not None and pattern.search(nfd) is not None:
                return True
        return False
    raise ValueError(f"unknown match mode {mode!r}; known: {', '.join(MATCH_MODES)}")


def first_hit_rank(answers: Sequence[str], texts: Sequence[str], mode: str = "string") -> int | None:
    """1-based rank of the first passage in ``texts`` (ranked) holding an answer, or None."""
    if mode == "string":
        answer_tokens = [_answer_tokens(a) for a in answers]
        for rank, text in enumerate(texts, start=1):
            words = tokens(text)
            if any(_contains(words, t) for t in answer_tokens):
                return rank
        return None
    for rank, text in enumerate(texts, start=1):
        if has_answer(answers, text, mode):
            return rank
    return None
