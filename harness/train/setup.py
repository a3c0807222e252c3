"""The one setup of a training run, shared by ``harness train`` and ``harness finetune``: the device, the CPU
threads, every seed, the encoder (its recipe's pooling, moved to the device, in training mode) and the
optimiser with its linear schedule. What each command adds (crops and a queue; labelled pairs) is its own."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.devices import pick_device
from harness.retrievers.config import EncoderConfig
from harness.train.encoder import TrainEncoder, load_encoder
from harness.train.loop import linear_schedule


@dataclass
class Model:
    device: torch.device
    tokenizer: Any  # a transformers tokenizer (untyped by transformers)
    encoder: TrainEncoder


def seed_everything(seed: int) -> None:
    """Python's, numpy's global and torch's generators (CUDA's with torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def start_model(opts: Any, enc_cfg: EncoderConfig, *, rank: int = 0, weights: str | None = None) -> Model:
    """Device, threads and seeds (``opts.seed + rank``: each rank draws its own dropout masks), then the encoder
    of ``weights`` (default ``opts.init``) with the recipe ``enc_cfg``, on the device, in training mode.
    ``opts`` is a ``harness.train.config.RunOptions``."""
    device = pick_device(opts.device)
    if opts.threads:
        torch.set_num_threads(opts.threads)
    seed_everything(opts.seed + rank)
    loaded = load_encoder(weights or opts.init, enc_cfg, trust_remote_code=opts.trust_remote_code)
    encoder = loaded.encoder.to(device)
    encoder.train()
    return Model(device, loaded.tokenizer, encoder)


def optimiser(encoder: TrainEncoder, *, lr: float, weight_decay: float, warmup_steps: int, steps: int,
              betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
              ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW and the learning-rate schedule: linear warm-up, then linear decay to 0 at ``steps``."""
    opt = torch.optim.AdamW(encoder.parameters(), lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(warmup_steps, steps))
