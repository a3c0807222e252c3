"""harness list: registered retrievers (with their recipes) and datasets (with whether they are present in a
data root); imports neither torch nor the JVM."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.data.registry import DatasetSpec


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("list", help="list registered retrievers, datasets, suites or measures")
    p.add_argument("what", choices=["retrievers", "datasets", "suites", "measures"],
                   help="retrievers (with their recipes), datasets (marked when present here), suites, or measures "
                        "(with their parameters)")
    p.set_defaults(func=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    if args.what == "retrievers":
        from harness.retrievers.registry import RETRIEVERS, composition_syntax, kind_of

        rows = [(n, s.kind, s.model or "", kind_of(s).recipe(s), s.description) for n, s in RETRIEVERS.items()]
        print(tabulate(rows, headers=["name", "kind", "model", "recipe", "description"],
                       maxcolwidths=[None, None, 28, 34, 30]))  # fits 140 columns
        print("\nAlso: hf:<Hugging Face id or folder> for any encoder, a checkpoint folder from `harness train`,\n"
              "sparse:<SPLADE model id or folder>, and compositions of any of these (quote them in a shell):\n")
        print(tabulate(composition_syntax(), headers=["composition", "what it computes"], maxcolwidths=[None, 70]))
        print("\nPublished ones (baselines/published/systems.csv): fuse:hybrid(dpr-nq,bm25;alpha=1.2;hits=1000)\n"
              "on NQ and fuse:hybrid(dpr-multi,bm25;alpha=0.95;hits=1000) on TriviaQA (Pyserini's DPR-Hybrid).")
    elif args.what == "datasets":
        from harness.data.registry import DATASETS
        from harness.datasets import find_local

        def present(spec: DatasetSpec) -> str:
            parts = [DATASETS.get(p) for p in spec.subsets] if spec.subsets else [spec]
            return "yes" if all(find_local(p) is not None for p in parts) else "no"

        ds_rows = [(n, s.protocol.split, "yes" if s.protocol.drop_self_hits else "no", present(s), s.description)
                   for n, s in DATASETS.items()]
        print(tabulate(ds_rows, headers=["id", "split", "drop self-hits", "local", "description"]))
        from harness.datasets import SOURCES

        prefixes = [f"{s.prefix}<id>" for _, s in SOURCES.items() if getattr(s, "prefix", "")]
        print("\nAlso: any BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) as --dataset PATH, "
              "and any ir_datasets id with documents, queries and qrels as --dataset irds:<id> (--split S reads "
              f"<id>/S). Id prefixes of the registered sources: {', '.join(prefixes) or 'none'}.")
    elif args.what == "measures":
        from harness.metrics.measures import measure_rows

        print(tabulate([tuple(r) for r in measure_rows()],
                       headers=["measure", "syntax", "trec_eval", "parameters", "judged by", "what"],
                       maxcolwidths=[None, 24, 14, 30, 10, 40]))
    else:
        from harness.data.registry import SUITES

        for name, ids in SUITES.items():
            print(f"{name}: {' '.join(ids)}")
    return 0
