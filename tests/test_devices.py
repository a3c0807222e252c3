"""The one device picker: auto, a checked named device, torchrun's local rank; nothing else picks one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from harness.devices import device_name, pick_device
from harness.errors import HarnessError

REPO = Path(__file__).resolve().parents[1]


def test_auto_and_named_devices():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(HarnessError, match="not a device"):
        pick_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_missing_cuda_device_is_refused_with_what_there_is():
    with pytest.raises(HarnessError, match=r"no such CUDA device.*available: cpu"):
        pick_device("cuda:3")


def test_under_torchrun_cuda_means_this_ranks_own_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_name("auto") == device_name("cuda") == "cuda:2"
    assert device_name("cuda:0") == "cuda:0" and device_name("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_name("auto") == "auto"


def test_no_other_module_picks_a_device():
    pattern = re.compile(r"def \w*(pick|local)_device|torch\.device\(")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "harness").rglob("*.py")
                 if p.name != "devices.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_fp32_path_on_cuda_turns_tensorfloat32_off():
    """Encoding, reranking, SPLADE, training and fine-tuning in fp32 call devices.exact_float32 (TF32 off on
    CUDA), which touches nothing on the CPU."""
    import ast

    import torch

    from harness.devices import exact_float32
    from tests.conftest import REPO

    before = torch.backends.cuda.matmul.allow_tf32
    exact_float32(torch.device("cpu"))
    assert torch.backends.cuda.matmul.allow_tf32 == before
    callers = set()
    for path in (REPO / "harness").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "exact_float32":
                callers.add(path.relative_to(REPO).as_posix())
            if isinstance(node, ast.Attribute) and node.attr == "allow_tf32" and path.name != "devices.py":
                raise AssertionError(f"{path}: sets allow_tf32 itself; call harness.devices.exact_float32")
    assert callers == {"harness/retrievers/encoder.py", "harness/retrievers/rerank.py", "harness/retrievers/sparse.py",
                       "harness/retrievers/st_backend.py", "harness/train/trainer.py", "harness/train/finetune.py"}, \
        callers
