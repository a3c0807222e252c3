"""The interfaces every retriever and encoder satisfy, and the typed values that pass between them and the
runner: what a search is for (:class:`SearchContext`, passed with every call), what ``index()`` did
(:class:`IndexReport`), what ``search()`` returned (:class:`Searched`), and a stage's result as a
composition reads it (:class:`StageRun`). The runner reads their attributes; each kind writes its record's
JSON objects (``to_json()``, fingerprints, provenance) as its own TypedDicts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

import numpy as np

from harness.trec import AnyRun, RunArrays

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.data.judgements import Judgements

#: what an encoder reads of one text: a string, or a document's (title, text) pair
Text = str | tuple[str, str]
#: a JSON object a record holds as written (a fingerprint, a provenance: each kind's own TypedDict)
JsonObject = Mapping[str, object]


@dataclass(frozen=True)
class SearchContext:
    """What a search (or an encoding) is for, given with every call as MTEB's ``SearchProtocol.search`` is
    given its task: the dataset, with its id and split (a recipe's query prefix and a model's task follow
    them) and its corpus (for a retriever that reads documents while it searches)."""

    dataset: Dataset

    @property
    def dataset_id(self) -> str:
        return self.dataset.id

    @property
    def split(self) -> str:
        return self.dataset.split


class IndexReport(Protocol):
    """What ``index()`` did: the documents the index holds (the runner refuses a record unless it is the
    corpus), a few words for the log, and the record's ``index`` object."""

    @property
    def documents(self) -> int | None: ...

    @property
    def computed(self) -> bool:
        """Whether this run built it (False: reused from the cache, or nothing of its own to build)."""
        ...

    @property
    def store(self) -> str | None:
        """Where what it built lies on disk (its size is the record's index size); None for nothing."""
        ...

    def summary(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Indexed:
    """An :class:`IndexReport` with nothing more to say: what was done (``"in memory"``, ``"none (...)"``),
    the documents, and the seconds it took (left out when not measured)."""

    index: str
    documents: int | None
    seconds: float | None = None
    computed: bool = False
    store: str | None = None

    def summary(self) -> str:
        return f"index {self.index}"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "documents": self.documents,
                **({"seconds": self.seconds} if self.seconds is not None else {})}


@dataclass(frozen=True)
class Searched:
    """What ``search()`` returned: the run (each query's top k in rank order), how many documents were scored
    (the runner refuses a record unless it is the corpus; None when nothing was searched here), where it
    computed (None: the run's device setting), and whether the run, or a stage's, was computed elsewhere (a
    run file: then the count is not checked, and the record says so). ``seconds``: the search itself, without
    loading a model or starting a JVM, where the retriever can tell them apart (None: the runner's wall time of
    the whole step, loading included). ``query_seconds``: one query's search time each, for as many queries
    as were timed one by one (the record's latency p50 and p95); None where the retriever searched them
    together and can only tell their batch mean. ``query_timing``: how those were timed, in a few words for
    the record (None: each query of this search timed as it was searched)."""

    run: AnyRun
    documents: int | None
    device: str | None = None
    computed_elsewhere: bool = False
    seconds: float | None = None
    query_seconds: tuple[float, ...] | None = None
    query_timing: str | None = None


class StageRef(TypedDict):
    """How a composition's record names one of its stages."""

    retriever: str
    fingerprint: str
    run_file: str


@dataclass(frozen=True)
class StageRun:
    """A stage's result as a composition reads it: its record's identity, metrics and counts, and its run as
    the run file holds it (the runner makes it from what it wrote or reused)."""

    retriever: str
    fingerprint: str
    run_file: str
    metrics: dict[str, float]
    documents_searched: int | None
    documents_indexed: int | None
    computed_elsewhere: bool
    run: RunArrays

    def ref(self) -> StageRef:
        return {"retriever": self.retriever, "fingerprint": self.fingerprint, "run_file": self.run_file}


class Retriever(Protocol):
    """Indexes a corpus, then searches queries into a run; says what it computes."""

    @property
    def score_format(self) -> str:
        """How scores are written to run files (see harness.trec)."""
        ...

    def fingerprint(self) -> JsonObject:
        """The content identity of what it computes (model files, recipe, compute; BM25 parameters and build)."""
        ...

    def changed_settings(self) -> dict[str, Any]:
        """Its settings that are not the reference computation ({} when they all are)."""
        ...

    def index(self, dataset: Dataset) -> IndexReport:
        """Build or reuse the index of ``dataset``'s corpus."""
        ...

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        """Top-``k`` documents per query, in rank order, over the index of ``context``'s dataset."""
        ...

    def provenance(self, context: SearchContext) -> JsonObject:
        """Model id and revision, index settings: what makes this retriever's numbers on ``context``'s
        dataset what they are."""
        ...


class Composition(Retriever, Protocol):
    """A retriever over other retrievers' runs (fusion, reranking): the runner runs or reuses its stages
    first, at the depth it asks for, and hands it their results as written."""

    def stage_depth(self, depth: int) -> int:
        """How deep each stage is run when this composition's own run is ``depth`` deep."""
        ...

    def use_stages(self, stages: Sequence[StageRun]) -> None:
        """The stages' results, in the order of ``spec.run_stages``."""
        ...

    def help_index(self, dataset: Dataset) -> None:
        """On a helper rank under torchrun (which has no stage runs: rank 0 searches): take part in the
        collective work of :meth:`index` (a dense rescorer's corpus encoding), so that rank 0 does not encode it
        alone and wait at a barrier no other rank reaches; nothing where index() has none."""
        ...


@runtime_checkable
class Tuned(Protocol):
    """A composition that chooses a setting on another split of the dataset (``fuse:wsum(...;optimise=dev)``):
    the runner runs its stages on that split too and hands it their runs and the split's judgements; the
    split's data is part of its records' fingerprint."""

    def tuning_split(self) -> str | None:
        """The split it tunes on, or None when it needs none."""
        ...

    def use_tuning(self, stages: Sequence[StageRun], judgements: Judgements) -> None:
        """The stages' results on the tuning split, in the order of ``spec.run_stages``, and its judgements."""
        ...


def settings_taken(retriever: Retriever) -> set[str]:
    """The ``EncodeSettings`` fields a retriever reads: its own ``settings_taken()`` where it declares them (a
    dense encoder reads every one), else those it reports as changed, with its stages'. An option no retriever
    of a run takes would change nothing, and the runner refuses it."""
    declared = getattr(retriever, "settings_taken", None)
    taken = set(declared()) if callable(declared) else set(retriever.changed_settings())
    for stage in getattr(retriever, "stages", None) or []:
        taken |= settings_taken(stage)
    return taken


class TextEncoder(Protocol):
    """Turns texts into vectors for queries or documents (the Hugging Face encoder, sentence-transformers)."""

    def encode(self, texts: Sequence[Text], kind: str = "doc", desc: str | None = None, *,
               query_prefix: str | None = None) -> np.ndarray:
        """float32 vectors, one row per text (or (title, text) pair); ``kind`` is "query" or "doc";
        ``query_prefix`` replaces the recipe's query prefix (a dataset's own)."""
        ...
