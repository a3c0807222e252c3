"""The file readers a dataset is made of, one small class per format (as ir_datasets' ``TsvDocs``,
``TsvQueries``, ``TrecQrels``), each reused by every source that has files of its format:

- corpora (``harness.data.parts.CorpusReader``): :class:`JsonlCorpus` (BEIR's corpus.jsonl),
  :class:`DprCorpus` (DPR's psgs_w100.tsv: a header, CSV quoting), :class:`TsvCorpus` (MS MARCO's
  collection.tsv: ``id<TAB>text``, columns named by the reader);
- topics (``TopicsReader``): :class:`JsonlTopics` (BEIR's queries.jsonl), :class:`TsvTopics` (Anserini's
  ``qid<TAB>text``), :class:`TaggedTopics` (TREC's ``<top>`` files), :func:`topics_file` (whichever a file is);
- judgements (``JudgementsReader``): :class:`QrelsFile` (BEIR's or TREC's qrels, either),
  :class:`BeirQrels` (3 columns), :class:`TrecQrels` (4 columns).

Every reader reads its file when asked, and names the file and the line of anything malformed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.corpus import Doc, FileCorpus
from harness.data.judgements import GradedJudgements
from harness.data.registry import EvalProtocol
from harness.data.tsv import check_tsv_fields, iter_passages, iter_tsv_docs
from harness.errors import DataError
from harness.lines import check_id
from harness.trec import NO_TOPICS, NO_TOPICS_FIX, read_tagged_topics, read_tsv_topics

if TYPE_CHECKING:
    from harness.data.readers import CorpusReader

__all__ = ["BeirQrels", "DprCorpus", "JsonlCorpus", "JsonlTopics", "QrelsFile", "TaggedTopics", "TrecQrels",
           "TsvCorpus", "TsvTopics", "iter_corpus", "read_queries", "topics_file"]


def _field_id(path: Path, lineno: int, obj: dict[str, Any], what: str) -> str:
    if "_id" not in obj:
        raise DataError(path, "record has no '_id'", line=lineno, fix="every line needs an '_id' field")
    value = obj["_id"]
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise DataError(path, f"'_id' must be a non-empty string, got {value!r}", line=lineno)
    return check_id(str(value), path, lineno, what)


def iter_corpus(path: Path) -> Iterator[Doc]:
    """Stream a BEIR corpus.jsonl. Duplicate ids and records without ``text`` are errors; empty text is
    allowed."""
    from harness.data.jsonl import iter_jsonl

    seen: set[str] = set()
    for lineno, obj in iter_jsonl(path):
        doc_id = _field_id(path, lineno, obj, "document id")
        if doc_id in seen:
            raise DataError(path, f"duplicate document id {doc_id!r}", line=lineno,
                            fix="document ids must be unique")
        seen.add(doc_id)
        if "text" not in obj:
            raise DataError(path, f"document {doc_id!r} has no 'text'", line=lineno,
                            fix="add a 'text' field (it may be empty)")
        title, text = obj.get("title"), obj["text"]
        title = "" if title is None else title  # null is no title; 0, false, [] and {} are refused, not emptied
        if text is None:
            text = ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise DataError(path, f"document {doc_id!r}: 'title' and 'text' must be strings", line=lineno,
                            fix="write them as JSON strings (null or \"\" for none)")
        yield Doc(doc_id, title, text)


def read_queries(path: Path) -> dict[str, str]:
    """All queries of a BEIR ``queries.jsonl`` (id -> text)."""
    from harness.data.jsonl import iter_jsonl

    queries: dict[str, str] = {}
    for lineno, obj in iter_jsonl(path):
        qid = _field_id(path, lineno, obj, "query id")
        if qid in queries:
            raise DataError(path, f"duplicate query id {qid!r}", line=lineno, fix="query ids must be unique")
        text = obj.get("text")
        if not isinstance(text, str):
            raise DataError(path, f"query {qid!r} has no 'text' string", line=lineno)
        queries[qid] = text
    if not queries:
        raise DataError(path, NO_TOPICS, fix=NO_TOPICS_FIX)
    return queries


# --- corpora ------------------------------------------------------------------------------------------------

@dataclass
class JsonlCorpus(FileCorpus):
    """BEIR's corpus.jsonl: ``{"_id", "title", "text"}`` a line."""

    def read(self, path: Path) -> Iterator[Doc]:
        return iter_corpus(path)


@dataclass
class DprCorpus(FileCorpus):
    """DPR's passage file (psgs_w100.tsv, ``.gz`` read as it is): a header naming ``id``, ``text`` and
    ``title``, fields CSV-quoted."""

    def read(self, path: Path) -> Iterator[Doc]:
        return iter_passages(path)


@dataclass
class TsvCorpus(FileCorpus):
    """A headerless TSV corpus (MS MARCO's collection.tsv): one document a line, its columns named by
    ``fields`` (``doc_id`` and ``text``, optionally ``title``, "" for a column to skip)."""

    fields: tuple[str, ...] = ("doc_id", "text")

    def __post_init__(self) -> None:
        self.fields = check_tsv_fields(self.fields)

    def read(self, path: Path) -> Iterator[Doc]:
        return iter_tsv_docs(path, self.fields)


# --- topics -------------------------------------------------------------------------------------------------

@dataclass
class JsonlTopics:
    """BEIR's queries.jsonl: ``{"_id", "text"}`` a line."""

    path: Path

    def topics(self) -> dict[str, str]:
        return read_queries(self.path)

    def files(self) -> list[Path]:
        return [self.path]


@dataclass
class TsvTopics:
    """Anserini's TSV topics: ``qid<TAB>text`` a line (MS MARCO's queries.*.tsv)."""

    path: Path

    def topics(self) -> dict[str, str]:
        return read_tsv_topics(self.path)

    def files(self) -> list[Path]:
        return [self.path]


@dataclass
class TaggedTopics:
    """TREC's tagged topic file (``<top> <num> ... <title> ... </top>``); ``field`` (title, desc or narr) is
    the query text."""

    path: Path
    field: str = "title"

    def topics(self) -> dict[str, str]:
        return read_tagged_topics(self.path, self.field)

    def files(self) -> list[Path]:
        return [self.path]


def topics_file(path: Path) -> JsonlTopics | TsvTopics | TaggedTopics:
    """The reader of a topics file: BEIR's for ``*.jsonl``, TREC's tagged one for a file that holds ``<top>``,
    Anserini's TSV otherwise (a file not there yet: by its name)."""
    if path.suffix == ".jsonl":
        return JsonlTopics(path)
    try:
        tagged = b"<top>" in path.read_bytes()
    except OSError:
        tagged = False
    return TaggedTopics(path) if tagged else TsvTopics(path)


# --- judgements -----------------------------------------------------------------------------------------------

@dataclass
class QrelsFile:
    """A qrels file, BEIR's (``query-id corpus-id score`` with a header) or TREC's (``qid 0 docid rel``), line
    by line; ``columns`` (3 or 4) holds it to one of them."""

    path: Path
    columns: int | None = None

    def files(self) -> list[Path]:
        return [self.path]

    def judgements(self, dataset_id: str, corpus: CorpusReader, protocol: EvalProtocol) -> GradedJudgements:
        return GradedJudgements(self.path, dataset_id, self.columns)


@dataclass
class BeirQrels(QrelsFile):
    """BEIR's qrels TSV: ``query-id<TAB>corpus-id<TAB>score`` under a header."""

    columns: int | None = 3


@dataclass
class TrecQrels(QrelsFile):
    """TREC's qrels: ``qid 0 docid rel`` a line."""

    columns: int | None = 4
