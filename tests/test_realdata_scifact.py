"""The published SciFact numbers, reproduced on the real data in ../shared (marked realdata + slow)."""

from __future__ import annotations

import pytest

from harness.runner import run
from tests.conftest import MINILM

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


@pytest.mark.java
@pytest.mark.parametrize("retriever,ndcg,recall", [("bm25", 0.6789, 0.9253), ("bm25-multifield", 0.6647, 0.9076)])
def test_bm25_matches_pyserini_2cr(shared_data, tmp_path, retriever, ndcg, recall):
    (rec,) = run([retriever], ["beir/scifact"], ["ndcg@10", "recall@100"], tmp_path, log=lambda m: None)
    assert rec.metrics["ndcg@10"] == pytest.approx(ndcg, abs=0.0005)
    assert rec.metrics["recall@100"] == pytest.approx(recall, abs=0.0005)
    assert rec.num_queries == 300 and rec.corpus["documents"] == 5183


def test_minilm_matches_beir_pipeline(shared_data, tmp_path):
    if not MINILM.is_dir():
        pytest.skip("../shared/models is not present")
    name = f"hf:{MINILM}"
    (rec,) = run([name], ["beir/scifact"], ["ndcg@10", "recall@100"], tmp_path, log=lambda m: None)
    assert rec.metrics["ndcg@10"] == pytest.approx(0.6451, abs=0.001)
    assert rec.metrics["recall@100"] == pytest.approx(0.925, abs=0.002)
    logs: list[str] = []
    (again,) = run([name], ["beir/scifact"], ["ndcg@10", "recall@100"], tmp_path, log=logs.append)
    assert again.metrics == rec.metrics and any("reused" in m for m in logs)
