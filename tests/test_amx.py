"""bf16x3 on AMX: the kernel against float64, the fused forward built on it against transformers', and how
the compute plan picks it (or says why not). The kernel tests skip on CPUs without AMX; the planning
tests run everywhere."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.retrievers.compute import amx, plan_compute
from harness.retrievers.compute.fused_bert import FusedBertForward
from harness.retrievers.config import read_encoder_config
from harness.retrievers.encoder import HFEncoder
from harness.settings import EncodeSettings
from tests.conftest import MINILM, make_tiny_bert

needs_amx = pytest.mark.skipif(not amx.available(), reason=f"bf16x3 kernel unavailable: {amx.unavailable_reason()}")


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.double() - want).abs().max() / want.abs().max())


@needs_amx
@pytest.mark.parametrize("m, k, n", [(1, 32, 32), (33, 64, 96), (130, 384, 64), (300, 96, 160)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_kernel_matches_float64_to_bf16x3_accuracy(m, k, n, with_bias):
    gen = torch.Generator().manual_seed(m + k + n)
    x, w = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen)
    b = torch.randn(n, generator=gen) if with_bias else None
    want = x.double() @ w.double().t() + (b.double() if b is not None else 0)
    got = amx.PackedWeight(w)(x, b)
    assert got.dtype == torch.float32 and got.shape == (m, n)
    err = _relative_error(got, want)
    assert err < 3e-5
    # the low parts matter: one bf16 product is ~100x further off
    plain = (x.bfloat16().double() @ w.bfloat16().double().t() + (b.double() if b is not None else 0))
    assert _relative_error(plain.float(), want) > 30 * err


@needs_amx
def test_kernel_writes_into_out_rows_and_checks_shapes():
    gen = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(70, 64, generator=gen), torch.randn(32, 64, generator=gen), torch.randn(32, generator=gen)
    packed = amx.PackedWeight(w)
    out = torch.full((100, 32), 7.0)
    packed(x, b, out=out[10:80])
    assert torch.equal(out[:10], torch.full((10, 32), 7.0)) and torch.equal(out[80:], torch.full((20, 32), 7.0))
    torch.testing.assert_close(out[10:80], x @ w.t() + b, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="float32 \\[rows, 64\\]"):
        packed(x[:, :32])
    with pytest.raises(ValueError, match="multiples of 32"):
        amx.PackedWeight(torch.randn(30, 64))
    with pytest.raises(ValueError, match="bias must have 32"):
        packed(x, torch.zeros(31))


@needs_amx
@pytest.mark.parametrize("hidden_act", ["gelu", "relu"])
@pytest.mark.parametrize("ffn_block", [7, 512])
def test_fused_forward_in_bf16x3_matches_transformers_with_padding(hidden_act, ffn_block):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=3, num_attention_heads=4,
                                 intermediate_size=128, max_position_embeddings=64, hidden_act=hidden_act)).eval()
    ids = torch.randint(5, 100, (4, 19))
    mask = torch.ones_like(ids)
    mask[1, 11:] = 0
    mask[3, 2:] = 0
    with torch.inference_mode():
        want = model.double()(input_ids=ids, attention_mask=mask).last_hidden_state
        model.float()
        fp32 = FusedBertForward(model, ffn_block=ffn_block)(ids, mask)
        got = FusedBertForward(model, ffn_block=ffn_block, backend="amx")(ids, mask)
    keep = mask.bool()
    err, err32 = (float((h.double() - want)[keep].abs().max()) for h in (got, fp32))
    assert err < 2e-4
    assert err > err32  # it is the bf16x3 path that ran, not float32


@needs_amx
def test_fused_forward_reuses_its_projection_buffer_without_mixing_batches():
    """The bf16x3 forward keeps one query/key/value buffer across layers and batches: a smaller batch after
    a larger one, and the larger one again, give what a fresh forward gives, and earlier outputs stay."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                 intermediate_size=128, max_position_embeddings=64)).eval()
    big, small = torch.randint(5, 100, (6, 23)), torch.randint(5, 100, (2, 9))
    with torch.inference_mode():
        forward = FusedBertForward(model, backend="amx")
        first = forward(big, torch.ones_like(big))
        kept = first.clone()
        got_small = forward(small, torch.ones_like(small))
        again = forward(big, torch.ones_like(big))
        fresh_small = FusedBertForward(model, backend="amx")(small, torch.ones_like(small))
    assert forward._per_thread.qkv.shape == (6 * 23, 3 * 64)
    assert torch.equal(first, kept) and torch.equal(again, kept)
    assert torch.equal(got_small, fresh_small)


@needs_amx
def test_plan_runs_bf16x3_only_when_asked_for(tmp_path):
    folder = make_tiny_bert(tmp_path / "bert", hidden=32, layers=1)
    # fp32 is the reference and the default, even where bf16x3 runs
    assert plan_compute(folder, "cpu").precision == "fp32"
    assert plan_compute(folder, "cpu", precision="bf16x3").to_dict() == {
        "device": "cpu", "precision": "bf16x3", "forward": "fused-bert+amx"}
    assert plan_compute(folder, "cpu", forward="transformers").to_dict()["precision"] == "fp32"
    odd = make_tiny_bert(tmp_path / "odd", hidden=16, layers=1)  # 16 is not a multiple of 32
    with pytest.raises(HarnessError, match="not multiples of 32"):
        plan_compute(odd, "cpu", precision="bf16x3")


