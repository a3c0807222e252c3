"""harness fetch: download registered datasets (checksummed, atomic, safe unpacking)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("fetch", help="download datasets into the data root (HARNESS_DATA)")
    p.add_argument("ids", nargs="+", metavar="ID", help="dataset ids, e.g. beir/scifact, or a suite name")
    p.set_defaults(func=cmd_fetch)


def cmd_fetch(args: argparse.Namespace) -> int:
    from harness.data.registry import DATASETS, SUITES
    from harness.datasets import fetch

    ids = [i for x in args.ids for i in SUITES.get(x, [x])]
    for i in ids:
        folder = fetch(DATASETS.get(i))
        print(f"{i}: {folder}")
    return 0
