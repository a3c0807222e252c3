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

Search gives the hits of pyserini's ``LuceneSearcher`` with BM25(k1, b), bit for bit: Lucene's order and its
float32 scores after Anserini's tie adjustment (``lucene_worker._Hits``, one query at a time, so each query's
time is measured), and run files write them as Pyserini does (six decimals). The JVM runs in a worker process
(``harness.retrievers.lucene_worker``) with a bounded heap, never beside torch, and dies with its parent.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from harness.paths import cache_root
from harness.retrievers.base import SearchContext, Searched
from harness.retrievers.lucene_index import (
    BUILD_ARGS,
    Collection,
    LuceneIndexed,
    anserini_jar_name,
    build_index,
    ensure_index,
    jvm_heap_bytes,
    package_version,
    search_index,
)
from harness.retrievers.spec import RetrieverSpec
from harness.settings import DEFAULT_EXECUTION, Execution
from harness.trec import PYSERINI_SCORE_FORMAT

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

INDEX_FORMAT = 2  # bump when the way documents reach Lucene changes
DEVICE = "cpu (JVM)"  # where BM25 computes, as its records say


class BM25Fingerprint(TypedDict):
    kind: str
    k1: float
    b: float
    collection: str
    fields: dict[str, float] | None
    index_format: int
    pyserini: str | None
    anserini: str | None


class BM25Retriever:
    score_format = PYSERINI_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, execution: Execution = DEFAULT_EXECUTION):
        self.spec = spec
        self.k1 = float(spec.params["k1"])
        self.b = float(spec.params["b"])
        self.collection = str(spec.params["collection"])
        self.fields: dict[str, float] | None = spec.params.get("fields")
        self.progress = execution.progress
        self.jvm_info: dict[str, Any] = {}  # what the search worker reported (Java, jar, heap, peak memory)
        self.index_info: dict[str, Any] = {}  # what the indexing worker reported, when this process built the index

    def changed_settings(self) -> dict[str, Any]:
        """BM25 has no speed modes: every run is the reference computation."""
        return {}

    def fingerprint(self) -> BM25Fingerprint:
        """What decides BM25's scores: the parameters, the collection and fields, how documents reach
        Lucene, and the Lucene build (pyserini and its Anserini jar)."""
        return {"kind": "bm25", "k1": self.k1, "b": self.b, "collection": self.collection, "fields": self.fields,
                "index_format": INDEX_FORMAT, "pyserini": package_version("pyserini"), "anserini": anserini_jar_name()}

    def index_dir(self, dataset: Dataset) -> Path:
        """Where the index of ``dataset``'s corpus is (by the corpus's content, the collection and the build)."""
        key = json.dumps({"corpus": dataset.corpus_digest, "collection": self.collection, "fields": self.fields,
                          "format": INDEX_FORMAT, "anserini": anserini_jar_name()}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return cache_root() / "indexes" / "lucene" / f"{self.collection}-{digest}"

    def index(self, dataset: Dataset) -> LuceneIndexed:
        return ensure_index(self.index_dir(dataset), "BM25 index", lambda target: self._build(dataset, target))

    def _build(self, dataset: Dataset, target: Path) -> None:
        extra: tuple[str, ...] = ("-storePositions", "-storeDocvectors", "-storeRaw")
        if self.fields:
            extra += ("-fields", *[f for f in self.fields if f != "contents"])
        heap = jvm_heap_bytes(dataset.corpus_path)
        extra += ("-memoryBuffer", str(max(64, heap // 3 // 2**20)))
        collection = Collection(self.collection, extra, "text ({empty:,} empty)",
                                request={"multifield": bool(self.fields)}, heap=heap,
                                mark={"format": INDEX_FORMAT, "args": ["-collection", self.collection, *BUILD_ARGS,
                                                                       *extra]})
        self.index_info = build_index(target, dataset, collection, lambda path: write_collection(
            dataset, path, multifield=bool(self.fields), progress=self.progress), "BM25 index")

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        """Top-``k`` per query in Lucene's order (score descending, ties by id as Anserini breaks them),
        float32 scores exactly as Lucene computed them."""
        rows = ({"id": qid, "text": text} for qid, text in queries.items())
        run, searched, self.jvm_info = search_index(
            self.index_dir(context.dataset), "BM25 index", {"op": "search", "k1": self.k1, "b": self.b,
                                                            "fields": self.fields, "k": k},
            rows, list(queries), f"BM25 search ({len(queries):,} queries)")
        seconds = self.jvm_info.pop("search_seconds", None)  # the search in the JVM, its start left out
        each = tuple(float(x) for x in self.jvm_info.pop("query_seconds", ()))  # the worker searches one at a time
        return Searched(run, searched, DEVICE, seconds=float(seconds) if seconds is not None else None,
                        query_seconds=each if len(each) == len(queries) else None,
                        query_timing="each query searched alone in the Lucene worker (analysis, search, ids; "
                                     "the JVM's first, cold queries included)")

    def provenance(self, context: SearchContext) -> dict[str, Any]:
        return {"engine": "Lucene (Anserini) via pyserini", "k1": self.k1, "b": self.b,
                "collection": self.collection, "fields": self.fields, "index": str(self.index_dir(context.dataset)),
                **self.jvm_info, "indexing_worker": self.index_info, "pyserini": package_version("pyserini"),
                "device": DEVICE, "threads": 1}


#: what Java's String.trim() removes: every character up to U+0020
JAVA_TRIM = "".join(map(chr, range(0x21)))


def write_collection(dataset: Dataset, path: Path, *, multifield: bool = False, progress: bool = True
                     ) -> tuple[int, int]:
    """Stream the documents exactly as the harness reader parsed them into a BEIR-style JSONL file
    (``{"_id", "title", "text"}`` per line, plain JSON, no byte-order mark, no metadata) for Anserini's
    Beir collections. A BOM, CRLF, blank lines, key order, ``NaN`` in metadata or a ``null`` title thus
    reach Lucene exactly as they reach a dense encoder. Returns (documents written, documents whose
    indexed text is empty): Anserini skips those, their contents (``title + " " + text``; ``text`` alone
    for the multifield collection) being empty once Java's ``trim()`` is applied."""
    from harness.progress import progress_bar

    n = empty = 0
    bar = progress_bar(None, "BM25 index: corpus read", "doc", enabled=progress)
    from harness.io import with_filename

    try:  # a full disk shows at a write, a flush or the close: named by the file either way
        with open(path, "w", encoding="utf-8") as out:
            for doc in dataset.corpus():
                out.write(json.dumps({"_id": doc.doc_id, "title": doc.title, "text": doc.text},
                                     ensure_ascii=False) + "\n")
                n += 1
                contents = doc.text if multifield else f"{doc.title} {doc.text}"
                empty += not contents.strip(JAVA_TRIM)
                if n % 1000 == 0:
                    bar.update(1000)
    except OSError as e:
        bar.close()
        raise with_filename(e, path) from None
    bar.update(n % 1000)
    bar.close()
    return n, empty
