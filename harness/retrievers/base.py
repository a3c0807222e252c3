"""The two small interfaces every retriever and encoder satisfy (the runner and the CLI are typed by them)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from harness.trec import Run

if TYPE_CHECKING:
    from harness.data.dataset import Dataset


class Retriever(Protocol):
    """Indexes a corpus, then searches queries into a run; says what it computes."""

    #: how scores are written to run files (see harness.trec)
    score_format: str
    #: the number of documents the last search scored (the runner refuses a record when it is not the corpus)
    searched_documents: int | None

    def fingerprint(self) -> dict:
        """The content identity of what it computes (model files, recipe, compute; BM25 parameters and build)."""

    def changed_settings(self) -> dict:
        """Its settings that are not the reference computation ({} when they all are)."""

    def index(self, dataset: Dataset) -> dict:
        """Build or reuse the index of ``dataset``'s corpus; returns what was done, with ``documents``."""

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        """Top-``k`` documents per query, in rank order."""

    def provenance(self) -> dict:
        """Model id and revision, index settings: what makes this retriever's numbers what they are."""


class Composition(Retriever, Protocol):
    """A retriever over other retrievers' runs (fusion, reranking): the runner runs or reuses its stages
    first, at the depth it asks for, and hands it their records and run files as written."""

    def stage_depth(self, depth: int) -> int:
        """How deep each stage is run when this composition's own run is ``depth`` deep."""

    def use_stages(self, records: list[Any], runs: list[Run]) -> None:
        """The stages' result records and runs, in the order of ``spec.run_stages``."""


def settings_taken(retriever: Any) -> set[str]:
    """The ``EncodeSettings`` fields a retriever reads: its own ``settings_taken()`` where it declares them (a
    dense encoder reads every one), else those it reports as changed, with its stages'. An option no retriever
    of a run takes would change nothing, and the runner refuses it."""
    declared = getattr(retriever, "settings_taken", None)
    taken = set(declared()) if callable(declared) else set(retriever.changed_settings())
    for stage in getattr(retriever, "stages", None) or []:
        taken |= settings_taken(stage)
    return taken


class TextEncoder(Protocol):
    dim: int

    def encode(self, texts: Sequence, kind: str = "doc", desc: str | None = None) -> np.ndarray:
        """float32 vectors, one row per text (or (title, text) pair); ``kind`` is "query" or "doc"."""
