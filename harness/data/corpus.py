"""Documents and corpora, whatever their source: ``Doc`` (id, title, text), the protocol's text rule
(:func:`doc_text`), and :class:`Corpus`, a streamed collection whose content digest is computed once and
carried (runner, BM25, SPLADE and the dense store all ask the corpus, not the file)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, NamedTuple


class Doc(NamedTuple):
    doc_id: str
    title: str
    text: str


def doc_text(doc: Doc) -> str:
    """The protocol's document text: title + " " + text."""
    return f"{doc.title} {doc.text}".strip() if doc.title else doc.text.strip()


@dataclass
class Corpus:
    """The documents of one file (``path``), streamed by ``reader``; ``digest`` is the file's sha256, read
    once per process and remembered by the file's identity (``harness.io.cached_sha256``)."""

    path: Path
    reader: Callable[[Path], Iterator[Doc]]
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    def docs(self) -> Iterator[Doc]:
        return self.reader(self.path)

    @property
    def digest(self) -> str:
        if self._digest is None:
            from harness.io import cached_sha256

            self._digest = cached_sha256(self.path)
        return self._digest


class OneFileCorpus:
    """A dataset whose corpus is the one file ``corpus_path``, read by its class's ``read_corpus``: the
    :class:`Corpus` (and so its digest) is made once and kept while the path stays the same."""

    read_corpus: ClassVar[Callable[[Path], Iterator[Doc]]]

    @property
    def corpus_path(self) -> Path:
        raise NotImplementedError

    @property
    def documents(self) -> Corpus:
        kept = self.__dict__.get("_documents")
        if not isinstance(kept, Corpus) or kept.path != self.corpus_path:
            kept = self.__dict__["_documents"] = Corpus(self.corpus_path, type(self).read_corpus)
        return kept

    @property
    def corpus_digest(self) -> str:
        return self.documents.digest

    def corpus(self) -> Iterator[Doc]:
        return self.documents.docs()
