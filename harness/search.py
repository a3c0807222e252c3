"""Exact inner-product search over sharded embeddings with a running top-k: FAISS per shard on the CPU, or
torch's matmul on a GPU. Both keep each query's best in the same stable order (score descending, then
corpus position), so they rank alike, ties included.

- FAISS (:func:`topk_exact`): one flat index per shard, its top k merged into the running best on the CPU.
- torch (:func:`topk_exact_torch`): the corpus in chunks of columns and the queries in blocks of rows, so
  the score matrix held at once is bounded (:data:`SCORE_BYTES`); each block's top k by ``torch.topk``,
  with rows whose k-th score is tied past k settled by corpus position; the running best stays on the
  device and is merged there. Only the final (queries x k) result crosses to the host.

Memory stays at one shard plus the running best, whatever the corpus size.

Late interaction (ColBERT, :func:`topk_maxsim`) scores token vectors: each shard's documents in blocks of at most
:data:`MAXSIM_TOKENS` tokens, the queries in row blocks under the same :data:`SCORE_BYTES`, MaxSim computed with
torch on the encoder's device (CPU or GPU) and merged into the same running top k.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

import numpy as np

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch

Shards = Iterable[tuple[list[str], np.ndarray]]
SCORE_BYTES = 1 << 30  # the score block of the torch path: at most this many bytes at once (with its masks)


class RunningTopK(Protocol):
    """Each query's k best (score, corpus position) so far; blocks of document vectors are added in corpus
    order."""

    def add(self, block: np.ndarray, offset: int) -> None:
        """Score ``block`` (rows are corpus positions ``offset``..) and keep the best."""

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores (nq x k', descending) and corpus positions (-1 where a query has fewer than k)."""


def _stream_topk(shards: Shards, topk: RunningTopK, chunk: int | None = None
                 ) -> tuple[np.ndarray, list[list[str]], int]:
    """The running top-k over every shard (cut into ``chunk`` rows when given): scores (descending), doc ids,
    and the number of document vectors scored (the caller checks it is the whole corpus)."""
    all_ids: list[str] = []
    for ids, vectors in shards:
        if len(ids) != vectors.shape[0]:
            raise ValueError(f"a shard of {vectors.shape[0]} vectors came with {len(ids)} ids")
        step = chunk or max(1, len(ids))
        for start in range(0, len(ids), step):
            topk.add(vectors[start:start + step], len(all_ids) + start)
        all_ids.extend(ids)
    scores, positions = topk.result()
    docs = [[all_ids[j] for j in row if j >= 0] for row in positions]
    return scores, docs, len(all_ids)


class _FaissTopK:
    def __init__(self, queries: np.ndarray, k: int):
        self.q = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        self.best_s = np.full((self.q.shape[0], 0), -np.inf, dtype=np.float32)
        self.best_i = np.zeros((self.q.shape[0], 0), dtype=np.int64)

    def add(self, block: np.ndarray, offset: int) -> None:
        import faiss

        index = faiss.IndexFlatIP(self.q.shape[1])
        index.add(np.ascontiguousarray(block, dtype=np.float32))
        s, i = index.search(self.q, min(self.k, block.shape[0]))
        i = np.where(i >= 0, i + offset, -1)
        self.best_s, self.best_i = _merge(self.best_s, self.best_i, s.astype(np.float32), i, self.k)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.best_s, self.best_i


def topk_exact(queries: np.ndarray, shards: Shards, k: int) -> tuple[np.ndarray, list[list[str]], int]:
    """Scores (nq x k', descending), doc ids of the k best inner products over all shards (FAISS, exact),
    and the number of document vectors scored."""
    return _stream_topk(shards, _FaissTopK(queries, k))


