"""Data-parallel encoding under torchrun (gloo on CPU): shards dealt to 2 ranks, rank 0 merges."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.results.records import read_record
from harness.runner import run
from harness.settings import Execution
from tests.conftest import make_tiny_beir

pytestmark = pytest.mark.slow


def test_two_rank_encoding_equals_single_process(tmp_path, tiny_bert_dir):
    data = make_tiny_beir(tmp_path / "data", n_docs=50, n_queries=6)
    single = run([f"hf:{tiny_bert_dir}"], [str(data)], ["ndcg@10", "recall@20"], tmp_path / "single",
                 execution=Execution(shard_size=10), log=lambda m: None)[0]
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "dist-cache"), "OMP_NUM_THREADS": "1",
           "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "harness", "run", "--retriever", f"hf:{tiny_bert_dir}", "--dataset", str(data),
           "--metric", "ndcg@10", "--metric", "recall@20", "--shard-size", "10", "--device", "cpu",
           "--output-dir", str(tmp_path / "dist")]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    (record_path,) = (tmp_path / "dist").rglob("*.json")
    record = read_record(record_path)
    assert record.metrics == pytest.approx(single.metrics, abs=1e-9)
    assert record.index["processes"] == 2
    assert record.index["shards"] == 5
    assert record.index["shards_encoded_by_this_process"] == 3  # rank 0 took shards 0, 2, 4
    seals = [p for p in (tmp_path / "dist-cache" / "embeddings").rglob("shard-*.json") if ".ids" not in p.suffixes]
    assert len(seals) == 5
