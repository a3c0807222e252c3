"""BEIR-format folders: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``.

The corpus is streamed, never held in memory by the reader. Documents are ``Doc`` tuples; the text a
retriever sees is ``doc_text(doc)`` = title + " " + text (just the text when there is no title).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from harness.data.corpus import Doc, OneFileCorpus, doc_text
from harness.data.jsonl import iter_jsonl
from harness.data.judgements import GradedJudgements
from harness.data.registry import EvalProtocol
from harness.errors import DataError, HarnessError
from harness.lines import check_id
from harness.trec import NO_TOPICS, NO_TOPICS_FIX, Qrels, read_topics

TOPIC_FILES = ("topics.tsv", "queries.tsv", "topics.txt")

__all__ = ["BeirDataset", "Doc", "default_split", "doc_text", "folder_splits", "iter_corpus", "read_queries"]


def _field_id(path: Path, lineno: int, obj: dict, what: str) -> str:
    if "_id" not in obj:
        raise DataError(path, "record has no '_id'", line=lineno, fix="every line needs an '_id' field")
    value = obj["_id"]
    if not isinstance(value, str | int) or isinstance(value, bool) or str(value).strip() == "":
        raise DataError(path, f"'_id' must be a non-empty string, got {value!r}", line=lineno)
    return check_id(str(value), path, lineno, what)


def iter_corpus(path: Path) -> Iterator[Doc]:
    """Stream documents. Duplicate ids and records without ``text`` are errors; empty text is allowed."""
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
        title, text = obj.get("title") or "", obj["text"]
        if text is None:
            text = ""
        if not isinstance(text, str) or not isinstance(title, str):
            raise DataError(path, f"document {doc_id!r}: 'title' and 'text' must be strings", line=lineno)
        yield Doc(doc_id, title, text)


def read_queries(path: Path) -> dict[str, str]:
    """All queries of a ``queries.jsonl`` (id -> text)."""
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


def folder_splits(root: Path) -> list[str]:
    """The splits a BEIR folder judges (``qrels/<split>.tsv``), test first, then by name."""
    names = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
    return sorted(names, key=lambda n: (n != "test", n))


def default_split(root: Path) -> str:
    """A folder's evaluation split: ``test`` (BEIR's), else its one judged split; with several and no test,
    ``test`` all the same, refused by :meth:`BeirDataset.check_layout` with the splits to choose from."""
    splits = folder_splits(root)
    return splits[0] if len(splits) == 1 else "test"


@dataclass
class BeirDataset(OneFileCorpus):
    """A BEIR-format folder under ``protocol``: a corpus (``corpus.jsonl``), the split's topics
    (``queries.jsonl``, the queries its qrels judge) and its graded judgements (``qrels/<split>.tsv``)."""

    id: str
    root: Path
    protocol: EvalProtocol
    default_metrics: tuple[str, ...] = ("ndcg@10", "recall@100", "recall@1000")
    read_corpus: ClassVar[Callable[[Path], Iterator[Doc]]] = staticmethod(iter_corpus)
    _judgements: GradedJudgements | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def queries_path(self) -> Path:
        """``queries.jsonl`` (BEIR), else TREC topics: ``topics.tsv`` / ``queries.tsv`` (Anserini's TSV) or
        ``topics.txt`` (TREC's tagged file, titles)."""
        for name in ("queries.jsonl", *TOPIC_FILES):
            if (self.root / name).is_file():
                return self.root / name
        return self.root / "queries.jsonl"

    @property
    def qrels_path(self) -> Path:
        return self.root / "qrels" / f"{self.protocol.split}.tsv"

    @property
    def split(self) -> str:
        return self.protocol.split

    def files(self) -> list[Path]:
        return [self.corpus_path, self.queries_path, self.qrels_path]

    def check_layout(self) -> None:
        missing = [p for p in self.files() if not p.is_file()]
        splits = folder_splits(self.root)
        if missing == [self.qrels_path] and splits:
            raise HarnessError(f"{self.root}: no qrels/{self.split}.tsv; this folder has the split(s) "
                               f"{', '.join(splits)}: pass --split {splits[0]}")
        if missing:
            names = ", ".join(str(p.relative_to(self.root)) for p in missing)
            raise HarnessError(f"{self.root} is not a complete BEIR folder: missing {names} "
                               "(expected corpus.jsonl, queries.jsonl (or TREC topics: topics.tsv, topics.txt) "
                               "and qrels/<split>.tsv (BEIR TSV or TREC qrels))")

    def judgements(self) -> GradedJudgements:
        if self._judgements is None or self._judgements.path != self.qrels_path:
            self._judgements = GradedJudgements(self.qrels_path, self.id)
        return self._judgements

    def qrels(self) -> Qrels:
        return self.judgements().qrels()

    def queries(self) -> dict[str, str]:
        """The queries judged in this split's qrels (as BEIR's loader keeps them)."""
        qrels = self.qrels()
        every = read_queries(self.queries_path) if self.queries_path.suffix == ".jsonl" \
            else read_topics(self.queries_path)
        unknown = sorted(set(qrels) - set(every))
        if unknown:
            raise DataError(self.qrels_path, f"{len(unknown)} judged queries are missing from "
                            f"{self.queries_path.name} (first: {unknown[0]!r})",
                            fix="use the queries file that belongs to these qrels")
        queries = {q: every[q] for q in qrels}
        if not queries:
            raise DataError(self.queries_path, "no queries to evaluate")
        return queries
