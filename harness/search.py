"""Exact inner-product search over sharded embeddings with a running top-k: FAISS per shard on the CPU, or
torch's matmul on a GPU. Both merge each block's best with the same stable order (score descending, then
corpus position), so they rank alike, ties included.

Memory stays at one shard plus (queries x k) results, whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

Shards = Iterable[tuple[list[str], np.ndarray]]
#: a block's best: (vectors of the block, k) -> (scores, positions within the block), nq x min(k, rows)
BlockTop = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _stream_topk(shards: Shards, nq: int, k: int, block_top: BlockTop, chunk: int | None = None
                 ) -> tuple[np.ndarray, list[list[str]], int]:
    """The running top-k over every shard (cut into ``chunk`` rows when given): scores (descending), doc ids,
    and the number of document vectors scored (the caller checks it is the whole corpus)."""
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    all_ids: list[str] = []
    for ids, vectors in shards:
        if len(ids) != vectors.shape[0]:
            raise ValueError(f"a shard of {vectors.shape[0]} vectors came with {len(ids)} ids")
        step = chunk or max(1, len(ids))
        for start in range(0, len(ids), step):
            block = vectors[start:start + step]
            s, i = block_top(block, min(k, block.shape[0]))
            i = np.where(i >= 0, i + len(all_ids) + start, -1)
            best_s, best_i = _merge(best_s, best_i, s.astype(np.float32), i, k)
        all_ids.extend(ids)
    docs = [[all_ids[j] for j in row if j >= 0] for row in best_i]
    return best_s, docs, len(all_ids)


def topk_exact(queries: np.ndarray, shards: Shards, k: int) -> tuple[np.ndarray, list[list[str]], int]:
    """Scores (nq x k', descending), doc ids of the k best inner products over all shards (FAISS, exact),
    and the number of document vectors scored."""
    import faiss

    q = np.ascontiguousarray(queries, dtype=np.float32)

    def block_top(vectors: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
        index = faiss.IndexFlatIP(q.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        s, i = index.search(q, top)
        return s, i

    return _stream_topk(shards, q.shape[0], k, block_top)


def topk_exact_torch(queries: np.ndarray, shards: Shards, k: int, device: str,
                     chunk: int = 65_536) -> tuple[np.ndarray, list[list[str]], int]:
    """:func:`topk_exact` computed with torch on ``device`` (a GPU, where the vectors and the matmul belong):
    chunked inner products, each chunk's top k by a stable sort (score descending, then corpus position)."""
    import torch

    from harness.devices import pick_device

    dev = pick_device(device)
    q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32), device=dev)

    def block_top(vectors: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
        block = torch.as_tensor(np.ascontiguousarray(vectors, dtype=np.float32), device=dev)
        s, i = torch.sort(q @ block.T, dim=1, descending=True, stable=True)
        return s[:, :top].cpu().numpy(), i[:, :top].cpu().numpy()

    return _stream_topk(shards, q.shape[0], k, block_top, chunk)


def _merge(s1: np.ndarray, i1: np.ndarray, s2: np.ndarray, i2: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    s = np.concatenate([s1, s2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    # stable order: score descending, then earlier corpus position first
    order = np.lexsort((i, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)
