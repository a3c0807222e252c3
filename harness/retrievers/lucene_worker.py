"""The JVM side of BM25, run as its own process: ``python -m harness.retrievers.lucene_worker REQUEST.json``.

Lucene never shares a process with torch: two large native runtimes in one address space is where crashes
that neither library can explain come from, and the JVM would take over Ctrl-C. The parent
(``harness.retrievers.lucene``) writes a request, this worker runs Anserini through pyserini and writes
its answer to files, and the parent reads them. Requests:

- ``{"op": "index", "args": [...]}``: ``IndexCollection`` with those arguments;
- ``{"op": "search", "index", "k1", "b", "fields", "k", "threads", "queries", "output"}``: BM25 search of
  a JSONL file of ``{"id", "text"}`` queries into a TSV of ``qid, docid, score`` (float32 scores written
  so they read back exactly).

Exit status 0 on success; on failure a one-line reason on stderr and status 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _index(req: dict) -> dict:
    from harness.retrievers import jvm

    info = jvm.start_jvm()
    jvm.autoclass("io.anserini.index.IndexCollection").main(req["args"])
    return info


def _search(req: dict) -> dict:
    from harness.retrievers import jvm

    info = jvm.start_jvm()
    searcher = jvm.lucene_searcher_class()(req["index"])
    searcher.set_bm25(float(req["k1"]), float(req["b"]))
    qids, texts = [], []
    with open(req["queries"], encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            qids.append(q["id"])
            texts.append(q["text"])
    kwargs = {"fields": req["fields"]} if req.get("fields") else {}
    out = Path(req["output"])
    with open(out, "w", encoding="utf-8") as f:
        for start in range(0, len(qids), 10_000):  # bounded memory for very large query sets
            batch_ids, batch_texts = qids[start:start + 10_000], texts[start:start + 10_000]
            hits = searcher.batch_search(batch_texts, batch_ids, k=int(req["k"]), threads=int(req["threads"]), **kwargs)
            for qid in batch_ids:
                for h in hits.get(qid, []):
                    f.write(f"{qid}\t{h.docid}\t{float(h.score)!r}\n")
    return info


def main(argv: list[str]) -> int:
    req = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    info = {"index": _index, "search": _search}[req["op"]](req)
    Path(argv[0]).with_suffix(".done.json").write_text(json.dumps(info), encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except Exception as e:  # reported to the parent as one line
        print(f"lucene worker failed: {type(e).__name__}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
