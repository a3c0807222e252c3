"""Dense retrieval: encode the corpus once into the embedding cache, then exact inner-product search."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping

from harness import __version__
from harness.data.beir import BeirDataset, Doc, doc_text
from harness.embeddings import EmbeddingStore
from harness.io import cached_sha256
from harness.paths import cache_root
from harness.retrievers.config import read_encoder_config
from harness.retrievers.hub import resolve_model
from harness.retrievers.registry import RetrieverSpec
from harness.search import topk_exact
from harness.trec import FLOAT32_SCORE_FORMAT, Run

EMBED_VERSION = 1  # bump when the way vectors are computed changes


class DenseRetriever:
    score_format = FLOAT32_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, *, device: str = "auto", shard_size: int = 50_000,
                 batch_tokens: int = 16384, trust_remote_code: bool = False, progress: bool = True):
        assert spec.model is not None
        self.spec = spec
        self.files = resolve_model(spec.model, spec.revision)
        self.config = spec.encoder or read_encoder_config(self.files.path)
        self.device = device
        self.shard_size = shard_size
        self.batch_tokens = batch_tokens
        self.trust_remote_code = trust_remote_code
        self.progress = progress
        self._encoder = None
        self._store: EmbeddingStore | None = None

    @property
    def encoder(self):
        if self._encoder is None:
            from harness.retrievers.encoder import HFEncoder

            self._encoder = HFEncoder(str(self.files.path), self.config, device=self.device,
                                      batch_tokens=self.batch_tokens, progress=self.progress,
                                      trust_remote_code=self.trust_remote_code)
        return self._encoder

    def _key(self, what: str, checksum: str) -> dict:
        return {"v": EMBED_VERSION, "model": self.files.model_id, "revision": self.files.revision,
                "encoder": self.config.to_dict(), "dtype": "float32", "what": what,
                "text_rule": "title + ' ' + text", "checksum": checksum}

    def index(self, dataset: BeirDataset) -> dict:
        start = time.perf_counter()
        store = EmbeddingStore(cache_root() / "embeddings", self._key("corpus", cached_sha256(dataset.corpus_path)))
        self._store = store
        if store.complete:
            return {"embeddings": "reused", "path": str(store.dir), "seconds": time.perf_counter() - start}
        encoded = reused = count = 0
        shards = 0
        for i, chunk in enumerate(_chunks(dataset.corpus(), self.shard_size)):
            shards, count = i + 1, count + len(chunk)
            if store.shard_ok(i):
                reused += 1
                continue
            vectors = self.encoder.encode([doc_text(d) for d in chunk], "doc",
                                          desc=f"encode corpus shard {i + 1}")
            store.write_shard(i, [d.doc_id for d in chunk], vectors)
            encoded += 1
        store.finish(shards, count, self.encoder.dim if encoded else _dim_of(store))
        what = "encoded" if not reused else f"encoded {encoded} shards, reused {reused}"
        return {"embeddings": what, "path": str(store.dir), "documents": count,
                "seconds": time.perf_counter() - start}

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
                "embed_version": EMBED_VERSION, "harness": __version__}


def _chunks(docs: Iterator[Doc], size: int) -> Iterator[list[Doc]]:
    while chunk := list(itertools.islice(docs, size)):
        yield chunk


def _dim_of(store: EmbeddingStore) -> int:
    import numpy as np

    first = store.dir / "shard-00000.npy"
    return int(np.load(first, mmap_mode="r").shape[1])
