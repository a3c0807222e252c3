"""Datasets made in Python: a corpus, queries and qrels given as objects (BEIR's loader returns these three),
no folder needed (:func:`from_memory`).

The dataset reads nothing from disk: its documents, topics and judgements are the objects given, checked
once when it is made (ids as every reader checks them, texts, integer grades, judged queries among the
topics), each problem one line naming the dataset and the item. The parts of the harness that read files by
their path (the runner's checksums, Lucene, the dense store's size plan) get a content-addressed copy in
BEIR's layout under the cache, written once when first asked for (as the ir_datasets export is); a record
names that folder, and ``harness run --dataset memory:<name>`` (or the folder) reads it again in another
process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from harness.data.corpus import Doc
from harness.data.judgements import GradedJudgements
from harness.data.parts import BEIR_METRICS, CorpusReader, PartsDataset
from harness.data.registry import EvalProtocol
from harness.errors import HarnessError
from harness.lines import id_problem
from harness.trec import Qrels

__all__ = ["MARKER", "MemoryDataset", "copies_of", "from_memory"]

#: the id prefix of datasets made in Python (owned by ``harness.datasets.MemorySource``)
PREFIX = "memory:"
#: the file that marks a copy's folder and says which dataset it holds
MARKER = ".harness-memory.json"
FORMAT = "harness-memory/1"


class DocFields(TypedDict, total=False):
    """A document as BEIR's loader gives it: ``{"title": ..., "text": ...}``."""

    title: str
    text: str


#: documents: BEIR's ``{doc_id: {"title", "text"}}`` (or ``{doc_id: text}``), or ``Doc``s
CorpusInput = Mapping[str, DocFields | str] | Iterable[Doc]


@dataclass
class MemoryCopy:
    """The content-addressed copy of a dataset made in Python, in BEIR's layout under ``root``."""

    root: Path
    docs: list[Doc]
    queries: dict[str, str]
    qrels: Qrels
    marker: dict[str, object]
    _written: bool = field(default=False, init=False, repr=False)

    @property
    def corpus_file(self) -> Path:
        return self.root / "corpus.jsonl"

    @property
    def queries_file(self) -> Path:
        return self.root / "queries.jsonl"

    @property
    def qrels_file(self) -> Path:
        return self.root / "qrels" / f"{self.marker['split']}.tsv"

    def write(self) -> None:
        """Write the copy unless a sealed one is there (the marker is written last)."""
        from harness.io import atomic_write, atomic_write_json

        if self._written or (self.root / MARKER).is_file():
            self._written = True
            return
        atomic_write(self.corpus_file, "".join(corpus_lines(self.docs)))
        atomic_write(self.queries_file, "".join(json.dumps({"_id": q, "text": t}, ensure_ascii=False) + "\n"
                                                for q, t in self.queries.items()))
        atomic_write(self.qrels_file, "".join(qrels_lines(self.qrels)))
        atomic_write_json(self.root / MARKER, self.marker)
        self._written = True


def corpus_lines(docs: Iterable[Doc]) -> Iterator[str]:
    for d in docs:
        yield json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}, ensure_ascii=False) + "\n"


def qrels_lines(qrels: Qrels) -> Iterator[str]:
    yield "query-id\tcorpus-id\tscore\n"
    for q, docs in qrels.items():
        for d, grade in docs.items():
            yield f"{q}\t{d}\t{grade}\n"


@dataclass
class MemoryCorpus:
    """Documents held in memory; the copy's corpus.jsonl is their file."""

    held: list[Doc]
    copy: MemoryCopy
    _digest: str | None = field(default=None, init=False, repr=False)

    @property
    def path(self) -> Path:
        self.copy.write()
        return self.copy.corpus_file

    @property
    def digest(self) -> str:
        """The sha256 of the copy's corpus.jsonl, computed without writing it."""
        if self._digest is None:
            h = hashlib.sha256()
            for line in corpus_lines(self.held):
                h.update(line.encode("utf-8"))
            self._digest = h.hexdigest()
        return self._digest

    def docs(self) -> Iterator[Doc]:
        return iter(self.held)

    def files(self) -> list[Path]:
        return [self.path]


@dataclass
class MemoryTopics:
    """Queries held in memory."""

    held: dict[str, str]
    copy: MemoryCopy

    @property
    def path(self) -> Path:
        return self.copy.queries_file

    def topics(self) -> dict[str, str]:
        return dict(self.held)

    def files(self) -> list[Path]:
        self.copy.write()
        return [self.path]


@dataclass
class MemoryQrels:
    """Graded judgements held in memory."""

    held: Qrels
    copy: MemoryCopy

    def files(self) -> list[Path]:
        self.copy.write()
        return [self.copy.qrels_file]

    def judgements(self, dataset_id: str, corpus: CorpusReader, protocol: EvalProtocol) -> GradedJudgements:
        return GradedJudgements(self.copy.qrels_file, dataset_id, given=self.held)


@dataclass
class MemoryDataset(PartsDataset):
    """A dataset made in Python (:func:`from_memory`); ``root`` is its copy's folder (written when a file is
    asked for)."""

    @property
    def folder(self) -> Path:
        """The copy's folder, written: what ``harness.run`` hands the runner in its place."""
        self.files()
        return self.root


