"""harness encode / harness merge: encode a corpus in shards (one cluster job each), then seal the store.

    harness encode -r hf:MODEL -d odqa/nq --plan            # sizes only: disk, memory per index choice
    harness encode -r hf:MODEL -d odqa/nq --shard 3/16      # job 3 of 16 (0-based)
    harness merge  -r hf:MODEL -d odqa/nq --shards 16       # check every chunk, write the manifest
    harness run    -r hf:MODEL -d odqa/nq                   # reuses the merged embeddings
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from harness.cli.common import add_execution, add_settings, execution_from_args, settings_from_args

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.retrievers.dense import DenseRetriever


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--retriever", "-r", required=True, metavar="NAME", help="a dense retriever (hf:<model>, ...)")
    p.add_argument("--dataset", "-d", required=True, metavar="ID|PATH", help="registered id or folder")
    add_settings(p, index=False)  # part of the store's key (the searcher is not): the same as run's
    add_execution(p)  # --shard-size must match between encode and merge


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("encode", help="encode a corpus (or one shard of it) into the embedding cache",
                       description="Encode a corpus into the content-keyed embedding cache; --shard i/n "
                                   "encodes every n-th chunk starting at i, so n jobs share the work.")
    _common(p)
    p.add_argument("--shard", default="0/1", metavar="I/N", help="this job's part, 0-based (default 0/1)")
    p.add_argument("--index", default="exact", choices=["exact", "flat", "hnsw", "ivfpq"],
                   help="the search you will run, for the memory check (default exact, streamed)")
    p.add_argument("--plan", action="store_true", help="print the disk/memory plan and stop")
    p.add_argument("--no-check", action="store_true", help="encode even when the plan says it will not fit")
    p.set_defaults(func=cmd_encode)
    m = sub.add_parser("merge", help="check the shards written by `harness encode --shard` and seal the store")
    _common(m)
    m.add_argument("--shards", type=int, required=True, metavar="N", help="how many jobs encoded it")
    m.add_argument("--no-verify", action="store_true", help="check sizes only, not checksums")
    m.set_defaults(func=cmd_merge)


def _load(args: argparse.Namespace) -> tuple[DenseRetriever, Dataset]:
    from harness.datasets import resolve_dataset
    from harness.errors import HarnessError
    from harness.retrievers.registry import kind_of, resolve_retriever

    spec = resolve_retriever(args.retriever)
    if not kind_of(spec).encodes_corpus:
        raise HarnessError(f"{args.retriever} is not a dense retriever; BM25 indexes with `harness run`")
    retriever = spec.load(settings_from_args(args), execution_from_args(args))
    from harness.retrievers.dense import DenseRetriever

    if not isinstance(retriever, DenseRetriever):
        raise HarnessError(f"{args.retriever}: `harness encode` writes the embedding store of a dense retriever")
    return retriever, resolve_dataset(args.dataset)


def cmd_encode(args: argparse.Namespace) -> int:
    from harness.odqa.shards import encode_shard, parse_shard, plan_for

    i, n = parse_shard(args.shard)
    retriever, dataset = _load(args)
    if args.plan:
        print(plan_for(retriever, dataset, n).render())
        return 0
    encode_shard(retriever, dataset, i, n, index=args.index, check=not args.no_check)
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from harness.odqa.shards import merge

    retriever, dataset = _load(args)
    merge(retriever, dataset, args.shards, verify=not args.no_verify)
    return 0
