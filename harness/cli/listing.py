"""harness list: registered retrievers and datasets (imports neither torch nor the JVM)."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser("list", help="list registered retrievers or datasets")
    p.add_argument("what", choices=["retrievers", "datasets", "suites"])
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.what == "retrievers":
        from harness.retrievers.registry import RETRIEVERS

        rows = [(n, s.kind, s.model or "", s.description) for n, s in RETRIEVERS.items()]
        print(tabulate(rows, headers=["name", "kind", "model", "description"]))
        print("\nAlso: hf:<Hugging Face id or folder> for any encoder, or a checkpoint folder from `harness train`.")
    elif args.what == "datasets":
        from harness.data.registry import DATASETS

        rows = [(n, s.protocol.split, "yes" if s.protocol.drop_self_hits else "no", s.description)
                for n, s in DATASETS.items()]
        print(tabulate(rows, headers=["id", "split", "drop self-hits", "description"]))
        print("\nAlso: any BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) as --dataset PATH.")
    else:
        from harness.data.registry import SUITES

        for name, ids in SUITES.items():
            print(f"{name}: {' '.join(ids)}")
    return 0