def from_memory(name: str, corpus: CorpusInput, queries: Mapping[str, str], qrels: Mapping[str, Mapping[str, int]],
                *, split: str = "test", drop_self_hits: bool = False, metrics: tuple[str, ...] = ()
                ) -> MemoryDataset:
    """The dataset ``memory:<name>`` of these objects: ``corpus`` BEIR's ``{doc_id: {"title", "text"}}`` (or
    ``{doc_id: text}``, or ``Doc``s), ``queries`` ``{qid: text}``, ``qrels`` ``{qid: {doc_id: grade}}``; its
    topics are the judged queries, its protocol the one given (``split``, BEIR's identical-id rule when
    ``drop_self_hits``). Usable wherever a dataset is: ``harness.run(["bm25"], [dataset])``."""
    where = f"{PREFIX}{name}"
    _check_name(name, where)
    docs = _documents(corpus, where)
    held_queries = _queries(queries, where)
    held_qrels = _qrels(qrels, held_queries, where)
    protocol = EvalProtocol(split=split, drop_self_hits=drop_self_hits)
    marker: dict[str, object] = {"format": FORMAT, "id": where, "split": split, "protocol": protocol.to_dict(),
                                 "metrics": list(metrics)}
    h = hashlib.sha256(json.dumps(marker, sort_keys=True).encode())
    for part in (corpus_lines(docs), (json.dumps([q, t]) for q, t in held_queries.items()), qrels_lines(held_qrels)):
        for line in part:
            h.update(line.encode("utf-8"))
    from harness.paths import cache_root

    copy = MemoryCopy(cache_root() / "memory" / h.hexdigest()[:32], docs, held_queries, held_qrels, marker)
    return MemoryDataset(where, protocol, MemoryCorpus(docs, copy), MemoryTopics(held_queries, copy),
                         MemoryQrels(held_qrels, copy), copy.root, tuple(metrics) or BEIR_METRICS)


def copies_of(dataset_id: str) -> list[Path]:
    """The folders of the copies of ``dataset_id`` in the cache (one per content it was made with)."""
    from harness.io import read_json
    from harness.paths import cache_root

    found = []
    for marker in sorted((cache_root() / "memory").glob(f"*/{MARKER}")):
        said = read_json(marker, fix=f"delete {marker.parent} (the dataset writes it again when used)")
        if isinstance(said, dict) and said.get("id") == dataset_id:
            found.append(marker.parent)
    return found


def _check_name(name: str, where: str) -> None:
    import re

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", name) or \
            any(part.strip(".") == "" for part in name.split("/")):
        raise HarnessError(f"{where!r}: a dataset name is letters, digits, '.', '_', '-' and '/' between them "
                           "(e.g. toy or my/set), never '.' or '..'")


def _bad_id(value: object, what: str, where: str) -> HarnessError | None:
    problem = "is not a string" if not isinstance(value, str) else id_problem(value)
    if problem is None:
        return None
    return HarnessError(f"{where}: {what} {value!r} {problem} (fix: ids are strings without whitespace, line "
                        "separators or control characters)")


def _documents(corpus: CorpusInput, where: str) -> list[Doc]:
    items: Iterable[tuple[object, object]]
    if isinstance(corpus, Mapping):
        items = corpus.items()
    else:
        items = ((d.doc_id, d) if isinstance(d, Doc) else (None, d) for d in corpus)
    docs: list[Doc] = []
    seen: set[str] = set()
    for doc_id, value in items:
        title: object
        text: object
        if isinstance(value, Doc):
            doc_id, title, text = value
        elif isinstance(value, str):
            title, text = "", value
        elif isinstance(value, Mapping):
            title, text = value.get("title") or "", value.get("text")
        else:
            raise HarnessError(f"{where}: document {doc_id!r} is a {type(value).__name__}; give {{'title': ..., "
                               "'text': ...}, a text, or a harness.data.corpus.Doc")
        bad = _bad_id(doc_id, "document id", where)
        if bad is not None:
            raise bad
        if not isinstance(title, str) or not isinstance(text, str):
            raise HarnessError(f"{where}: document {doc_id!r}: 'title' and 'text' must be strings")
        assert isinstance(doc_id, str)
        if doc_id in seen:
            raise HarnessError(f"{where}: document {doc_id!r} is given twice (fix: document ids must be unique)")
        seen.add(doc_id)
        docs.append(Doc(doc_id, title, text))
    if not docs:
        raise HarnessError(f"{where}: the corpus is empty (give at least one document)")
    return docs


def _queries(queries: Mapping[str, str], where: str) -> dict[str, str]:
    if not isinstance(queries, Mapping) or not queries:
        raise HarnessError(f"{where}: no queries (give {{qid: text}} with at least one query)")
    for qid, text in queries.items():
        bad = _bad_id(qid, "query id", where)
        if bad is not None:
            raise bad
        if not isinstance(text, str):
            raise HarnessError(f"{where}: query {qid!r} has no text string")
    return dict(queries)


def _qrels(qrels: Mapping[str, Mapping[str, int]], queries: Mapping[str, str], where: str) -> Qrels:
    held: Qrels = {}
    for qid, docs in (qrels.items() if isinstance(qrels, Mapping) else ()):
        if qid not in queries:
            raise HarnessError(f"{where}: query {qid!r} is judged but not among the queries (fix: give the "
                               "queries these qrels judge)")
        if not isinstance(docs, Mapping):
            raise HarnessError(f"{where}: the judgements of query {qid!r} are not {{doc_id: grade}}")
        for doc_id, grade in docs.items():
            bad = _bad_id(doc_id, "judged document id", where)
            if bad is not None:
                raise bad
            if not isinstance(grade, int) or isinstance(grade, bool):
                raise HarnessError(f"{where}: query {qid!r}, document {doc_id!r}: the grade {grade!r} is not an "
                                   "integer (fix: relevance grades are integers: 0, 1, 2, ...)")
        held[qid] = dict(docs)
    if not any(held.values()):
        raise HarnessError(f"{where}: no relevance judgements (give {{qid: {{doc_id: grade}}}})")
    return held
