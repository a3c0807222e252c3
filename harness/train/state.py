"""What a training run holds between steps (the loop, the objectives and the checkpoints read it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.retrievers.config import EncoderConfig
from harness.train.encoder import TrainEncoder
from harness.train.moco import KeyQueue

__all__ = ["RunState"]


@dataclass
class RunState:
    """Everything a training run holds between steps."""

    device: torch.device
    output: Path
    tokenizer: Any  # a transformers tokenizer (untyped by transformers)
    encoder: TrainEncoder  # the model with the recipe's pooling
    enc_cfg: EncoderConfig
    checksum: str  # of the training data
    key_encoder: TrainEncoder | None  # the momentum encoder (queue objectives)
    queue: KeyQueue | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler | None
    amp: torch.dtype | None
    start: int
    end: int
    batches: Iterator[dict[str, torch.Tensor]] | None
    init_digest: str | None = None  # the init model's content digest (encoder.init_identity)
