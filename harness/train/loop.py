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
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from harness.errors import HarnessError
from harness.train.state import RunState

if TYPE_CHECKING:
    from harness.train.objectives import Batch, Embeddings, LossOutput, Objective, TrainConfig


def linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    """The learning-rate factor: linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def autocast(device: torch.device, amp: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()


# --- one optimiser step of an objective -------------------------------------------------------------------

def embed(objective: Objective, cfg: TrainConfig, run: RunState, batch: Batch) -> Embeddings:
    """The objective's encodings of one micro-batch: forwards under the run's mixed precision, then fp32."""
    with autocast(run.device, run.amp):
        emb = objective.embed(cfg, run, batch)
    return {name: t.float() for name, t in emb.items()}


def fp32_loss(objective: Objective, cfg: TrainConfig, emb: Embeddings, device: torch.device) -> LossOutput:
    """The objective's loss with autocast off: every logit, weight and softmax in fp32 (at tau = 0.05 a
    logit reaches ~20, where one bf16 step is 0.06-0.12)."""
    with torch.autocast(device.type, enabled=False):
        return objective.loss(cfg, emb)


def _backward(run: RunState, loss: torch.Tensor) -> None:
    scaled: torch.Tensor = run.scaler.scale(loss) if run.scaler else loss
    scaled.backward()  # type: ignore[no-untyped-call, unused-ignore]


def objective_step(objective: Objective, cfg: TrainConfig, run: RunState, micro: list[Batch]) -> list[LossOutput]:
    """Forward and backward over the step's micro-batches (gradients accumulate in the encoder); returns the
    losses. Each micro-batch's loss counts 1/len(micro) (accumulation); an objective whose loss spans the
    step gets one loss over the joined embeddings by gradient caching. The optimiser step, the gradient
    average over ranks and the momentum update are the caller's."""
    if objective.spans_step and len(micro) > 1:
        out = _cached_step(objective, cfg, run, micro)
        objective.after_step(cfg, run, [])
        return [out]
    outs, embs = [], []
    for batch in micro:
        emb = embed(objective, cfg, run, batch)
        out = fp32_loss(objective, cfg, emb, run.device)
        _backward(run, out.loss / len(micro))
        outs.append(out)
        embs.append(emb)
    objective.after_step(cfg, run, embs)
    return outs


def _cached_step(objective: Objective, cfg: TrainConfig, run: RunState, micro: list[Batch]) -> LossOutput:
    """Gradient caching: every micro-batch encoded without gradient, the loss over the joined encodings and
    its gradient with respect to them, then each micro-batch encoded again with its random state replayed
    (the same dropout masks) and that gradient applied."""
    states, embs = [], []
    with torch.no_grad():
        for batch in micro:
            states.append(_rng_states(run.device))
            embs.append(embed(objective, cfg, run, batch))
    end_state = _rng_states(run.device)
    joined = {name: torch.cat([e[name] for e in embs]).requires_grad_() for name in embs[0]}
    out = fp32_loss(objective, cfg, joined, run.device)
    _backward(run, out.loss)
    rows = dict.fromkeys(joined, 0)
    for batch, state in zip(micro, states, strict=True):
        _set_rng_states(state, run.device)
        emb = embed(objective, cfg, run, batch)
        tensors, grads = [], []
        for name, t in emb.items():
            grad = joined[name].grad
            if grad is not None and t.requires_grad:
                tensors.append(t)
                grads.append(grad[rows[name]: rows[name] + t.shape[0]])
            rows[name] += t.shape[0]
        if tensors:
            torch.autograd.backward(tensors, grads)
    _set_rng_states(end_state, run.device)
    return out


def _rng_states(device: torch.device) -> tuple[Any, Any]:
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_states(state: tuple[Any, Any], device: torch.device) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


def fold_stats(outs: list[LossOutput]) -> dict[str, float]:
    """The step's statistics from its micro-batches' losses (read back to the host here, after every backward
    pass), folded over ranks too: the mean, except the extremes of the weights (``losses.STAT_FOLD``)."""
    from harness.train.losses import STAT_FOLD
    from harness.train.moco import fold_over_ranks

    rows = [o.stats() for o in outs]
    local = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        how = STAT_FOLD.get(key, "mean")
        local[key] = min(values) if how == "min" else max(values) if how == "max" else sum(values) / len(values)
    return fold_over_ranks(local, {k: STAT_FOLD.get(k, "mean") for k in local})


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
    """Append the step's record to the log file and put its figures on the progress bar: the bar always shows
    the latest step's (once, it kept step 1's loss 0 and learning rate 0 until step ``every``), redrawn at
    least every ``every`` steps."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    if bar is not None:
        bar.set_postfix({k: f"{v:.3g}" for k, v in record.items() if k in SHOWN}, refresh=False)
        bar.update(1)
        if step % every == 0:
            bar.refresh()


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
