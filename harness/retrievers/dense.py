"""Dense retrieval: encode the corpus once into the embedding cache, then exact inner-product search.

The corpus is streamed in shards of ``shard_size`` documents: a shard's text is held only while it is
encoded, its vectors go straight to the cache, and search reads one shard at a time. Under torchrun each
rank encodes every ``world``-th shard and rank 0 seals the store once all are written.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping

import numpy as np

from harness import __version__
from harness.data.beir import Doc, doc_text
from harness.distributed import barrier, local_device, world
from harness.embeddings import EmbeddingStore
from harness.errors import HarnessError
from harness.io import cached_sha256
from harness.paths import cache_root
from harness.resources import check_plan, count_lines, embedding_plan
from harness.retrievers.config import read_encoder_config
from harness.retrievers.hub import resolve_model, tokenizer_fingerprint
from harness.retrievers.registry import RetrieverSpec
from harness.search import topk_exact
from harness.trec import FLOAT32_SCORE_FORMAT, Run

EMBED_VERSION = 1  # bump when the way vectors are computed changes
DTYPES = {"float32": np.float32, "float16": np.float16}


class DenseRetriever:
    score_format = FLOAT32_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, *, device: str = "auto", shard_size: int = 50_000,
                 batch_tokens: int | None = None, embed_dtype: str = "float32", precision: str = "auto",
                 forward: str = "auto", trust_remote_code: bool = False, progress: bool = True):
        from harness.retrievers.encoder import plan_compute

        assert spec.model is not None
        if embed_dtype not in DTYPES:
            raise HarnessError(f"--embed-dtype must be one of {', '.join(DTYPES)}")
        if shard_size < 1:
            raise HarnessError("--shard-size must be at least 1")
        self.spec = spec
        self.files = resolve_model(spec.model, spec.revision)
        self.config = spec.encoder or read_encoder_config(self.files.path)
        self.device = local_device(device)
        # decided before the model loads: the precision is part of the cache key
        self.compute = plan_compute(self.files.path, self.device, precision, forward)
        self.shard_size = shard_size
        self.batch_tokens = batch_tokens
        self.embed_dtype = embed_dtype
        self.trust_remote_code = trust_remote_code
        self.progress = progress
        self._encoder = None
        self._store: EmbeddingStore | None = None

    @property
    def encoder(self):
        if self._encoder is None:
            from harness.retrievers.encoder import HFEncoder

            self._encoder = HFEncoder(str(self.files.path), self.config, device=self.device,
                                      batch_tokens=self.batch_tokens, compute=self.compute,
                                      progress=self.progress,
                                      trust_remote_code=self.trust_remote_code)
        return self._encoder

    def _key(self, what: str, checksum: str) -> dict:
        # a local folder is identified by its weights' hash, not by how its path was spelled. The precision
        # is in the key (bf16 changes the vectors); the forward implementation and the device are not: like
        # the thread count or the BLAS build they change float32 rounding only (hidden states within ~1e-5),
        # and each shard's seal and the record's provenance name them.
        model = self.files.model_id if self.files.source == "hub" else "local"
        return {"v": EMBED_VERSION, "model": model, "revision": self.files.revision,
                "tokenizer": tokenizer_fingerprint(self.files.path), "encoder": self.config.to_dict(),
                "precision": self.compute.precision, "dtype": self.embed_dtype, "what": what,
                "text_rule": "title + ' ' + text", "checksum": checksum}

    @property
    def computed_with(self) -> dict:
        """What a shard written by this retriever records about how its vectors were computed."""
        return {**self.compute.to_dict(), "harness": __version__}

    def corpus_store(self, dataset) -> EmbeddingStore:
        """The embedding store (cache folder) of ``dataset``'s corpus under this encoder."""
        return EmbeddingStore(cache_root() / "embeddings", self._key("corpus", cached_sha256(dataset.corpus_path)))

    @property
    def store(self) -> EmbeddingStore:
        if self._store is None:
            raise RuntimeError("index() must run before the store is read")
        return self._store

    def index(self, dataset) -> dict:
        start = time.perf_counter()
        store = self.corpus_store(dataset)
        self._store = store
        if store.complete:
            return {"embeddings": "reused", "path": str(store.dir), "computed_with": store.computed_with(),
                    "seconds": time.perf_counter() - start}
        self._check_resources(dataset, store)
        rank, size = world()
        encoded = reused = count = shards = 0
        dim = None
        for i, chunk in enumerate(_chunks(dataset.corpus(), self.shard_size)):
            shards, count = i + 1, count + len(chunk)
            if i % size != rank:
                continue
            if store.shard_ok(i):
                reused += 1
                continue
            vectors = self.encoder.encode([doc_text(d) for d in chunk], "doc", desc=f"encode corpus shard {i + 1}")
            dim = vectors.shape[1]
            store.write_shard(i, [d.doc_id for d in chunk], vectors.astype(DTYPES[self.embed_dtype]),
                              computed_with=self.computed_with)
            encoded += 1
        if shards == 0:
            raise HarnessError(f"{dataset.corpus_path}: the corpus is empty")
        barrier()
        if rank == 0:
            store.finish(shards, count, dim or _dim_of(store))
        barrier()
        what = "encoded" if not reused else f"encoded {encoded} shards, reused {reused} (resumed)"
        return {"embeddings": what, "path": str(store.dir), "computed_with": store.computed_with() if rank == 0 else [],
                "documents": count, "shards": shards,
                "shards_encoded_by_this_process": encoded, "processes": size,
                "dtype": self.embed_dtype, "seconds": time.perf_counter() - start}

    def _check_resources(self, dataset, store: EmbeddingStore) -> None:
        from harness.retrievers.hub import weights_file

        weights = weights_file(self.files.path)
        model_bytes = weights.stat().st_size if weights else 0
        dim = _hidden_size(self.files.path)
        plan = embedding_plan(count_lines(dataset.corpus_path), dim, np.dtype(DTYPES[self.embed_dtype]).itemsize,
                              self.shard_size, model_bytes, n_queries=10_000, depth=1000)
        on_disk = sum(p.stat().st_size for p in store.dir.glob("shard-*.npy")) if store.dir.exists() else 0
        check_plan(plan, cache_root(), already_on_disk=on_disk)

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        if self._store is None:
            raise RuntimeError("index() must run before search()")
        qids = list(queries)
        vectors = self.encoder.encode([queries[q] for q in qids], "query", desc="encode queries")
        scores, docs = topk_exact(vectors, self._store.shards(), k)
        return {q: {d: float(s) for d, s in zip(docs[row], scores[row], strict=False)}
                for row, q in enumerate(qids)}

    def provenance(self) -> dict:
        return {**self.files.provenance(), "encoder": self.config.to_dict(), "search": "exact inner product (faiss)",
                "embed_dtype": self.embed_dtype, "shard_size": self.shard_size, "embed_version": EMBED_VERSION,
                "compute": self.compute.to_dict(),
                "device": str(self._encoder.device) if self._encoder is not None else None, "harness": __version__}


def _chunks(docs: Iterator[Doc], size: int) -> Iterator[list[Doc]]:
    while chunk := list(itertools.islice(docs, size)):
        yield chunk


def _hidden_size(folder) -> int:
    import json

    cfg = json.loads((folder / "config.json").read_text())
    return int(cfg.get("hidden_size") or cfg.get("d_model") or cfg.get("dim") or 768)


def _dim_of(store: EmbeddingStore) -> int:
    first = store.dir / "shard-00000.npy"
    return int(np.load(first, mmap_mode="r").shape[1])
