"""BM25 search gives pyserini's hits bit for bit: the worker's own Lucene search (no stored document loaded per
hit) against ``LuceneSearcher.batch_search`` on a corpus made of ties, and its tie adjustment against a plain
transcription of Anserini's ScoreTiesAdjusterReranker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.retrievers.lucene_worker import adjust_ties


def _anserini_adjust(scores: np.ndarray) -> np.ndarray:
    """ScoreTiesAdjusterReranker.rerank as its Java reads, one score at a time."""
    s = scores.astype(np.float32).copy()
    dup = 0
    for i in range(len(s)):
        s[i] = np.float32(np.floor(np.float64(s[i]) * 10000.0 + 0.5) / 10000.0)
        if i == 0 or np.float32(s[i - 1] - s[i]) > np.float32(1e-4):
            dup = 0
        else:
            dup += 1
            s[i] = np.float32(s[i] - np.float32(np.float32(1e-6) * np.float32(dup)))
    return s


@pytest.mark.parametrize("seed", range(6))
def test_tie_adjustment_equals_anserinis_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    # exact ties, gaps of one rounding step, gaps just over it, long runs where 1e-6 * run passes a gap
    steps = rng.choice([0.0, 0.0, 0.0, 1e-4, 1.2e-4, 2e-4, 5e-5, 3e-3, 0.05], size=400)
    scores = (12.0 - np.cumsum(steps)).astype(np.float32)
    scores += rng.normal(0, 1e-6, size=400).astype(np.float32) * (rng.random(400) < 0.3)
    scores = np.sort(scores)[::-1].copy()
    assert np.array_equal(adjust_ties(scores).view(np.uint32), _anserini_adjust(scores).view(np.uint32))
    long_run = np.full(300, 3.25, dtype=np.float32)
    long_run[150:] -= np.float32(2e-4)  # within reach of a run 150 long: 1.5e-4 lowered, the gap is then 5e-5
    assert np.array_equal(adjust_ties(long_run).view(np.uint32), _anserini_adjust(long_run).view(np.uint32))
    assert adjust_ties(np.zeros(0, np.float32)).size == 0


COMPARE = r"""
import json, sys
from harness.retrievers import jvm
from harness.retrievers.lucene_worker import _Hits
index, fields, queries = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ref = jvm.lucene_searcher_class()(index)
ref.set_bm25(0.9, 0.4)
ours = _Hits(index, 0.9, 0.4, fields)
out = []
for k in (3, 7, 1000):
    extra = {"fields": fields} if fields else {}
    got = ref.batch_search(list(queries.values()), list(queries), k=k, threads=2, **extra)
    for qid, text in queries.items():
        theirs = [(h.docid, float(h.score)) for h in got.get(qid, [])]
        mine = list(zip(*ours.search(text, k)))
        out.append([k, qid, theirs == mine, len(theirs)])
print("RESULT " + json.dumps(out))
"""


@pytest.mark.java
def test_worker_search_equals_pyserini_on_a_corpus_of_ties(tmp_path, monkeypatch):
    from harness.datasets import resolve_dataset
    from harness.retrievers.lucene import BM25Retriever
    from harness.retrievers.registry import resolve_retriever

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "ties"
    (folder / "qrels").mkdir(parents=True)
    words = ["apple", "banana", "cherry", "date", "elder", "fig", "grape"]
    docs = []
    for i in range(60):  # many copies of few texts: ties at every depth, across the k boundaries
        text = " ".join(words[j % len(words)] for j in range(i % 5, i % 5 + 1 + i % 3))
        docs.append({"_id": f"d{(i * 37) % 60:02d}", "title": words[i % 4] if i % 2 else "", "text": text})
    docs.append({"_id": "empty", "title": "", "text": "   "})
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    queries = {"q1": "apple banana", "q2": "cherry", "q3": "fig grape apple", "q4": "the of and", "q5": "date"}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\td0{i}\t1\n" for i, q in enumerate(queries)))
    dataset = resolve_dataset(str(folder))
    for name in ("bm25", "bm25-multifield"):
        retriever = BM25Retriever(resolve_retriever(name))
        retriever.index(dataset)
        out = subprocess.run([sys.executable, "-c", COMPARE, str(retriever.index_dir(dataset)),
                              json.dumps(retriever.fields), json.dumps(queries)],
                             capture_output=True, text=True, timeout=600)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        assert line is not None, out.stderr[-3000:]
        rows = json.loads(line[len("RESULT "):])
        assert all(same for _, _, same, _ in rows), (name, [r for r in rows if not r[2]])
        assert any(n >= 7 for *_, n in rows)  # the lists were long enough to cross a k boundary among ties


@pytest.mark.java
@pytest.mark.realdata
@pytest.mark.slow
def test_scifact_bm25_run_equals_pyserini_searcher(shared_data, tmp_path):
    """Every SciFact test query, 1,000 hits, flat collection: the run file equals pyserini's search."""
    from harness.runner import run
    from harness.trec import read_run

    (rec,) = run(["bm25"], ["beir/scifact"], ["ndcg@10"], tmp_path / "r", log=lambda m: None)
    ours = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    index = Path(rec.retriever_provenance["index"])
    qrels = {ln.split("\t")[0] for ln in (shared_data / "beir/scifact/qrels/test.tsv").read_text().splitlines()[1:]}
    queries = {q["_id"]: q["text"] for q in map(json.loads, (shared_data / "beir/scifact/queries.jsonl").open())
               if q["_id"] in qrels}
    code = ("import json, sys\nfrom harness.retrievers import jvm\n"
            "s = jvm.lucene_searcher_class()(sys.argv[1]); s.set_bm25(0.9, 0.4)\n"
            "q = json.loads(sys.argv[2])\n"
            "hits = s.batch_search(list(q.values()), list(q), k=1000, threads=2)\n"
            "print('RESULT ' + json.dumps({k: [[h.docid, float(h.score)] for h in v] for k, v in hits.items()}))\n")
    out = subprocess.run([sys.executable, "-c", code, str(index), json.dumps(queries)], capture_output=True,
                         text=True, timeout=900)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, out.stderr[-3000:]
    theirs = json.loads(line[len("RESULT "):])
    assert set(ours) == set(queries)
    for qid in queries:
        # the run file holds six decimals, as Pyserini's: compare what it wrote against pyserini's scores so
        assert list(ours[qid]) == [d for d, _ in theirs.get(qid, [])], qid
        assert [round(s, 6) for s in ours[qid].values()] == [round(s, 6) for _, s in theirs.get(qid, [])], qid
