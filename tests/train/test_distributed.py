"""Two CPU processes under torchrun (gloo): keys of both ranks reach the queue; weights stay in sync."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.train.checkpoint import list_checkpoints


@pytest.mark.slow
def test_torchrun_gloo_two_ranks(tiny_bert, tiny_corpus, tmp_path):
    out = tmp_path / "ddp"
    out.mkdir()
    worker = Path(__file__).with_name("_ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(worker), str(tiny_bert), str(tiny_corpus), str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    steps, world, batch, m = 3, 2, 2, 2
    # every step enqueues the m*B keys of each rank: world * B * m per step
    assert r0["queue"]["filled"] == r1["queue"]["filled"] == steps * world * batch * m
    q0, q1 = r0["queue"]["buffer"], r1["queue"]["buffer"]
    assert torch.equal(q0, q1)  # both ranks hold the same gathered keys
    per_step = world * batch * m
    first = q0[:per_step]
    rank0_keys, rank1_keys = first[: batch * m], first[batch * m:]
    assert not torch.allclose(rank0_keys, rank1_keys)  # rank 1's keys are its own, not rank 0's copy
    for k in r0["params"]:
        assert torch.equal(r0["params"][k], r1["params"][k]), k  # averaged gradients keep ranks in sync
    assert [s for s, _ in list_checkpoints(out)] == [3]


@pytest.mark.slow
@pytest.mark.java
def test_torchrun_gloo_two_ranks_with_eval_finishes(tiny_bert, tiny_corpus, tmp_path):
    """Rank 0 evaluates every checkpoint (and the baselines) with `harness run` while rank 1 waits: the
    evaluation's own barriers run on rank 0 alone, so neither rank hangs or dies."""
    from tests.conftest import make_tiny_beir

    dataset = make_tiny_beir(tmp_path / "tiny")
    out, results = tmp_path / "ddp", tmp_path / "results"
    worker = Path(__file__).with_name("_ddp_eval_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(worker), str(tiny_bert), str(tiny_corpus), str(out), str(dataset), str(results)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # rank 0: two checkpoints, then the init model and BM25 (--eval-baselines); rank 1 evaluates nothing
    # the two ranks print into one pipe at about the same moment: their lines may interleave
    assert sorted(re.findall(r"rank done: (\d+) evaluations", proc.stdout)) == ["0", "4"], proc.stdout
    records = sorted(p.name for p in results.rglob("*.json") if not p.name.startswith("."))
    assert len(records) >= 2 and any("checkpoint-0000002" in r for r in records)


def test_the_group_starts_with_this_ranks_gpu_bound_first(monkeypatch):
    """Under torchrun with CUDA, set_device(LOCAL_RANK) comes before init_process_group (NCCL); the step
    collectives get a group of their own with the short wait; NCCL waits block (a timeout is an exception)."""
    import torch.distributed as dist

    from harness import distributed

    calls: list = []
    monkeypatch.delenv("TORCH_NCCL_BLOCKING_WAIT", raising=False)
    monkeypatch.setattr(dist, "new_group", lambda backend, timeout: calls.append(("step group", backend,
                                                                                    timeout.seconds)))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.append(("set_device", i)))
    monkeypatch.setattr(dist, "is_initialized", lambda: any(c[0] == "init" for c in calls))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: calls.append(("init", backend,
                                                                                           timeout.seconds)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert distributed.start(cuda=True, timeout_s=900, step_timeout_s=60) == (1, 2, True)
    assert calls == [("set_device", 1), ("init", "nccl", 900), ("step group", "nccl", 60)]
    assert os.environ["TORCH_NCCL_BLOCKING_WAIT"] == "1"
    distributed._STATE["step_group"] = None


def test_collectives_use_the_backends_device(monkeypatch):
    """NCCL refuses CPU tensors: every tensor handed to a collective goes to this rank's GPU under NCCL (and
    stays on the CPU under gloo); the results come back on the caller's device."""
    import torch.distributed as dist

    from harness import distributed

    monkeypatch.setattr(dist, "get_backend", lambda: "nccl")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert distributed._backend_device(torch.zeros(2)) == torch.device("cuda", 3)
    monkeypatch.setattr(dist, "get_backend", lambda: "gloo")
    assert distributed._backend_device(torch.zeros(2)) == torch.device("cpu")


def test_only_harness_distributed_calls_torch_distributed():
    """One module owns torch.distributed (as only harness/devices.py picks devices): any other module that
    calls a collective, a barrier or the group's start itself is a defect NCCL would find on a cluster."""
    import ast

    root = Path(__file__).resolve().parents[2] / "harness"
    found = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "distributed.py" and path.parent == root:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("torch.distributed"):
                found.append(f"{path.relative_to(root)}:{node.lineno} from {node.module} import ...")
            if isinstance(node, ast.Import) and any(a.name.startswith("torch.distributed") for a in node.names):
                found.append(f"{path.relative_to(root)}:{node.lineno} import torch.distributed")
            if isinstance(node, ast.Attribute) and node.attr == "distributed" and isinstance(node.value, ast.Name) \
                    and node.value.id == "torch":
                found.append(f"{path.relative_to(root)}:{node.lineno} torch.distributed")
    assert not found, "\n".join(found)


def test_torchrun_with_one_process_starts_a_group(tmp_path):
    """torchrun --nproc_per_node 1 starts a process group (world size 1), so a one-GPU torchrun runs the
    NCCL paths a cluster runs (NCCL refuses CPU tensors even alone); a plain process starts none."""
    script = tmp_path / "one.py"
    script.write_text("import torch.distributed as dist\nfrom harness import distributed\n"
                      "print(distributed.world(), dist.is_initialized(), dist.get_backend())\n"
                      "distributed.barrier()\ndistributed.stop()\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                           str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["(0,", "1)", "True", "gloo"]
    plain = subprocess.run([sys.executable, "-c", "import torch.distributed as dist\nfrom harness import "
                            "distributed\nprint(distributed.world(), dist.is_initialized())"],
                           env={**env, "WORLD_SIZE": "1"}, capture_output=True, text=True, timeout=60)
    assert plain.stdout.split() == ["(0,", "1)", "False"], plain.stderr[-2000:]
