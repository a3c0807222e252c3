"""Exact search at scale: the cost of scoring and of keeping each query's top k, over 1M x 768 vectors.

Two paths of harness.search, on the same random vectors (shards of 100,000, as a store holds them): FAISS
(a flat index per shard, its top k merged on the CPU) and torch (chunks of 65,536 columns, top k per
chunk and the merge on the device: the GPU path, timed here on the CPU unless CUDA is there, then on the
GPU too). Beside each, the bare matmuls of the same chunks, so the top-k and merge share is the
difference. The two paths compute the inner products with different kernels, so scores differ in the last
bits and near-equal neighbours may swap: the run records the share of queries whose ranked lists are
identical and the largest score difference at equal ranks, and fails when a score differs by more than
1e-4 relative (a different result, not rounding).

    python -m benchmarks.scale.search_merge [--docs 1000000] [--dim 768] [--queries 1000] [--k 1000]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks._common import FIGURES, machine, stamp


def main() -> int:
    import numpy as np
    import torch

    from harness.search import topk_exact, topk_exact_torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--shard", type=int, default=100_000, help="vectors a shard, as the embedding store")
    args = parser.parse_args()
    print(f"# {stamp()}, {machine()}, load average {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    docs = rng.standard_normal((args.docs, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    shards = [([str(i) for i in range(s, min(s + args.shard, args.docs))], docs[s:s + args.shard])
              for s in range(0, args.docs, args.shard)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows: dict[str, dict[str, float]] = {}

    def timed(name: str, fn) -> object:
        t = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        rows[name] = {"seconds": round(time.perf_counter() - t, 2)}
        print(f"{name}: {rows[name]['seconds']} s", flush=True)
        return out

    ref = timed("faiss (flat index per shard, merge on the CPU)", lambda: topk_exact(queries, shards, args.k))
    for device in devices:
        got = timed(f"torch on {device} (top k per chunk, merge on the device)",
                    lambda device=device: topk_exact_torch(queries, shards, args.k, device))
        row = rows[f"torch on {device} (top k per chunk, merge on the device)"]
        row["identical_lists_share"] = float(np.mean([a == b for a, b in zip(got[1], ref[1], strict=True)]))
        row["max_rel_score_diff"] = float((np.abs(got[0] - ref[0]) / np.maximum(np.abs(ref[0]), 1e-6)).max())
        print(f"  identical ranked lists: {row['identical_lists_share']:.1%} of queries; largest score difference "
              f"at equal ranks {row['max_rel_score_diff']:.1e} relative", flush=True)
        q = torch.as_tensor(queries, device=device)

        def matmuls(device: str = device, q: torch.Tensor = q) -> None:
            for _, vectors in shards:
                for start in range(0, vectors.shape[0], 65_536):
                    (q @ torch.as_tensor(vectors[start:start + 65_536], device=device).T).max()

        timed(f"bare matmuls on {device} (the scoring alone)", matmuls)
    for device in devices:
        whole = rows[f"torch on {device} (top k per chunk, merge on the device)"]["seconds"]
        bare = rows[f"bare matmuls on {device} (the scoring alone)"]["seconds"]
        print(f"top-k and merge on {device}: {whole - bare:.2f} s of {whole:.2f} s ({(whole - bare) / whole:.0%})")
    FIGURES.update({"docs": args.docs, "dim": args.dim, "queries": args.queries, "k": args.k, "shard": args.shard,
                    "load_average": os.getloadavg()[0], "rows": rows})
    return 0 if all(r.get("max_rel_score_diff", 0) <= 1e-4 for r in rows.values()) else 1


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
