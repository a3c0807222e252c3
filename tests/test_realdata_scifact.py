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


def test_minilm_with_an_hnsw_index_is_its_own_record(shared_data, tmp_path):
    """`harness run --index hnsw` on SciFact with MiniLM: the vectors are the exact run's (reused from the
    cache), the record says approximate and gives its recall@100 against exact, the exact record is untouched."""
    from harness.settings import EncodeSettings

    if not MINILM.is_dir():
        pytest.skip("../shared/models is not present")
    name = f"hf:{MINILM}"
    (exact,) = run([name], ["beir/scifact"], None, tmp_path, log=lambda m: None)
    exact_file = tmp_path / "beir/scifact/test" / exact.run_file.replace(".trec", ".json")
    before = exact_file.read_bytes()
    logs: list[str] = []
    (approx,) = run([name], ["beir/scifact"], None, tmp_path, settings=EncodeSettings(index="hnsw"), log=logs.append)
    assert exact_file.read_bytes() == before
    assert any("embeddings reused" in m for m in logs)
    search = approx.retriever_provenance["search"]
    assert approx.settings == {"index": "hnsw"} and search["approximate"] is True
    assert 0.99 <= search["recall@100_vs_exact"] <= 1.0
    assert approx.metrics["ndcg@10"] == pytest.approx(exact.metrics["ndcg@10"], abs=0.002)
    assert approx.documents_searched == 5183
