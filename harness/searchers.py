"""Searchers: the third layer of dense retrieval (Encoder -> EmbeddingStore -> Searcher).

A searcher takes query vectors and a finished embedding store and returns each query's top-k documents.

- :class:`ExactSearcher` (the default, the reference computation): exact inner product, streamed shard by
  shard with a running top-k (``harness.search.topk_exact``).
- :class:`IndexSearcher` (``--index hnsw`` or ``--index ivfpq``): a FAISS index over the store
  (``harness.ann``), an approximate computation. It is a setting of its own (its record is stored beside the
  exact one, never over it, and labelled ``index=hnsw``), and it measures what it costs: the exact top-k
  of the same query vectors is computed too, and its report gives the recall@100 (and @k) of the index
  against exact search. The index is built with one thread (the same graph on every build) and kept in
  the store's folder, keyed by its configuration and by the digest of the vectors it was built from, so
  a rerun over the same vectors reuses it and a store encoded again (other vectors, even of the same
  count) gets an index of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from harness.ann import INDEX_KINDS, IndexConfig, build, recall_vs_exact
from harness.ann import search as ann_search
from harness.embeddings import EmbeddingStore
from harness.errors import HarnessError
from harness.search import topk_exact, topk_exact_torch

EXACT = "exact"  # the reference searcher's ``--index`` value
#: the values of ``--index``: exact search, or an approximate FAISS index
INDEXES = (EXACT, *(name for name, kind in INDEX_KINDS.items() if kind.approximate))
ANN_VERSION = 1  # bump when the way an index is built or searched changes
RECALL_AT = 100  # the cut-off of the reported recall against exact search


@dataclass
class Hits:
    """Each query's top-k: scores (rows descending) and document ids, and how many vectors were scored."""

    scores: np.ndarray
    docs: list[list[str]]
    searched: int
    report: dict[str, Any] = field(default_factory=dict)


class Searcher(Protocol):
    #: whether its hits may differ from exact inner-product search
    approximate: bool

    def fingerprint(self) -> dict[str, Any]:
        """What decides its hits beyond the vectors ({} for the reference, exact search)."""

    def search(self, queries: np.ndarray, store: EmbeddingStore, k: int) -> Hits:
        """The top-``k`` documents of each query row in ``store``."""

    def describe(self) -> str | dict[str, Any]:
        """What a record's provenance says of the search."""


class ExactSearcher:
    """Exact inner product: FAISS on the CPU; on a GPU (``cuda``, ``cuda:N``, or ``auto`` where CUDA is there,
    as the encoder chooses), torch's chunked matmul with the top k and the merge on the device (the same
    ranking, ties broken the same way: score, then corpus position)."""

    approximate = False

    def __init__(self, device: str = "cpu"):
        self.device = device

    def fingerprint(self) -> dict[str, Any]:
        return {}

    def _gpu(self) -> str | None:
        """The CUDA device the search runs on, or None for FAISS on the CPU."""
        if self.device == "cpu":
            return None
        from harness.devices import pick_device

        dev = pick_device(self.device)
        return str(dev) if dev.type == "cuda" else None

    def search(self, queries: np.ndarray, store: EmbeddingStore, k: int) -> Hits:
        gpu = self._gpu()
        if gpu is not None:
            scores, docs, searched = topk_exact_torch(queries, store.shards(), k, gpu)
        else:
            scores, docs, searched = topk_exact(queries, store.shards(), k)
        return Hits(scores, docs, searched)

    def describe(self) -> str:
        return "exact inner product (torch on the GPU)" if self._gpu() else "exact inner product (faiss)"


