"""The one training loop, shared by contrastive pre-training (``harness train``) and few-shot fine-tuning
(``harness finetune``): steps from ``start`` to ``end``, each logged as one JSON line, a checkpoint when one
is due and at the end. What a step computes is the caller's (an objective, ``harness.train.objectives``);
the run state the steps share is :class:`RunState`."""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.retrievers.config import EncoderConfig
from harness.train.encoder import TrainEncoder
from harness.train.moco import KeyQueue


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


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """The learning-rate factor: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def autocast(device: torch.device, amp: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()


ESTIMATE_AFTER = 10  # steps measured before the time estimate


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _say(message: str, bar: Any) -> None:
    """A line on stderr that does not break the progress bar."""
    if bar is not None:
        bar.write(message, file=sys.stderr)
    else:
        print(message, file=sys.stderr)


SHOWN = ("loss", "accuracy", "w_mean", "w_min", "w_max", "w_entropy", "lr", "tokens_per_s")


def log_step(path: Path, record: dict[str, Any], bar: Any, every: int, step: int) -> None:
    """Append the step's record to the log file; show its figures on the progress bar every ``every`` steps."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    if bar is not None:
        bar.update(1)
        if step % every == 0 or step == 1:
            bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in SHOWN}, refresh=False)


def optimise(start: int, end: int, step: Callable[[int], dict[str, Any]], *, due: Callable[[int], bool],
             checkpoint: Callable[[int], None], log_path: Path | None, bar: Any = None,
             log_every: int = 10, what: str = "train") -> int:
    """Run steps ``start`` .. ``end - 1`` (``step(i)`` returns the log record of step i + 1), log each one
    (``log_path`` None: a helper rank, which logs nothing), and checkpoint when ``due(done)`` or at the end.
    After the first steps it says how long the rest will take at the rate measured. Returns the last step."""
    done = start
    began = time.perf_counter()
    first = min(end, start + ESTIMATE_AFTER)
    for i in range(start, end):
        record = step(i)
        done = i + 1
        if not all(math.isfinite(v) for k, v in record.items() if isinstance(v, float) and k != "lr"):
            bad = {k: v for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)}
            raise HarnessError(f"step {done}: {', '.join(f'{k} = {v}' for k, v in bad.items())}; training "
                               "stopped and this step was not checkpointed (earlier checkpoints are intact). "
                               "Lower --lr, or check the data and --precision")
        if log_path is not None:
            log_step(log_path, record, bar, log_every, done)
            if done == first and end > first:
                per_step = (time.perf_counter() - began) / (first - start)
                _say(f"harness {what}: {per_step:.2f} s a step over the first {first - start}; about "
                     f"{_duration(per_step * (end - first))} for the {end - first:,} steps left (checkpoints and "
                     "evaluations not counted)", bar)
        if due(done) or done == end:
            checkpoint(done)
    if bar is not None:
        bar.close()
    return done
