"""Two CPU processes under torchrun (gloo): keys of both ranks reach the queue; weights stay in sync."""

from __future__ import annotations

import os
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
