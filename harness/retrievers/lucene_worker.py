"""The JVM side of BM25, run as its own process: ``python -m harness.retrievers.lucene_worker REQUEST.json HEAP``.

Lucene never shares a process with torch: two large native runtimes in one address space is where crashes
that neither library can explain come from, and the JVM would take over Ctrl-C. The parent
(``harness.retrievers.lucene``) writes a request, this worker runs Anserini through pyserini and writes
its answer to files, and the parent reads them. The worker never outlives its parent: on Linux the kernel
kills it when the parent dies (``PR_SET_PDEATHSIG``), and everywhere a thread watches its stdin, a pipe
from the parent, and exits when it closes. The JVM heap is bounded by ``HEAP`` bytes (``-Xmx``).

Requests:
- ``{"op": "index", "args": [...], "index", "expected"}``: ``IndexCollection`` with those arguments, then
  the number of documents in the index (and, when it is not ``expected``, the first ids it lacks);
- ``{"op": "search", "index", "k1", "b", "fields", "k", "queries", "output"}``: BM25 search of a JSONL
  file of ``{"id", "text"}`` queries into one JSONL ``[qid, [docid, ...], [score, ...]]`` line per query in
  Lucene's rank order (float32 scores written so they read back exactly): the hits pyserini's
  ``LuceneSearcher`` gives, bit for bit (:class:`_Hits`); the number of documents searched, the search's
  seconds and each query's.
- ``{"op": "impact_search", "index", "k", "threads", "queries", "output"}``: the same for a JSONL file of
  ``{"id", "vector": {term: integer weight}}`` queries over an impact index (learned sparse retrieval).
Progress (queries done) is written to the request's ``progress`` file.

Exit status 0 on success; on failure a one-line reason on stderr and status 1.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

JACKSON_MAX_STRING = 2**31 - 1  # the harness's own reader bounds a line (HARNESS_MAX_LINE_BYTES)
#: Lucene's limit on a query's clauses (1024 by default); an impact query has one per term the model gives
#: weight to (up to its vocabulary, 30,522 for BERT's), so it is raised as far as Lucene allows
MAX_CLAUSES = 2**31 - 1


def _die_with_parent() -> None:
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except OSError:
            pass
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    def watch() -> None:
        try:
            while os.read(0, 1 << 16):  # unbuffered: holds no lock the interpreter needs at exit
                pass
        except OSError:
            pass
        os._exit(1)  # the parent closed the pipe or died

    threading.Thread(target=watch, daemon=True).start()


def _start(heap: int) -> dict[str, Any]:
    import jnius_config

    from harness.retrievers import jvm

    if not jnius_config.vm_running:
        jnius_config.add_options(f"-Xmx{max(heap // 2**20, 256)}m")
    info = jvm.start_jvm()
    # Jackson (Anserini's JSON reader) refuses strings over 20M characters by default; the harness's own
    # reader decides what a valid line is, so the limit is lifted before any reader is made
    constraints = jvm.autoclass("com.fasterxml.jackson.core.StreamReadConstraints")
    constraints.overrideDefaultStreamReadConstraints(
        constraints.builder().maxStringLength(JACKSON_MAX_STRING).build())
    return {**info, "heap_bytes": heap}


def _num_docs_and_ids(index: str, want_ids: bool) -> tuple[int, list[str]]:
    from harness.retrievers import jvm

    directory = jvm.autoclass("org.apache.lucene.store.FSDirectory").open(
        jvm.autoclass("java.io.File")(index).toPath())
    reader = jvm.autoclass("org.apache.lucene.index.DirectoryReader").open(directory)
    try:
        ids: list[str] = []
        if want_ids:
            stored = reader.storedFields()
            for i in range(reader.maxDoc()):
                ids.append(stored.document(i).get("id"))
        return int(reader.numDocs()), ids
    finally:
        reader.close()


def _index(req: dict[str, Any], heap: int) -> dict[str, Any]:
    from harness.retrievers import jvm

    info = _start(heap)
    jvm.autoclass("io.anserini.index.IndexCollection").main(req["args"])
    n, _ = _num_docs_and_ids(req["index"], False)
    if n != int(req["expected"]):
        _, present = _num_docs_and_ids(req["index"], True)
        have = set(present)
        missing = []
        trim = "".join(map(chr, range(0x21)))  # Java's String.trim(); empty documents are not indexed
        with open(Path(req["args"][req["args"].index("-input") + 1]) / "corpus.jsonl", encoding="utf-8") as f:
            for line in f:
                doc = json.loads(line)
                if req.get("vectors"):  # an impact collection: a document with no weight has nothing to index
                    doc_id, has_content = doc["id"], bool(doc["vector"])
                else:
                    doc_id = doc["_id"]
                    has_content = bool((doc["text"] if req.get("multifield") else
                                        f"{doc['title']} {doc['text']}").strip(trim))
                if doc_id not in have and has_content:
                    missing.append(doc_id)
                    if len(missing) == 5:
                        break
        info["missing_ids"] = missing
    return {**info, "documents": n}


#: Anserini's ScoreTiesAdjusterReranker, which pyserini's search applies to every result list: scores rounded
#: to four decimals, and each score within ``TIE_GAP`` of the one before it lowered by ``TIE_STEP`` times its
#: place in that run of near-ties, so that trec_eval's order (score, then docid descending) keeps Lucene's
TIE_GAP = np.float32(1e-4)
TIE_STEP = np.float32(1e-6)


def adjust_ties(scores: NDArray[np.float32]) -> NDArray[np.float32]:
    """What Anserini's ScoreTiesAdjusterReranker makes of one query's ``scores`` (Lucene's rank order), bit for
    bit: Java rounds ``score * 10000`` in double precision half up (``Math.round``), divides by 10000 and casts
    to float; a score whose gap to the previous (already adjusted) one is at most 1e-4f is the next of a run of
    ties, and loses ``1e-6f * run`` in float arithmetic. Only runs of near-ties are walked one by one."""
    rounded = (np.floor(scores.astype(np.float64) * 10000.0 + 0.5) / 10000.0).astype(np.float32)
    out = rounded.copy()
    if len(out) < 2:
        return out
    # a run can only start where the rounded gap is small (a score before it that was not lowered is its own
    # rounded value); inside a run each step depends on the lowered score before it
    starts = np.flatnonzero(rounded[:-1] - rounded[1:] <= TIE_GAP) + 1
    done = 0
    for first in starts.tolist():
        if first < done:
            continue
        run, i = 0, first
        while i < len(out) and (i == first or np.float32(out[i - 1] - rounded[i]) <= TIE_GAP):
            run += 1
            out[i] = np.float32(rounded[i] - np.float32(TIE_STEP * np.float32(run)))
            i += 1
        done = i
    return out


class _Hits:
    """Lucene search as Anserini's SimpleSearcher does it, without its per-hit cost: the same query (its
    BagOfWordsQueryGenerator, analyzer and BM25 similarity), the same sort (score, then the collection id), the
    same tie adjustment (:func:`adjust_ties`); the collection id read once per distinct document (SimpleSearcher
    loads every hit's whole stored document, which is most of pyserini's search time)."""

    def __init__(self, index: str, k1: float, b: float, fields: dict[str, float] | None) -> None:
        from jnius import cast

        from harness.retrievers import jvm

        a = jvm.autoclass
        # a query has one clause per distinct term: Lucene's default limit (1024) would fail a long query where
        # its score is well defined, so the limit is raised as for impact search (queries under it unchanged)
        a("org.apache.lucene.search.IndexSearcher").setMaxClauseCount(MAX_CLAUSES)
        anserini = a("io.anserini.search.SimpleSearcher")(index)
        anserini.set_bm25(k1, b)
        self.analyzer = anserini.get_analyzer()
        self.documents = int(anserini.get_total_num_docs())
        anserini.close()
        reader = a("org.apache.lucene.index.DirectoryReader").open(
            a("org.apache.lucene.store.FSDirectory").open(a("java.io.File")(index).toPath()))
        self.searcher = a("org.apache.lucene.search.IndexSearcher")(cast("org.apache.lucene.index.IndexReader",
                                                                         reader))
        self.searcher.setSimilarity(a("org.apache.lucene.search.similarities.BM25Similarity")(k1, b))
        sort_field = a("org.apache.lucene.search.SortField")
        self.sort = a("org.apache.lucene.search.Sort")(
            sort_field.FIELD_SCORE, sort_field("id", a("org.apache.lucene.search.SortField$Type").STRING_VAL))
        self.generator = a("io.anserini.search.query.BagOfWordsQueryGenerator")()
        self.fields: Any = None
        if fields:
            jfields, jfloat = a("java.util.HashMap")(), a("java.lang.Float")
            for name, boost in fields.items():
                jfields.put(name, jfloat(float(boost)))
            self.fields = cast("java.util.Map", jfields)
        self.stored = self.searcher.storedFields()
        only_id = a("java.util.HashSet")()
        only_id.add("id")
        self.only_id = cast("java.util.Set", only_id)
        self.ids: dict[int, str] = {}

    def search(self, text: str, k: int) -> tuple[list[str], list[float]]:
        """One query's top ``k``: (collection ids, scores) in rank order."""
        query = (self.generator.buildQuery(self.fields, self.analyzer, text) if self.fields is not None
                 else self.generator.buildQuery("contents", self.analyzer, text))
        hits = self.searcher.search(query, k, self.sort, True).scoreDocs
        docs = [h.doc for h in hits]
        scores = adjust_ties(np.array([h.score for h in hits], dtype=np.float32))
        ids = self.ids
        for d in docs:
            if d not in ids:
                ids[d] = self.stored.document(d, self.only_id).get("id")
        return [ids[d] for d in docs], scores.tolist()


