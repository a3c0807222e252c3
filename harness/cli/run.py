"""harness run: evaluate retrievers on datasets or suites."""

from __future__ import annotations

import argparse

from harness.cli.common import add_device, add_metrics, add_output_dir


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run retrievers on datasets, write run files, records and the leaderboard",
                       description="Run retrievers on datasets; reuses finished (retriever, dataset) pairs.")
    p.add_argument("--retriever", "-r", dest="retrievers", action="append", required=True, metavar="NAME",
                   help="registered name (harness list retrievers), hf:<model id or folder>, or a checkpoint "
                        "folder; repeatable")
    p.add_argument("--dataset", "-d", dest="datasets", action="append", default=[], metavar="ID|PATH",
                   help="registered id (beir/scifact) or a BEIR-format folder; repeatable")
    p.add_argument("--suite", dest="suites", action="append", default=[], metavar="NAME",
                   help="a named list of datasets: beir")
    add_metrics(p, ["ndcg@10", "recall@100", "recall@1000"])
    add_output_dir(p)
    add_device(p)
    p.add_argument("--depth", type=int, default=None, help="hits per query (default: 1000, or the deepest cut-off)")
    p.add_argument("--force", action="store_true", help="recompute even when a matching run exists")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="dense encoders: padded tokens per batch (default 16384)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model repositories to run their own Python code (off by default)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.leaderboard import rebuild, render, table
    from harness.runner import DEFAULT_METRICS, run

    if not args.datasets and not args.suites:
        from harness.errors import HarnessError

        raise HarnessError("name a dataset (--dataset beir/scifact or a folder) or a suite (--suite beir)")
    options = {}
    if args.batch_tokens:
        options["batch_tokens"] = args.batch_tokens
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    metrics = args.metrics or DEFAULT_METRICS
    records = run(args.retrievers, args.datasets, metrics, args.output_dir, suites=args.suites,
                  force=args.force, device=args.device, depth=args.depth, **options)
    df, _ = rebuild(args.output_dir)
    datasets = sorted({r["dataset"] for r in records})
    pivot, averaged, notes = table(df[df["retriever"].isin({r["retriever"] for r in records})], metrics[0],
                                   datasets=datasets)
    print(render(pivot, metrics[0], averaged, notes))
    print(f"\nrecords and run files: {args.output_dir}/  leaderboard: {args.output_dir / 'leaderboard.csv'}")
    return 0
