"""Tab-separated corpora, streamed one document at a time.

- DPR's passage file (``psgs_w100.tsv``, :func:`iter_passages`): a header naming the columns (``id``,
  ``text``, ``title``), fields CSV-quoted as Python's ``csv`` module writes them (DPR reads it with
  ``csv.reader``); ``.gz`` files are read as they are.
- MS MARCO-style collections (``collection.tsv``, :func:`iter_tsv_docs`): no header, no quoting, one
  document a line, its columns named by the reader (``doc_id<TAB>text`` by default; a ``title`` column and
  ignored ones may be named too). A quote is text, as in MS MARCO's passages.

Duplicate or empty ids are errors naming the file and the line.
"""

from __future__ import annotations

import csv
import gzip
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from harness.data.corpus import Doc
from harness.errors import DataError
from harness.lines import GZIP_ERRORS, check_id, damaged, iter_lines

#: a quoted field that ran on over later rows: a line break followed by a tab on the same line (a CSV-quoted
#: field may hold line breaks and tabs, but a later row's columns after a break mean an unbalanced quote)
SWALLOWED = re.compile(r"[\r\n][^\r\n]*\t")
#: the column names :func:`iter_tsv_docs` reads ("" or "-": a column it skips)
TSV_FIELDS = ("doc_id", "text", "title")
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def open_text(path: Path) -> IO[str] | _CheckedGzip:
    """A text file, gzipped or not, as ``csv`` reads it (UTF-8, a byte-order mark dropped); a damaged gzip
    file is a DataError naming it wherever its reading stops."""
    try:
        if path.name.endswith(".gz"):
            return _CheckedGzip(path, gzip.open(path, "rt", encoding="utf-8-sig", newline=""))
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError:
        raise DataError(path, "file not found") from None


class _CheckedGzip:
    """A gzip text stream whose decompression errors are one-line DataErrors naming the file."""

    def __init__(self, path: Path, stream: IO[str]):
        self.path, self.stream = path, stream

    def __next__(self) -> str:
        try:
            return next(self.stream)
        except GZIP_ERRORS as e:
            raise damaged(self.path, e) from None

    def __iter__(self) -> _CheckedGzip:
        return self

    def read(self, size: int | None = -1) -> str:
        try:
            return self.stream.read(-1 if size is None else size)
        except GZIP_ERRORS as e:
            raise damaged(self.path, e) from None

    def readline(self, size: int | None = -1) -> str:
        try:
            return self.stream.readline(-1 if size is None else size)
        except GZIP_ERRORS as e:
            raise damaged(self.path, e) from None

    def close(self) -> None:
        self.stream.close()

    def __enter__(self) -> _CheckedGzip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IdSet:
    """Seen document ids; decimal ids (all of DPR's and MS MARCO's) cost one bit each instead of a string."""

    def __init__(self) -> None:
        self.bits = bytearray()
        self.other: set[str] = set()

    def add(self, doc_id: str) -> bool:
        """Add ``doc_id``; False when it was already there."""
        if doc_id.isdigit() and doc_id.isascii() and len(doc_id) < 11 and (doc_id == "0" or doc_id[0] != "0"):
            n = int(doc_id)
            byte, bit = n >> 3, 1 << (n & 7)
            if byte >= len(self.bits):
                self.bits.extend(bytes(max(byte + 1 - len(self.bits), len(self.bits))))
            if self.bits[byte] & bit:
                return False
            self.bits[byte] |= bit
            return True
        if doc_id in self.other:
            return False
        self.other.add(doc_id)
        return True


