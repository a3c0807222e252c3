"""Dense retrieval: encode the corpus once into the embedding cache, then search it (exact inner product by
default; an approximate index with --index, see ``harness.searchers``).

The corpus is streamed in shards of ``shard_size`` documents: a shard's text is held only while it is
encoded, its vectors go straight to the cache, and search reads one shard at a time. Under torchrun each
rank encodes every ``world``-th shard and rank 0 seals the store once all are written.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.data.corpus import Doc, doc_text
from harness.devices import device_name
from harness.distributed import barrier, world
from harness.embeddings import EmbeddingStore, refuse_nonfinite
from harness.errors import HarnessError
from harness.paths import cache_root
from harness.resources import check_plan, count_lines, embedding_plan
from harness.retrievers.config import fit_max_length, model_max_positions, read_encoder_config
from harness.retrievers.hub import check_custom_code, model_digest, resolve_model
from harness.retrievers.spec import RetrieverSpec
from harness.searchers import searcher_for
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.trec import FLOAT32_SCORE_FORMAT, Run
from harness.version import __version__

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

if TYPE_CHECKING:
    from harness.retrievers.encoder import HFEncoder

EMBED_VERSION = 2  # bump when the way vectors are computed or stored changes
DTYPES = {"float32": np.float32, "float16": np.float16}
#: recipe fields an EncodeSettings may set; set to the model's own value, they are not a change
RECIPE_FIELDS = ("max_length", "pooling", "normalize", "query_prefix", "doc_prefix")


@dataclass
class Encoded:
    """What :meth:`DenseRetriever.encode_corpus` did: chunks seen and passages in them, chunks encoded by this
    part and chunks whose sealed shard was reused, and the vector width (None when nothing was encoded)."""

    shards: int = 0
    count: int = 0
    encoded: int = 0
    reused: int = 0
    dim: int | None = None


class DenseRetriever:
    """Exact inner-product retrieval over the corpus embeddings of a Hugging Face encoder."""

    score_format = FLOAT32_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION):
        from harness.retrievers.compute import plan_compute

        if spec.model is None:
            raise HarnessError(f"retriever {spec.name} names no model")
        self.spec = spec
        self.settings = settings
        self.execution = execution
        self.files = resolve_model(spec.model, spec.revision)
        check_custom_code(self.files.path, execution.trust_remote_code)
        # the model's own recipe, and what runs
        self.model_config = fit_max_length(spec.encoder or read_encoder_config(self.files.path), self.files.path)
        self.config = self.model_config.with_settings(settings)
        #: the query instruction of the dataset last indexed (the recipe's per-dataset one, else its own)
        self.query_instruction = self.config.query_prefix
        limit = model_max_positions(self.files.path)
        if limit is not None and self.config.max_length > limit:
            raise HarnessError(f"--max-length {self.config.max_length} is more than {spec.name} can take "
                               f"({limit} positions); use at most {limit}")
        self.device = device_name(execution.device)
        # decided before the model loads: the compute is part of the cache key
        self.compute = plan_compute(self.files.path / self.config.transformer_path, self.device, settings.precision,
                                    settings.forward)
        # an asymmetric retriever (DPR) encodes queries with a model of their own, under the same recipe
        self.query_files = resolve_model(spec.query_model, spec.query_revision) if spec.query_model else None
        if self.query_files is not None:
            check_custom_code(self.query_files.path, execution.trust_remote_code)
        self._query_encoder: HFEncoder | None = None
        self._query_digest: str | None = None
        self.shard_size = execution.shard_size
        self.embed_dtype = settings.embed_dtype
        self.searcher = searcher_for(settings.index, self.device)
        self.searched_documents: int | None = None
        self._model_digest: str | None = None
        self._encoder: HFEncoder | None = None
        self._store: EmbeddingStore | None = None
        if settings.backend != "harness":
            from harness.retrievers.st_backend import check_applicable

            check_applicable(self.files.path, text_pair=self.config.text_pair, changed=settings.changed(),
                             query_model=self.query_files is not None)

    @property
    def encoder(self) -> HFEncoder:
        if self._encoder is None and self.settings.backend == "sentence-transformers":
            from harness.retrievers.st_backend import SentenceTransformersEncoder

            self._encoder = SentenceTransformersEncoder(  # type: ignore[assignment]
                self.files.path, self.device, self.config.query_prefix, progress=self.execution.progress)
        if self._encoder is None:
            from harness.retrievers.encoder import HFEncoder

            self._encoder = HFEncoder(str(self.files.path), self.config, device=self.device,
                                      batch_tokens=self.settings.batch_tokens, compute=self.compute,
                                      progress=self.execution.progress,
                                      trust_remote_code=self.execution.trust_remote_code)
        return self._encoder

    @property
    def query_encoder(self) -> HFEncoder:
        """The encoder of queries: the document encoder, or the query model's own (asymmetric retrievers)."""
        if self.query_files is None:
            return self.encoder
        if self._query_encoder is None:
            from harness.retrievers.encoder import HFEncoder

            self._query_encoder = HFEncoder(str(self.query_files.path), self.config, device=self.device,
                                            batch_tokens=self.settings.batch_tokens, precision=self.compute.precision,
                                            forward=self.settings.forward, progress=self.execution.progress,
                                            trust_remote_code=self.execution.trust_remote_code)
        return self._query_encoder

    @property
    def query_model_digest(self) -> str | None:
        if self.query_files is not None and self._query_digest is None:
            self._query_digest = model_digest(self.query_files.path)
        return self._query_digest

    def doc_input(self, doc: Doc) -> str | tuple[str, str]:
        """What the document encoder reads of a document: title + " " + text, or the (title, text) pair."""
        return (doc.title, doc.text) if self.config.text_pair else doc_text(doc)

    @property
    def model_digest(self) -> str:
        """Content digest of every model file that can change the vectors (``hub.model_files``)."""
        if self._model_digest is None:
            self._model_digest = model_digest(self.files.path)
        return self._model_digest

    def settings_taken(self) -> set[str]:
        """Every ``EncodeSettings`` field: a dense encoder reads them all (``harness.retrievers.base``)."""
        return {f.name for f in fields(EncodeSettings)}

    def changed_settings(self) -> dict:
        """The settings of this run that differ from the reference computation of this model: the
        speed modes and storage choices, and recipe fields set to something other than the model's own."""
        changed = self.settings.changed()
        for name in RECIPE_FIELDS:
            if name in changed and getattr(self.config, name) == getattr(self.model_config, name):
                del changed[name]
        return changed

    def _compute_key(self) -> dict:
        backend = {"backend": self.settings.backend} if self.settings.backend != "harness" else {}
        return {"precision": self.compute.precision, "forward": self.settings.forward,
                "batch_tokens": self.settings.batch_tokens, **backend}

    def fingerprint(self) -> dict:
        """The content identity of what this retriever computes: model files, the recipe that runs (pooling,
        normalisation, max length, prefixes), the compute, the stored dtype and the code version."""
        search = {"search": self.searcher.fingerprint()} if self.searcher.approximate else {}
        return {"kind": "dense", "model_files": self.model_digest, "query_model_files": self.query_model_digest,
                "encoder": self.config.recipe(), "compute": self._compute_key(), "embed_dtype": self.embed_dtype,
                "embed_version": EMBED_VERSION, "text_rule": self.text_rule, **search}

    @property
    def text_rule(self) -> str:
        return "(title, text) as a pair" if self.config.text_pair else "title + ' ' + text"

    def _key(self, what: str, checksum: str) -> dict:
        # everything that decides the corpus vectors; the query prefix does not, so it is left out. The device
        # and the forward actually used (fused or not, oneDNN or addmm) change float32 rounding only, like the
        # thread count or the BLAS build: each shard's seal and the record's provenance name them.
        queries_only = ("query_prefix", "query_prefix_by_dataset")
        encoder = {k: v for k, v in self.config.recipe().items() if k not in queries_only}
        return {"v": EMBED_VERSION, "model_files": self.model_digest, "encoder": encoder,
                "compute": self._compute_key(), "dtype": self.embed_dtype, "what": what,
                "text_rule": self.text_rule, "checksum": checksum}

    @property
    def computed_with(self) -> dict:
        """What a shard written by this retriever records about how its vectors were computed."""
        backend = {"backend": self.settings.backend} if self.settings.backend != "harness" else {}
        return {**self.compute.to_dict(), **backend, "harness": __version__}

    def corpus_store(self, dataset: Dataset) -> EmbeddingStore:
        """The embedding store (cache folder) of ``dataset``'s corpus under this encoder."""
        return EmbeddingStore(cache_root() / "embeddings", self._key("corpus", dataset.corpus_digest))

    @property
    def store(self) -> EmbeddingStore:
        if self._store is None:
            raise RuntimeError("index() must run before the store is read")
        return self._store

    def encode_queries(self, texts: Sequence[str], desc: str = "encode queries") -> np.ndarray:
        """Query vectors with the instruction of the dataset last indexed (the recipe's per-dataset one)."""
        return self.query_encoder.encode(list(texts), "query", desc=desc, prefix=self.query_instruction)

    def index(self, dataset: Dataset) -> dict:
        start = time.perf_counter()
        self.query_instruction = self.config.query_prefix_for(dataset.id)
        store = self.corpus_store(dataset)
        self._store = store
        if store.complete:
            m = store.manifest() or {}
            return {"embeddings": "reused", "path": str(store.dir), "computed_with": store.computed_with(),
                    "documents": m.get("count"), "seconds": time.perf_counter() - start}
        self._check_resources(dataset, store)
        rank, size = world()
        done = self.encode_corpus(dataset, store, rank, size)
        encoded, reused, count, shards = done.encoded, done.reused, done.count, done.shards
        barrier()
        if rank == 0:
            store.finish(shards, count, done.dim or _dim_of(store))
        barrier()
        what = "encoded" if not reused else f"encoded {encoded} shards, reused {reused} (resumed)"
        return {"embeddings": what, "path": str(store.dir), "computed_with": store.computed_with() if rank == 0 else [],
                "documents": count, "shards": shards,
                "shards_encoded_by_this_process": encoded, "processes": size,
                "dtype": self.embed_dtype, "seconds": time.perf_counter() - start}

    def encode_corpus(self, dataset: Dataset, store: EmbeddingStore, part: int = 0, parts: int = 1, *,
                      verify: bool = True) -> Encoded:
        """The one corpus-encoding loop (``harness run``, ``harness encode --shard``, dense reranking and the
        trainer's evaluation all come here): the corpus in chunks of ``shard_size`` documents, chunk ``i``
        encoded by part ``i % parts`` (a torchrun rank or an ``--shard`` job) unless its sealed shard is
        already in ``store``; each document as the recipe reads it (:meth:`doc_input`: title + text, or the
        (title, text) pair), stored in the recipe's dtype."""
        out = Encoded()
        for i, chunk in enumerate(_chunks(dataset.corpus(), self.shard_size)):
            first, out.shards, out.count = out.count, i + 1, out.count + len(chunk)
            if i % parts != part:
                continue
            ids = [d.doc_id for d in chunk]
            if store.shard_ok(i, first, ids, verify=verify):
                out.reused += 1
                continue
            vectors = self.encoder.encode([self.doc_input(d) for d in chunk], "doc",
                                          desc=f"encode corpus shard {i + 1}")
            out.dim = vectors.shape[1]
            store.write_shard(i, first, ids, vectors.astype(DTYPES[self.embed_dtype]),
                              computed_with=self.computed_with)
            out.encoded += 1
        if out.shards == 0:
            raise HarnessError(f"{dataset.corpus_path}: the corpus is empty")
        return out

    def _check_resources(self, dataset: Dataset, store: EmbeddingStore) -> None:
        from harness.retrievers.hub import weights_file

        weights = weights_file(self.files.path)
        model_bytes = weights.stat().st_size if weights else 0
        dim = (self.config.dense[-1].out_features if self.config.dense
               else _hidden_size(self.files.path / self.config.transformer_path))
        plan = embedding_plan(count_lines(dataset.corpus_path), dim, np.dtype(DTYPES[self.embed_dtype]).itemsize,
                              self.shard_size, model_bytes, n_queries=10_000, depth=1000)
        on_disk = sum(p.stat().st_size for p in store.dir.glob("shard-*.npy")) if store.dir.exists() else 0
        check_plan(plan, cache_root(), already_on_disk=on_disk)

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        """Top-``k`` per query in rank order (score descending, then corpus position); sets
        :attr:`searched_documents` to the number of document vectors scored."""
        if self._store is None:
            raise RuntimeError("index() must run before search()")
        qids = list(queries)
        vectors = self.encode_queries([queries[q] for q in qids])
        refuse_nonfinite(vectors, qids, "query")
        hits = self.searcher.search(vectors, self._store, k)
        self.searched_documents = hits.searched
        return {q: {d: float(s) for d, s in zip(hits.docs[row], hits.scores[row], strict=False)}
                for row, q in enumerate(qids)}

    def provenance(self) -> dict:
        query = {"query_model": {**self.query_files.provenance(), "model_files_sha256": self.query_model_digest}} \
            if self.query_files is not None else {}
        return {**self.files.provenance(), "model_files_sha256": self.model_digest, **query,
                "encoder": self.config.to_dict(), "model_encoder": self.model_config.to_dict(),
                "query_instruction": self.query_instruction,
                "settings": self.settings.to_dict(), "search": self.searcher.describe(),
                "embed_dtype": self.embed_dtype, "shard_size": self.shard_size, "embed_version": EMBED_VERSION,
                "compute": self.compute.to_dict(),
                "oom_backoffs": self._encoder.backoffs if self._encoder is not None else [],
                "gpu_budget_fit": self._encoder.budget_fit if self._encoder is not None else None,
                "device": str(self._encoder.device) if self._encoder is not None else None, "harness": __version__}


def _chunks(docs: Iterator[Doc], size: int) -> Iterator[list[Doc]]:
    while chunk := list(itertools.islice(docs, size)):
        yield chunk


def _hidden_size(folder: Path) -> int:
    import json

    cfg = json.loads((folder / "config.json").read_text())
    return int(cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("dim") or 768)


def _dim_of(store: EmbeddingStore) -> int:
    first = store.dir / "shard-00000.npy"
    return int(np.load(first, mmap_mode="r").shape[1])
