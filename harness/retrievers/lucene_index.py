"""Lucene indexes in the cache, built once through a staging folder by the Lucene worker, and searched by it.

BM25 (``harness.retrievers.lucene``) and SPLADE (``harness.retrievers.sparse``) write their own collection
(plain documents, or quantised weights) and build and search through the same steps here
(:func:`build_index`, :func:`ensure_index`, :func:`search_index`): a staging folder, the worker's
``IndexCollection``, the count of what it indexed checked against what was written (less the documents with
nothing to index, which Anserini skips), a mark written last, and the folder moved into place. The JVM runs in
a worker process (``harness.retrievers.lucene_worker``) with a bounded heap, never beside torch, and dies with
its parent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from harness.errors import HarnessError
from harness.io import atomic_write_json, remove_stale_temporaries
from harness.paths import cache_root
from harness.trec import RunArrays

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

INDEX_MARK = "harness-index.json"
STAGING_SUFFIX = ".staging"
#: the IndexCollection arguments every index here is built with (one thread: the same index on every build)
BUILD_ARGS = ("-generator", "DefaultLuceneDocumentGenerator", "-threads", "1")


@dataclass(frozen=True)
class LuceneIndexed:
    """What a Lucene retriever's ``index()`` did: built or reused, where, and the documents: those indexed
    and those with nothing to index (Anserini skips them; no query can match them)."""

    index: str
    path: str
    documents: int
    indexed: int
    empty_not_indexed: int
    seconds: float

    @property
    def computed(self) -> bool:
        return self.index == "built"

    @property
    def store(self) -> str | None:
        return self.path

    def summary(self) -> str:
        return f"index {self.index}, path {self.path}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Collection:
    """How a corpus reaches Anserini: its collection class and IndexCollection arguments beyond
    :data:`BUILD_ARGS`, the worker request's own fields, what an indexed document has (said when some are
    missing), the JVM heap (None: sized by the written file) and what the mark records besides the counts."""

    name: str
    args: tuple[str, ...]
    having: str  # what an indexed document has, and the count of those without it: "text ({empty:,} empty)"
    request: dict[str, Any] = field(default_factory=dict)
    heap: int | None = None
    mark: dict[str, Any] = field(default_factory=dict)


def ensure_index(target: Path, what: str, build: Callable[[Path], None]) -> LuceneIndexed:
    """The index at ``target``, built by ``build`` unless it is there (:func:`build_once`), with its counts."""
    start = time.perf_counter()
    done = build_once(target, build)
    indexed, empty = read_mark(target, what)
    return LuceneIndexed(done, str(target), indexed + empty, indexed, empty, time.perf_counter() - start)


def build_index(target: Path, dataset: Dataset, collection: Collection, write: Callable[[Path], tuple[int, int]],
                desc: str) -> dict[str, Any]:
    """Build ``dataset``'s index into ``target`` through a staging folder: ``write(file)`` writes the collection
    and says (documents written, documents with nothing to index); the worker indexes it; the index must hold
    every document with something to index; :data:`INDEX_MARK` (the counts and ``collection.mark``) is written
    last and the folder moved into place. Returns what the indexing worker reported."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=STAGING_SUFFIX,
                                    dir=target.parent))
    try:
        source, index = staging / "input", staging / "index"
        source.mkdir()
        written, empty = write(source / "corpus.jsonl")
        args = ["-collection", collection.name, "-input", str(source), "-index", str(index), *BUILD_ARGS,
                *collection.args]
        heap = collection.heap if collection.heap is not None else jvm_heap_bytes(source / "corpus.jsonl")
        info = run_worker({"op": "index", "args": args, "index": str(index), **collection.request,
                           "expected": written - empty}, staging, heap, f"{desc} ({written:,} documents)")
        indexed = int(info.pop("documents"))
        if indexed != written - empty:
            missing = info.pop("missing_ids", [])
            raise HarnessError(f"{dataset.corpus_path}: Lucene indexed {indexed:,} of the {written - empty:,} "
                               f"documents with {collection.having.format(empty=empty)}"
                               + (f" (first missing ids: {', '.join(map(repr, missing[:5]))})" if missing else "")
                               + "; nothing was kept")
        atomic_write_json(index / INDEX_MARK, {"collection": collection.name, "corpus_sha256": dataset.corpus_digest,
                                               "indexed": indexed, "empty_not_indexed": empty, **collection.mark})
        if target.exists():
            shutil.rmtree(target)
        os.replace(index, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return info


def search_index(target: Path, what: str, request: dict[str, Any], rows: Iterable[dict[str, Any]], qids: list[str],
                 desc: str) -> tuple[RunArrays, int, dict[str, Any]]:
    """Search the index at ``target`` in a Lucene worker: (the run over ``qids``, the documents it covered,
    what the worker reported)."""
    counts = read_mark(target, what)
    run, info = worker_search({**request, "index": str(target)}, rows, qids, desc)
    return run, checked_search_count(info, counts, target, what), info


def jvm_heap_bytes(corpus: Path | None) -> int:
    """The JVM's -Xmx: ``HARNESS_JVM_HEAP`` (e.g. ``2g``) when set; otherwise 1 GiB plus 8x the longest
    document line (Jackson and Lucene hold a few copies of one document), at most half of the available
    memory, at least 512 MiB."""
    env = os.environ.get("HARNESS_JVM_HEAP", "").strip().lower()
    if env:
        units = {"k": 2**10, "m": 2**20, "g": 2**30}
        try:
            return int(float(env[:-1]) * units[env[-1]]) if env[-1] in units else int(env)
        except ValueError:
            raise HarnessError(f"HARNESS_JVM_HEAP={env!r}: expected a size such as 2g or 1536m") from None
    from harness.resources import available_memory, longest_line

    heap = 2**30 + 8 * (longest_line(corpus) if corpus is not None else 0)
    avail = available_memory()
    if avail is not None:
        heap = min(heap, avail // 2)
    return max(heap, 512 * 2**20)



def build_once(target: Path, build: Callable[[Path], None]) -> str:
    """Build an index into ``target`` unless it is there (its ``INDEX_MARK`` written last), under a file lock
    so that concurrent runs build it once; ``build(target)`` works in a staging folder and moves it into
    place. Returns "built" or "reused"."""
    if (target / INDEX_MARK).is_file():
        return "reused"
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(target.parent)
    with FileLock(str(target) + ".lock"):
        if (target / INDEX_MARK).is_file():
            return "reused"
        build(target)
        return "built"


def read_mark(target: Path, what: str) -> tuple[int, int]:
    """(documents indexed, documents empty and so not indexed) from an index's ``INDEX_MARK``."""
    try:
        mark = json.loads((target / INDEX_MARK).read_text(encoding="utf-8"))
        return int(mark["indexed"]), int(mark["empty_not_indexed"])
    except (OSError, KeyError, TypeError, ValueError) as e:
        raise HarnessError(f"{what} {target} has an unreadable {INDEX_MARK} ({e}); delete the folder and rerun"
                           ) from None


def worker_search(request: dict[str, Any], rows: Iterable[Any], qids: list[str], desc: str
                  ) -> tuple[RunArrays, dict[str, Any]]:
    """Write the query ``rows`` as JSONL, run a search ``request`` in a Lucene worker, read its hits back
    (Lucene's order, float32 scores); returns (run over ``qids``, what the worker reported)."""
    root = cache_root() / "tmp"
    root.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{request['op']}.{os.getpid()}.", suffix=STAGING_SUFFIX, dir=root))
    try:
        qfile, out = tmp / "queries.jsonl", tmp / "hits.jsonl"
        with open(qfile, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        info = run_worker({**request, "queries": str(qfile), "output": str(out)}, tmp, jvm_heap_bytes(None), desc,
                       total=len(qids))
        hits: dict[str, tuple[list[str], list[float]]] = {q: ([], []) for q in qids}
        with open(out, encoding="utf-8") as f:
            for line in f:
                qid, docs, scores = json.loads(line)
                hits[qid] = docs, scores
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = list(hits.values())
    return RunArrays.from_lists(list(hits), [d for d, _ in rows], [s for _, s in rows]), info


def checked_search_count(info: dict[str, Any], index_counts: tuple[int, int], index_dir: Path | None, what: str) -> int:
    """The documents a search covered (the index's, plus the empty ones no query can match), after checking
    that the index holds what was indexed."""
    searched = int(info.pop("documents"))
    indexed, empty = index_counts
    if searched != indexed:
        raise HarnessError(f"{what} {index_dir} holds {searched:,} documents, {indexed:,} were indexed; delete "
                           "the folder and rerun")
    return searched + empty


def clean_stale_staging(root: Path) -> None:
    """Remove staging folders (``.<name>.<pid>.*{STAGING_SUFFIX}``) whose process is gone (killed runs)."""
    remove_stale_temporaries(root, STAGING_SUFFIX)


def run_worker(request: dict[str, Any], workdir: Path, heap: int, desc: str, total: int | None = None
               ) -> dict[str, Any]:
    """Run one request in a fresh ``lucene_worker`` process (bounded heap, dies with this process) and
    show its progress; its JVM chatter is kept in a file and shown only on failure."""
    from harness.progress import progress_bar

    req = workdir / f"request-{request['op']}.json"
    progress = workdir / "progress"
    req.write_text(json.dumps({**request, "progress": str(progress)}), encoding="utf-8")
    log_path = workdir / "worker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "harness.retrievers.lucene_worker", str(req), str(heap)],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT)
        # a search counts queries; indexing shows its time (Lucene says nothing until it is done)
        bar = progress_bar(total, desc, "query") if total else progress_bar(None, desc, bar_format="{desc}: {elapsed}")
        try:
            shown = 0
            while proc.poll() is None:
                time.sleep(0.5)
                done = _read_progress(progress) if total else int(bar.format_dict["elapsed"])
                if done > shown:
                    bar.update(done - shown)
                    shown = done
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            bar.close()
            if proc.stdin is not None:
                proc.stdin.close()
    if proc.returncode != 0:
        lines = [ln for ln in log_path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith("lucene worker failed")),
                      lines[-1] if lines else f"exit status {proc.returncode}")
        stage = desc.split(" (")[0]  # "BM25 search", "impact index", ...
        if any("No space left on device" in ln for ln in lines):  # Lucene then also misses its segments file
            raise HarnessError(f"{stage} failed: no space left on device under {workdir}; free space there or "
                               "point HARNESS_CACHE at a larger disk")
        raise HarnessError(f"{stage} failed: {in_our_words(reason, request, heap)}")
    reported: dict[str, Any] = json.loads(req.with_suffix(".done.json").read_text(encoding="utf-8"))
    return reported


#: Lucene's and the JVM's failures, in the harness's words: (what the engine says, what it means, the fix)
ENGINE_FAILURES = (
    ("IndexNotFoundException", "the index at {index} is incomplete or damaged (Lucene finds no segments file)",
     "delete that folder; the next run builds it again"),
    ("CorruptIndexException", "the index at {index} is damaged", "delete that folder; the next run builds it again"),
    ("TooManyClauses", "a query has more terms than Lucene's clause limit", "report it: the limit is raised"),
    ("OutOfMemoryError", "the JVM ran out of memory (heap {heap} MiB)",
     "set HARNESS_JVM_HEAP, e.g. HARNESS_JVM_HEAP=8g"),
    ("NoSuchFileException", "a file Lucene needs is missing under {index}", "delete that folder; the next run "
     "builds it again"),
)


def in_our_words(reason: str, request: dict[str, Any], heap: int) -> str:
    """The worker's one-line reason, said as what it means and what to do; the engine's own words follow
    only where no known cause matches."""
    for marker, meaning, fix in ENGINE_FAILURES:
        if marker in reason:
            query = re.search(r"query '([^']*)' \((\d+) terms\)", reason)
            where = f" ({'query ' + repr(query.group(1)) + ', ' + query.group(2) + ' terms'})" if query else ""
            return (meaning.format(index=request.get("index", "?"), heap=heap // 2**20) + where
                    + f" (fix: {fix.format(index=request.get('index', '?'))})")
    said = re.sub(r"^lucene worker failed: (JavaException: )?(JVM exception occurred: )?", "", reason)
    return f"Lucene reported: {said}"


def _read_progress(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def package_version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def anserini_jar_name() -> str | None:
    try:
        from harness.retrievers.jvm import anserini_jar

        return anserini_jar().name
    except HarnessError:
        return None