def iter_passages(path: Path) -> Iterator[Doc]:
    """Stream ``Doc(id, title, text)`` from a DPR passage TSV. Duplicate or empty ids are errors."""
    path = Path(path)
    with open_text(path) as f:
        reader = csv.reader(f, delimiter="\t")  # not strict: DPR reads as csv.reader does
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(path, "the passage file is empty") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise DataError(path, f"unreadable header ({e})", line=1) from None
        cols = {name.strip().lower(): i for i, name in enumerate(header)}
        if "id" not in cols or "text" not in cols:
            raise DataError(path, f"header {header!r} lacks 'id' and 'text' columns", line=1,
                            fix="the first line must name the columns, e.g. 'id<TAB>text<TAB>title' "
                                "as in psgs_w100.tsv")
        i_id, i_text, i_title = cols["id"], cols["text"], cols.get("title")
        width = max(i_id, i_text, i_title if i_title is not None else 0) + 1
        seen = IdSet()
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except (csv.Error, UnicodeDecodeError) as e:
                raise DataError(path, f"malformed row ({e})", line=reader.line_num,
                                fix="fields with tabs, quotes or newlines must be CSV-quoted") from None
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) < width or len(row) > len(header):
                raise DataError(path, f"expected {len(header)} tab-separated columns, got {len(row)}",
                                line=reader.line_num,
                                fix="each line is 'id<TAB>text<TAB>title'; a tab inside a text or title must be "
                                    "CSV-quoted (DPR's reader would shift the columns too)")
            if any(SWALLOWED.search(field) for field in row):
                raise DataError(path, "a field runs on over later rows (a quote opened and not closed on its "
                                      "line), so this passage would swallow the passages after it",
                                line=reader.line_num, fix="balance the quote, or CSV-quote the field "
                                                          '("" for a quote inside it)')
            doc_id = row[i_id].strip()
            if not doc_id:
                raise DataError(path, "empty passage id", line=reader.line_num)
            if not (doc_id.isascii() and doc_id.isdigit()):  # DPR's ids are decimal: valid by construction
                check_id(doc_id, path, reader.line_num, "passage id")
            if not seen.add(doc_id):
                raise DataError(path, f"duplicate passage id {doc_id!r}", line=reader.line_num,
                                fix="passage ids must be unique")
            yield Doc(doc_id, row[i_title] if i_title is not None else "", row[i_text])


def check_tsv_fields(fields: Sequence[str]) -> tuple[str, ...]:
    """The column names of a headerless TSV corpus, checked: ``doc_id`` and ``text`` once each, ``title`` at
    most once, "" or "-" for a column to skip."""
    named = [f for f in fields if f not in ("", "-")]
    unknown = sorted(set(named) - set(TSV_FIELDS))
    if unknown or named.count("doc_id") != 1 or named.count("text") != 1 or len(set(named)) != len(named):
        raise ValueError(f"TSV corpus columns {tuple(fields)!r}: name doc_id and text once each, title at most "
                         f"once, '' for a column to skip (known: {', '.join(TSV_FIELDS)})")
    return tuple(fields)


def iter_tsv_docs(path: Path, fields: Sequence[str] = ("doc_id", "text")) -> Iterator[Doc]:
    """Stream ``Doc``s from a headerless TSV (MS MARCO's ``collection.tsv``: ``pid<TAB>passage``), each line
    split at its tabs into ``fields``. A line with another number of columns is an error naming it."""
    path = Path(path)
    fields = check_tsv_fields(fields)
    column = {name: i for i, name in enumerate(fields) if name}
    seen = IdSet()
    for lineno, line in iter_lines(path):
        cols = line.split("\t")
        if len(cols) != len(fields):
            raise DataError(path, f"expected {len(fields)} tab-separated columns ({', '.join(fields)}), got "
                                  f"{len(cols)}", line=lineno,
                            fix="one document a line; a tab inside a text is not allowed in this format")
        doc_id = check_id(cols[column["doc_id"]].strip(), path, lineno, "document id")
        if not seen.add(doc_id):
            raise DataError(path, f"duplicate document id {doc_id!r}", line=lineno, fix="document ids must be unique")
        title = cols[column["title"]] if "title" in column else ""
        yield Doc(doc_id, title, cols[column["text"]])
