"""Argument groups shared by several subcommands, defined once."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_output_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", type=Path, default=Path("results"),
                   help="where run files, result records and leaderboard.csv go (default: results/)")


def add_metrics(p: argparse.ArgumentParser, default: list[str] | None, *, help_extra: str = "") -> None:
    p.add_argument("--metric", dest="metrics", action="append", default=None, metavar="METRIC",
                   help="ndcg@k, recall@k, map@k, mrr@k, p@k; repeatable"
                        + (f" (default: {' '.join(default)})" if default else "") + help_extra)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, ...")
