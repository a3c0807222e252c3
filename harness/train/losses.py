"""Contrastive losses as pure functions of embeddings (METHOD.md, "Loss").

Notation: ``q`` anchors [B, d]; ``keys`` positives [B, m, d] (m pairs per window); ``queue`` negatives
[K, d]; ``s`` = dot product; ``tau`` the temperature.

    l_{b,i} = -log( e^{s(q_b,k_{b,i})/tau} / (e^{s(q_b,k_{b,i})/tau} + sum_n e^{s(q_b,n)/tau}) )
    r_{b,i} = s(q_b, k_{b,i})   (no gradient)
    w_{b,i} = r_{b,i} / sum_j r_{b,j}
    L       = 1/(m B) * sum_{b,i} w_{b,i} l_{b,i}

Because the weights of a window sum to 1, equal weights (w = 1/m) give L = (1/m) * mean_{b,i} l_{b,i},
i.e. the plain MoCo loss over the m*B pairs scaled by 1/m. With m = 1 the two losses coincide.

Guard for non-positive relevance (raw dot products can be <= 0), ``weight_guard``:
- ``"clamp"`` (default): r+ = max(r, eps), w = r+ / sum_j r+_j. Identical to the formula whenever every
  relevance of the window exceeds eps; a pair with non-positive estimated relevance gets ~0 weight (it is
  treated as irrelevant, which is the method's intent); weights stay in [0, 1] and sum to 1; no division
  by zero.
- ``"softmax"``: w = softmax_i(r_{b,i} / weight_temperature).
- ``"raw"``: the formula verbatim (weights may be negative); a window whose sum is <= eps falls back to
  equal weights 1/m.
- ``"uniform"``: w = 1/m, whatever the relevance: the control arm of an experiment. Everything else of the
  relevance-aware objective stays (the m pairs, their crops, the queue, the 1/(mB) normalisation), so two
  runs with the same seed differ only in the weighting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from harness.train.guards import WEIGHT_GUARDS  # named without torch, for the options

#: how a statistic of several micro-batches or ranks is folded (the rest: the mean)
STAT_FOLD = {"w_min": "min", "w_max": "max"}


@dataclass
class LossOutput:
    """A loss and what its statistics are made from. Nothing here is read back to the host until
    :meth:`stats` (called after the backward pass, so no step waits on the device before it)."""

    loss: torch.Tensor
    correct: torch.Tensor  # whether each pair's positive ranked first
    weights: torch.Tensor | None = None  # [B, m], detached
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean())

    def stats(self) -> dict[str, float]:
        out = {"loss": float(self.loss.detach()), "accuracy": self.accuracy, **self.extra}
        if self.weights is not None:
            out.update(weight_stats(self.weights))
        return out


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """Softmax in fp32 under autocast (bf16/fp16 logits), fp64 kept for exact tests."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def pair_losses(q: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor | None,
                tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pair InfoNCE losses l_{b,i} [B, m] against the queue, and whether the positive ranked first."""
    if keys.dim() == 2:
        keys = keys.unsqueeze(1)
    pos = torch.einsum("bd,bmd->bm", q, keys)  # [B, m]
    if queue is not None and queue.numel():
        neg = q @ queue.T  # [B, K]
        B, m = pos.shape
        logits = torch.cat([pos.unsqueeze(-1), neg.unsqueeze(1).expand(B, m, neg.shape[1])], dim=-1) / tau
    else:
        logits = pos.unsqueeze(-1) / tau
    losses = -torch.log_softmax(_at_least_fp32(logits), dim=-1)[..., 0]
    correct = logits.argmax(dim=-1) == 0
    return losses, correct


def relevance_weights(q: torch.Tensor, keys: torch.Tensor, guard: str = "clamp", eps: float = 1e-6,
                      weight_temperature: float = 1.0) -> torch.Tensor:
    """w_{b,i}: relevance s(q_b, k_{b,i}) normalised over the m pairs of a window; never has gradient."""
    with torch.no_grad():
        r = _at_least_fp32(torch.einsum("bd,bmd->bm", q.detach(), keys.detach()))
        if guard == "clamp":
            r = r.clamp(min=eps)
            return r / r.sum(dim=1, keepdim=True)
        if guard == "softmax":
            return torch.softmax(r / weight_temperature, dim=1)
        if guard == "uniform":
            return torch.full_like(r, 1.0 / r.shape[1])
        if guard == "raw":
            total = r.sum(dim=1, keepdim=True)
            uniform = torch.full_like(r, 1.0 / r.shape[1])
            return torch.where(total > eps, r / total.clamp(min=eps), uniform)
        raise ValueError(f"unknown weight guard {guard!r}; known: {', '.join(WEIGHT_GUARDS)}")


def relevance_aware_loss(q: torch.Tensor, keys: torch.Tensor, queue: torch.Tensor | None, tau: float = 0.05,
                         guard: str = "clamp", eps: float = 1e-6,
                         weight_temperature: float = 1.0) -> LossOutput:
    """L = 1/(mB) sum_{b,i} w_{b,i} l_{b,i} (the ReContriever loss, METHOD.md)."""
    losses, correct = pair_losses(q, keys, queue, tau)
    w = relevance_weights(q, keys, guard, eps, weight_temperature)
    B, m = losses.shape
    loss = (w * losses).sum() / (m * B)
    return LossOutput(loss, correct, w)


def moco_loss(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor | None, tau: float = 0.05) -> LossOutput:
    """Plain InfoNCE with a queue of negatives, mean over pairs (Contriever MoCo). ``k`` is [B, d] or [B, m, d]."""
    losses, correct = pair_losses(q, k, queue, tau)
    return LossOutput(losses.mean(), correct)


def inbatch_loss(q: torch.Tensor, k: torch.Tensor, tau: float = 0.05, offset: int = 0,
                 extra_negatives: torch.Tensor | None = None) -> LossOutput:
    """InfoNCE where the keys of the other windows are the negatives: CE(q @ k.T / tau, diagonal).

    ``k`` may hold the keys of every rank (the local ones start at ``offset``); ``extra_negatives``
    (e.g. BM25 hard negatives) are appended as more columns.
    """
    cols = k if extra_negatives is None else torch.cat([k, extra_negatives], dim=0)
    logits = _at_least_fp32(q @ cols.T) / tau
    target = torch.arange(q.shape[0], device=q.device) + offset
    loss = F.cross_entropy(logits, target)
    return LossOutput(loss, logits.argmax(dim=1) == target)


def weight_stats(w: torch.Tensor) -> dict[str, float]:
    """Mean, min, max of the weights and the mean entropy (nats) of each window's weight distribution."""
    w = w.detach().float()
    p = w.clamp(min=1e-12)
    entropy = -(p * p.log()).sum(dim=1).mean()
    return {"w_mean": float(w.mean()), "w_min": float(w.min()), "w_max": float(w.max()),
            "w_entropy": float(entropy)}
