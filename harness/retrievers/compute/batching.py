"""The one batching loop of every model the harness runs over texts (dense and ColBERT encoders, cross-encoder
reranking, SPLADE): texts sorted by length (longest first) and grouped under a token budget, each batch run,
and a batch that runs out of device memory split in two with the budget halved from then on.

Only the grouping changes when the budget is halved, which moves float32 results by rounding alone; every
halving is kept (:attr:`TokenBudget.backoffs`) for the record. A single text that does not fit even alone is
refused in one line. The failed batch's tensors are released outside the ``except`` block, where no
traceback holds them any more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch


@dataclass
class TokenBudget:
    """Padded tokens a batch may hold (``tokens``), at most ``max_batch`` texts, on ``device``."""

    tokens: int
    max_batch: int
    device: torch.device
    #: each out-of-memory halving: the new budget and the rows of the batch that did not fit
    backoffs: list[dict[str, int]] = field(default_factory=list)

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Index batches of similar length under the budget (longest first; equal lengths in input order)."""
        order = np.argsort(-np.asarray(lengths), kind="stable")
        out, start = [], 0
        while start < len(order):
            longest = int(lengths[order[start]])
            size = max(1, min(self.max_batch, self.tokens // max(1, longest)))
            out.append(order[start:start + size])
            start += size
        return out

    def back_off(self, idx: np.ndarray, width: int) -> list[np.ndarray]:
        """Out of device memory on the batch ``idx`` (``width`` tokens its longest): halve the budget and split
        the batch in two (the first half next); a single text is refused."""
        from harness.devices import release_cached_memory

        release_cached_memory(self.device)
        if len(idx) == 1:
            raise HarnessError(f"one text of {width} tokens does not fit in {self.device}'s memory even alone; "
                               "use a smaller --max-length or another device")
        self.tokens = max(width, self.tokens // 2)
        self.backoffs.append({"batch_tokens": self.tokens, "batch_rows": len(idx)})
        half = len(idx) // 2
        return [idx[half:], idx[:half]]


def run_batches(budget: TokenBudget, lengths: np.ndarray, step: Callable[[np.ndarray], None]) -> None:
    """``step(idx)`` on every batch of ``budget.batches(lengths)`` in turn; a batch that runs out of device
    memory is split (:meth:`TokenBudget.back_off`) and its halves run next. ``step`` writes its own results
    (by index), so a batch that failed part way is simply run again in halves."""
    from harness.devices import is_out_of_memory

    pending = budget.batches(lengths)[::-1]  # a stack: the next batch last
    while pending:
        idx = pending.pop()
        try:
            step(idx)
            continue
        except RuntimeError as e:  # torch.OutOfMemoryError is one; cuBLAS's allocation failures are others
            if not is_out_of_memory(e):
                raise
        # out of the except block: its traceback (and the failed batch's tensors it holds) is gone
        pending.extend(budget.back_off(idx, int(lengths[idx].max())))
