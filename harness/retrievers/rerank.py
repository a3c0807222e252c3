"""Reranking as a retriever: the top hits of a first stage, rescored.

``rerank:MODEL(FIRST;top=100)``: the runner runs (or reuses) FIRST as the retriever it is, with its own
record and run file; this retriever reads FIRST's run as written, takes each query's ``top`` hits and
rescores them, as BEIR's ``Rerank`` does: the run holds those ``top`` documents only, by the new score
(ties keep the first stage's order), so a metric deeper than ``top`` (recall@1000) counts the reranked
documents alone.

- A cross-encoder (a Hugging Face sequence-classification model with one output, e.g.
  ``cross-encoder/ms-marco-MiniLM-L-6-v2``) reads (query, document) pairs and scores each
  (``harness.retrievers.cross_encoder``: its truncation, precision and score cache).
- A dense retriever of ours (a registered name or ``hf:...``) rescores the candidates with its own vectors:
  the corpus embeddings come from its embedding cache (computed once, as for a dense run), the score is the
  float32 inner product of the query and document vectors.
- A ColBERT model of ours (``colbert:...``) rescores them by MaxSim over its stored token vectors: a retriever
  that has a ``rescorer()`` gives its own :class:`CandidateScorer` (``harness.retrievers.colbert``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NotRequired, Protocol, TypedDict

import numpy as np

from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.retrievers.base import (
    IndexReport,
    JsonObject,
    Retriever,
    SearchContext,
    Searched,
    StageRef,
    StageRun,
)
from harness.retrievers.cross_encoder import CrossEncoderScorer, ScoreCache
from harness.retrievers.fusion import ElsewhereNote, stages_changed_settings
from harness.retrievers.spec import RetrieverSpec
from harness.retrievers.vectors import CorpusEncoding, StoreRescorer, VectorRetriever
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.trec import FLOAT32_SCORE_FORMAT, RunArrays

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

__all__ = ["CandidateScorer", "CrossEncoderScorer", "DenseRescorer", "RerankRetriever", "ScoreCache"]

RERANK_FORMAT = 1  # bump when the pairs, their truncation or the score change


class CandidateScorer(Protocol):
    """Scores each query's candidate documents (the pair-scoring layer beside the dense one: a cross-encoder
    reads query and document together; a bi-encoder compares stored vectors)."""

    def fingerprint(self) -> JsonObject: ...

    def changed_settings(self) -> dict[str, Any]: ...

    def prepare(self, dataset: Dataset) -> IndexReport | None:
        """Whatever must exist before scoring (a dense scorer's corpus embeddings); what was done."""
        ...

    def scores(self, queries: Mapping[str, str], candidates: dict[str, list[str]],
               context: SearchContext) -> dict[str, np.ndarray]:
        """Each query's candidates' scores, in the candidates' order."""
        ...

    def provenance(self, context: SearchContext) -> JsonObject: ...

    @property
    def device(self) -> str | None: ...


class DenseRescorer(StoreRescorer[CorpusEncoding]):
    """A dense retriever of ours rescoring the candidates: the corpus vectors from its embedding cache
    (computed once, as for a dense run), the float32 inner product with the query vectors."""

    key = "dense"

    def scores(self, queries: Mapping[str, str], candidates: dict[str, list[str]],
               context: SearchContext) -> dict[str, np.ndarray]:
        wanted = {d for docs in candidates.values() for d in docs}
        vectors: dict[str, np.ndarray] = {}
        for ids, shard in self.retriever.corpus_store(context.dataset).shards():
            for row, doc in enumerate(ids):
                if doc in wanted:
                    vectors[doc] = np.asarray(shard[row], dtype=np.float32)
        qids = list(candidates)
        qvec = self.retriever.encoders.encode_queries([queries[q] for q in qids], context)
        out = {}
        for row, q in enumerate(qids):
            docs = candidates[q]
            if not docs:
                out[q] = np.zeros(0, dtype=np.float32)
                continue
            out[q] = np.stack([vectors[d] for d in docs]) @ qvec[row].astype(np.float32)
        return out


def _rows(scores: Iterable[np.ndarray]) -> np.ndarray:
    """Queries' scores (each as long as its candidates) as one matrix, each row padded at its end."""
    rows = list(scores)
    table = np.zeros((len(rows), max((len(r) for r in rows), default=0)), dtype=np.float64)
    for i, row in enumerate(rows):
        table[i, :len(row)] = row
    return table


@dataclass(frozen=True)
class RerankIndexed:
    """What a reranker's ``index()`` did: nothing of its own, the first stage it reads, and what its scorer
    prepared (a dense scorer's corpus embeddings)."""

    index: str
    documents: int | None
    first_stage: StageRef
    scorer: IndexReport | None = None

    @property
    def computed(self) -> bool:
        return self.scorer is not None and self.scorer.computed

    @property
    def store(self) -> str | None:
        return self.scorer.store if self.scorer is not None else None

    def summary(self) -> str:
        return f"index {self.index}"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "documents": self.documents, "first_stage": self.first_stage,
                **({"scorer_embeddings": self.scorer.to_json()} if self.scorer is not None else {})}


