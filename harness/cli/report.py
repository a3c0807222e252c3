"""harness report: one static HTML page of a results folder (leaderboard, provenance, efficiency table and plot,
reproduction status, per-query comparison, training curves)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.cli.common import add_output_dir


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML page of the results (no server needed)",
                       description="Write one static HTML page of every result record under --output-dir: the "
                                   "leaderboard (a tab per metric, sortable, provenance on click), what each "
                                   "record cost (the table of leaderboard --efficiency, device named, and nDCG@10 "
                                   "against query time and index size with the Pareto front), each score beside "
                                   "its published one, bar charts, the per-query comparison of two retrievers and "
                                   "the training curves of checkpoints.")
    add_output_dir(p)
    p.add_argument("-o", "--out", type=Path, default=None, metavar="FILE.html",
                   help="where to write the page (default: <output-dir>/report.html)")
    p.add_argument("--baseline", default=None, metavar="NAME",
                   help="mark scores significantly above (▲) or below (▼) this retriever's (paired t-test, "
                        "Holm-corrected over all cells)")
    p.add_argument("--pair", nargs=2, default=None, metavar=("A", "B"),
                   help="the two retrievers compared query by query (default: the first two found)")
    p.add_argument("--title", default="harness report", help="the page's title")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.io import check_output_file
    from harness.results.report import write_report

    if not args.output_dir.is_dir():
        raise HarnessError(f"{args.output_dir}: no such results folder (give --output-dir where `harness run` wrote)")
    out = args.out or args.output_dir / "report.html"
    check_output_file(out, "-o", suffixes=(".html", ".htm"))
    write_report(args.output_dir, out, baseline=args.baseline, pair=args.pair, title=args.title,
                 warn=lambda line: print(f"harness: warning: skipped {line}", file=sys.stderr))
    print(f"wrote {out}")
    return 0
