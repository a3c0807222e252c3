"""Reading text files line by line, reporting the file and line of anything malformed; ids checked where
they are read. The bottom of the package: every reader (BEIR, TREC, DPR, baselines) stands on it.

Tolerated (and documented): a UTF-8 byte-order mark, CRLF line ends, blank lines (skipped).
Rejected with file, line and fix: invalid UTF-8, a line longer than ``MAX_LINE_BYTES``; an id with
whitespace, a line separator or a control character.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from harness.errors import DataError

MAX_LINE_BYTES = int(os.environ.get("HARNESS_MAX_LINE_BYTES", 64 * 1024 * 1024))


#: what reading a damaged gzip file raises (cut short, corrupted, not gzip at all)
GZIP_ERRORS: tuple[type[Exception], ...] = (EOFError, zlib.error, gzip.BadGzipFile)


def damaged(path: Path | str, e: Exception, line: int | None = None) -> DataError:
    """The one-line error of a gzip file that cannot be read to its end."""
    return DataError(path, f"damaged gzip file ({type(e).__name__}: {e})", line=line,
                     fix="download or compress it again")


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield (1-based line number, decoded line without its line end), skipping blank lines; a ``.gz`` file is
    read through gzip, and a damaged one is a DataError naming the line it was read to."""
    try:
        f: BinaryIO = gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")  # type: ignore[assignment]
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    with f:
        lineno = 0
        while True:
            try:
                raw = f.readline(MAX_LINE_BYTES + 1)
            except GZIP_ERRORS as e:
                raise damaged(path, e, lineno + 1) from None
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise DataError(path, f"line longer than {MAX_LINE_BYTES} bytes", line=lineno,
                                fix="split the record, or raise HARNESS_MAX_LINE_BYTES")
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(path, f"invalid UTF-8 at byte {e.start} of the line", line=lineno,
                                fix="re-encode the file as UTF-8") from None
            text = text.rstrip("\r\n")
            if text.strip():
                yield lineno, text


_BAD_ID_CATEGORIES = {"Cc", "Cs", "Zl", "Zp", "Zs"}


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be an id (empty, whitespace, a line or paragraph separator, a control
    character), or None. Run files separate columns by whitespace and stores must never depend on a
    separator an id could contain, so such ids are refused where they are read."""
    if not value:
        return "is empty"
    if value.isprintable() and " " not in value:
        return None
    import unicodedata

    for c in value:
        if c.isspace() or unicodedata.category(c) in _BAD_ID_CATEGORIES:
            return f"contains {unicodedata.name(c, f'U+{ord(c):04X}').lower()} (U+{ord(c):04X})"
    return None


def check_id(value: str, path: Path, line: int | None, what: str) -> str:
    """``value`` when it is a valid id, else a DataError naming the file, the line and the id."""
    problem = id_problem(value)
    if problem:
        raise DataError(path, f"{what} {value!r} {problem}", line=line,
                        fix="ids may not contain whitespace, line separators or control characters")
    return value


def plain_float(text: str) -> float:
    """A decimal number as C's atof/strtod reads it: Python's float() less what it alone takes ('1_0' is 10 to
    Python, 1 to atof; other scripts' digits). ValueError otherwise; a non-finite value is the caller's."""
    if not text.isascii() or "_" in text:
        raise ValueError(f"{text!r} is not a plain decimal number")
    return float(text)


def plain_int(text: str) -> int:
    """An integer of ASCII digits with an optional sign (what C's atol reads whole); ValueError otherwise."""
    stripped = text.strip()
    digits = stripped[1:] if stripped[:1] in "+-" else stripped
    if not (digits.isascii() and digits.isdigit()):
        raise ValueError(f"{text!r} is not a plain integer")
    return int(stripped)

