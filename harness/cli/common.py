"""Argument groups shared by several subcommands, defined once."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from harness.settings import (
    BACKENDS,
    EMBED_DTYPES,
    FORWARDS,
    INDEXES,
    POOLINGS,
    PRECISIONS,
    EncodeSettings,
    Execution,
)


def add_output_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-dir", type=Path, default=Path("results"),
                   help="where run files, result records and leaderboard.csv go (default: results/)")


class _Measures(argparse.Action):
    """``--metric`` / ``-m``, repeatable: a name that stands for several measures (a set such as ``beir``,
    trec_eval's ``P.5,10``) is given to the command as its members' names
    (:func:`harness.metrics.measures.expand_measures`), each of which the rest of the harness reads on its own."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        from harness.errors import HarnessError
        from harness.metrics.measures import expand_measures

        text = str(values)
        try:
            names = [key for key, _ in expand_measures([text])]
        except HarnessError:
            names = [text]  # the command says what is wrong with it, as it always has
        setattr(namespace, self.dest, [*(getattr(namespace, self.dest, None) or []), *names])


def add_metrics(p: argparse.ArgumentParser, default: list[str] | None, *, help_extra: str = "") -> None:
    """``--metric`` (``-m``, trec_eval's flag): its help lists the registered measures and their parameters
    (``harness.metrics``), read when the parser is made, so a measure registered before then is offered."""
    from harness.metrics.measures import measure_help

    p.add_argument("-m", "--metric", dest="metrics", action=_Measures, default=None, metavar="METRIC",
                   help=measure_help() + (f" (default: {' '.join(default)})" if default else "") + help_extra)


def add_split(p: argparse.ArgumentParser, *, rows: bool = False) -> None:
    """``--split``: which topics and judgements of each dataset (recorded; part of the record's path)."""
    if rows:
        p.add_argument("--split", default=None, metavar="NAME",
                       help="only the baseline rows of this split (each row names its split; default: all)")
    else:
        p.add_argument("--split", default=None, metavar="NAME",
                       help="the topics and judgements to evaluate, e.g. dev (default: each dataset's evaluation "
                            "split: BEIR test, MS MARCO dev; a folder with one qrels file: that one); part of the "
                            "record and its path, so splits never overwrite one another")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto",
                   help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1, mps; checked before any work "
                        "(default: auto)")


def add_compute(p: argparse.ArgumentParser) -> None:
    """Dense encoders: numeric precision and forward implementation (part of every fingerprint)."""
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="dense encoders: fp32, the reference computation (TF32 off on CUDA; the default). Speed "
                        "modes, stored and labelled apart: bf16x3 (BERT encoders on a CPU with AMX: float32 "
                        "matmuls as three bf16 products, ~2^-16 relative error, 1.7-1.9x faster), tf32 (CUDA, "
                        "compute capability 8.0+: float32 with TensorFloat-32 matmuls in the encoder's forward), "
                        "bf16 or fp16 autocast (bf16 moves SciFact nDCG@10 by 0.0025)")
    p.add_argument("--forward", choices=list(FORWARDS), default="auto",
                   help="dense encoders: auto uses the harness's fused BERT forward for BERT models on CPU (in fp32 "
                        "equal to transformers' to float32 rounding, faster; or in bf16x3), transformers always "
                        "uses the model's own forward (default: auto)")


def add_settings(p: argparse.ArgumentParser, *, index: bool = True) -> None:
    """Every setting that can change a dense result (``harness.settings.EncodeSettings``), defined once for
    run, check, compare, encode, merge and ann. Each is part of the fingerprint, the cache key and the record."""
    g = p.add_argument_group("dense settings (each changes results: part of the fingerprint and the record)")
    add_compute(g)  # type: ignore[arg-type]
    g.add_argument("--batch-tokens", type=int, default=None, metavar="N",
                   help="padded tokens per batch (default: on CPU 4096 in fp32, 2048 in bf16x3 or for models 768 "
                        "wide and up; 16384 on GPU)")
    g.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="truncate texts to N tokens (default: the model's own, e.g. 512 for Contriever)")
    g.add_argument("--pooling", choices=list(POOLINGS), default=None,
                   help="override the model's pooling (default: as its files say)")
    g.add_argument("--normalize", choices=["true", "false"], default=None,
                   help="override L2 normalisation (default: as the model's files say)")
    g.add_argument("--query-prefix", default=None, metavar="TEXT",
                   help="text put before every query, e.g. 'query: ' for e5 (default: the model's own, usually none)")
    g.add_argument("--doc-prefix", default=None, metavar="TEXT",
                   help="text put before every document, e.g. 'passage: ' for e5 (default: the model's own)")
    g.add_argument("--backend", choices=list(BACKENDS), default="harness",
                   help="who encodes: the harness's own reading of the model's recipe (the default), or "
                        "sentence-transformers itself (a cross-check of that reading, stored and labelled apart; "
                        "sentence-transformers folders only)")
    g.add_argument("--embed-dtype", choices=list(EMBED_DTYPES), default="float32",
                   help="how corpus embeddings are stored (float16 halves disk, rounds the vectors; default float32)")
    if index:
        g.add_argument("--index", dest="search_index", choices=list(INDEXES), default="exact",
                       help="dense search: exact (the reference; default), or an approximate FAISS index, hnsw or "
                            "ivfpq, stored and labelled apart with its recall@100 against exact search in the record")


def add_execution(p: argparse.ArgumentParser, *, shard_size: bool = True) -> None:
    """How the work runs (never what it computes): device, shard size, model code."""
    add_device(p)
    if shard_size:
        p.add_argument("--shard-size", type=int, default=50_000, metavar="N",
                       help="dense encoders: documents per embedding-cache shard; a killed run resumes from the last "
                            "finished shard (default 50000)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads for encoding, reranking and SPLADE search, fixed (default: every core the "
                        "process may use; a dense encoder runs on fewer while other work holds cores). Changes "
                        "no number")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model repositories to run their own Python code (off by default)")


def settings_from_args(args: argparse.Namespace) -> EncodeSettings:
    """The one place command-line options become :class:`~harness.settings.EncodeSettings`."""
    normalize = getattr(args, "normalize", None)
    return EncodeSettings(precision=args.precision, forward=args.forward,
                          batch_tokens=getattr(args, "batch_tokens", None),
                          max_length=getattr(args, "max_length", None), pooling=getattr(args, "pooling", None),
                          normalize=None if normalize is None else normalize == "true",
                          query_prefix=getattr(args, "query_prefix", None),
                          doc_prefix=getattr(args, "doc_prefix", None),
                          embed_dtype=getattr(args, "embed_dtype", "float32"),
                          index=getattr(args, "search_index", "exact"),
                          backend=getattr(args, "backend", "harness"))


def execution_from_args(args: argparse.Namespace, *, progress: bool = True) -> Execution:
    return Execution(device=getattr(args, "device", "auto"), shard_size=getattr(args, "shard_size", 50_000),
                     threads=getattr(args, "threads", None),
                     trust_remote_code=getattr(args, "trust_remote_code", False), progress=progress)


def level(text: str) -> float:
    """An argparse type: a probability strictly between 0 and 1 (--alpha, --confidence)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1 (e.g. 0.05), got {text!r}")
    return value


def count(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``low`` and at most ``high`` (--resamples 1 to 10,000,000: the
    bootstrap holds every resample's mean, so a huge count would exhaust memory or run for days)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low or (high is not None and value > high):
            bound = f" and at most {high:,}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"expected an integer of at least {low}{bound}, got {text!r}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse

