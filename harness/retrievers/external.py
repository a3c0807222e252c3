"""A run computed elsewhere as a system (``run:<TREC run file>``): a leaderboard row, a fusion stage, a first
stage for ``rerank:``, in ``check`` and ``diff``. Its identity is the file's content (sha256), never its path:
a changed file is a new row. Nothing here searched the corpus, and the record says so (``computed_elsewhere``);
what the harness checks is what it can: every retrieved document is in the corpus, and each query's hits are
the file's first ``depth`` (by score, as every stage reads a run file: ``harness.trec.read_run``), cut
explicitly and recorded."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypedDict

from harness.data.dataset import Dataset
from harness.errors import HarnessError
from harness.retrievers.base import Indexed, SearchContext, Searched
from harness.retrievers.spec import RetrieverSpec
from harness.trec import FLOAT64_SCORE_FORMAT, Run, read_run


class RunFileFingerprint(TypedDict):
    kind: str
    sha256: str


class Served(TypedDict):
    """How the file's run was served at the depth asked."""

    depth: int
    queries_in_file: int
    queries_without_hits: int
    queries_cut_to_depth: int
    queries_in_file_not_in_topics: int


class RunFileProvenance(TypedDict):
    computed_elsewhere: bool
    run_file: str
    sha256: str
    served: Served | dict[str, Any]  # {} until it served a search
    device: None


class ExternalRun:
    """The run in ``spec.model`` (a TREC run file), served per query at the depth asked."""

    score_format = FLOAT64_SCORE_FORMAT  # the scores as read, written back without rounding

    def __init__(self, spec: RetrieverSpec):
        if spec.model is None:
            raise HarnessError(f"{spec.name}: no run file")
        self.spec = spec
        self.path = Path(spec.model)
        self.sha256 = str(spec.params["sha256"])
        self._run: Run | None = None
        self.served: Served | dict[str, Any] = {}

    def _read(self) -> Run:
        if self._run is None:
            from harness.io import sha256_file

            if not self.path.is_file():
                raise HarnessError(f"{self.path}: the run file is gone")
            if sha256_file(self.path) != self.sha256:
                raise HarnessError(f"{self.path} changed since it was named ({self.spec.name}); name it again "
                                   "(a changed run file is another system)")
            self._run = read_run(self.path)  # an empty file: DataError naming it
        return self._run

    def fingerprint(self) -> RunFileFingerprint:
        return {"kind": "run", "sha256": self.sha256}

    def changed_settings(self) -> dict[str, Any]:
        return {}

    def index(self, dataset: Dataset) -> Indexed:
        """Check the run against the corpus: every document it retrieves must be one of the corpus's."""
        start = time.perf_counter()
        run = self._read()
        retrieved = {d for docs in run.values() for d in docs}
        count = 0
        for doc in dataset.corpus():
            count += 1
            retrieved.discard(doc.doc_id)
        if retrieved:
            first = sorted(retrieved)[0]
            raise HarnessError(f"{self.path}: {len(retrieved)} retrieved documents are not in the corpus of "
                               f"{dataset.id} (first: {first!r}); is it a run on another collection?")
        return Indexed("none (a run computed elsewhere, checked against the corpus)", count,
                       round(time.perf_counter() - start, 3))

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        """Each query's first ``k`` hits as the file reads (by score); queries the file lacks get none."""
        run = self._read()
        out = {q: dict(list(run.get(q, {}).items())[:k]) for q in queries}
        self.served = {"depth": k, "queries_in_file": len(run),
                       "queries_without_hits": sum(1 for q in queries if not run.get(q)),
                       "queries_cut_to_depth": sum(1 for q in queries if len(run.get(q, {})) > k),
                       "queries_in_file_not_in_topics": len(set(run) - set(queries))}
        return Searched(out, None, computed_elsewhere=True)  # nothing was searched here

    def provenance(self, context: SearchContext) -> RunFileProvenance:
        return {"computed_elsewhere": True, "run_file": str(self.path.resolve()), "sha256": self.sha256,
                "served": self.served, "device": None}
