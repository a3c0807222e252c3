"""The store side of dense retrieval, and the retriever made of the three sides.

A :class:`VectorRetriever` is an encoder side (a :class:`CorpusEncoding`: a Hugging Face model under its
recipe, ``harness.retrievers.dense_encoders``; or a user's model object, ``harness.retrievers.declared``), a
store side (:class:`CorpusVectors`: the corpus's vectors in the content-keyed embedding store) and a searcher
(``harness.searchers``). Its index is the corpus's vectors; its search encodes the queries for the dataset
the call names and hands them to the searcher.

The corpus is streamed in shards of ``shard_size`` documents: a shard's text is held only while it is
encoded, its vectors go straight to the store, and search reads one shard at a time. Under torchrun each
rank encodes every ``world``-th shard and rank 0 seals the store once all are written.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar

import numpy as np

from harness.data.corpus import Doc
from harness.distributed import together, world
from harness.embeddings import EmbeddingStore, refuse_nonfinite
from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.paths import cache_root
from harness.retrievers.base import JsonObject, SearchContext, Searched, Text
from harness.searchers import Searcher
from harness.trec import FLOAT32_SCORE_FORMAT, RunArrays

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

EMBED_VERSION = 2  # bump when the way vectors are computed or stored changes
DTYPES = {"float32": np.float32, "float16": np.float16}


class CorpusEncoding(Protocol):
    """The encoder side of a vector retriever: what keys its store, what it reads of a document, and how it
    encodes documents and queries (the context says for which dataset)."""

    def store_key(self, dataset: Dataset) -> dict[str, Any]:
        """Everything that decides the corpus's vectors (the embedding store's key)."""
        ...

    def computed_with(self) -> dict[str, Any]:
        """What a shard written now records about how its vectors were computed."""
        ...

    def doc_input(self, doc: Doc) -> Text:
        """What the encoder reads of a document."""
        ...

    def encode_documents(self, texts: list[Text], context: SearchContext, desc: str) -> np.ndarray: ...

    def encode_queries(self, texts: list[str], context: SearchContext) -> np.ndarray: ...

    def prepare_queries(self) -> None:
        """Load what encodes queries (so that a search's time is the search's, not the loading's)."""
        ...

    def check_resources(self, dataset: Dataset, store: EmbeddingStore) -> None:
        """Refuse before encoding when the vectors will not fit."""
        ...

    @property
    def device_used(self) -> str | None:
        """The device the encoder runs on, once it is loaded (None before, or when it is not the harness's)."""
        ...


@dataclass
class Encoded:
    """What :meth:`CorpusVectors.encode` did: chunks seen and passages in them, chunks encoded by this part
    and chunks whose sealed shard was reused, and the vector width (None when nothing was encoded)."""

    shards: int = 0
    count: int = 0
    encoded: int = 0
    reused: int = 0
    dim: int | None = None


@dataclass(frozen=True)
class EmbeddingsIndexed:
    """What a vector retriever's ``index()`` did: the record's ``index`` object (the per-process counts only
    when it encoded)."""

    embeddings: str  # "reused", "encoded", or "encoded N shards, reused M (resumed)"
    path: str
    computed_with: list[dict[str, Any]]
    documents: int | None
    shards: int | None = None
    shards_encoded_by_this_process: int | None = None
    processes: int | None = None
    dtype: str | None = None
    seconds: float = 0.0

    @property
    def computed(self) -> bool:
        return self.embeddings != "reused"

    @property
    def store(self) -> str | None:
        return self.path

    def summary(self) -> str:
        return f"embeddings {self.embeddings}, path {self.path}"

    def to_json(self) -> dict[str, Any]:
        encoded = ("shards", "shards_encoded_by_this_process", "processes", "dtype")
        return {k: v for k, v in asdict(self).items() if k not in encoded or self.shards is not None}


class CorpusVectors:
    """The store side: a corpus's vectors under one encoding, in the embedding store (``harness.embeddings``),
    written by one corpus-encoding loop."""

    def __init__(self, encoding: CorpusEncoding, shard_size: int, embed_dtype: str,
                 checksums: Checksums = TRUSTED, *, keyed_by_content: bool = True):
        self.encoding = encoding
        self.shard_size = shard_size
        self.embed_dtype = embed_dtype
        self.checksums = checksums  # what the store's seals are checked with (--force: nothing remembered)
        # False for an encoder whose key is a declaration, not content (a model object): --force (checksums
        # that trust nothing remembered) encodes its corpus again rather than trust the store
        self.keyed_by_content = keyed_by_content
        self._discarded: set[str] = set()

    def store(self, dataset: Dataset) -> EmbeddingStore:
        """The embedding store (cache folder) of ``dataset``'s corpus under this encoding."""
        return EmbeddingStore(cache_root() / "embeddings", self.encoding.store_key(dataset), self.checksums)

    def encode(self, dataset: Dataset, store: EmbeddingStore, part: int = 0, parts: int = 1, *,
               verify: bool = True) -> Encoded:
        """The one corpus-encoding loop (``harness run``, ``harness encode --shard``, dense reranking and the
        trainer's evaluation all come here): the corpus in chunks of ``shard_size`` documents, chunk ``i``
        encoded by part ``i % parts`` (a torchrun rank or an ``--shard`` job) unless its sealed shard is
        already in ``store``; each document as the encoding reads it (``doc_input``), stored in the dtype."""
        out = Encoded()
        context = SearchContext(dataset)
        for i, chunk in enumerate(_chunks(dataset.corpus(), self.shard_size)):
            first, out.shards, out.count = out.count, i + 1, out.count + len(chunk)
            if i % parts != part:
                continue
            ids = [d.doc_id for d in chunk]
            if store.shard_ok(i, first, ids, verify=verify):
                out.reused += 1
                continue
            vectors = self.encoding.encode_documents([self.encoding.doc_input(d) for d in chunk], context,
                                                     f"encode corpus shard {i + 1}")
            out.dim = vectors.shape[1]
            store.write_shard(i, first, ids, vectors.astype(DTYPES[self.embed_dtype]),
                              computed_with=self.encoding.computed_with())
            out.encoded += 1
        if out.shards == 0:
            raise HarnessError(f"{dataset.corpus_path}: the corpus is empty")
        return out

    def build(self, dataset: Dataset) -> EmbeddingsIndexed:
        """Reuse the sealed store of ``dataset``'s corpus, or encode it (this rank's share under torchrun) and
        seal it."""
        start = time.perf_counter()
        store = self.store(dataset)
        if not (self.keyed_by_content or self.checksums.trust_memo or str(store.dir) in self._discarded):
            self._discarded.add(str(store.dir))
            rank = world()[0]
            together("unsealing the store --force encodes again (rank 0)",
                     lambda: store.discard() if rank == 0 else None)
        if store.complete:
            manifest = store.manifest()
            return EmbeddingsIndexed("reused", str(store.dir), store.computed_with(),
                                     manifest["count"] if manifest else None, seconds=time.perf_counter() - start)
        self.encoding.check_resources(dataset, store)
        rank, size = world()
        # a rank whose share fails (a non-finite vector, a text too long for the GPU) stops every rank
        done = together("the corpus encoding (every rank's share)", lambda: self.encode(dataset, store, rank, size))
        together("sealing the embedding store (rank 0)",
                 lambda: store.finish(done.shards, done.count, done.dim or _dim_of(store)) if rank == 0 else None)
        what = "encoded" if not done.reused else f"encoded {done.encoded} shards, reused {done.reused} (resumed)"
        return EmbeddingsIndexed(what, str(store.dir), store.computed_with() if rank == 0 else [], done.count,
                                 done.shards, done.encoded, size, self.embed_dtype, time.perf_counter() - start)


E = TypeVar("E", bound=CorpusEncoding)


class SearchNote(TypedDict, total=False):
    """What a vector retriever's fingerprint adds for an approximate searcher (its configuration)."""

    search: dict[str, Any]


class VectorRetriever(Generic[E]):
    """Exact (or ``--index``) inner-product retrieval over a corpus's vectors: the encoder side ``encoders``,
    the store side ``vectors``, the ``searcher``. Subclasses say what they compute (fingerprint, settings,
    provenance)."""

    score_format = FLOAT32_SCORE_FORMAT

    def __init__(self, encoders: E, vectors: CorpusVectors, searcher: Searcher):
        self.encoders = encoders
        self.vectors = vectors
        self.searcher = searcher

    def fingerprint(self) -> JsonObject:
        raise NotImplementedError

    def changed_settings(self) -> dict[str, Any]:
        raise NotImplementedError

    def provenance(self, context: SearchContext) -> JsonObject:
        raise NotImplementedError

    def search_note(self) -> SearchNote:
        """The searcher's identity for the fingerprint: nothing for exact search, the reference."""
        return {"search": self.searcher.fingerprint()} if self.searcher.approximate else {}

    def corpus_store(self, dataset: Dataset) -> EmbeddingStore:
        return self.vectors.store(dataset)

    def encode_corpus(self, dataset: Dataset, store: EmbeddingStore, part: int = 0, parts: int = 1, *,
                      verify: bool = True) -> Encoded:
        return self.vectors.encode(dataset, store, part, parts, verify=verify)

    def index(self, dataset: Dataset) -> EmbeddingsIndexed:
        return self.vectors.build(dataset)

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        """Top-``k`` per query in rank order (score descending, then corpus position), over the vectors of
        ``context``'s corpus, the queries encoded for ``context``'s dataset."""
        qids = list(queries)
        self.encoders.prepare_queries()  # the query model loaded before the clock starts
        start = time.perf_counter()
        vectors = self.encoders.encode_queries([queries[q] for q in qids], context)
        refuse_nonfinite(vectors, qids, "query")
        hits = self.searcher.search(vectors, self.corpus_store(context.dataset), k)
        run = RunArrays.from_hits(qids, hits.docs, hits.scores)
        return Searched(run, hits.searched, self.encoders.device_used, seconds=time.perf_counter() - start)


class StoreRescorer(Generic[E]):
    """A retriever of ours rescoring a first stage's candidates (``rerank:``) from its own corpus store, encoded
    once as for its own run: what a rescorer is besides its ``scores()`` (its device, identity, settings, the
    store it prepares, its provenance under ``key``), taken from the retriever."""

    key = "model"

    def __init__(self, retriever: VectorRetriever[E]):
        self.retriever = retriever

    @property
    def device(self) -> str | None:
        return self.retriever.encoders.device_used

    def fingerprint(self) -> JsonObject:
        return self.retriever.fingerprint()

    def changed_settings(self) -> dict[str, Any]:
        return self.retriever.changed_settings()

    def prepare(self, dataset: Dataset) -> EmbeddingsIndexed:
        return self.retriever.index(dataset)

    def provenance(self, context: SearchContext) -> JsonObject:
        return {self.key: self.retriever.provenance(context)}


def _chunks(docs: Iterator[Doc], size: int) -> Iterator[list[Doc]]:
    while chunk := list(itertools.islice(docs, size)):
        yield chunk


def _dim_of(store: EmbeddingStore) -> int:
    first = store.dir / "shard-00000.npy"
    return int(np.load(first, mmap_mode="r").shape[1])
