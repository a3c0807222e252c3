"""SPLADE through a Lucene impact index, on a tiny random masked-language model made here: the weights are
SPLADE's (checked against a by-hand computation), and Lucene's search equals a brute-force dot product of
the quantised weights."""

from __future__ import annotations

import shutil

import pytest

from harness.errors import HarnessError
from harness.retrievers.registry import resolve_retriever
from harness.retrievers.sparse import quantise
from harness.runner import run
from harness.trec import read_run


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from tests.conftest import make_tiny_bert, word_tokenizer

    root = tmp_path_factory.mktemp("splade")
    base = make_tiny_bert(root / "base")
    folder = root / "mlm"
    folder.mkdir()
    shutil.copy(base / "vocab.txt", folder / "vocab.txt")
    tok = word_tokenizer(folder / "vocab.txt")
    torch.manual_seed(5)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=600)
    BertForMaskedLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def weights_by_hand(folder, text: str, max_length: int) -> dict[str, int]:
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForMaskedLM.from_pretrained(str(folder)).eval()
    f = tok(text, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.inference_mode():
        logits = model(**f).logits[0]
    pooled = torch.log1p(torch.relu(logits)).max(dim=0).values
    vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
    return quantise({vocab[i]: float(pooled[i]) for i in torch.nonzero(pooled).flatten().tolist()}, 5, 256)


def test_quantisation_is_pyserinis():
    assert quantise({"a": 1.0, "b": 0.005, "c": 0.0294}, 5, 256) == {"a": 51, "c": 2}  # round(0.256)=0 dropped


@pytest.mark.java
def test_impact_index_search_equals_brute_force(tiny_mlm, tmp_path):
    from harness.data.beir import doc_text
    from harness.datasets import resolve_dataset
    from tests.conftest import make_tiny_beir

    ds_dir = make_tiny_beir(tmp_path / "own", seed=91)
    out = tmp_path / "r"
    (rec,) = run([f"sparse:{tiny_mlm}"], [str(ds_dir)], ["ndcg@10"], out, log=lambda m: None)
    assert rec.retriever.startswith("sparse:mlm#") and rec.index["index"] == "built"
    assert rec.documents_searched == 40
    ds = resolve_dataset(str(ds_dir), output_dir=out)
    docs = {d.doc_id: weights_by_hand(tiny_mlm, doc_text(d), 512) for d in ds.corpus()}
    got = read_run(out / rec.dataset / rec.split / rec.run_file)
    for qid, text in ds.queries().items():
        q = weights_by_hand(tiny_mlm, text, 256)
        brute = {d: float(sum(w * v.get(t, 0) for t, w in q.items())) for d, v in docs.items()}
        expected = {d: s for d, s in brute.items() if s > 0}
        assert got[qid] == expected
        assert list(got[qid].values()) == sorted(got[qid].values(), reverse=True)
    (again,) = run([f"sparse:{tiny_mlm}"], [str(ds_dir)], ["ndcg@10"], out, log=lambda m: None, force=True)
    assert again.index["index"] == "reused" and again.metrics == rec.metrics


def test_a_model_without_an_mlm_head_is_refused(tiny_bert_dir, tiny_beir, tmp_path):
    with pytest.raises(HarnessError, match="masked-language-model head"):
        run([f"sparse:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", log=lambda m: None)


def test_splade_pp_ed_is_registered_with_pyserinis_recipe():
    spec = resolve_retriever("splade-pp-ed")
    assert spec.kind == "sparse" and spec.model == "naver/splade-cocondenser-ensembledistil"
    assert spec.params == {"doc_max_length": 512, "query_max_length": 256, "weight_range": 5, "quant_range": 256}


def test_dense_recipe_settings_are_refused_not_ignored(tiny_mlm, tiny_beir, tmp_path):
    from harness.settings import EncodeSettings

    with pytest.raises(HarnessError, match="--max-length does not apply"):
        run([f"sparse:{tiny_mlm}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", log=lambda m: None,
            settings=EncodeSettings(max_length=64))
