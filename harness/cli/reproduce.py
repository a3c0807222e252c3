"""harness reproduce: the reproduction matrix of published scores (baselines/published/), run or reused."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import (
    add_execution,
    add_output_dir,
    add_settings,
    add_split,
    execution_from_args,
    settings_from_args,
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("reproduce", help="run (or reuse) published systems and judge them against their published "
                                         "scores",
                       description="Every published row of the chosen systems, sources and datasets: published, "
                                   "got, delta, tolerance (half a unit of the published figure's last decimal) and "
                                   "OK/FAIL, or why it cannot run. Exit status 1 when a runnable row fails.")
    p.add_argument("--system", dest="systems", action="append", default=[], metavar="NAME",
                   help="a published system name (bm25-flat, contriever, DPR) or a retriever of ours that one maps "
                        "to (bm25); repeatable (default: all)")
    p.add_argument("--suite", dest="suites", action="append", default=[], metavar="NAME", help="beir or odqa")
    p.add_argument("--dataset", "-d", dest="datasets", action="append", default=[], metavar="ID",
                   help="only these datasets; repeatable")
    p.add_argument("--source", dest="sources", action="append", default=[], metavar="NAME",
                   help="only rows of this source, by a prefix of its short name, e.g. pyserini-2cr, "
                        "contriever-readme; repeatable")
    p.add_argument("--published", type=Path, default=None, metavar="DIR|FILE",
                   help="reference CSVs (default: baselines/published/)")
    add_split(p, rows=True)
    p.add_argument("--model-path", dest="model_paths", action="append", default=[], metavar="NAME=FOLDER",
                   help="run the Hugging Face model NAME of a published row from FOLDER (offline, or a local copy); "
                        "repeatable")
    p.add_argument("--dry-run", action="store_true", help="print the harness run command of every runnable row")
    p.add_argument("--junit", type=Path, default=None, metavar="FILE.xml", help="also write a JUnit XML report")
    p.add_argument("--force", action="store_true", help="recompute runs even when a matching one exists")
    p.add_argument("--format", choices=["text", "markdown"], default="text",
                   help="text (aligned columns) or markdown (a GitHub table); default: text")
    add_output_dir(p)
    add_settings(p)
    add_execution(p)
    p.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from harness.check import check, render, write_junit
    from harness.io import check_output_file
    from harness.paths import offline
    from harness.reproduce import commands, load, parse_model_paths, render_not_runnable

    if args.junit:
        check_output_file(args.junit, "--junit", suffixes=(".xml",))
    runnable, not_runnable = load(systems=args.systems, suites=args.suites, datasets=args.datasets,
                                  sources=args.sources, published_dir=args.published, split=args.split,
                                  model_paths=parse_model_paths(args.model_paths),
                                  need_local=offline() and not args.dry_run)
    if args.dry_run:
        for line in commands(runnable):
            print(line)
        if not_runnable:
            print()
            print(render_not_runnable(not_runnable, args.format))
        return 0
    results = check(runnable, args.output_dir, force=args.force, settings=settings_from_args(args),
                    execution=execution_from_args(args)) if runnable else []
    if results:
        print(render(results, args.format))
    if not_runnable:
        print()
        print(render_not_runnable(not_runnable, args.format))
        print(f"{len(not_runnable)} published row(s) not runnable here")
    if args.junit:
        write_junit(results, args.junit)
        print(f"JUnit report: {args.junit}")
    return 0 if all(r.ok for r in results) else 1
