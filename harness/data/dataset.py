"""The ``Dataset`` protocol: what the runner, the retrievers and the trainer use of a dataset, whatever its
source (a BEIR folder, DPR's open-domain QA files; ``harness.datasets`` resolves ids and folders to one).
No torch and no reader here, so every floor can name the type."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.data.beir import Doc
from harness.data.registry import EvalProtocol
from harness.trec import Run

#: per-query values of each metric, and what else the evaluation reports (ODQA: each question's first hit)
Evaluation = tuple[dict[str, dict[str, float]], dict[str, Any]]


class Dataset(Protocol):
    """A corpus, the queries of one split and how they are judged, under an evaluation protocol."""

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

    def corpus(self) -> Iterator[Doc]: ...

    def queries(self) -> dict[str, str]: ...

    def metric(self, name: str) -> tuple[str, int]: ...

    def judged_documents(self) -> set[str]: ...

    def evaluate(self, run: Run, metrics: Sequence[str]) -> Evaluation: ...
