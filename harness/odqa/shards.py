"""Sharded corpus encoding for large passage collections (DPR's 21M), a merge step, and a size plan.

The embedding store (``harness.embeddings``) already splits a corpus into chunks of ``shard_size``
passages, each sealed by its own checksum file. ``encode_shard(i, n)`` streams the whole passage file and
encodes only the chunks ``j`` with ``j % n == i``, so n cluster jobs (one per ``--shard i/n``) can write
into the same store on a shared file system without coordination; a job that dies loses only the chunk
in progress and is rerun as is. ``merge(n)`` checks that every chunk is present and sealed and writes
the store's manifest: from then on ``harness run`` reuses the embeddings (``embeddings: reused``).

``plan()`` says, before anything is encoded, how much disk the embeddings take and how much memory
search and each index choice need; ``check_fits()`` refuses early, with the fix, when they do not fit.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from harness.errors import HarnessError
from harness.io import atomic_write_json

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.embeddings import EmbeddingStore
    from harness.retrievers.dense import DenseRetriever

GiB = 1024**3
PY_STR_BYTES = 57  # CPython size of a short ASCII str, the per-id cost of the id list held while searching
ENCODE_BYTES_PER_PASSAGE = 6_000  # texts, token ids and padded batch tensors for one chunk in flight
KNOWN_COUNTS = {"psgs_w100.tsv": 21_015_324}


class JobInfo(TypedDict):
    """What one encoding job did (``job-<i>-of-<n>.json`` in the store)."""

    job: int
    jobs: int
    chunks: int
    count: int
    dim: int
    shard_size: int
    encoded: int
    reused: int
    seconds: float


class MergeInfo(TypedDict):
    """What a merge checked and sealed."""

    chunks: int
    count: int
    dim: int
    store: str


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based i) -> (i, n)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise HarnessError(f"--shard {text!r}: expected i/n, e.g. 0/8 (job i of n, 0-based)") from None
    if n < 1 or not 0 <= i < n:
        raise HarnessError(f"--shard {text!r}: need 0 <= i < n")
    return i, n


def count_passages(path: Path) -> int:
    """Documents in a corpus file: known for DPR's file, else its lines counted (newlines, fast; a last line
    without one counted too), less a TSV's header line (DPR's ``id<TAB>text<TAB>title``); a BEIR corpus.jsonl
    and MS MARCO's headerless TSV have none."""
    from harness.lines import GZIP_ERRORS, damaged

    if path.name in KNOWN_COUNTS and path.stat().st_size > 10 * GiB:
        return KNOWN_COUNTS[path.name]
    opener = gzip.open if path.name.endswith(".gz") else open
    lines, first, last = 0, b"", b"\n"
    try:
        with opener(path, "rb") as f:
            while block := f.read(1 << 24):
                first = first or block[:64]
                lines += block.count(b"\n")
                last = block[-1:]
    except GZIP_ERRORS as e:
        raise damaged(path, e) from None
    lines += last != b"\n"
    header = ".tsv" in path.name and first.lstrip(b"\xef\xbb\xbf").lower().startswith(b"id\t")
    return max(0, lines - header)


