"""harness run: evaluate retrievers on datasets or suites."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.common import (
    add_execution,
    add_metrics,
    add_output_dir,
    add_settings,
    add_split,
    execution_from_args,
    settings_from_args,
)

if TYPE_CHECKING:
    pass


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run retrievers on datasets, write run files, records and the leaderboard",
                       description="Run retrievers on datasets; reuses finished (retriever, settings, dataset) "
                                   "results whose inputs are unchanged.")
    p.add_argument("--retriever", "-r", dest="retrievers", action="append", required=True, metavar="NAME",
                   help="registered name (harness list retrievers), with parameters where it takes them "
                        "('bm25(k1=1.2;b=0.75)'), hf:<model id or folder>, a checkpoint folder, "
                        "sparse:<SPLADE model>, colbert:<ColBERT model>, run:<TREC run file>, or a composition: "
                        "'fuse:rrf(A,B)', "
                        "'fuse:hybrid(DENSE,SPARSE;alpha=1.2)', 'fuse:wsum(A,B;weights=1:0.5)', "
                        "'rerank:MODEL(FIRST;top=100)' (quote them in a shell); repeatable")
    p.add_argument("--dataset", "-d", dest="datasets", action="append", default=[], metavar="ID|PATH",
                   help="registered id (beir/scifact, odqa/nq; harness list datasets), an ir_datasets id "
                        "(irds:<id>), a BEIR-format folder, an open-domain QA folder (passages.tsv + "
                        "questions.qa.csv), or files:corpus=F;topics=F;qrels=F (or --corpus/--topics/--qrels); "
                        "repeatable")
    p.add_argument("--corpus", type=Path, default=None, metavar="FILE",
                   help="with --topics and --qrels: a dataset of three files (corpus.jsonl, a DPR-style TSV with "
                        "an id/text/title header or a headerless id<TAB>text TSV; topics as queries.jsonl, "
                        "qid<TAB>text or TREC's <top> file; qrels TREC's or BEIR's), as the id "
                        "files:corpus=C;topics=T;qrels=Q")
    p.add_argument("--topics", type=Path, default=None, metavar="FILE", help="the queries (with --corpus)")
    p.add_argument("--qrels", type=Path, default=None, metavar="FILE", help="the judgements (with --corpus)")
    p.add_argument("--suite", dest="suites", action="append", default=[], metavar="NAME",
                   help="a named list of datasets: beir, odqa")
    add_metrics(p, None, help_extra=", accuracy@k on open-domain QA (default: ndcg@10 recall@100 recall@1000 "
                                    "on BEIR; accuracy@1 accuracy@5 accuracy@20 accuracy@100 on ODQA)")
    add_split(p)
    add_output_dir(p)
    p.add_argument("--depth", type=int, default=None,
                   help="hits per query (default: the protocol's, 1000 for BEIR and 100 for ODQA, or the deepest "
                        "cut-off)")
    p.add_argument("--force", action="store_true",
                   help="recompute even when a matching run exists, hashing every input file again")
    p.add_argument("--drop-self-hits", action="store_true",
                   help="apply BEIR's identical-id rule (a hit whose document id equals its query id is removed, "
                        "Pyserini's --remove-query) to datasets whose protocol does not have it (a folder, an "
                        "irds: id); the registered BEIR datasets have it already. Counted in the record "
                        "(removed_by_protocol) and stored as a setting of its own")
    p.add_argument("--run-file", type=Path, default=None, metavar="PATH",
                   help="also write the run (TREC format) to PATH; one retriever on one dataset only. Without it "
                        "each run is at OUTPUT/<dataset>/<split>/<retriever>.trec (a run whose settings are not "
                        "the reference one: <retriever>+<settings digest>.trec), printed at the end")
    add_settings(p)
    add_execution(p)
    p.add_argument("--latency", type=int, default=None, metavar="N",
                   help="after a dense retriever's batch search, time its first N queries one at a time (each "
                        "encoded and searched alone) for the record's latency p50 and p95 (harness leaderboard "
                        "--efficiency); the run is the same. Default: the batch mean only")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.results.leaderboard import rebuild, run_table
    from harness.results.records import run_file_of
    from harness.runner import run

    named = {"--corpus": args.corpus, "--topics": args.topics, "--qrels": args.qrels}
    if any(v is not None for v in named.values()):
        missing = [k for k, v in named.items() if v is None]
        if missing:
            raise HarnessError(f"{' and '.join(missing)} missing: a dataset of files needs --corpus, --topics and "
                               "--qrels together")
        from harness.data.files import files_name

        args.datasets = [*args.datasets, files_name(args.corpus, args.topics, args.qrels)]
    if not args.datasets and not args.suites:
        raise HarnessError("name a dataset (--dataset beir/scifact or a folder) or a suite (--suite beir)")
    records = run(args.retrievers, args.datasets, args.metrics, args.output_dir, suites=args.suites,
                  settings=settings_from_args(args), execution=replace(execution_from_args(args), latency=args.latency),
                  force=args.force, depth=args.depth, split=args.split, drop_self_hits=args.drop_self_hits,
                  run_file=args.run_file)
    if not records:  # a helper rank under torchrun: rank 0 reports
        return 0
    df, problems = rebuild(args.output_dir)
    for problem in problems:
        print(f"harness: warning: skipped {problem}", file=sys.stderr)
    keys = {(r.retriever, r.settings_label, r.dataset, r.split) for r in records}
    shown = df[[(r, s if isinstance(s, str) else "", d, sp) in keys
                for r, s, d, sp in zip(df["retriever"], df["settings"], df["dataset"], df["split"], strict=True)]]
    # one table: a row per (dataset, retriever), a column per measure computed (every one of each record)
    print(run_table(shown, [m for r in records for m in r.metrics]))
    print()
    shown_runs = dict.fromkeys(run_file_of(args.output_dir, r) for r in sorted(records, key=lambda r: (r.dataset,
                                                                                                         r.label)))
    for path in shown_runs:  # on stdout, like the table and in its order: where each run is
        print(f"run file: {path}")
    if args.run_file is not None:
        print(f"run file: {args.run_file}")
    print(f"records: {args.output_dir}/  leaderboard: {args.output_dir / 'leaderboard.csv'}")
    return 0
