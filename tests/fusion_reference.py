"""The per-query dict fusion the array fusion replaced (``harness.retrievers.fusion`` before runs were arrays):
the reference its results are compared with, bit for bit (tests/test_fusion_arrays.py), and the "before" of
benchmarks/scale/fusion_runs.py. Pyserini's and ranx's order of additions, one query at a time."""

from __future__ import annotations


def _sorted(scores, k):
    order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return dict(order[:k] if k is not None else order)


def rrf_ref(runs, k=60, depth=None):
    fused = {}
    for hits in runs:
        for rank, doc in enumerate(hits, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return _sorted(fused, depth)


def hybrid_ref(dense, sparse, alpha, normalization=False, weight_on_dense=False, depth=None):
    lo_d, hi_d = (min(dense.values()), max(dense.values())) if dense else (0.0, 1.0)
    lo_s, hi_s = (min(sparse.values()), max(sparse.values())) if sparse else (0.0, 1.0)
    fused = {}
    for doc in dict.fromkeys([*dense, *sparse]):
        d = dense.get(doc, lo_d)
        s = sparse.get(doc, lo_s)
        if normalization:
            s = (s - (lo_s + hi_s) / 2) / (hi_s - lo_s) if hi_s != lo_s else 0.0
            d = (d - (lo_d + hi_d) / 2) / (hi_d - lo_d) if hi_d != lo_d else 0.0
        fused[doc] = alpha * s + d if not weight_on_dense else s + alpha * d
    return _sorted(fused, depth)


def normalise_ref(hits, norm):
    if norm == "none" or not hits:
        return dict(hits)
    values = list(hits.values())
    if norm == "min-max":
        lo, hi = min(values), max(values)
        den = max(hi - lo, 1e-9)
        return {d: (s - lo) / den for d, s in hits.items()}
    if norm == "max":
        top = max(max(values), 1e-9)
        return {d: s / top for d, s in hits.items()}
    lo = min(values)
    den = max(sum(values) - lo * len(values), 1e-9)
    return {d: (s - lo) / den for d, s in hits.items()}


def wsum_ref(runs, weights, norm="none", depth=None):
    normed = [normalise_ref(h, norm) for h in runs]
    fused = {}
    for hits in normed:
        for doc in hits:
            if doc not in fused:
                fused[doc] = sum(w * h.get(doc, 0.0) for w, h in zip(weights, normed, strict=True))
    return _sorted(fused, depth)
