"""BM25 with Lucene through pyserini, as Pyserini's BEIR reproductions (``bm25-flat``, ``bm25-multifield``).

Lucene indexes what the harness's own reader parsed: ``dataset.corpus()`` is streamed into a plain
BEIR-style JSONL file (``_id``, ``title``, ``text``) that Anserini's ``IndexCollection`` reads with
``BeirFlatCollection`` (contents = title + " " + text) or ``BeirMultifieldCollection`` (title and text as
fields), the settings of Pyserini's prebuilt BEIR indexes. So a byte-order mark, CRLF, blank lines, key
order, ``NaN`` metadata, long lines or ``null`` fields reach Lucene exactly as they reach a dense encoder,
and every corpus kind (BEIR JSONL, DPR passage TSVs) is indexed the same way; for passages the tokens
equal those of Pyserini's ``wikipedia-dpr`` index (``title`` + newline + ``text``). After indexing, the
index must hold every document that was read, less those whose indexed text is empty (Anserini skips them,
as in Pyserini's own indexes: they have no term to match), or the build stops with the first missing ids.

Search is ``LuceneSearcher`` with BM25(k1, b); hits keep Lucene's order and its float32 scores, and run
files write them as Pyserini does (six decimals). The JVM runs in a worker process
(``harness.retrievers.lucene_worker``) with a bounded heap, never beside torch, and dies with its parent.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from harness.errors import HarnessError
from harness.io import atomic_write_json, remove_stale_temporaries
from harness.paths import cache_root
from harness.retrievers.spec import RetrieverSpec
from harness.settings import DEFAULT_EXECUTION, Execution
from harness.trec import PYSERINI_SCORE_FORMAT, Run

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

INDEX_MARK = "harness-index.json"
INDEX_FORMAT = 2  # bump when the way documents reach Lucene changes
STAGING_SUFFIX = ".staging"


class BM25Retriever:
    score_format = PYSERINI_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, execution: Execution = DEFAULT_EXECUTION):
        self.spec = spec
        self.k1 = float(spec.params["k1"])
        self.b = float(spec.params["b"])
        self.collection = spec.params["collection"]
        self.fields = spec.params.get("fields")
        self.threads = execution.threads or max(1, os.cpu_count() or 1)
        self.jvm_info: dict = {}  # what the search worker reported (Java, jar, heap, peak memory)
        self.index_info: dict = {}  # what the indexing worker reported, when this process built the index
        self.index_dir: Path | None = None
        self.searched_documents: int | None = None
        self.index_counts = (0, 0)  # (indexed, empty and so not indexed), set by index()

    def changed_settings(self) -> dict:
        """BM25 has no speed modes: every run is the reference computation."""
        return {}

    def fingerprint(self) -> dict:
        """What decides BM25's scores: the parameters, the collection and fields, how documents reach
        Lucene, and the Lucene build (pyserini and its Anserini jar)."""
        return {"kind": "bm25", "k1": self.k1, "b": self.b, "collection": self.collection, "fields": self.fields,
                "index_format": INDEX_FORMAT, "pyserini": package_version("pyserini"), "anserini": anserini_jar_name()}

    def index(self, dataset: Dataset) -> dict:
        start = time.perf_counter()
        digest = dataset.corpus_digest
        key = json.dumps({"corpus": digest, "collection": self.collection, "fields": self.fields,
                          "format": INDEX_FORMAT, "anserini": anserini_jar_name()}, sort_keys=True)
        name = f"{self.collection}-{hashlib.sha256(key.encode()).hexdigest()[:20]}"
        target = cache_root() / "indexes" / "lucene" / name
        self.index_dir = target
        what = build_once(target, lambda t: self._build(dataset, t, digest))
        indexed, empty = self.index_counts = read_mark(target, "BM25 index")
        return {"index": what, "path": str(target), "documents": indexed + empty, "indexed": indexed,
                "empty_not_indexed": empty, "seconds": time.perf_counter() - start}

    def _build(self, dataset: Dataset, target: Path, digest: str) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=STAGING_SUFFIX,
                                        dir=target.parent))
        try:
            source = staging / "input"
            source.mkdir()
            written, empty = write_collection(dataset, source / "corpus.jsonl", multifield=bool(self.fields))
            args = ["-collection", self.collection, "-input", str(source), "-index", str(staging / "index"),
                    "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1",
                    "-storePositions", "-storeDocvectors", "-storeRaw"]
            if self.fields:
                args += ["-fields", *[f for f in self.fields if f != "contents"]]
            heap = jvm_heap_bytes(dataset.corpus_path)
            args += ["-memoryBuffer", str(max(64, heap // 3 // 2**20))]
            self.index_info = run_worker({"op": "index", "args": args, "index": str(staging / "index"),
                                     "multifield": bool(self.fields),
                                     "expected": written - empty}, staging, heap, f"BM25 index ({written:,} documents)")
            indexed = int(self.index_info.pop("documents"))
            if indexed != written - empty:
                missing = self.index_info.pop("missing_ids", [])
                raise HarnessError(f"{dataset.corpus_path}: Lucene indexed {indexed:,} of the {written - empty:,} "
                                   f"documents with text ({empty:,} empty)"
                                   + (f" (first missing ids: {', '.join(map(repr, missing[:5]))})" if missing else "")
                                   + "; nothing was kept")
            atomic_write_json(staging / "index" / INDEX_MARK, {"collection": self.collection, "corpus_sha256": digest,
                                                               "indexed": indexed, "empty_not_indexed": empty,
                                                               "format": INDEX_FORMAT,
                                                               "args": args[:2] + args[6:]})
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "index", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        """Top-``k`` per query in Lucene's order (score descending, ties by id as Anserini breaks them),
        float32 scores exactly as Lucene computed them; sets :attr:`searched_documents`."""
        if self.index_dir is None:
            raise RuntimeError("index() must run before search()")
        rows = ({"id": qid, "text": text} for qid, text in queries.items())
        run, info = worker_search({"op": "search", "index": str(self.index_dir), "k1": self.k1, "b": self.b,
                                   "fields": self.fields, "k": k, "threads": self.threads}, rows, list(queries),
                                  f"BM25 search ({len(queries):,} queries)")
        self.searched_documents = checked_search_count(info, self.index_counts, self.index_dir, "BM25 index")
        self.jvm_info = info
        return run

    def provenance(self) -> dict:
        return {"engine": "Lucene (Anserini) via pyserini", "k1": self.k1, "b": self.b,
                "collection": self.collection, "fields": self.fields, "index": str(self.index_dir),
                **self.jvm_info, "indexing_worker": self.index_info, "pyserini": package_version("pyserini"),
                "device": "cpu (JVM)", "threads": self.threads}


#: what Java's String.trim() removes: every character up to U+0020
JAVA_TRIM = "".join(map(chr, range(0x21)))


def write_collection(dataset: Dataset, path: Path, *, multifield: bool = False) -> tuple[int, int]:
    """Stream the documents exactly as the harness reader parsed them into a BEIR-style JSONL file
    (``{"_id", "title", "text"}`` per line, plain JSON, no byte-order mark, no metadata) for Anserini's
    Beir collections. A BOM, CRLF, blank lines, key order, ``NaN`` in metadata or a ``null`` title thus
    reach Lucene exactly as they reach a dense encoder. Returns (documents written, documents whose
    indexed text is empty): Anserini skips those, their contents (``title + " " + text``; ``text`` alone
    for the multifield collection) being empty once Java's ``trim()`` is applied."""
    n = empty = 0
    with open(path, "w", encoding="utf-8") as out:
        for doc in dataset.corpus():
            out.write(json.dumps({"_id": doc.doc_id, "title": doc.title, "text": doc.text}, ensure_ascii=False) + "\n")
            n += 1
            contents = doc.text if multifield else f"{doc.title} {doc.text}"
            empty += not contents.strip(JAVA_TRIM)
    return n, empty


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


def worker_search(request: dict, rows: Iterable[Any], qids: list[str], desc: str) -> tuple[Run, dict]:
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
        run: Run = {q: {} for q in qids}
        with open(out, encoding="utf-8") as f:
            for line in f:
                qid, doc, score = json.loads(line)
                run[qid][doc] = float(score)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run, info


def checked_search_count(info: dict, index_counts: tuple[int, int], index_dir: Path | None, what: str) -> int:
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


def run_worker(request: dict, workdir: Path, heap: int, desc: str, total: int | None = None) -> dict:
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
        bar = progress_bar(total, desc, "query" if total else "s")
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
    return json.loads(req.with_suffix(".done.json").read_text(encoding="utf-8"))


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


def in_our_words(reason: str, request: dict, heap: int) -> str:
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
