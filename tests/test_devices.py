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


def _ranks(monkeypatch, *, ranks: int, local_rank: int, gpus: int) -> None:
    """This process as local rank ``local_rank`` of ``ranks`` on a node whose ranks each see ``gpus`` GPUs."""
    monkeypatch.setenv("WORLD_SIZE", str(ranks))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(ranks))
    monkeypatch.setenv("LOCAL_RANK", str(local_rank))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)


def test_under_torchrun_cuda_means_this_ranks_own_gpu(monkeypatch):
    _ranks(monkeypatch, ranks=4, local_rank=2, gpus=4)
    assert device_name("auto") == device_name("cuda") == "cuda:2"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # each rank sees its own GPU only (Slurm)
    assert device_name("auto") == "cuda:0"
    assert device_name("cuda:0") == "cuda:0" and device_name("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_name("auto") == "auto"


def test_one_gpu_named_for_several_ranks_on_a_node_is_refused_unless_it_is_the_ranks_own(monkeypatch):
    _ranks(monkeypatch, ranks=2, local_rank=1, gpus=2)
    assert device_name("cuda:1") == "cuda:1"  # --device cuda:$LOCAL_RANK: this rank's own GPU
    with pytest.raises(HarnessError, match=r"--device cuda:0 on local rank 1 of 2: not this rank's own GPU "
                                           r"\(cuda:1\), so ranks would share one; use --device cuda"):
        device_name("cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # each rank sees its own GPU only: cuda:0 is its own
    assert device_name("cuda:0") == "cuda:0"


def test_no_other_module_picks_a_device():
    pattern = re.compile(r"def \w*(pick|local)_device|torch\.device\(")
    offenders = [str(p.relative_to(REPO)) for p in (REPO / "harness").rglob("*.py")
                 if p.name != "devices.py" and pattern.search(p.read_text(encoding="utf-8"))]
    assert offenders == []


def test_every_fp32_path_on_cuda_turns_tensorfloat32_off():
    """Encoding, reranking, SPLADE, training and fine-tuning in fp32, and exact search on a GPU whatever the
    encoder ran in, call devices.exact_float32 (TF32 off on CUDA), which touches nothing on the CPU."""
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
    assert callers == {"harness/retrievers/encoder.py", "harness/retrievers/cross_encoder.py",
                       "harness/retrievers/sparse.py", "harness/search.py",
                       "harness/retrievers/st_backend.py", "harness/train/trainer.py", "harness/train/finetune.py"}, \
        callers


def test_auto_searches_on_the_gpu_where_cuda_is(monkeypatch):
    """--device auto encodes on CUDA where it is there, and the exact search follows the vectors: once, only
    --device cuda searched on the GPU, and auto took FAISS on the CPU while the GPU waited."""
    from harness.searchers import ExactSearcher

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert ExactSearcher("auto")._gpu() == "cuda" and ExactSearcher("cuda")._gpu() == "cuda"
    assert ExactSearcher("cpu")._gpu() is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ExactSearcher("auto")._gpu() is None
    assert ExactSearcher("auto").describe() == "exact inner product (faiss)"


@pytest.mark.parametrize(("local_rank", "local_world", "visible", "want"), [
    (3, 4, 4, 3),   # torchrun: every rank sees the node's GPUs
    (1, 2, 8, 1),   # fewer ranks than GPUs
    (3, 4, 1, 0),   # Slurm --gpus-per-task=1 / CUDA_VISIBLE_DEVICES per rank: each sees its own
    (1, 2, 1, 0),   # two ranks meant to share one GPU (gloo)
])
def test_each_rank_binds_the_gpu_it_can_see(local_rank, local_world, visible, want):
    from harness.devices import rank_gpu

    assert rank_gpu(local_rank, local_world, visible) == want


def test_a_layout_that_does_not_say_whose_gpu_is_whose_is_refused(monkeypatch):
    from harness.devices import rank_gpu

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with pytest.raises(HarnessError, match=r"local rank 3 of 4 ranks on this node sees 2 GPUs "
                                           r"\(CUDA_VISIBLE_DEVICES=0,1\).*ambiguous"):
        rank_gpu(3, 4, 2)
