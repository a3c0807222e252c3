"""The ``Dataset`` protocol: what the runner, the retrievers and the trainer use of a dataset, whatever its
source (a BEIR folder, DPR's open-domain QA files; ``harness.datasets`` resolves ids and folders to one).
No torch and no reader here, so every floor can name the type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from harness.data.corpus import Doc
from harness.data.judgements import Evaluation, Judgements
from harness.data.registry import EvalProtocol

__all__ = ["Dataset", "Doc", "Evaluation", "Judgements"]


class Dataset(Protocol):
    """A Corpus, the Topics of one split and its Judgements, under an evaluation protocol (as ir_datasets
    models a collection)."""

    @property
    def id(self) -> str: ...

    @property
    def protocol(self) -> EvalProtocol: ...

    @property
    def default_metrics(self) -> tuple[str, ...]: ...

    @property
    def root(self) -> Path: ...

    @property
    def split(self) -> str: ...

    @property
    def corpus_path(self) -> Path: ...

    def files(self) -> list[Path]: ...

    def check_layout(self) -> None: ...

    @property
    def corpus_digest(self) -> str:
        """The corpus's content digest, computed once and carried."""
        ...

    def corpus(self) -> Iterator[Doc]: ...

    def queries(self) -> dict[str, str]:
        """The split's topics: the queries its judgements judge."""
        ...

    def judgements(self) -> Judgements:
        """The split's judgements (graded qrels, or answers for open-domain QA): they read measure names and
        score runs, so the evaluator follows the judgement type, not the dataset's class."""
        ...
