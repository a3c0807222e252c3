"""The two small interfaces every retriever and encoder satisfy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from harness.data.beir import BeirDataset
from harness.trec import Run


class Retriever(Protocol):
    """Indexes a corpus, then searches queries into a run."""

    #: how scores are written to run files (see harness.trec)
    score_format: str

    def index(self, dataset: BeirDataset) -> dict:
        """Build or reuse the index of ``dataset``'s corpus; returns what was done (for the record)."""

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        """Top-``k`` documents per query."""

    def provenance(self) -> dict:
        """Model id and revision, index settings: what makes this retriever's numbers what they are."""


class Encoder(Protocol):
    dim: int

    def encode(self, texts: Sequence[str], kind: str = "doc", desc: str | None = None) -> np.ndarray:
        """float32 vectors, one row per text; ``kind`` is "query" or "doc"."""