def test_plan_refuses_bf16x3_where_it_cannot_run_and_says_why(tmp_path, monkeypatch):
    folder = make_tiny_bert(tmp_path / "bert", hidden=32, layers=1)
    monkeypatch.setattr(amx, "unavailable_reason", lambda: "this CPU lacks amx_bf16")
    assert plan_compute(folder, "cpu").precision == "fp32"
    with pytest.raises(HarnessError, match="this CPU lacks amx_bf16; use fp32"):
        plan_compute(folder, "cpu", precision="bf16x3")
    with pytest.raises(HarnessError, match="keeps the model's own forward"):
        plan_compute(folder, "cpu", precision="bf16x3", forward="transformers")


def test_unavailable_reasons(monkeypatch, tmp_path):
    monkeypatch.setattr(amx, "_load", amx._load.__wrapped__)  # no cached answer
    monkeypatch.setattr(amx, "_cpu_flags", lambda: {"avx512f"})
    assert "this CPU lacks amx_tile" in amx.unavailable_reason()
    monkeypatch.setattr(amx, "_cpu_flags", lambda: set(amx.CPU_FLAGS))
    monkeypatch.setattr(amx, "_compiler", lambda: None)
    assert "no C compiler" in amx.unavailable_reason()
    broken = tmp_path / "cc"
    broken.write_text("#!/bin/sh\necho 'cc: error: unrecognized option -mamx-tile' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(amx, "_compiler", lambda: str(broken))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert "unrecognized option -mamx-tile" in amx.unavailable_reason()


@needs_amx
@pytest.mark.realdata
def test_minilm_vectors_in_bf16x3_agree_with_fp32():
    if not MINILM.is_dir():
        pytest.skip("../shared/models/all-MiniLM-L6-v2 absent")
    from harness.data.beir import doc_text, iter_corpus
    from tests.conftest import SHARED

    docs = [doc_text(d) for _, d in zip(range(48), iter_corpus(SHARED / "data" / "beir" / "scifact" / "corpus.jsonl"),
                                        strict=False)]
    cfg = read_encoder_config(MINILM)
    x3 = HFEncoder(str(MINILM), cfg, device="cpu", precision="bf16x3", progress=False)
    fp32 = HFEncoder(str(MINILM), cfg, device="cpu", progress=False)
    assert x3.compute.precision == "bf16x3" and fp32.compute.precision == "fp32"
    a, b = x3.encode(docs), fp32.encode(docs)
    diff = float(np.abs(a - b).max())
    assert 0 < diff < 2e-5  # normalised vectors: ~2e-6 measured (fp32 forwards among themselves: ~2e-7)


@needs_amx
@pytest.mark.realdata
@pytest.mark.slow
def test_scifact_scores_in_bf16x3_equal_fp32(shared_data, tmp_path):
    """The default on this CPU (bf16x3) against plain fp32 on all of SciFact: nDCG@10 the same to 1e-4."""
    if not MINILM.is_dir():
        pytest.skip("../shared/models is not present")
    from harness.runner import run

    metrics = ["ndcg@10", "recall@100"]
    (x3,) = run([f"hf:{MINILM}"], ["beir/scifact"], metrics, tmp_path / "x3", log=lambda m: None,
                settings=EncodeSettings(precision="bf16x3"))
    (fp32,) = run([f"hf:{MINILM}"], ["beir/scifact"], metrics, tmp_path / "fp32", log=lambda m: None)
    assert x3.retriever_provenance["compute"]["precision"] == "bf16x3"
    assert fp32.retriever_provenance["compute"]["precision"] == "fp32"
    assert abs(x3.metrics["ndcg@10"] - fp32.metrics["ndcg@10"]) < 1e-4
    assert abs(x3.metrics["recall@100"] - fp32.metrics["recall@100"]) < 1e-4


@pytest.mark.skipif(amx._compiler() is None, reason="no C compiler")
@pytest.mark.parametrize("body, reason", [
    ("__builtin_trap();", "crashed its probe (signal"),  # a CPU that advertises AMX but faults on it
    ("for (int64_t i = 0; i < M * N; i++) c[i] = 0.f;", "failed its probe"),  # wrong numbers
])
def test_a_kernel_that_crashes_or_lies_is_refused_not_run(tmp_path, body, reason):
    src = tmp_path / "bad.c"
    src.write_text("#include <stdint.h>\n"
                   "int harness_amx_init(void) { return 0; }\n"
                   "int64_t harness_amx_work(int64_t K) { return 64 * K; }\n"
                   "void harness_amx_pack_b(const float *b, int64_t K, int64_t N, uint16_t *out) {}\n"
                   "void harness_amx_gemm(const float *a, const uint16_t *p, const float *bias, float *c, int64_t M,"
                   f" int64_t K, int64_t N, uint16_t *w, int t) {{ {body} }}\n")
    lib = tmp_path / "bad.so"
    subprocess.run([amx._compiler(), "-shared", "-fPIC", str(src), "-o", str(lib)], check=True)
    assert reason in amx._probe_in_child(lib)
    assert not lib.with_suffix(".probed").exists()
