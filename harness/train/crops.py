"""Pairs from windows (METHOD.md, "Pairs"): random crops, token augmentations, and the batch dataset.

Every random choice for sample ``g`` (a global sample index) comes from ``np.random.default_rng((seed, g))``,
and the window order of epoch ``e`` from ``default_rng((seed, e, 1))``. A micro-batch is therefore a pure
function of (seed, micro-batch index, rank): loader workers need no shared state, a resumed run only
needs the index to continue from, and a data-parallel run sees the same samples as one process would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from harness.train.data import TokenStream


@dataclass(frozen=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int
    mask: int
    vocab_size: int
    first_regular: int  # random replacements are drawn from [first_regular, vocab_size)

    @classmethod
    def from_tokenizer(cls, tok: Any) -> SpecialIds:
        cls_id = tok.cls_token_id if tok.cls_token_id is not None else tok.bos_token_id
        sep_id = tok.sep_token_id if tok.sep_token_id is not None else tok.eos_token_id
        if cls_id is None or sep_id is None:
            raise ValueError("the tokenizer has no [CLS]/[SEP] (or BOS/EOS) token")
        pad = tok.pad_token_id if tok.pad_token_id is not None else sep_id
        mask = tok.mask_token_id if tok.mask_token_id is not None else pad
        specials = [i for i in tok.all_special_ids if i is not None]
        return cls(cls_id, sep_id, pad, mask, len(tok), max(specials) + 1 if specials else 0)


def random_crop(x: np.ndarray, rng: np.random.Generator, ratio_min: float, ratio_max: float) -> np.ndarray:
    """A contiguous span whose length is a uniform ratio in [ratio_min, ratio_max] of ``x`` (>= 1 token)."""
    n = len(x)
    length = max(1, int(n * rng.uniform(ratio_min, ratio_max)))
    start = int(rng.integers(0, n - length + 1))
    return x[start:start + length]


def augment(x: np.ndarray, kind: str, p: float, rng: np.random.Generator, ids: SpecialIds) -> np.ndarray:
    """delete: drop each token with prob p; mask: replace it by [MASK]; replace: by a random token;
    shuffle: permute the tokens at a random p-share of positions among themselves."""
    if kind == "none" or p == 0 or len(x) == 0:
        return x
    hit = rng.random(len(x)) < p
    if kind == "delete":
        return x[~hit]
    x = x.copy()
    if kind == "mask":
        x[hit] = ids.mask
    elif kind == "replace":
        x[hit] = rng.integers(ids.first_regular, ids.vocab_size, size=int(hit.sum()))
    elif kind == "shuffle":
        pos = np.flatnonzero(hit)
        x[pos] = x[rng.permutation(pos)]
    else:
        raise ValueError(f"unknown augmentation {kind!r}")
    return x


def pad_batch(seqs: list[np.ndarray], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


class ContrastiveBatches(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Item ``i`` = micro-batch ``i`` of this rank: ``batch_size`` windows, each giving 1 anchor and
    ``m`` key crops. Returns anchor_ids/anchor_mask [B, T] and key_ids/key_mask [B*m, T] (window-major).

    Every epoch visits the windows in a new seeded order. With ``offset_chunk`` (the chunk length), the
    windows are instead cut anew every epoch from the token stream at a random offset in [0, chunk), as
    Contriever does (``generate_offset``): epoch e has (tokens - offset_e) // chunk whole windows."""

    def __init__(self, stream_folder: str, windows: np.ndarray, *, batch_size: int, m: int, seed: int,
                 ratio_min: float, ratio_max: float, augmentation: str, prob: float, max_length: int,
                 ids: SpecialIds, rank: int = 0, world_size: int = 1, length: int = 10**12,
                 offset_chunk: int = 0):
        self.stream_folder, self.windows = stream_folder, windows
        self.batch_size, self.m, self.seed = batch_size, m, seed
        self.ratio_min, self.ratio_max = ratio_min, ratio_max
        self.augmentation, self.prob, self.max_length = augmentation, prob, max_length
        self.ids, self.rank, self.world_size, self.length = ids, rank, world_size, length
        self.offset_chunk = offset_chunk
        self._tokens: np.ndarray | None = None
        self._perm_epoch, self._perm = -1, np.zeros(0, dtype=np.int64)
        self._epoch_starts = [0]  # global index of each epoch's first window (offset windows)

    def __len__(self) -> int:
        return self.length

    def _offset(self, epoch: int) -> int:
        return int(np.random.default_rng((self.seed, epoch, 2)).integers(0, self.offset_chunk))

    def _epoch_size(self, epoch: int) -> int:
        if not self.offset_chunk:
            return len(self.windows)
        assert self._tokens is not None
        return (len(self._tokens) - self._offset(epoch)) // self.offset_chunk

    def _locate(self, g: int) -> tuple[int, int]:
        """(epoch, position in the epoch) of global window ``g``."""
        if not self.offset_chunk:
            return divmod(g, len(self.windows))
        while self._epoch_starts[-1] <= g:
            size = self._epoch_size(len(self._epoch_starts) - 1)
            if size < 1:
                raise ValueError("the token stream is shorter than one window")
            self._epoch_starts.append(self._epoch_starts[-1] + size)
        epoch = int(np.searchsorted(self._epoch_starts, g, side="right")) - 1
        return epoch, g - self._epoch_starts[epoch]

    def _window(self, g: int) -> np.ndarray:
        if self._tokens is None:
            from pathlib import Path

            self._tokens = TokenStream.open(Path(self.stream_folder)).tokens
        epoch, pos = self._locate(g)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng((self.seed, epoch, 1)).permutation(self._epoch_size(epoch))
            self._perm_epoch = epoch
        if self.offset_chunk:
            start = self._offset(epoch) + int(self._perm[pos]) * self.offset_chunk
            return np.asarray(self._tokens[start:start + self.offset_chunk], dtype=np.int64)
        start, end = self.windows[self._perm[pos]]
        return np.asarray(self._tokens[start:end], dtype=np.int64)

    def _view(self, window: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        crop = random_crop(window, rng, self.ratio_min, self.ratio_max)
        crop = augment(crop, self.augmentation, self.prob, rng, self.ids)[: self.max_length - 2]
        return np.concatenate([[self.ids.cls], crop, [self.ids.sep]]).astype(np.int64)

    def sample(self, g: int) -> list[np.ndarray]:
        """Global sample ``g``: [anchor, key_1, ..., key_m]."""
        rng = np.random.default_rng((self.seed, g))
        window = self._window(g)
        return [self._view(window, rng) for _ in range(1 + self.m)]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        first = (index * self.world_size + self.rank) * self.batch_size
        samples = [self.sample(first + j) for j in range(self.batch_size)]
        anchor_ids, anchor_mask = pad_batch([s[0] for s in samples], self.ids.pad)
        key_ids, key_mask = pad_batch([k for s in samples for k in s[1:]], self.ids.pad)
        return {"anchor_ids": anchor_ids, "anchor_mask": anchor_mask, "key_ids": key_ids, "key_mask": key_mask}
