"""MoCo pieces (as Contriever): a FIFO queue of past keys, the momentum (EMA) key encoder update, and
gathering keys from every rank so that the queue holds the keys of the whole global batch; the in-batch
gather that carries gradient back to every rank, as Contriever's ``gather``."""

from __future__ import annotations

from typing import Any

import torch

from harness.distributed import all_gather, all_reduce, is_distributed, rank_and_size


class KeyQueue:
    """A ring buffer of the last ``size`` keys. ``get()`` returns only the slots filled so far, oldest
    first is not needed by the loss (a set of negatives), so it returns them in buffer order."""

    def __init__(self, size: int, dim: int, device: torch.device | str = "cpu"):
        if size < 0:
            raise ValueError("queue size must be >= 0")
        self.size = size
        self.buffer = torch.zeros(size, dim, device=device)
        self.ptr = 0
        self.filled = 0

    def get(self) -> torch.Tensor:
        return self.buffer[: self.filled]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` [n, d] at the pointer (wrapping around); the oldest entries are overwritten."""
        keys = keys.detach().reshape(-1, self.buffer.shape[1]).to(self.buffer)
        n = keys.shape[0]
        if self.size == 0 or n == 0:
            return
        if n >= self.size:  # only the newest ``size`` keys survive
            keys, n = keys[-self.size:], self.size
        end = self.ptr + n
        if end <= self.size:
            self.buffer[self.ptr:end] = keys
        else:
            first = self.size - self.ptr
            self.buffer[self.ptr:] = keys[:first]
            self.buffer[: n - first] = keys[first:]
        self.ptr = end % self.size
        self.filled = min(self.size, self.filled + n)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.cpu().clone(), "ptr": self.ptr, "filled": self.filled}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.copy_(state["buffer"])
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])


@torch.no_grad()
def momentum_update(key_model: torch.nn.Module, query_model: torch.nn.Module, momentum: float) -> None:
    """theta_k <- momentum * theta_k + (1 - momentum) * theta_q, parameter by parameter."""
    for pk, pq in zip(key_model.parameters(), query_model.parameters(), strict=True):
        pk.mul_(momentum).add_(pq.detach(), alpha=1.0 - momentum)


@torch.no_grad()
def gather_nograd(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank (rank order) along dim 0; identity when not distributed."""
    if not is_distributed():
        return x
    return torch.cat(all_gather(x, "the all-gather of the step's keys"), dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward sums the gradient over ranks and returns this rank's slice: the loss of
    every rank's queries reaches this rank's keys (gathering without it drops the other ranks' part)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.rows = x.shape[0]
        return torch.cat(all_gather(x, "the all-gather of in-batch keys"), dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        total = all_reduce(grad.contiguous().clone(), what="the all-reduce of in-batch keys' gradients")
        start = rank_and_size()[0] * ctx.rows
        return total[start: start + ctx.rows]


def gather_with_grad(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' ``x`` concatenated in rank order, differentiable for every rank's loss (see
    ``_GatherWithGrad``); returns (tensor, offset of this rank's rows). With gradients averaged over ranks
    afterwards, data parallel training equals one process with the whole batch."""
    if not is_distributed():
        return x, 0
    gathered: torch.Tensor = _GatherWithGrad.apply(x)  # type: ignore[no-untyped-call, unused-ignore]
    return gathered, rank_and_size()[0] * x.shape[0]


def fold_over_ranks(values: dict[str, float], how: dict[str, str]) -> dict[str, float]:
    """Each statistic folded over ranks as ``how`` says ("mean", "min" or "max"), so every rank logs the whole
    batch's numbers, not its own: one all-reduce per kind of fold."""
    if not is_distributed() or not values:
        return values
    out: dict[str, float] = {}
    for op in sorted(set(how.values())):
        keys = sorted(k for k in values if how[k] == op)
        t = all_reduce(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64),
                       "sum" if op == "mean" else op, what="the all-reduce of the step's statistics")
        if op == "mean":
            t /= rank_and_size()[1]
        out.update({k: float(v) for k, v in zip(keys, t.tolist(), strict=True)})
    return out


def average_gradients(model: torch.nn.Module) -> None:
    """All-reduce and average the gradients of ``model`` (data parallel without the DDP wrapper)."""
    if not is_distributed():
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = all_reduce(torch.cat([g.reshape(-1) for g in grads]), what="the all-reduce of gradients")
    flat /= rank_and_size()[1]
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()
