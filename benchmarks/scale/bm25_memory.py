"""Peak memory of BM25 (the harness process and its Lucene worker, each measured alone) on SciFact and on
synthetic corpora of ArguAna's size and shape (8,674 argument-length documents; 1,406 queries that are
themselves whole arguments) and of 10,000 documents; the target is under 2 GB for each process. Also prints
the JVM heap limit the harness chose.

    python -m benchmarks.scale.bm25_memory
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from benchmarks._common import FIGURES, SCIFACT, machine, measure, stamp


def synthetic(folder: Path, n_docs: int, n_queries: int, words_per_doc: int, words_per_query: int,
              seed: int = 0) -> Path:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(30_000)]
    weights = [1 / (i + 1) for i in range(len(vocab))]  # Zipf-like, as text is
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            text = " ".join(rng.choices(vocab, weights, k=rng.randint(words_per_doc // 2, words_per_doc * 3 // 2)))
            f.write(json.dumps({"_id": f"d{i}", "title": " ".join(rng.choices(vocab, weights, k=6)), "text": text})
                    + "\n")
    with open(folder / "queries.jsonl", "w") as f, open(folder / "qrels" / "test.tsv", "w") as q:
        q.write("query-id\tcorpus-id\tscore\n")
        for j in range(n_queries):
            f.write(json.dumps({"_id": f"q{j}", "text": " ".join(rng.choices(vocab, weights, k=words_per_query))})
                    + "\n")
            q.write(f"q{j}\td{rng.randrange(n_docs)}\t1\n")
    return folder


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    print(f"# bm25_memory  {stamp()}  {machine()}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        corpora = [("arguana-shaped (8,674 docs, 1,406 argument queries)", synthetic(t / "arg", 8674, 1406, 170, 170)),
                   ("10k documents, short queries", synthetic(t / "10k", 10_000, 1000, 120, 8, seed=1))]
        if SCIFACT.is_dir():
            corpora.insert(0, ("SciFact (5,183 docs, 300 queries)", SCIFACT))
        for name, data in corpora:
            r = measure("harness_bm25", {"HARNESS_CACHE": f"{tmp}/cache", "HARNESS_OFFLINE": "1", "TQDM_DISABLE": "1"},
                        dataset=str(data), output=f"{tmp}/out-{len(rows)}")
            res = r["result"]
            rows.append({"corpus": name, "harness_peak_rss_mb": round(r["peak_rss_mb"], 1), **res,
                         "wall_s": round(r["wall_s"], 1)})
    print(f"{'corpus':52} {'docs':>6} {'harness MB':>10} {'index JVM MB':>12} {'search JVM MB':>13} {'heap MB':>8}"
          f" {'wall s':>7}")
    for r in rows:
        print(f"{r['corpus']:52} {r['documents']:6d} {r['harness_peak_rss_mb']:10.0f} "
              f"{r['index_worker_peak_rss_mb']:12.0f} {r['search_worker_peak_rss_mb']:13.0f} {r['heap_mb']:8.0f} "
              f"{r['wall_s']:7.1f}")
    worst = max(max(r["harness_peak_rss_mb"], r["index_worker_peak_rss_mb"], r["search_worker_peak_rss_mb"])
                for r in rows)
    print(f"largest process: {worst:.0f} MB ({'under' if worst < 2048 else 'OVER'} the 2 GB target)")
    FIGURES.update(rows=rows, largest_process_mb=worst)


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
