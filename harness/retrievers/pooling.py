"""Pooling of token states into one vector per text, as sentence-transformers' Pooling module computes it
(for right-padded batches, which the harness builds). Shared by the encoders and the trainer.

Modes: ``cls`` (first token), ``mean``, ``max``, ``mean_sqrt_len_tokens`` (sum / sqrt(length)),
``weightedmean`` (token i weighted by its position i + 1), ``lasttoken`` (the last non-padding token, for
decoder embedders); several joined by "+" are concatenated in that order. ``skip`` > 0 leaves the first
``skip`` tokens of every text (a prompt's) out of the pooling, as ``include_prompt: false`` does.
"""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding tokens (Contriever, sentence-transformers ``pooling_mode_mean_tokens``)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The first token that is not masked out (index 0 unless a prompt is skipped)."""
    first = mask.to(torch.int).argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), float("-inf")).max(dim=1).values


def mean_sqrt_len_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / torch.sqrt(m.sum(dim=1).clamp(min=1e-9))


def weighted_mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=hidden.dtype).view(1, -1, 1)
    w = mask.unsqueeze(-1).to(hidden.dtype) * positions
    return (hidden * w).sum(dim=1) / w.sum(dim=1).clamp(min=1e-9)


def last_token_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The last non-padding token of each text (right padding: position length - 1)."""
    seq_len = hidden.shape[1]
    values, flipped = mask.flip(1).max(1)
    last = torch.where(values == 0, torch.zeros_like(flipped), seq_len - 1 - flipped)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLERS = {"mean": mean_pool, "cls": cls_pool, "max": max_pool, "mean_sqrt_len_tokens": mean_sqrt_len_pool,
           "weightedmean": weighted_mean_pool, "lasttoken": last_token_pool}


def pool(name: str, hidden: torch.Tensor, mask: torch.Tensor, skip: int = 0) -> torch.Tensor:
    """Pool ``hidden`` [batch, tokens, dim] under ``mask`` by ``name`` (modes joined by "+" concatenate)."""
    modes = name.split("+")
    unknown = [m for m in modes if m not in POOLERS]
    if unknown:
        raise ValueError(f"unknown pooling {unknown[0]!r}; known: {', '.join(POOLERS)}")
    if skip:
        mask = mask.clone()
        mask[:, :skip] = 0
    out = [POOLERS[m](hidden, mask) for m in modes]
    return out[0] if len(out) == 1 else torch.cat(out, dim=-1)
