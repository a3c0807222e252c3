"""Pooling of token states into one vector per text. Shared by the encoders and the trainer."""

from __future__ import annotations

import torch


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding tokens (Contriever, sentence-transformers ``pooling_mode_mean_tokens``)."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)


def cls_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return hidden[:, 0]


def max_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    fill = torch.finfo(hidden.dtype).min
    return hidden.masked_fill(~mask.bool().unsqueeze(-1), fill).max(dim=1).values


POOLERS = {"mean": mean_pool, "cls": cls_pool, "max": max_pool}


def pool(name: str, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    try:
        return POOLERS[name](hidden, mask)
    except KeyError:
        raise ValueError(f"unknown pooling {name!r}; known: {', '.join(POOLERS)}") from None
