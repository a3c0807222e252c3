"""FAISS index choices over a finished embedding store, and their recall cost against exact search. Each
kind is a class (:class:`IndexKind`, registered in :data:`INDEX_KINDS`) that makes and sets its index:

- ``flat``: exact inner product, all vectors in memory (``IndexFlatIP``);
- ``hnsw``: graph search (``IndexHNSWFlat``, M links per node, ``efSearch`` candidates), full vectors
  kept; fast, memory above flat;
- ``ivfpq``: inverted lists over ``nlist`` k-means cells, vectors compressed by product quantisation to
  ``pq_m`` bytes (``IndexIVFPQ``, 8-bit codes); ``nprobe`` cells visited per query; about 1/(dim*4/pq_m)
  of flat's memory.
The recall cost of an approximate index is measured as the overlap of its top-k with exact top-k
(``recall_vs_exact``), and for ODQA datasets as the change in accuracy@k.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from harness.errors import HarnessError
from harness.registry import Registry


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "hnsw"  # the name of its IndexKind in INDEX_KINDS
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int = 0  # 0: 4 * sqrt(n), rounded
    pq_m: int = 16  # bytes per vector; must divide dim
    nprobe: int = 32
    train_size: int = 200_000

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def index_kind(self) -> IndexKind:
        """The kind that builds and searches this index."""
        if self.kind not in INDEX_KINDS:
            raise HarnessError(f"unknown index kind {self.kind!r}; known: {', '.join(INDEX_KINDS.names())}")
        return INDEX_KINDS.get(self.kind)


class IndexKind:
    """One kind of FAISS index: how it is made (and trained) over the store's shards, and how it is set for a
    search. Subclasses set ``name`` (and ``approximate``) and override what differs."""

    name: ClassVar[str] = ""
    #: whether its hits may differ from exact search (then it is a value of ``--index``)
    approximate: ClassVar[bool] = True

    def make(self, faiss: Any, dim: int, n: int, config: IndexConfig,
             shards: list[tuple[list[str], np.ndarray]]) -> Any:
        """An empty index, trained where it needs training, for ``n`` vectors of ``dim``."""
        raise NotImplementedError

    def prepare(self, faiss: Any, index: Any, config: IndexConfig, k: int) -> None:
        """Set the index's search breadth for a top-``k`` search."""

    def breadth(self, config: IndexConfig, k: int) -> dict[str, int]:
        """The search breadth actually used, for the record (none where it has no such setting)."""
        return {}


class FlatIndex(IndexKind):
    """Exact inner product, all vectors in memory (``IndexFlatIP``)."""

    name = "flat"
    approximate = False

    def make(self, faiss: Any, dim: int, n: int, config: IndexConfig,
             shards: list[tuple[list[str], np.ndarray]]) -> Any:
        return faiss.IndexFlatIP(dim)


class HnswIndex(IndexKind):
    """Graph search (``IndexHNSWFlat``): M links per node, ``efSearch`` candidates, widened to k."""

    name = "hnsw"

    def make(self, faiss: Any, dim: int, n: int, config: IndexConfig,
             shards: list[tuple[list[str], np.ndarray]]) -> Any:
        index = faiss.IndexHNSWFlat(dim, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = config.ef_construction
        return index

    def prepare(self, faiss: Any, index: Any, config: IndexConfig, k: int) -> None:
        index.hnsw.efSearch = max(config.ef_search, k)

    def breadth(self, config: IndexConfig, k: int) -> dict[str, int]:
        return {"ef_search_used": max(config.ef_search, k)}


class IvfPqIndex(IndexKind):
    """Inverted lists over ``nlist`` k-means cells, vectors product-quantised to ``pq_m`` bytes (8-bit codes);
    ``nprobe`` cells visited per query."""

    name = "ivfpq"

    def make(self, faiss: Any, dim: int, n: int, config: IndexConfig,
             shards: list[tuple[list[str], np.ndarray]]) -> Any:
        if dim % config.pq_m:
            raise HarnessError(f"ivfpq: pq_m={config.pq_m} must divide the dimension {dim}")
        if n < 256:  # 8-bit product quantisation trains 256 centroids per sub-vector
            raise HarnessError(f"ivfpq: {n} vectors are too few to train its 256-entry codebooks (at least 256); "
                               "use --index hnsw or exact")
        nlist = config.nlist or max(1, int(round(4 * n ** 0.5)))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, config.pq_m, 8, faiss.METRIC_INNER_PRODUCT)
        index.train(_sample(shards, n, max(config.train_size, 39 * nlist, 39 * 256)))  # k-means: 39 per centroid
        return index

    def prepare(self, faiss: Any, index: Any, config: IndexConfig, k: int) -> None:
        faiss.extract_index_ivf(index).nprobe = config.nprobe


INDEX_KINDS: Registry[IndexKind] = Registry("index kind")
for _kind in (FlatIndex(), HnswIndex(), IvfPqIndex()):
    INDEX_KINDS.register(_kind.name, _kind)
#: the index kinds, by name
KINDS = tuple(INDEX_KINDS.names())


def _faiss() -> Any:
    import faiss

    return faiss


def build(shards: Iterable[tuple[list[str], np.ndarray]], dim: int, n: int, config: IndexConfig
          ) -> tuple[Any, list[str], float]:
    """(index, ids in corpus order, seconds) from the store's shards (read one at a time)."""
    faiss = _faiss()
    start = time.perf_counter()
    listed = list(shards)  # (ids, memory-mapped vectors): cheap
    index = config.index_kind.make(faiss, dim, n, config, listed)
    ids: list[str] = []
    for shard_ids, vectors in listed:
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        ids.extend(shard_ids)
    return index, ids, time.perf_counter() - start


def _sample(shards: list[tuple[list[str], np.ndarray]], n: int, size: int) -> np.ndarray:
    """An evenly spread training sample (every step-th vector of every shard)."""
    step = max(1, n // size)
    parts = [np.asarray(v[::step], dtype=np.float32) for _, v in shards]
    return np.ascontiguousarray(np.concatenate(parts)[:size])


def search(index: Any, ids: list[str], queries: np.ndarray, k: int, config: IndexConfig
           ) -> tuple[np.ndarray, list[list[str]]]:
    config.index_kind.prepare(_faiss(), index, config, k)
    scores, rows = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
    return scores, [[ids[j] for j in row if j >= 0] for row in rows]


def recall_vs_exact(approx: list[list[str]], exact: list[list[str]], k: int) -> float:
    """Mean share of the exact top-k that the approximate top-k also returns."""
    if not exact:
        return 0.0
    return float(np.mean([len(set(a[:k]) & set(e[:k])) / max(1, min(k, len(e))) for a, e in zip(approx, exact,
                                                                                                 strict=True)]))


def save(index: Any, path: Path | str) -> None:
    _faiss().write_index(index, str(path))
