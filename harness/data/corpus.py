"""Documents and corpora, whatever their source: ``Doc`` (id, title, text), the protocol's text rule
(:func:`doc_text`), and :class:`FileCorpus`, the corpus reader of one file: documents streamed, its content
digest computed once and carried (runner, BM25, SPLADE and the dense store all ask the corpus, not the file).
The readers of each format are ``harness.data.formats``'s."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple


class Doc(NamedTuple):
    doc_id: str
    title: str
    text: str


def doc_text(doc: Doc) -> str:
    """The protocol's document text: title + " " + text."""
    return f"{doc.title} {doc.text}".strip() if doc.title else doc.text.strip()


@dataclass
class FileCorpus:
    """The documents of one file (``path``), streamed by :meth:`read` (each format's subclass); ``digest`` is
    the file's sha256, read once per process and remembered by the file's identity
    (``harness.io.cached_sha256``)."""

    path: Path
    _digest: str | None = field(default=None, init=False, repr=False, compare=False)

    def read(self, path: Path) -> Iterator[Doc]:
        raise NotImplementedError

    def docs(self) -> Iterator[Doc]:
        return self.read(self.path)

    @property
    def digest(self) -> str:
        if self._digest is None:
            from harness.io import cached_sha256

            self._digest = cached_sha256(self.path)
        return self._digest

    def files(self) -> list[Path]:
        return [self.path]