def _search(req: dict[str, Any], heap: int) -> dict[str, Any]:
    info = _start(heap)
    searcher = _Hits(req["index"], float(req["k1"]), float(req["b"]), req.get("fields"))
    out, progress, k = Path(req["output"]), Path(req["progress"]), int(req["k"])
    started = time.perf_counter()  # the search itself: the JVM is up and the index open
    seconds: list[float] = []
    with open(req["queries"], encoding="utf-8") as queries, open(out, "w", encoding="utf-8") as f:
        for n, line in enumerate(queries, 1):
            q = json.loads(line)
            t0 = time.perf_counter()
            try:
                ids, scores = searcher.search(q["text"], k)
            except Exception as e:  # named: which query, how long
                raise RuntimeError(f"query {q['id']!r} ({len(q['text'].split())} terms): {e}") from None
            seconds.append(time.perf_counter() - t0)
            f.write(json.dumps([q["id"], ids, scores], ensure_ascii=False) + "\n")
            if n % 64 == 0:
                progress.write_text(str(n))
    return {**info, "documents": searcher.documents, "search_seconds": time.perf_counter() - started,
            "query_seconds": seconds, "max_clause_count": MAX_CLAUSES}


def _impact_search(req: dict[str, Any], heap: int) -> dict[str, Any]:
    """Impact (learned sparse) search: each query a map of term -> integer weight, scored by Lucene as the
    sum of query weight x document impact, as pyserini's LuceneImpactSearcher does."""
    from harness.retrievers import jvm

    info = _start(heap)
    jvm.autoclass("org.apache.lucene.search.IndexSearcher").setMaxClauseCount(MAX_CLAUSES)
    info["max_clause_count"] = MAX_CLAUSES
    searcher = jvm.autoclass("io.anserini.search.SimpleImpactSearcher")(req["index"])
    jmap, jlist, jint = (jvm.autoclass("java.util.HashMap"), jvm.autoclass("java.util.ArrayList"),
                         jvm.autoclass("java.lang.Integer"))
    queries = []
    with open(req["queries"], encoding="utf-8") as f:
        for line in f:
            queries.append(json.loads(line))
    out, progress = Path(req["output"]), Path(req["progress"])
    batch = max(64, 16 * int(req["threads"]))
    with open(out, "w", encoding="utf-8") as f:
        for start in range(0, len(queries), batch):
            chunk = queries[start:start + batch]
            qs, ids = jlist(), jlist()
            for q in chunk:
                m = jmap()
                for term, weight in q["vector"].items():
                    m.put(term, jint(int(weight)))
                qs.add(m)
                ids.add(q["id"])
            try:
                results = searcher.batch_search(qs, ids, int(req["k"]), int(req["threads"]))
            except Exception as e:  # Anserini's batch search hides the cause: find the query and its own error
                raise RuntimeError(_first_failing(searcher, jmap, jint, chunk, int(req["k"])) or str(e)) from None
            hits = {r.getKey(): r.getValue() for r in results.entrySet().toArray()}
            for q in chunk:
                found = hits.get(q["id"], [])
                f.write(json.dumps([q["id"], [h.docid for h in found], [float(h.score) for h in found]],
                                   ensure_ascii=False) + "\n")
            progress.write_text(str(start + len(chunk)))
    return {**info, "documents": int(searcher.get_total_num_docs())}


def _first_failing(searcher: object, jmap: object, jint: object, chunk: list[dict[str, Any]], k: int) -> str | None:
    """The first query of ``chunk`` whose search fails alone, and Lucene's reason (None when none does)."""
    for q in chunk:
        m = jmap()  # type: ignore[operator]
        for term, weight in q["vector"].items():
            m.put(term, jint(int(weight)))  # type: ignore[operator]
        try:
            searcher.search(m, k)  # type: ignore[attr-defined]
        except Exception as e:
            return f"query {q['id']!r} ({len(q['vector'])} terms): {e}"
    return None


def main(argv: list[str]) -> int:
    _die_with_parent()
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    heap = int(argv[1]) if len(argv) > 1 else 2**30
    info = {"index": _index, "search": _search, "impact_search": _impact_search}[req["op"]](req, heap)
    import resource

    info["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB
    Path(argv[0]).with_suffix(".done.json").write_text(json.dumps(info), encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except Exception as e:  # reported to the parent as one line
        print(f"lucene worker failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
