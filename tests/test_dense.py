"""Dense encoding path on tiny random BERTs made by fixtures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.retrievers.config import CONTRIEVER, read_encoder_config
from harness.retrievers.encoder import HFEncoder
from tests.conftest import make_tiny_bert

TEXTS = ["the protein of the cell", "cancer", "a study of gene expression in tumor cells and patients with data",
         "", "retrieval"]


def _direct_mean_pool(model_dir, texts, max_length=512):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.no_grad():
        for t in texts:  # one at a time: no padding involved at all
            enc = tok(t, return_tensors="pt", truncation=True, max_length=max_length)
            hidden = model(**enc).last_hidden_state[0]
            mask = enc["attention_mask"][0].bool()
            out.append(hidden[mask].mean(dim=0).numpy())
    return np.stack(out)


def test_contriever_path_equals_direct_masked_mean_pool(tiny_bert_dir):
    enc = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=64, progress=False)
    got = enc.encode(TEXTS, "doc")
    expected = _direct_mean_pool(tiny_bert_dir, TEXTS)
    assert got.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_batching_does_not_change_vectors(tiny_bert_dir):
    small = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=8, progress=False).encode(TEXTS)
    large = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=10_000, progress=False).encode(TEXTS)
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-5)


def test_default_token_budget_by_device_precision_and_width(tiny_bert_dir):
    from harness.retrievers.compute import default_batch_tokens

    cpu = torch.device("cpu")
    assert default_batch_tokens(cpu, "fp32", 384) == 4096  # MiniLM: its Q/K/V output stays under 32 MiB
    assert default_batch_tokens(cpu, "fp32", 768) == 2048  # BERT-base: 4096 tokens would pass it
    assert default_batch_tokens(cpu, "bf16x3", 384) == 2048
    assert default_batch_tokens(torch.device("cuda"), "bf16", 768) == 16384
    enc = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", precision="fp32", progress=False)
    assert enc.batch_tokens == default_batch_tokens(cpu, "fp32", enc.dim)


def test_token_budget_batches_group_similar_lengths(tiny_bert_dir):
    enc = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=100, max_batch=50, progress=False)
    lengths = np.array([3, 50, 4, 49, 5, 2])
    batches = enc.batches(lengths)
    assert sorted(int(i) for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) * lengths[b].max() <= 100 or len(b) == 1


def test_sentence_transformers_files_are_read(tmp_path):
    folder = make_tiny_bert(tmp_path / "st", st_files=True)
    cfg = read_encoder_config(folder)
    assert (cfg.pooling, cfg.normalize, cfg.similarity, cfg.max_length) == ("cls", True, "cos", 32)
    vectors = HFEncoder(str(folder), cfg, device="cpu", progress=False).encode(TEXTS[:3])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_fixture_tokenizer_knows_its_words(tiny_bert_dir):
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(tiny_bert_dir)("the protein of the cell")["input_ids"]
    assert 1 not in ids  # no [UNK]: the fixture's vocabulary is really used


def test_plain_model_gets_contriever_conventions(tiny_bert_dir):
    cfg = read_encoder_config(tiny_bert_dir)
    assert (cfg.pooling, cfg.normalize, cfg.similarity, cfg.max_length) == ("mean", False, "dot", 512)


@pytest.mark.realdata
def test_minilm_config_from_shared():
    from tests.conftest import MINILM

    if not MINILM.is_dir():
        pytest.skip("../shared/models is not present")
    cfg = read_encoder_config(MINILM)
    assert (cfg.pooling, cfg.normalize, cfg.max_length) == ("mean", True, 256)


def test_cpu_threads_follow_affinity_and_local_ranks(monkeypatch):
    import os

    from harness.distributed import cpu_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7}, raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert cpu_threads() == 8
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun ranks on this node share the cores
    assert cpu_threads() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
    assert cpu_threads() == 1


def test_out_of_memory_halves_the_budget_and_retries_with_the_same_vectors(tiny_bert_dir):
    """A CUDA out-of-memory error is simulated on CPU: a batch of more than two texts 'does not fit'. The
    encoder halves its token budget, splits the batch, and gives the vectors of an unconstrained run (batch
    grouping changes float32 rounding only); every back-off is recorded, and one text that cannot fit alone
    is refused."""
    from harness.errors import HarnessError

    texts = TEXTS * 3
    plain = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=4096, progress=False)
    expected = plain.encode(texts, "doc")
    enc = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=4096, progress=False)
    real = enc.forward

    def tight(input_ids, mask):
        if input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(input_ids, mask)

    enc.forward = tight
    got = enc.encode(texts, "doc")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert enc.backoffs and enc.batch_tokens < 4096 and all(b["batch_rows"] > 2 for b in enc.backoffs)

    def never(input_ids, mask):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    enc.forward = never
    with pytest.raises(HarnessError, match="does not fit in cpu's memory even alone"):
        enc.encode(["one text"], "doc")


def test_a_cublas_allocation_failure_backs_off_and_the_cache_is_freed_outside_the_except(tiny_bert_dir,
                                                                                          monkeypatch):
    """cuBLAS's allocation failures surface as a RuntimeError, not torch's OutOfMemoryError: they back off too.
    The cached memory is released with no exception being handled (a traceback in flight holds the failed
    batch's tensors, so releasing inside the except frees nothing of them); other errors are not swallowed."""
    import sys

    from harness import devices

    handling: list = []
    monkeypatch.setattr(devices, "release_cached_memory", lambda device: handling.append(sys.exc_info()[0]))
    enc = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=4096, progress=False)
    real = enc.forward

    def tight(input_ids, mask):
        if input_ids.shape[0] > 2:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`")
        return real(input_ids, mask)

    enc.forward = tight
    enc.encode(TEXTS * 3, "doc")
    assert enc.backoffs and handling and all(h is None for h in handling)

    def broken(input_ids, mask):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    enc.forward = broken
    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        enc.encode(TEXTS, "doc")


def test_gpu_token_budget_is_checked_against_the_devices_free_memory(tiny_bert_dir, monkeypatch):
    """The planner's budget on a GPU: an estimate of a batch's activation memory against the device's free
    memory, lowered (halved) until it fits and recorded; enough memory leaves it alone. The device's free
    memory is stood in for on the CPU; the vectors are those of the unlowered budget (grouping only)."""
    from harness.retrievers.compute import plan
    from harness.retrievers.encoder import HFEncoder as Encoder

    cfg = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12}
    # BERT-base, 16384 tokens of rows up to 512: 4 bytes x 16384 x (6 x 768 + 3072 + 2 x 12 x 512) = 1.3 GB
    assert plan.activation_bytes(16384, cfg, 512) == 4 * 16384 * (6 * 768 + 3072 + 2 * 12 * 512)
    assert plan.fit_gpu_budget(16384, cfg, 512, 80 * 2**30) == (16384, None)
    budget, note = plan.fit_gpu_budget(10**6, cfg, 512, 8 * 2**30)
    assert budget < 10**6 and plan.activation_bytes(budget, cfg, 512) <= 0.8 * 8 * 2**30
    assert plan.activation_bytes(budget * 2, cfg, 512) > 0.8 * 8 * 2**30 or budget * 2 > 10**6
    assert note["batch_tokens_asked"] == 10**6 and note["batch_tokens"] == budget
    assert plan.fit_gpu_budget(4096, cfg, 512, 1)[0] == 512  # never below one text; the back-off refuses it

    texts = TEXTS * 3
    expected = Encoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=4096, progress=False).encode(texts)
    monkeypatch.setattr("harness.retrievers.encoder.device_free_bytes", lambda device: 200_000)
    enc = Encoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", batch_tokens=4096, progress=False)
    assert enc.budget_fit is not None and enc.batch_tokens < 4096 == enc.budget_fit["batch_tokens_asked"]
    np.testing.assert_allclose(enc.encode(texts), expected, rtol=1e-5, atol=1e-6)