class RerankFingerprint(TypedDict):
    kind: str
    top: int
    format: int
    scorer: JsonObject
    stages: list[JsonObject]


class RerankProvenance(TypedDict):
    rerank: JsonObject
    top: int
    device: str | None
    first_stage: str | None
    computed_elsewhere: NotRequired[str]


class RerankRetriever:
    """The top hits of the first stage, rescored by a :class:`CandidateScorer`."""

    score_format = FLOAT32_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION, stages: Sequence[Retriever] = (), *,
                 checksums: Checksums = TRUSTED):
        self.spec = spec
        self.top = int(spec.params["top"])
        self.stages = list(stages)
        self.scorer: CandidateScorer
        if len(self.stages) > 1:
            rescorer = self.stages[1]
            own = getattr(rescorer, "rescorer", None)  # a retriever with a scorer of its own (ColBERT's MaxSim)
            if callable(own):
                self.scorer = own()
            elif isinstance(rescorer, VectorRetriever):
                self.scorer = DenseRescorer(rescorer)
            else:
                raise HarnessError(f"{spec.name}: {spec.stages[1].name} does not compare stored vectors; rerank "
                                   "with a cross-encoder or a dense retriever")
        else:
            self.scorer = CrossEncoderScorer(spec, execution, checksums)
        unused = {k for k in ("max_length", "batch_tokens") if k in settings.changed()} \
            - set(stages_changed_settings(self.stages))
        if unused:  # a dense setting no stage reads would be ignored, and the default record reused
            flags = ", ".join("--" + k.replace("_", "-") for k in sorted(unused))
            raise HarnessError(f"{spec.name}: {flags} would change nothing here (no dense stage reads it); the "
                               "cross-encoder's own are parameters: rerank:MODEL(FIRST;max_length=N;batch_tokens=N)")
        self.first: StageRun | None = None

    def stage_depth(self, depth: int) -> int:
        return depth  # the first stage is its own standard run; the top hits are taken from it

    def changed_settings(self) -> dict[str, Any]:
        return stages_changed_settings(self.stages)

    def fingerprint(self) -> RerankFingerprint:
        return {"kind": "rerank", "top": self.top, "format": RERANK_FORMAT, "scorer": self.scorer.fingerprint(),
                "stages": [self.stages[0].fingerprint()]}

    def use_stages(self, stages: Sequence[StageRun]) -> None:
        (self.first,) = stages

    def help_index(self, dataset: Dataset) -> None:
        self.scorer.prepare(dataset)  # a dense or ColBERT rescorer's store: encoded by every rank, as index() does

    def _first(self) -> StageRun:
        if self.first is None:
            raise RuntimeError("use_stages() must run before index() and search()")
        return self.first

    def index(self, dataset: Dataset) -> RerankIndexed:
        # a first stage computed elsewhere (run:FILE) searched nothing here: this record says so too
        first = self._first()
        documents = first.documents_indexed if first.computed_elsewhere else first.documents_searched
        return RerankIndexed(f"none (reranks the top {self.top} of {first.retriever})", documents, first.ref(),
                             self.scorer.prepare(dataset))

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        first = self._first()
        top, _ = first.run.cut(self.top, False)
        ids, b = top.doc_ids(), top.bounds.tolist()
        held = {q: ids[b[i]:b[i + 1]] for i, q in enumerate(top.qids)}
        candidates = {q: held.get(q, []) for q in queries}
        scores = self.scorer.scores(queries, candidates, context)
        qids = list(candidates)
        # the one order of runs: new score descending, equal scores in the first stage's order
        out = RunArrays.from_hits(qids, [candidates[q] for q in qids], _rows(scores[q] for q in qids))
        run, _ = out.cut(k, False)
        return Searched(run, first.documents_searched, self.scorer.device, first.computed_elsewhere)

    def provenance(self, context: SearchContext) -> RerankProvenance:
        elsewhere = self.first is not None and self.first.computed_elsewhere
        note: ElsewhereNote = {"computed_elsewhere": "in part (the first stage is a run file)"} if elsewhere else {}
        return {"rerank": self.scorer.provenance(context), "top": self.top, "device": self.scorer.device,
                "first_stage": self.first.retriever if self.first else None, **note}
