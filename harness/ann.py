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

An index is built on every thread the process may use (its CPU affinity: :func:`build_threads`), unless its
config's ``build_threads`` says how many. Whether a build on several threads gives the same index every time
depends on FAISS: its lock-based parallel HNSW insertion (FAISS before its deterministic build) makes the
graph depend on thread scheduling, so two builds over the same vectors may differ (in which neighbours a
node keeps), and so may their hits; its deterministic, lock-free build (ParlayANN-style batches: the only
one ``add`` uses in faiss-cpu 1.15.1, an option before, which the harness turns on) does not. What a build
was is in :func:`build_provenance` (threads, and ``deterministic``: false where another build may differ),
recorded beside the recall against exact search that vouches for the index; ``build_threads=1`` builds
the same graph every time with any FAISS.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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
    #: threads of the build: 0, every thread the process may use (its CPU affinity); 1, one thread: the same
    #: index on every build (several threads make an HNSW graph depend on thread scheduling)
    build_threads: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.build_threads, int) or isinstance(self.build_threads, bool) or self.build_threads < 0:
            raise HarnessError(f"build_threads must be 0 (every thread this process may use) or a positive "
                               f"number of threads, not {self.build_threads!r}")

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
    def deterministic_on_threads(self, faiss: Any) -> bool:
        """Whether a build on several threads is vouched to give the same index every time (nothing vouches
        for IVF-PQ's k-means and BLAS calls on several threads): its record otherwise says
        ``deterministic: false``."""
        return False

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

    def deterministic_on_threads(self, faiss: Any) -> bool:
        return True  # the vectors, copied in order

    def make(self, faiss: Any, dim: int, n: int, config: IndexConfig,
             shards: list[tuple[list[str], np.ndarray]]) -> Any:
        return faiss.IndexFlatIP(dim)


class HnswIndex(IndexKind):
    """Graph search (``IndexHNSWFlat``): M links per node, ``efSearch`` candidates, widened to k. On several
    threads FAISS inserts nodes in parallel: with its lock-based insertion which neighbours a node keeps
    depends on the order the threads run in, so the graph may differ from build to build; with its
    deterministic build (:func:`deterministic_hnsw`) it does not."""

    name = "hnsw"

    def deterministic_on_threads(self, faiss: Any) -> bool:
        return deterministic_hnsw(faiss)

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
        sample = _sample(shards, n, max(config.train_size, 39 * nlist, 39 * 256))  # k-means: 39 per centroid
        with engine_notes("ivfpq"):
            index.train(sample)
        return index

    def prepare(self, faiss: Any, index: Any, config: IndexConfig, k: int) -> None:
        faiss.extract_index_ivf(index).nprobe = config.nprobe


#: FAISS's k-means warning (printed by its C++ code, once per sub-quantiser)
_TOO_FEW = re.compile(r"WARNING clustering (\d+) points to (\d+) centroids: "
                      r"please provide at least (\d+) training points")


@contextmanager
def engine_notes(what: str) -> Iterator[None]:
    """Run FAISS code with what its C++ code prints on stderr caught, and said as one line of ours per kind of
    message (FAISS repeats its k-means warning once per sub-quantiser: 16 identical lines for pq_m=16)."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode("utf-8", errors="replace").splitlines()
    said: dict[str, int] = {}
    for line in (ln.strip() for ln in lines if ln.strip()):
        m = _TOO_FEW.fullmatch(line)
        note = (f"{what}: FAISS trained {int(m.group(2)):,} centroids on {int(m.group(1)):,} vectors (it advises "
                f"at least {int(m.group(3)):,}: 39 a centroid); the record's recall against exact search says "
                "what that cost" if m else f"{what}: FAISS said: {line}")
        said[note] = said.get(note, 0) + 1
    for note, times in said.items():
        print(f"harness: note: {note}" + (f" ({times} times)" if times > 1 and "FAISS said" in note else ""),
              file=sys.stderr)


INDEX_KINDS: Registry[IndexKind] = Registry("index kind")
for _kind in (FlatIndex(), HnswIndex(), IvfPqIndex()):
    INDEX_KINDS.register(_kind.name, _kind)
#: the index kinds, by name
KINDS = tuple(INDEX_KINDS.names())


def _faiss() -> Any:
    import faiss

    return faiss


def build_threads(config: IndexConfig) -> int:
    """The threads a build of ``config`` runs on: its ``build_threads``, or (0) every thread this process may
    use (its CPU affinity, shared among the ranks torchrun started on this node: ``harness.distributed``)."""
    if config.build_threads:
        return config.build_threads
    from harness.distributed import cpu_threads

    return cpu_threads()


def deterministic_hnsw(faiss: Any) -> bool:
    """Whether this FAISS builds HNSW graphs with its deterministic, lock-free build (phase A: each batch's
    forward links against a frozen snapshot; phase B: reverse links merged by destination, in a fixed order):
    the only build faiss-cpu 1.15.1 has, an option (``cvar.hnsw_deterministic_build``) in the versions before,
    which :func:`build` turns on. Older FAISS inserts under locks, in an order that depends on scheduling."""
    if hasattr(faiss, "hnsw_add_vertices_deterministic"):
        return True
    try:
        faiss.cvar.hnsw_deterministic_build  # noqa: B018 (an option: build() turns it on)
    except AttributeError:
        return False
    return True


def build_provenance(config: IndexConfig) -> dict[str, Any]:
    """What a build of ``config`` here is, for the record: its threads, whether another build over the same
    vectors on as many threads is vouched to give the same index (``deterministic``: false for HNSW on more
    than one thread with a FAISS without its deterministic build), and the FAISS version that built it."""
    faiss = _faiss()
    threads = build_threads(config)
    return {"build_threads": threads,
            "deterministic": threads == 1 or config.index_kind.deterministic_on_threads(faiss),
            "faiss": str(getattr(faiss, "__version__", "unknown"))}


@contextmanager
def omp_threads(faiss: Any, threads: int) -> Iterator[None]:
    """FAISS's OpenMP threads set to ``threads`` inside the block (and its deterministic HNSW build turned on
    where it is an option: :func:`deterministic_hnsw`), both restored afterwards."""
    before = faiss.omp_get_max_threads()
    try:
        option = faiss.cvar.hnsw_deterministic_build
    except AttributeError:  # no such option: the only build there is (faiss-cpu 1.15.1), or none (older)
        option = None
    faiss.omp_set_num_threads(threads)
    if option is not None:
        faiss.cvar.hnsw_deterministic_build = True
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
        if option is not None:
            faiss.cvar.hnsw_deterministic_build = option


def build(shards: Iterable[tuple[list[str], np.ndarray]], dim: int, n: int, config: IndexConfig
          ) -> tuple[Any, list[str], float]:
    """(index, ids in corpus order, seconds) from the store's shards (read one at a time), built on
    :func:`build_threads` threads."""
    faiss = _faiss()
    start = time.perf_counter()
    listed = list(shards)  # (ids, memory-mapped vectors): cheap
    with omp_threads(faiss, build_threads(config)):
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
