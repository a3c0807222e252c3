"""harness ann: build a FAISS index (flat, HNSW, IVF-PQ) over cached embeddings and measure its recall cost.

Recall cost = overlap of the index's top-k with exact search's top-k on the dataset's queries, and for
open-domain QA datasets the accuracy@k of both.
"""

from __future__ import annotations

import argparse
import json

from harness.cli.common import add_execution, add_settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("ann", help="build an approximate index over cached embeddings; report its recall vs exact")
    p.add_argument("--retriever", "-r", required=True, metavar="NAME", help="a dense retriever (hf:<model>, ...)")
    p.add_argument("--dataset", "-d", required=True, metavar="ID|PATH", help="registered id or folder")
    p.add_argument("--index", default="hnsw", choices=["flat", "hnsw", "ivfpq"],
                   help="FAISS index built over the cached embeddings (default: hnsw)")
    p.add_argument("--k", type=int, default=100, help="cut-off for recall vs exact (default 100)")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW neighbours per node (default: 32)")
    p.add_argument("--ef-search", type=int, default=128, help="HNSW search breadth (default: 128)")
    p.add_argument("--nlist", type=int, default=0, help="IVF cells (default 4*sqrt(n))")
    p.add_argument("--pq-m", type=int, default=16, help="PQ bytes per vector (must divide the dimension)")
    p.add_argument("--nprobe", type=int, default=32, help="IVF lists searched per query (default: 32)")
    add_settings(p, index=False)  # its own --index: the index it builds and measures
    add_execution(p)
    p.set_defaults(func=cmd_ann)


def cmd_ann(args: argparse.Namespace) -> int:
    import time

    from harness.ann import IndexConfig, build, recall_vs_exact, save, search
    from harness.cli.encode import _load
    from harness.errors import HarnessError
    from harness.search import topk_exact

    retriever, dataset = _load(args)
    retriever.index(dataset)  # reuses the cached embeddings (encodes them when missing)
    store = retriever.corpus_store(dataset)
    manifest = store.manifest()
    if manifest is None:
        raise HarnessError("the embeddings are incomplete; run `harness merge` first")
    config = IndexConfig(kind=args.index, hnsw_m=args.hnsw_m, ef_search=args.ef_search, nlist=args.nlist,
                         pq_m=args.pq_m, nprobe=args.nprobe)
    index, ids, build_s = build(store.shards(), manifest["dim"], manifest["count"], config)
    path = store.dir / f"index-{args.index}.faiss"
    save(index, path)
    queries = dataset.queries()
    qids = list(queries)
    vectors = retriever.encoders.encoder.encode([queries[q] for q in qids], "query", desc="encode queries")
    t0 = time.perf_counter()
    _, exact, _ = topk_exact(vectors, store.shards(), args.k)
    t1 = time.perf_counter()
    scores, approx = search(index, ids, vectors, args.k, config)
    t2 = time.perf_counter()
    report = {"index": config.to_dict(), "path": str(path), "build_s": round(build_s, 3),
              "exact_search_s": round(t1 - t0, 3), "index_search_s": round(t2 - t1, 3),
              f"recall@{args.k}_vs_exact": recall_vs_exact(approx, exact, args.k)}
    # the dataset's own metrics that fit within k, for exact search and for the index (rank order kept)
    metrics = [m for m in dataset.default_metrics if dataset.judgements().measure(m)[1] <= args.k]
    if metrics:
        for name, docs in (("exact", exact), (args.index, approx)):
            run = {q: {d: float(-r) for r, d in enumerate(row)} for q, row in zip(qids, docs, strict=True)}
            per_query, _ = dataset.judgements().evaluate(run, metrics)
            report[f"{name}_metrics"] = {m: sum(v.values()) / len(v) for m, v in per_query.items()}
    print(json.dumps(report, indent=2))
    return 0
