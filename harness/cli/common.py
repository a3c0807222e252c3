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


def add_compute(p: argparse.ArgumentParser) -> None:
    """Dense encoders: numeric precision and forward implementation (both part of the embedding cache key)."""
    p.add_argument("--precision", choices=["auto", "fp32", "bf16x3", "bf16", "fp16"], default="auto",
                   help="dense encoders: fp32; bf16x3 (BERT encoders on a CPU with AMX: float32 matmuls as three "
                        "bf16 products, ~2^-16 relative error, 1.7-1.9x faster); or bf16/fp16 autocast. Default auto: "
                        "bf16 on CUDA, bf16x3 where it runs, fp32 elsewhere. bf16 on a CPU is faster still but "
                        "changes scores slightly")
    p.add_argument("--forward", choices=["auto", "transformers"], default="auto",
                   help="dense encoders: auto uses the harness's fused BERT forward for BERT models on CPU (in fp32 "
                        "equal to transformers' to float32 rounding, faster; or in bf16x3), transformers always "
                        "uses the model's own forward")


def compute_options(args: argparse.Namespace) -> dict:
    """The retriever options set by :func:`add_compute` that differ from their defaults."""
    return {k: getattr(args, k) for k in ("precision", "forward") if getattr(args, k, "auto") != "auto"}
