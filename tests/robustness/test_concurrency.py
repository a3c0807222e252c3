"""Two ``harness run`` processes on one results directory and one cache lose nothing and corrupt nothing."""

from __future__ import annotations

import csv
import json

import pytest

from harness.embeddings import EmbeddingStore
from harness.metrics import evaluate, mean
from harness.results.records import load_records
from harness.trec import read_qrels, read_run
from tests.conftest import make_tiny_beir, make_tiny_bert

from . import _proc


@pytest.mark.slow
def test_two_runs_share_results_and_cache(tmp_path, tiny_bert_dir):
    other = make_tiny_bert(tmp_path / "other-bert", seed=1)
    x = make_tiny_beir(tmp_path / "x", n_docs=600, n_queries=10, seed=2)
    y = make_tiny_beir(tmp_path / "y", n_docs=600, n_queries=10, seed=3)
    out, cache = tmp_path / "results", tmp_path / "cache"
    common = ["--output-dir", str(out), "--metric", "ndcg@10", "--metric", "recall@100", "--device", "cpu",
              "--shard-size", "50"]
    # the same pairs in opposite orders: both processes encode the same corpora into the same stores at once
    a = _proc.start(["run", "-r", f"hf:{tiny_bert_dir}", "-r", f"hf:{other}", "-d", str(x), "-d", str(y), *common],
                    cache, tmp_path / "a.log")
    b = _proc.start(["run", "-r", f"hf:{other}", "-r", f"hf:{tiny_bert_dir}", "-d", str(y), "-d", str(x), *common],
                    cache, tmp_path / "b.log")
    rc_a, rc_b = a.wait(timeout=300), b.wait(timeout=300)
    assert (rc_a, rc_b) == (0, 0), ((tmp_path / "a.log").read_text()[-3000:], (tmp_path / "b.log").read_text()[-3000:])

    records, problems = load_records(out)
    assert problems == []
    assert len(records) == 4
    for path, rec in records:
        # every record agrees with the run file beside it: nothing was mixed or half-written
        run = read_run(path.parent / rec.run_file)
        folder = x if rec.dataset_provenance["path"] == str(x.resolve()) else y
        per_query = evaluate(read_qrels(folder / "qrels" / "test.tsv"), run, ["ndcg@10", "recall@100"])
        assert rec.metrics == {m: mean(v) for m, v in per_query.items()}
        assert sorted(run) == [f"q{i}" for i in range(10)] and all(len(d) == 600 for d in run.values())
    with open(out / "leaderboard.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["retriever"], r["dataset"]) for r in rows) == sorted(
        (rec.retriever, rec.dataset) for _, rec in records)
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".part"))]

    stores = [p for p in (cache / "embeddings").iterdir() if p.is_dir()]
    assert len(stores) == 4  # two models x two corpora
    for folder in stores:
        store = EmbeddingStore(cache / "embeddings", json.loads((folder / "manifest.json").read_text())["key"])
        assert store.dir == folder and store.complete
        assert all(store.shard_ok(i) for i in range(12))  # every shard matches its checksum
        assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
