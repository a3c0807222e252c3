"""harness check: run or reuse results and compare them with regression baselines (expected ± tolerance)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import (
    add_execution,
    add_output_dir,
    add_settings,
    add_split,
    count,
    execution_from_args,
    level,
    settings_from_args,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check", help="check results against regression baselines; non-zero exit on any regression",
                       description="Run (or reuse) what the baseline rows need and print expected, got, delta, "
                                   "tolerance and OK/FAIL per row. Exit status 1 when any row fails.")
    p.add_argument("files", nargs="*", type=Path, metavar="BASELINE_FILE",
                   help="CSV files retriever,dataset,split,metric,expected,tolerance "
                        "(default: baselines/regression.csv)")
    add_output_dir(p)
    p.add_argument("--retriever", dest="retrievers", action="append", default=None, metavar="NAME",
                   help="only rows of this retriever; repeatable")
    p.add_argument("--dataset", dest="datasets", action="append", default=None, metavar="ID",
                   help="only rows of this dataset; repeatable")
    add_split(p, rows=True)
    p.add_argument("--dataset-override", dest="overrides", action="append", default=[], metavar="ID=PATH",
                   help="run PATH (a BEIR folder or another id) in place of dataset ID, checked against ID's rows")
    p.add_argument("--junit", type=Path, default=None, metavar="FILE.xml", help="also write a JUnit XML report")
    p.add_argument("--allow-improvement", action="store_true",
                   help="a score above expected + tolerance passes (by default it fails: update the baseline)")
    p.add_argument("--force", action="store_true", help="recompute runs even when a matching one exists")
    p.add_argument("--format", choices=["text", "markdown"], default="text",
                   help="text (aligned columns) or markdown (a GitHub table); default: text")
    g = p.add_argument_group("paired rule")
    g.add_argument("--paired", action="store_true",
                   help="also judge each row by a paired randomization test against its baseline record "
                        "(records/ beside the CSV)")
    g.add_argument("--alpha", type=level, default=0.05, help="significance level of --paired (default 0.05)")
    g.add_argument("--resamples", type=count(1, 10_000_000), default=10_000,
                   help="randomization resamples (default 10000)")
    g.add_argument("--save-baseline", action="store_true",
                   help="write each row's per-query scores from this run as its baseline record")
    add_settings(p)
    add_execution(p)
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    from harness.check import check, parse_overrides, render, write_junit
    from harness.errors import HarnessError
    from harness.io import check_output_file
    from harness.results.baselines import baselines_dir, read_regression, same_retriever

    if args.junit:
        check_output_file(args.junit, "--junit", suffixes=(".xml",))
    files = args.files or [baselines_dir() / "regression.csv"]
    rows = [row for f in files for row in read_regression(f)]
    if args.retrievers:
        rows = [r for r in rows if any(same_retriever(r.retriever, n) for n in args.retrievers)]
    if args.datasets:
        rows = [r for r in rows if r.dataset in args.datasets]
    if args.split:
        rows = [r for r in rows if r.split == args.split]
    if not rows:
        raise HarnessError("no baseline rows to check" + (" after --retriever/--dataset/--split" if args.retrievers
                                                          or args.datasets or args.split else ""))
    from harness.check import Paired

    results = check(rows, args.output_dir, overrides=parse_overrides(args.overrides),
                    allow_improvement=args.allow_improvement, force=args.force,
                    settings=settings_from_args(args), execution=execution_from_args(args),
                    paired=Paired(alpha=args.alpha, resamples=args.resamples) if args.paired else None,
                    save_baseline=args.save_baseline)
    print(render(results, args.format))
    if args.junit:
        write_junit(results, args.junit)
        print(f"JUnit report: {args.junit}")
    return 0 if all(r.ok for r in results) else 1