@dataclass(frozen=True)
class Plan:
    passages: int
    dim: int
    shard_size: int
    jobs: int = 1
    id_bytes: int = 9
    hnsw_m: int = 32
    pq_m: int = 16
    nlist: int = 0  # 0: 4 * sqrt(passages)

    @property
    def vectors_bytes(self) -> int:
        return self.passages * self.dim * 4

    @property
    def disk_bytes(self) -> int:
        """Embedding store: float32 vectors, id files, seals."""
        return self.vectors_bytes + self.passages * self.id_bytes + (self.passages // self.shard_size + 1) * 4096

    @property
    def job_disk_bytes(self) -> int:
        return -(-self.disk_bytes // self.jobs)

    @property
    def encode_memory_bytes(self) -> int:
        return self.shard_size * (ENCODE_BYTES_PER_PASSAGE + self.dim * 4) + self.passages // 8 + GiB // 2

    def index_memory_bytes(self, kind: str) -> int:
        """Memory to search with ``kind`` (ids list included); building needs about the same."""
        ids = self.passages * (PY_STR_BYTES + 8)
        if kind == "exact":  # streamed shard by shard, as harness run searches
            return ids + self.shard_size * self.dim * 4
        if kind == "flat":
            return ids + self.vectors_bytes
        if kind == "hnsw":
            return ids + self.vectors_bytes + self.passages * self.hnsw_m * 2 * 4 * 11 // 10
        if kind == "ivfpq":
            nlist = self.nlist or int(4 * self.passages ** 0.5)
            return ids + self.passages * (self.pq_m + 8) + nlist * self.dim * 4 + 256 * self.dim * 4
        raise HarnessError(f"unknown index kind {kind!r}; known: exact, flat, hnsw, ivfpq")

    def index_disk_bytes(self, kind: str) -> int:
        return 0 if kind == "exact" else self.index_memory_bytes(kind) - self.passages * (PY_STR_BYTES + 8)

    def to_dict(self) -> dict[str, int]:
        return {**asdict(self), "disk_bytes": self.disk_bytes, "encode_memory_bytes": self.encode_memory_bytes,
                **{f"{k}_memory_bytes": self.index_memory_bytes(k) for k in ("exact", "flat", "hnsw", "ivfpq")}}

    def render(self) -> str:
        def g(b: int) -> str:
            return f"{b / GiB:,.2f} GiB"

        lines = [f"{self.passages:,} passages x {self.dim} dims (float32):",
                 f"  embeddings on disk     {g(self.disk_bytes)} ({g(self.job_disk_bytes)} per job of {self.jobs})",
                 f"  memory while encoding  {g(self.encode_memory_bytes)} per job (chunks of {self.shard_size:,})"]
        for kind, what in [("exact", "exact search, streamed (harness run)"), ("flat", "flat index in memory"),
                           ("hnsw", f"HNSW (M={self.hnsw_m})"), ("ivfpq", f"IVF-PQ ({self.pq_m} bytes/vector)")]:
            lines.append(f"  memory for {what:<36} {g(self.index_memory_bytes(kind))}"
                         + (f"  (+{g(self.index_disk_bytes(kind))} on disk)" if kind != "exact" else ""))
        return "\n".join(lines)


def available_memory() -> int:
    from harness.resources import available_memory as meminfo

    found = meminfo()
    return found if found is not None else os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_disk(path: Path) -> int:
    p = Path(path)
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def check_fits(plan: Plan, store_dir: Path, index: str = "exact", *, memory: int | None = None,
               disk: int | None = None) -> None:
    """Refuse early, saying what to change, when the embeddings or the index will not fit."""
    memory = available_memory() if memory is None else memory
    disk = free_disk(store_dir) if disk is None else disk
    def g(b: int) -> str:
        return f"{b / GiB:.1f} GiB"

    need_disk = plan.job_disk_bytes + plan.index_disk_bytes(index)
    if need_disk > disk:
        raise HarnessError(
            f"not enough disk: the embeddings need {g(need_disk)} under {store_dir}, {g(disk)} is free.\n"
            f"Fix: point HARNESS_CACHE at a disk with at least {g(plan.disk_bytes + plan.index_disk_bytes(index))} "
            f"free (merge and search read every shard from one store; jobs of --shard i/n write to it on a "
            f"shared file system).\n{plan.render()}")
    need_mem = max(plan.encode_memory_bytes, plan.index_memory_bytes(index))
    if need_mem > memory:
        cheaper = [k for k in ("exact", "ivfpq", "hnsw", "flat") if plan.index_memory_bytes(k) <= memory]
        hint = (f"choose --index {cheaper[0]}" if cheaper and cheaper[0] != index
                else "lower --shard-size" if plan.encode_memory_bytes > memory else "use a machine with more memory")
        raise HarnessError(f"not enough memory: {index} needs {g(need_mem)}, {g(memory)} is available.\n"
                           f"Fix: {hint}.\n{plan.render()}")


def _store_for(retriever: DenseRetriever, dataset: Dataset) -> EmbeddingStore:
    return retriever.corpus_store(dataset)


def model_dim(retriever: DenseRetriever) -> int:
    """The width of the retriever's vectors (its Dense head's, or the hidden size per pooling mode), read from
    its files (no torch needed): what the manifest and an ANN index built on it take."""
    return retriever.encoders.dim


def plan_for(retriever: DenseRetriever, dataset: Dataset, jobs: int = 1) -> Plan:
    return Plan(count_passages(dataset.corpus_path), model_dim(retriever), retriever.shard_size, jobs)


def encode_shard(retriever: DenseRetriever, dataset: Dataset, shard: int = 0, of: int = 1, *, index: str = "exact",
                 check: bool = True, log: Callable[[str], None] = print) -> JobInfo:
    """Encode the chunks ``j % of == shard`` of ``dataset`` into ``retriever``'s embedding store. Each process
    is one job; started as several ranks (srun with several tasks, torchrun), each must have its own part."""
    _refuse_shared_parts(shard, of)
    store = _store_for(retriever, dataset)
    if check:
        plan = plan_for(retriever, dataset, of)
        log(plan.render())
        check_fits(plan, store.dir, index)
    start = time.perf_counter()
    done = retriever.encode_corpus(dataset, store, shard, of)  # the loop `harness run` runs, seals checked
    encoded, reused, count, chunks = done.encoded, done.reused, done.count, done.shards
    info: JobInfo = {"job": shard, "jobs": of, "chunks": chunks, "count": count, "dim": model_dim(retriever),
            "shard_size": retriever.shard_size, "encoded": encoded, "reused": reused,
            "seconds": round(time.perf_counter() - start, 3)}
    atomic_write_json(store.dir / f"job-{shard:05d}-of-{of:05d}.json", info)
    log(f"job {shard}/{of}: encoded {encoded} chunks, reused {reused}, of {chunks} ({count:,} passages) -> {store.dir}")
    return info


def _refuse_shared_parts(shard: int, of: int) -> None:
    """Started as several ranks (torchrun, srun with several tasks) with fewer parts than ranks, at least two
    ranks have the same ``--shard`` and would encode the same chunks (the lock keeps one copy, the other's time
    is lost): refused in one line. Decided from the launch alone: the jobs stay independent (no process group,
    so one job that fails early leaves no other waiting)."""
    from harness.launch import launch

    ranks = launch().world_size
    if ranks > of:
        raise HarnessError(f"harness encode was started as {ranks} ranks with --shard {shard}/{of}: at least two "
                           "would encode the same chunks. It runs one job per part: give each rank its own "
                           "(--shard $SLURM_PROCID/$SLURM_NTASKS under srun), or use `harness run` under torchrun, "
                           "whose ranks share the encoding")


def merge(retriever: DenseRetriever, dataset: Dataset, of: int, *, verify: bool = True,
          log: Callable[[str], None] = print) -> MergeInfo:
    """Check that the ``of`` jobs left every chunk sealed, then write the store's manifest."""
    store = _store_for(retriever, dataset)
    infos: list[JobInfo] = []
    for i in range(of):
        path = store.dir / f"job-{i:05d}-of-{of:05d}.json"
        if not path.is_file():
            hint = "" if store.dir.is_dir() else (
                f" (no store for precision {retriever.compute.precision}: if the jobs ran on another kind of "
                "device, pass the same --precision they used, e.g. --precision bf16 for CUDA jobs)")
            raise HarnessError(f"job {i}/{of} has not finished (no {path.name} in {store.dir}); rerun it with "
                               f"--shard {i}/{of}{hint}")
        infos.append(json.loads(path.read_text()))
    chunks, count = infos[0]["chunks"], infos[0]["count"]
    if any((x["chunks"], x["count"], x["shard_size"]) != (chunks, count, infos[0]["shard_size"]) for x in infos):
        raise HarnessError("the jobs saw different corpora or chunk sizes; rerun them with the same --shard-size")
    bad = [j for j in range(chunks) if not store.shard_ok(j, verify=verify)]
    if bad:
        jobs = sorted({j % of for j in bad})
        raise HarnessError(f"{len(bad)} chunks are missing or corrupt (first: {bad[0]}); rerun jobs "
                           f"{', '.join(f'--shard {j}/{of}' for j in jobs)}")
    store.finish(chunks, count, infos[0]["dim"])  # checks that the verified shards tile the corpus
    log(f"merged {of} jobs: {chunks} chunks, {count:,} passages -> {store.manifest_path}")
    return {"chunks": chunks, "count": count, "dim": infos[0]["dim"], "store": str(store.dir)}
