"""harness leaderboard: a retriever x dataset table of one metric, rebuilt from the result records."""

from __future__ import annotations

import argparse
import sys

from harness.cli.common import add_output_dir


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="print the retriever x dataset table of one metric")
    add_output_dir(p)
    p.add_argument("--metric", default="ndcg@10")
    p.add_argument("--split", default=None, help="only this split")
    p.add_argument("--dataset", dest="datasets", action="append", default=None, help="only these datasets")
    p.add_argument("--format", choices=["text", "markdown"], default="text")
    p.set_defaults(func=cmd_leaderboard)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.leaderboard import rebuild, render, table
    from harness.metrics import parse_measure

    metric = str(parse_measure(args.metric))
    df, problems = rebuild(args.output_dir)
    for problem in problems:
        print(f"harness: warning: skipped {problem}", file=sys.stderr)
    pivot, averaged, notes = table(df, metric, split=args.split, datasets=args.datasets)
    print(render(pivot, metric, averaged, notes, args.format))
    return 0
