"""Searchers: the third layer of dense retrieval (Encoder -> EmbeddingStore -> Searcher).

A searcher takes query vectors and a finished embedding store and returns each query's top-k documents.

- :class:`ExactSearcher` (the default, the reference computation): exact inner product, streamed shard by
  shard with a running top-k (``harness.search.topk_exact``).
- :class:`IndexSearcher` (``--index hnsw`` or ``--index ivfpq``): a FAISS index over the store
  (``harness.ann``), an approximate computation. It is a setting of its own (its record is stored beside the
  exact one, never over it, and labelled ``index=hnsw``), and it measures what it costs: the exact top-k
  of the same query vectors is computed too, and its report gives the recall@100 (and @k) of the index
  against exact search. The index is built on every thread the process may use (``IndexConfig.build_threads``
  1: one thread, the same graph on every build with any FAISS). An HNSW graph built on several threads by a
  FAISS without its deterministic build depends on thread scheduling: the report names the build's threads
  and FAISS version and says whether the build is ``deterministic``, beside the recall that vouches for the
  index (:func:`harness.ann.build_provenance`; a build record beside the index file keeps it for the runs
  that reuse the index). The index is kept in the store's folder, keyed by its configuration and by
  the digest of the vectors it was built from, so a rerun over the same vectors reuses it and a store
  encoded again (other vectors, even of the same count) gets an index of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from harness.ann import INDEX_KINDS, IndexConfig, build, build_provenance, recall_vs_exact
from harness.ann import search as ann_search
from harness.embeddings import EmbeddingStore
from harness.errors import HarnessError
from harness.search import topk_exact, topk_exact_torch

EXACT = "exact"  # the reference searcher's ``--index`` value
#: the values of ``--index``: exact search, or an approximate FAISS index
INDEXES = (EXACT, *(name for name, kind in INDEX_KINDS.items() if kind.approximate))
ANN_VERSION = 2  # bump when the way an index is built or searched changes (2: built on several threads)
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
        return {"index": self.config.to_dict(), "ann_version": ANN_VERSION}

    def _index(self, store: EmbeddingStore) -> tuple[Any, list[str], dict[str, Any]]:
        import faiss

        manifest = store.manifest()
        if manifest is None:
            raise HarnessError(f"{store.dir}: the embeddings are incomplete; an index is built over a finished store")
        digest = hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()[:16]
        vectors = store.content_digest()[:16]
        path = store.dir / f"index-{self.config.kind}-{digest}-{vectors}.faiss"
        record = path.with_name(path.name + ".json")  # how it was built: threads, deterministic, seconds
        rebuilt = {}
        if path.is_file():
            try:
                index = faiss.read_index(str(path))
            except RuntimeError:  # truncated or foreign: the file is derived data, so it is built again
                index, rebuilt = None, {"rebuilt": f"{path.name} was unreadable"}
            how = _read_build_record(record)
            if index is not None and index.ntotal == manifest["count"] and how is not None:
                ids = [i for shard_ids, _ in store.shards() for i in shard_ids]
                return index, ids, {"index_file": str(path), "built": False, **how}
            if not rebuilt and index is not None and index.ntotal != manifest["count"]:
                rebuilt = {"rebuilt": f"{path.name} held {index.ntotal} vectors"}
            elif not rebuilt:
                rebuilt = {"rebuilt": f"{record.name}, its build record, was missing or unreadable"}
        else:
            older = sorted(p.name for p in store.dir.glob(f"index-{self.config.kind}-{digest}-*.faiss"))
            if older:
                rebuilt = {"rebuilt": f"{older[0]} was built from other vectors (the store was encoded again)"}
        how = build_provenance(self.config)  # the threads it is built on; deterministic or not
        index, ids, seconds = build(store.shards(), manifest["dim"], manifest["count"], self.config)
        how["build_s"] = round(seconds, 3)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        record_tmp = record.with_name(record.name + f".{os.getpid()}.tmp")
        # a second process building the same index at once replaces it with its own build (the same graph where
        # the build is deterministic; otherwise another graph of the same recipe, whose own recall its runs record)
        try:
            faiss.write_index(index, str(tmp))
            record_tmp.write_text(json.dumps(how) + "\n", encoding="utf-8")
            os.replace(record_tmp, record)
            os.replace(tmp, path)
            for stale in store.dir.glob(f"index-{self.config.kind}-{digest}-*.faiss"):  # built from other vectors
                if stale != path:
                    stale.unlink(missing_ok=True)
                    stale.with_name(stale.name + ".json").unlink(missing_ok=True)
        except (RuntimeError, OSError) as e:
            tmp.unlink(missing_ok=True)
            record_tmp.unlink(missing_ok=True)
            raise HarnessError(f"{path}: the index cannot be written ({str(e).splitlines()[-1][:120]}); free the "
                               "disk or point HARNESS_CACHE at a writable one") from None
        return index, ids, {"index_file": str(path), "built": True, **how, **rebuilt}

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


def _read_build_record(path: Path) -> dict[str, Any] | None:
    """The build record beside an index file (threads, deterministic, seconds), or None where it is missing or
    unreadable (the index is then built again: the record is what its runs' provenance says of it)."""
    try:
        how = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(how, dict) or not {"build_threads", "deterministic"} <= set(how):
        return None
    return how


def searcher_for(index: str, device: str = "cpu") -> Searcher:
    """The searcher of an ``--index`` value (exact search runs where the encoder runs)."""
    if index not in INDEXES:
        raise HarnessError(f"--index must be one of {', '.join(INDEXES)}, not {index!r}")
    return ExactSearcher(device) if index == EXACT else IndexSearcher(IndexConfig(kind=index))