def _merge(s1: np.ndarray, i1: np.ndarray, s2: np.ndarray, i2: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    s = np.concatenate([s1, s2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    # stable order: score descending, then earlier corpus position first
    order = np.lexsort((i, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


class _TorchTopK:
    """The running top-k on a torch device: per block, the top k of each query row block, then a merge on the
    device (the running best holds earlier positions than any new block, so a stable sort by score
    descending of [best, new] keeps ties in corpus order)."""

    def __init__(self, queries: np.ndarray, k: int, device: torch.device, chunk: int):
        import torch

        from harness.devices import exact_float32

        exact_float32(device)  # exact search scores in float32 whatever the encoder ran in (no TF32 matmuls)
        self.torch = torch
        self.device = device
        self.q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32), device=device)
        self.k = k
        # rows x chunk fp32 scores, plus a boolean mask or two of the same shape for tied rows
        self.rows = max(1, SCORE_BYTES // (6 * max(1, chunk)))
        self.best_s = torch.full((self.q.shape[0], 0), float("-inf"), device=device)
        self.best_i = torch.zeros((self.q.shape[0], 0), dtype=torch.long, device=device)

    def add(self, block: np.ndarray, offset: int) -> None:
        torch = self.torch
        b = torch.as_tensor(np.ascontiguousarray(block, dtype=np.float32), device=self.device)
        top = min(self.k, b.shape[0])
        parts = [block_topk(self.q[r:r + self.rows] @ b.T, top) for r in range(0, self.q.shape[0], self.rows)]
        self.keep(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]) + offset)

    def keep(self, s: torch.Tensor, i: torch.Tensor) -> None:
        """Merge a block's top scores ``s`` at corpus positions ``i`` (all after the running best's) into it."""
        s, order = self.torch.sort(self.torch.cat([self.best_s, s], dim=1), dim=1, descending=True, stable=True)
        self.best_s = s[:, :self.k]
        self.best_i = self.torch.cat([self.best_i, i], dim=1).gather(1, order[:, :self.k])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return self.best_s.cpu().numpy(), self.best_i.cpu().numpy()


def block_topk(scores: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's ``top`` best columns of ``scores`` in the stable order (score descending, then column):
    ``torch.topk`` picks arbitrarily among scores tied with the ``top``-th, so rows with more such ties than
    places are settled by column (the earliest win), as FAISS's merge and trec_eval's order do."""
    import torch

    vals, idx = torch.topk(scores, top, dim=1, largest=True, sorted=True)
    kth = vals[:, -1:]
    tied_past = ((scores >= kth).sum(dim=1) > top).nonzero().flatten()
    if tied_past.numel():
        sub, kth_t = scores[tied_past], kth[tied_past]
        above, equal = sub > kth_t, sub == kth_t
        room = top - above.sum(dim=1, keepdim=True)
        take = above | (equal & (equal.cumsum(dim=1) <= room))
        cols = take.nonzero()[:, 1].view(-1, top)  # ascending column within each row
        idx[tied_past], vals[tied_past] = cols, sub.gather(1, cols)
    idx, by_position = torch.sort(idx, dim=1)
    vals, by_score = torch.sort(vals.gather(1, by_position), dim=1, descending=True, stable=True)
    return vals, idx.gather(1, by_score)


def topk_exact_torch(queries: np.ndarray, shards: Shards, k: int, device: str,
                     chunk: int = 65_536) -> tuple[np.ndarray, list[list[str]], int]:
    """:func:`topk_exact` computed with torch on ``device`` (a GPU, where the vectors and the matmul belong):
    chunked inner products, each chunk's top k and the merge on the device (see the module docstring)."""
    from harness.devices import pick_device

    return _stream_topk(shards, _TorchTopK(queries, k, pick_device(device), chunk), chunk)


#: token vectors per MaxSim block: the documents of a shard are scored this many tokens at a time (at most)
MAXSIM_TOKENS = 16_384


def maxsim_block(queries: torch.Tensor, tokens: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Late-interaction scores (Khattab and Zaharia 2020): for each query (``queries``: nq x Lq x dim; all-zero
    rows add nothing) and document (its token vectors ``tokens[offsets[j]:offsets[j + 1]]``), the sum over
    query tokens of the largest dot product with a document token; nq x documents, float32."""
    import torch

    nq, lq, dim = queries.shape
    counts = offsets[1:] - offsets[:-1]
    if counts.numel() and int(counts.min()) < 1:
        raise HarnessError("MaxSim over a document without token vectors (an offsets file not as the token store "
                           "writes it); rerun with --force to encode the corpus again")
    width = int(counts.max()) if counts.numel() else 0
    sim = queries.reshape(nq * lq, dim) @ tokens.float().T
    sim = torch.cat([sim, torch.full((nq * lq, 1), float("-inf"), device=sim.device)], dim=1)
    # each document's tokens as a row of ``width`` columns of sim; past its end the -inf column
    pos = offsets[:-1, None] + torch.arange(width, device=offsets.device)[None, :]
    pos = torch.where(pos < offsets[1:, None], pos, torch.full_like(pos, tokens.shape[0]))
    best = sim[:, pos.reshape(-1)].view(nq * lq, len(counts), width).amax(dim=2)
    return best.view(nq, lq, len(counts)).sum(dim=1)


def topk_maxsim(queries: np.ndarray, shards: Iterable[tuple[list[str], np.ndarray, np.ndarray]], k: int,
                device: str = "cpu", block_tokens: int = MAXSIM_TOKENS) -> tuple[np.ndarray, list[list[str]], int]:
    """The exact late-interaction top ``k`` (:func:`maxsim_block`) over token shards (ids, flat token vectors,
    per-document offsets), with torch on ``device``: documents in blocks of at most ``block_tokens`` tokens
    (one document more when it is longer) and queries in row blocks, so the similarity and gather held at
    once stay under :data:`SCORE_BYTES`; each block's top ``k`` merged into the running best on the device
    (score descending, then corpus position, as exact dense search). Scores, doc ids, documents scored."""
    import torch

    from harness.devices import pick_device

    dev = pick_device(device)
    q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32), device=dev)
    running = _TorchTopK(np.zeros((q.shape[0], 1), dtype=np.float32), k, dev, 1)
    all_ids: list[str] = []
    for ids, tokens, offsets in shards:
        start = 0
        while start < len(ids):
            fits = int(np.searchsorted(offsets[start + 1:], offsets[start] + block_tokens, "right"))
            end = min(start + max(1, fits), len(ids))
            first, last = int(offsets[start]), int(offsets[end])
            block = torch.as_tensor(np.array(tokens[first:last], dtype=np.float32), device=dev)  # a copy, not the mmap
            local = torch.as_tensor(offsets[start:end + 1] - first, dtype=torch.long, device=dev)
            width = int((local[1:] - local[:-1]).max())
            per_query = 4 * q.shape[1] * (block.shape[0] + 1 + (end - start) * (width + 1))
            rows = max(1, SCORE_BYTES // max(1, per_query))
            scores = torch.cat([maxsim_block(q[r:r + rows], block, local) for r in range(0, q.shape[0], rows)])
            s, i = block_topk(scores, min(k, end - start))
            running.keep(s, i + len(all_ids) + start)
            start = end
        all_ids.extend(ids)
    best_s, best_i = running.result()
    return best_s, [[all_ids[j] for j in row if j >= 0] for row in best_i], len(all_ids)
