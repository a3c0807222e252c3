"""The fused CPU forward for BERT encoders against transformers' own forward, and how the compute plan
(precision, forward) is chosen and recorded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.retrievers.compute import plan_compute
from harness.retrievers.compute.fused_bert import FusedBertForward, onednn_works, unsupported_reason
from harness.retrievers.config import CONTRIEVER, read_encoder_config
from harness.retrievers.encoder import HFEncoder
from harness.settings import EncodeSettings, Execution
from tests.conftest import MINILM, make_tiny_bert

CPU = Execution(device="cpu", progress=False)

TEXTS = ["the protein of the cell", "cancer", "a study of gene expression in tumor cells and patients with data",
         "", "retrieval of the dense query document vector search score rank"]


def _random_bert(hidden_act: str = "gelu", seed: int = 0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, hidden_act=hidden_act)
    model = BertModel(config).eval()
    with torch.no_grad():  # non-trivial layer norms and token-type row, so a wrong term shows up
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "token_type" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


BACKENDS = [pytest.param("addmm", id="addmm"),
            pytest.param("onednn", id="onednn", marks=pytest.mark.skipif(not onednn_works(), reason="no oneDNN"))]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("hidden_act", ["gelu", "relu"])
@pytest.mark.parametrize("ffn_block", [7, 512])
def test_fused_forward_matches_transformers_with_padding(hidden_act, ffn_block, backend):
    model = _random_bert(hidden_act)
    ids = torch.randint(5, 100, (4, 19))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[3, 2:] = 0
    ids[mask == 0] = 0
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    fused = FusedBertForward(model, ffn_block=ffn_block, backend=backend)
    assert fused.backend == backend
    got = fused(ids, mask)
    keep = mask.bool()
    assert got.shape == expected.shape
    torch.testing.assert_close(got[keep], expected[keep], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_forward_without_padding_takes_the_unmasked_path(backend):
    model = _random_bert()
    ids = torch.randint(5, 100, (3, 12))
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).last_hidden_state
    got = FusedBertForward(model, backend=backend)(ids, mask)
    if backend == "onednn":
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    else:  # the same operations in the same order: bit for bit
        assert torch.equal(got, expected)


@pytest.mark.parametrize("change, reason", [
    ({"model_type": "roberta"}, "model_type"),
    ({"position_embedding_type": "relative_key"}, "position_embedding_type"),
    ({"hidden_act": "gelu_new"}, "hidden_act"),
    ({"is_decoder": True}, "decoder"),
    ({"auto_map": {"AutoModel": "x.Y"}}, "own modelling code"),
])
def test_unsupported_configs_say_why(change, reason):
    base = {"model_type": "bert", "hidden_act": "gelu", "hidden_size": 32, "num_attention_heads": 4}
    assert unsupported_reason(base) is None
    assert reason in unsupported_reason({**base, **change})


def test_fused_forward_refuses_other_models():
    from transformers import RobertaConfig, RobertaModel

    model = RobertaModel(RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32))
    with pytest.raises(ValueError, match="not transformers' BertModel"):
        FusedBertForward(model)


def test_plan_compute_choices(tiny_bert_dir, tmp_path):
    fused = "fused-bert+onednn" if onednn_works() else "fused-bert+addmm"
    assert plan_compute(tiny_bert_dir, "cpu").to_dict() == {"device": "cpu", "precision": "fp32", "forward": fused}
    assert plan_compute(tiny_bert_dir, "cpu", forward="transformers").forward == "transformers"
    assert plan_compute(tiny_bert_dir, "cpu", precision="bf16").forward == "transformers"
    with pytest.raises(HarnessError, match="fp16 needs a CUDA device"):
        plan_compute(tiny_bert_dir, "cpu", precision="fp16")
    with pytest.raises(HarnessError, match="--precision must be one of"):
        plan_compute(tiny_bert_dir, "cpu", precision="int8")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    assert plan_compute(other, "cpu").forward == "transformers"


def test_encoder_vectors_equal_with_either_forward(tiny_bert_dir):
    fused = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=40, progress=False)
    plain = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=40, forward="transformers",
                      progress=False)
    assert fused.compute.forward.startswith("fused-bert") and plain.compute.forward == "transformers"
    np.testing.assert_allclose(fused.encode(TEXTS), plain.encode(TEXTS), rtol=1e-5, atol=1e-6)


def test_bf16_on_cpu_is_close_but_not_the_same(tmp_path):
    folder = make_tiny_bert(tmp_path / "bert", hidden=64, layers=2)
    fp32 = HFEncoder(str(folder), CONTRIEVER, device="cpu", progress=False).encode(TEXTS)
    bf16 = HFEncoder(str(folder), CONTRIEVER, device="cpu", precision="bf16", progress=False).encode(TEXTS)
    assert bf16.dtype == np.float32
    assert not np.array_equal(fp32, bf16)
    cos = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() > 0.99


def test_precision_is_in_the_cache_key_and_the_forward_in_the_seal(tiny_bert_dir, tiny_beir):
    from harness.datasets import resolve_dataset
    from harness.retrievers.registry import resolve_retriever

    spec, ds = resolve_retriever(str(tiny_bert_dir)), resolve_dataset(str(tiny_beir))
    fp32 = spec.load(execution=CPU)
    plain = spec.load(EncodeSettings(forward="transformers"), CPU)
    bf16 = spec.load(EncodeSettings(precision="bf16"), CPU)
    # every requested computation has its own store, the reference included
    assert len({fp32.corpus_store(ds).dir, plain.corpus_store(ds).dir, bf16.corpus_store(ds).dir}) == 3
    info = fp32.index(ds)
    assert info.computed_with == [{**fp32.compute.to_dict(), "harness": info.computed_with[0]["harness"]}]
    assert fp32.compute.forward.startswith("fused-bert")
    assert plain.index(ds).embeddings == "encoded" and fp32.index(ds).embeddings == "reused"
    assert fp32.changed_settings() == {} and plain.changed_settings() == {"forward": "transformers"}


@pytest.mark.realdata
def test_minilm_fused_forward_matches_transformers(shared_data):
    from harness.data.beir import doc_text, iter_corpus

    if not MINILM.is_dir():
        pytest.skip("../shared/models/all-MiniLM-L6-v2 is not present")
    docs = [doc_text(d) for _, d in zip(range(96), iter_corpus(shared_data / "beir" / "scifact" / "corpus.jsonl"),
                                        strict=False)]
    cfg = read_encoder_config(MINILM)
    fused = HFEncoder(str(MINILM), cfg, device="cpu", progress=False)
    plain = HFEncoder(str(MINILM), cfg, device="cpu", forward="transformers", progress=False)
    assert fused.compute.forward.startswith("fused-bert")
    np.testing.assert_allclose(fused.encode(docs), plain.encode(docs), rtol=0, atol=1e-5)
