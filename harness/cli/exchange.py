"""harness export / harness import: results that travel (MTEB's result format, a flat per-query table) and
rows computed elsewhere (MTEB result files, ranx and trec_eval outputs), read-only, their source recorded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import add_output_dir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("export", help="write records in MTEB's result format or as one per-query table",
                       description="Export result records: --format mteb writes <DEST>/<model>/<revision>/<Task>.json "
                                   "and model_meta.json (the MTEB results repository's layout); --format per-query "
                                   "writes DEST.csv or DEST.parquet, a row per (retriever, settings, dataset, split, "
                                   "metric, query).")
    p.add_argument("dest", type=Path, metavar="DEST", help="a folder (mteb) or a .csv / .parquet file (per-query)")
    p.add_argument("--format", choices=["mteb", "per-query"], required=True,
                   help="mteb: MTEB's result files, a model folder per row; per-query: one table of every "
                        "per-query value")
    add_output_dir(p)
    p.add_argument("--retriever", "-r", dest="retrievers", action="append", default=None, metavar="NAME",
                   help="only these retrievers (as records name them); repeatable")
    p.add_argument("--dataset", "-d", dest="datasets", action="append", default=None, metavar="ID",
                   help="only these datasets; repeatable")
    p.add_argument("--split", default=None, help="only this split")
    p.add_argument("--model-name", default=None, help="mteb, one row exported: the model's name (default: each "
                                                      "row's retriever)")
    p.add_argument("--revision", default=None, help="mteb: the model's revision (default: the harness version)")
    p.set_defaults(func=cmd_export)

    q = sub.add_parser("import", help="add rows computed elsewhere (MTEB, ranx, trec_eval) to the leaderboard",
                       description="Read scores computed elsewhere into <output-dir>/imported/: shown on the "
                                   "leaderboard as '[imported: SOURCE]' rows, never used by check, diff or compare.")
    q.add_argument("file", type=Path, metavar="FILE|DIR", help="the scores: a file, or an MTEB result folder")
    q.add_argument("--format", choices=["mteb", "ranx", "trec_eval"], required=True,
                   help="mteb: TaskResult JSON files; ranx: evaluate()'s scores or a saved Report; trec_eval: its "
                        "output")
    q.add_argument("--system", default=None, help="the system's name (ranx, trec_eval; mteb: default from the folder)")
    q.add_argument("--dataset", "-d", default=None, help="ranx, trec_eval: the dataset id the scores are on")
    q.add_argument("--split", default="test", help="ranx, trec_eval: the split (default: test)")
    q.add_argument("--rel", type=int, default=None, metavar="N",
                   help="trec_eval: the relevance level it was run with (-l N; its output does not print it), "
                        "written into the measures that have one: AP(rel=2), R(rel=2)@1000 (default: 1)")
    add_output_dir(q)
    q.set_defaults(func=cmd_import)


def cmd_export(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.results.exchange import export_mteb_rows, export_per_query
    from harness.results.records import folded_records
    from harness.version import __version__

    records, problems = folded_records(args.output_dir)
    for problem in problems:
        print(f"harness: warning: skipped {problem}", file=sys.stderr)
    records = [r for r in records if (not args.retrievers or r.retriever in args.retrievers)
               and (not args.datasets or r.dataset in args.datasets) and (not args.split or r.split == args.split)]
    if not records:
        raise HarnessError(f"{args.output_dir}: no records match (check --retriever, --dataset, --split)")
    if args.format == "per-query":
        n = export_per_query(records, args.dest)
        print(f"{args.dest}: {n} rows from {len(records)} records")
        return 0
    written = export_mteb_rows(records, args.dest, args.revision or f"harness-{__version__}", args.model_name)
    for path in written:
        print(path)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.results.imports import import_mteb, import_ranx, import_trec_eval
    from harness.results.leaderboard import rebuild

    if not args.file.exists():
        raise HarnessError(f"{args.file}: no such file or folder")
    if args.rel is not None and args.format != "trec_eval":
        raise HarnessError(f"--rel applies to --format trec_eval (whose output does not print its -l level); "
                           f"{args.format}'s scores name their own measures: leave --rel out")
    if args.format == "mteb":
        imported = import_mteb(args.file, args.system)
    else:
        if not args.dataset:
            raise HarnessError(f"--format {args.format}: name the dataset the scores are on (--dataset ID)")
        if args.format == "trec_eval":
            if not args.system:
                raise HarnessError("--format trec_eval: name the system (--system NAME)")
            imported = import_trec_eval(args.file, args.system, args.dataset, args.split,
                                        rel=1 if args.rel is None else args.rel)
        else:
            imported = import_ranx(args.file, args.system, args.dataset, args.split)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    path = imported.save(args.output_dir)
    rebuild(args.output_dir)
    print(f"{path}: {len(imported.rows)} rows from {imported.source}"
          + (f" (not read: {', '.join(imported.skipped)})" if imported.skipped else ""))
    return 0