class IndexSearcher:
    """An approximate FAISS index over the store; its report has its recall against exact search."""

    approximate = True

    def __init__(self, config: IndexConfig):
        self.config = config
        self.last_report: dict[str, Any] = {}

    def fingerprint(self) -> dict[str, Any]:
        return {"index": self.config.to_dict(), "ann_version": ANN_VERSION, "build_threads": 1}

    def _index(self, store: EmbeddingStore) -> tuple[Any, list[str], dict[str, Any]]:
        import faiss

        manifest = store.manifest()
        if manifest is None:
            raise HarnessError(f"{store.dir}: the embeddings are incomplete; an index is built over a finished store")
        digest = hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
        vectors = store.content_digest()[:16]
        path = store.dir / f"index-{self.config.kind}-{digest}-{vectors}.faiss"
        rebuilt = {}
        if path.is_file():
            try:
                index = faiss.read_index(str(path))
            except RuntimeError:  # truncated or foreign: the file is derived data, so it is built again
                index, rebuilt = None, {"rebuilt": f"{path.name} was unreadable"}
            if index is not None and index.ntotal == manifest["count"]:
                ids = [i for shard_ids, _ in store.shards() for i in shard_ids]
                return index, ids, {"index_file": str(path), "built": False}
            rebuilt = rebuilt or {"rebuilt": f"{path.name} held {index.ntotal if index else '?'} vectors"}
        else:
            older = sorted(p.name for p in store.dir.glob(f"index-{self.config.kind}-{digest}-*.faiss"))
            if older:
                rebuilt = {"rebuilt": f"{older[0]} was built from other vectors (the store was encoded again)"}
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one thread: the same graph on every build
        try:
            index, ids, seconds = build(store.shards(), manifest["dim"], manifest["count"], self.config)
        finally:
            faiss.omp_set_num_threads(threads)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        try:  # a second process building the same index at once replaces it with the same graph
            faiss.write_index(index, str(tmp))
            os.replace(tmp, path)
            for stale in store.dir.glob(f"index-{self.config.kind}-{digest}-*.faiss"):  # built from other vectors
                if stale != path:
                    stale.unlink(missing_ok=True)
        except (RuntimeError, OSError) as e:
            tmp.unlink(missing_ok=True)
            raise HarnessError(f"{path}: the index cannot be written ({str(e).splitlines()[-1][:120]}); free the "
                               "disk or point HARNESS_CACHE at a writable one") from None
        return index, ids, {"index_file": str(path), "built": True, "build_s": round(seconds, 3), **rebuilt}

    def search(self, queries: np.ndarray, store: EmbeddingStore, k: int) -> Hits:
        index, ids, built = self._index(store)
        t0 = time.perf_counter()
        scores, docs = ann_search(index, ids, queries, k, self.config)
        t1 = time.perf_counter()
        _, exact, searched = topk_exact(queries, store.shards(), max(k, RECALL_AT))
        t2 = time.perf_counter()
        if searched != index.ntotal:
            raise HarnessError(f"{store.dir}: the index holds {index.ntotal} vectors, the store {searched}; "
                               "rerun with --force to rebuild it")
        self.last_report = {
            "approximate": True, "index": self.config.to_dict(), **built, **self._effective(k),
            f"recall@{RECALL_AT}_vs_exact": recall_vs_exact(docs, exact, RECALL_AT),
            f"recall@{k}_vs_exact": recall_vs_exact(docs, exact, k),
            "index_search_s": round(t1 - t0, 3), "exact_search_s": round(t2 - t1, 3)}
        return Hits(scores.astype(np.float32), docs, int(index.ntotal), self.last_report)

    def _effective(self, k: int) -> dict[str, int]:
        """The search breadth actually used (``harness.ann.search`` widens HNSW's to k)."""
        return self.config.index_kind.breadth(self.config, k)

    def describe(self) -> dict[str, Any]:
        return self.last_report or {"approximate": True, "index": self.config.to_dict()}


def searcher_for(index: str, device: str = "cpu") -> Searcher:
    """The searcher of an ``--index`` value (exact search runs where the encoder runs)."""
    if index not in INDEXES:
        raise HarnessError(f"--index must be one of {', '.join(INDEXES)}, not {index!r}")
    return ExactSearcher(device) if index == EXACT else IndexSearcher(IndexConfig(kind=index))
