"""What a dataset's corpus and topics readers offer (``harness.data.parts`` combines them with a judgements
reader; ``harness.data.judgements`` reads the topics a judgement covers through them)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from harness.data.corpus import Doc

__all__ = ["CorpusReader", "TopicsReader"]


class CorpusReader(Protocol):
    """The documents of a dataset: streamed, never held; ``path`` is the file they come from (named in
    messages, sized for resources) and ``digest`` their content digest, computed once."""

    @property
    def path(self) -> Path: ...

    @property
    def digest(self) -> str: ...

    def docs(self) -> Iterator[Doc]: ...

    def files(self) -> list[Path]: ...


class TopicsReader(Protocol):
    """The topics (queries) of a dataset: every one its file holds, id -> text."""

    @property
    def path(self) -> Path: ...

    def topics(self) -> dict[str, str]: ...

    def files(self) -> list[Path]: ...
