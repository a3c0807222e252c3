"""--precision tf32: float32 weights and activations with TensorFloat-32 matmuls on CUDA during the encode forward
only. A speed mode like bf16: opt-in, recorded in the settings, part of the fingerprint and the embedding cache
key; refused in one line, before any model loads, where there is no CUDA device to run it."""

from __future__ import annotations

import pytest
import torch

from harness.cli import build_parser, main
from harness.cli.common import settings_from_args
from harness.datasets import resolve_dataset
from harness.devices import tensor_float32
from harness.errors import HarnessError
from harness.retrievers.compute import plan as plan_module
from harness.retrievers.compute.plan import Compute, plan_compute
from harness.retrievers.config import CONTRIEVER
from harness.retrievers.encoder import HFEncoder
from harness.retrievers.registry import resolve_retriever
from harness.settings import PRECISIONS, EncodeSettings, Execution, settings_label


def _refusal() -> str:
    """The refusal off CUDA: bf16x3 is offered only where it runs (AMX)."""
    from harness.retrievers.compute import amx

    return ("--precision tf32 needs a CUDA device (TF32 is an Ampere+ tensor-core mode); on this machine use fp32"
            + (" or bf16x3 (AMX)" if amx.available() else ""))


def test_tf32_is_a_precision_shown_as_a_changed_setting(tiny_beir):
    assert "tf32" in PRECISIONS
    settings = EncodeSettings(precision="tf32")
    assert settings.changed() == {"precision": "tf32"}
    assert settings_label(settings.changed()) == "precision=tf32"
    args = build_parser().parse_args(["run", "-r", "hf:x", "-d", str(tiny_beir), "--precision", "tf32"])
    assert settings_from_args(args) == settings


@pytest.fixture()
def ampere(monkeypatch):
    """The planner sees a CUDA device of compute capability 8.0 (no model is loaded: nothing runs on it)."""
    monkeypatch.setattr(plan_module, "pick_device", lambda device="auto": torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))


def test_tf32_keys_its_own_fingerprint_and_embedding_cache(tiny_beir, tiny_bert_dir, ampere):
    spec = resolve_retriever(f"hf:{tiny_bert_dir}")
    gpu = Execution(device="cuda", progress=False)
    fp32 = spec.load(EncodeSettings(), gpu)
    tf32 = spec.load(EncodeSettings(precision="tf32"), gpu)
    assert tf32.encoders.compute == Compute(device="cuda", precision="tf32", forward="transformers")
    assert tf32.changed_settings() == {"precision": "tf32"} and fp32.changed_settings() == {}
    assert tf32.fingerprint() != fp32.fingerprint()
    assert tf32.fingerprint()["compute"]["precision"] == "tf32"
    ds = resolve_dataset(str(tiny_beir))
    assert tf32.corpus_store(ds).dir != fp32.corpus_store(ds).dir  # vectors of another computation: another key
    assert tf32.corpus_store(ds).key["compute"]["precision"] == "tf32"


def test_tf32_on_a_gpu_older_than_ampere_is_refused(tiny_bert_dir, monkeypatch):
    monkeypatch.setattr(plan_module, "pick_device", lambda device="auto": torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(HarnessError, match=r"Ampere or later GPU .*Tesla V100 is 7\.0"):
        plan_compute(tiny_bert_dir, "cuda", "tf32")


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_tf32_on_the_cpu_is_one_line_before_any_model_loads(tiny_beir, tiny_bert_dir, tmp_path, capsys,
                                                            monkeypatch, device):
    if device == "auto" and torch.cuda.is_available():
        pytest.skip("--device auto resolves to CUDA here")

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr("harness.retrievers.encoder.load_model", no_load)
    code = main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "out"),
                 "--precision", "tf32", "--device", device])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"harness: error: {_refusal()}"]
    assert not list((tmp_path / "out").rglob("*.json"))  # no record


def test_tensor_float32_sets_the_flags_and_restores_them():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for before in (False, True):
            torch.backends.cuda.matmul.allow_tf32 = before
            torch.backends.cudnn.allow_tf32 = before
            with tensor_float32():
                assert torch.backends.cuda.matmul.allow_tf32 is True
                assert torch.backends.cudnn.allow_tf32 is True
            assert torch.backends.cuda.matmul.allow_tf32 is before
            assert torch.backends.cudnn.allow_tf32 is before
        torch.backends.cuda.matmul.allow_tf32 = False
        with pytest.raises(RuntimeError, match="inside"), tensor_float32():
            raise RuntimeError("inside")
        assert torch.backends.cuda.matmul.allow_tf32 is False  # restored on an error too
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_a_tf32_encoder_allows_tf32_in_its_forward_only(tiny_bert_dir):
    """The encoder's forward runs inside :func:`tensor_float32`; before and after it the flags are as they were.
    (Planned for the CPU here by hand: the flags exist without CUDA, and nothing else differs.)"""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        enc = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", progress=False,
                        compute=Compute(device="cpu", precision="tf32", forward="transformers"))
        seen: list[bool] = []
        model = enc.model
        enc.model = lambda **kw: (seen.append(torch.backends.cuda.matmul.allow_tf32), model(**kw))[1]
        vectors = enc.encode(["a text", "another text"])
        assert seen and all(seen) and torch.backends.cuda.matmul.allow_tf32 is False
        reference = HFEncoder(str(tiny_bert_dir), CONTRIEVER, device="cpu", progress=False,
                              forward="transformers").encode(["a text", "another text"])
        assert abs(vectors - reference).max() < 1e-6  # on the CPU the flags change nothing
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
