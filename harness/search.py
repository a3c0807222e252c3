"""Exact inner-product search over sharded embeddings with a running top-k (FAISS per shard).

Memory stays at one shard plus (queries x k) results, whatever the corpus size.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def topk_exact(queries: np.ndarray, shards: Iterable[tuple[list[str], np.ndarray]], k: int
               ) -> tuple[np.ndarray, list[list[str]], int]:
    """Scores (nq x k', descending), doc ids of the k best inner products over all shards, and the number
    of document vectors scored (so the caller can check that the whole corpus was searched)."""
    import faiss

    nq = queries.shape[0]
    q = np.ascontiguousarray(queries, dtype=np.float32)
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    all_ids: list[str] = []
    for ids, vectors in shards:
        if len(ids) != vectors.shape[0]:
            raise ValueError(f"a shard of {vectors.shape[0]} vectors came with {len(ids)} ids")
        offset = len(all_ids)
        all_ids.extend(ids)
        index = faiss.IndexFlatIP(q.shape[1])
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        s, i = index.search(q, min(k, len(ids)))
        s, i = s.astype(np.float32), np.where(i >= 0, i + offset, -1)
        best_s, best_i = _merge(best_s, best_i, s, i, k)
    docs = [[all_ids[j] for j in row if j >= 0] for row in best_i]
    return best_s, docs, len(all_ids)


def _merge(s1: np.ndarray, i1: np.ndarray, s2: np.ndarray, i2: np.ndarray, k: int
           ) -> tuple[np.ndarray, np.ndarray]:
    s = np.concatenate([s1, s2], axis=1)
    i = np.concatenate([i1, i2], axis=1)
    # stable order: score descending, then earlier corpus position first
    order = np.lexsort((i, -s), axis=1)[:, :k]
    return np.take_along_axis(s, order, axis=1), np.take_along_axis(i, order, axis=1)


def topk_exact_torch(queries: np.ndarray, shards: Iterable[tuple[list[str], np.ndarray]], k: int, device: str,
                     chunk: int = 65_536) -> tuple[np.ndarray, list[list[str]], int]:
    """:func:`topk_exact` computed with torch on ``device`` (a GPU, where the vectors and the matmul belong):
    chunked inner products, each chunk's top k by a stable sort (score descending, then corpus position),
    merged exactly as the FAISS path merges, so ties are broken the same way."""
    import torch

    from harness.devices import pick_device

    dev = pick_device(device)
    q = torch.as_tensor(np.ascontiguousarray(queries, dtype=np.float32), device=dev)
    nq = q.shape[0]
    best_s = np.full((nq, 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((nq, 0), dtype=np.int64)
    all_ids: list[str] = []
    for ids, vectors in shards:
        if len(ids) != vectors.shape[0]:
            raise ValueError(f"a shard of {vectors.shape[0]} vectors came with {len(ids)} ids")
        for start in range(0, len(ids), chunk):
            block = torch.as_tensor(np.ascontiguousarray(vectors[start:start + chunk], dtype=np.float32), device=dev)
            scores = q @ block.T
            top = min(k, block.shape[0])
            sorted_s, sorted_i = torch.sort(scores, dim=1, descending=True, stable=True)
            s = sorted_s[:, :top].cpu().numpy()
            i = sorted_i[:, :top].cpu().numpy() + len(all_ids) + start
            best_s, best_i = _merge(best_s, best_i, s, i, k)
        all_ids.extend(ids)
    docs = [[all_ids[j] for j in row if j >= 0] for row in best_i]
    return best_s, docs, len(all_ids)
