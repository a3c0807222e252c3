"""HNSW build time on one thread against every thread the process may use, and what the parallel build costs.

``harness.ann.build`` builds on every thread of the process's CPU affinity (``IndexConfig.build_threads`` 0);
``build_threads=1`` is deterministic with any FAISS. On the same random unit vectors (of intrinsic dimension 32,
as embeddings are far from uniform in their space; a store's shards of 10,000) this times two builds of each,
checks whether each pair gave the same graph (levels, neighbours, entry point) and the same hits, whether the
parallel build's graph is the one-thread one, and measures each build's recall@10 and @100 against exact
search (what a record's ``recall@100_vs_exact`` vouches for).

    python -m benchmarks.scale.hnsw_threads [--docs 50000] [--dim 384] [--queries 1000] [--m 32]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks._common import FIGURES, machine, stamp


def main() -> int:
    import faiss
    import numpy as np

    from harness.ann import IndexConfig, build, build_provenance, build_threads, recall_vs_exact, search

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--m", type=int, default=32, help="HNSW links per node (the harness's default: 32)")
    parser.add_argument("--shard", type=int, default=10_000, help="vectors a shard, as the embedding store")
    args = parser.parse_args()
    print(f"# {stamp()}, {machine()}, load average {os.getloadavg()[0]:.1f}")
    rng = np.random.default_rng(0)
    latent = rng.standard_normal((args.docs, 32), dtype=np.float32)
    docs = latent @ rng.standard_normal((32, args.dim), dtype=np.float32) + \
        0.1 * rng.standard_normal((args.docs, args.dim), dtype=np.float32)
    docs /= np.linalg.norm(docs, axis=1, keepdims=True)
    queries = docs[rng.choice(args.docs, args.queries, replace=False)] + \
        0.5 * rng.standard_normal((args.queries, args.dim), dtype=np.float32) / np.sqrt(args.dim)
    shards = [([str(i) for i in range(s, min(s + args.shard, args.docs))], docs[s:s + args.shard])
              for s in range(0, args.docs, args.shard)]
    exact = [[str(j) for j in row] for row in np.argsort(-(queries @ docs.T), axis=1, kind="stable")[:, :100]]
    everything = build_threads(IndexConfig())
    rows: dict[str, dict] = {}
    graphs: dict[int, tuple] = {}
    for threads in dict.fromkeys([1, everything]):
        config = IndexConfig(kind="hnsw", hnsw_m=args.m, build_threads=threads)
        builds = []
        for _ in range(2):
            index, ids, seconds = build(shards, args.dim, args.docs, config)
            t = time.perf_counter()
            _, hits = search(index, ids, queries, 100, config)
            hnsw = index.hnsw
            graph = (faiss.vector_to_array(hnsw.levels).tobytes(), faiss.vector_to_array(hnsw.neighbors).tobytes(),
                     hnsw.entry_point, hnsw.max_level)
            builds.append({"build_s": seconds, "search_s": time.perf_counter() - t, "hits": hits, "graph": graph})
        name = f"{threads} thread{'s' if threads > 1 else ''}"
        rows[name] = {**build_provenance(config), "build_s": [round(b["build_s"], 2) for b in builds],
                      "search_s": round(min(b["search_s"] for b in builds), 3),
                      "recall@10_vs_exact": [round(recall_vs_exact(b["hits"], exact, 10), 4) for b in builds],
                      "recall@100_vs_exact": [round(recall_vs_exact(b["hits"], exact, 100), 4) for b in builds],
                      "same_graph_twice": builds[0]["graph"] == builds[1]["graph"],
                      "same_hits_twice": builds[0]["hits"] == builds[1]["hits"],
                      "same_graph_as_one_thread": builds[0]["graph"] == graphs.get(1, builds[0]["graph"])}
        graphs.setdefault(threads, builds[0]["graph"])
        r = rows[name]
        print(f"{name}: build {r['build_s'][0]} s, {r['build_s'][1]} s; recall@10 {r['recall@10_vs_exact']}, "
              f"recall@100 {r['recall@100_vs_exact']}; same graph twice {r['same_graph_twice']}, same hits twice "
              f"{r['same_hits_twice']}, same graph as one thread {r['same_graph_as_one_thread']} (recorded as "
              f"deterministic: {r['deterministic']}, faiss {r['faiss']})", flush=True)
    one, many = rows["1 thread"], rows[next(iter(reversed(rows)))]
    speedup = min(one["build_s"]) / min(many["build_s"])
    print(f"build speed-up on {everything} threads: {speedup:.2f}x")
    FIGURES.update({"docs": args.docs, "dim": args.dim, "queries": args.queries, "hnsw_m": args.m,
                    "ef_construction": IndexConfig().ef_construction, "ef_search_used": max(IndexConfig().ef_search,
                                                                                             100),
                    "threads_available": everything, "load_average": os.getloadavg()[0], "rows": rows,
                    "build_speedup": round(speedup, 2)})
    return 0


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
