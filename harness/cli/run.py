"""harness run: evaluate retrievers on datasets or suites."""

from __future__ import annotations

import argparse

from harness.cli.common import add_compute, add_device, add_metrics, add_output_dir, compute_options


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run retrievers on datasets, write run files, records and the leaderboard",
                       description="Run retrievers on datasets; reuses finished (retriever, dataset) pairs.")
    p.add_argument("--retriever", "-r", dest="retrievers", action="append", required=True, metavar="NAME",
                   help="registered name (harness list retrievers), hf:<model id or folder>, or a checkpoint "
                        "folder; repeatable")
    p.add_argument("--dataset", "-d", dest="datasets", action="append", default=[], metavar="ID|PATH",
                   help="registered id (beir/scifact, odqa/nq), a BEIR-format folder, or an open-domain QA folder "
                        "(passages.tsv + questions.qa.csv); repeatable")
    p.add_argument("--suite", dest="suites", action="append", default=[], metavar="NAME",
                   help="a named list of datasets: beir, odqa")
    add_metrics(p, None, help_extra=", accuracy@k on open-domain QA (default: ndcg@10 recall@100 recall@1000 "
                                    "on BEIR; accuracy@1 accuracy@5 accuracy@20 accuracy@100 on ODQA)")
    add_output_dir(p)
    add_device(p)
    add_compute(p)
    p.add_argument("--depth", type=int, default=None, help="hits per query (default: 1000, or the deepest cut-off)")
    p.add_argument("--force", action="store_true", help="recompute even when a matching run exists")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="dense encoders: padded tokens per batch (default on CPU 4096 in fp32, 2048 in bf16x3 or for models 768 wide and up; 16384 on GPU)")
    p.add_argument("--shard-size", type=int, default=None,
                   help="dense encoders: documents per embedding-cache shard; a killed run resumes from the "
                        "last finished shard (default 50000)")
    p.add_argument("--embed-dtype", choices=["float32", "float16"], default=None,
                   help="dense encoders: how embeddings are stored (float16 halves disk; search is float32)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="allow model repositories to run their own Python code (off by default)")
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.leaderboard import rebuild, render, table
    from harness.runner import run

    if not args.datasets and not args.suites:
        from harness.errors import HarnessError

        raise HarnessError("name a dataset (--dataset beir/scifact or a folder) or a suite (--suite beir)")
    options = compute_options(args)
    if args.batch_tokens:
        options["batch_tokens"] = args.batch_tokens
    if args.shard_size:
        options["shard_size"] = args.shard_size
    if args.embed_dtype:
        options["embed_dtype"] = args.embed_dtype
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    records = run(args.retrievers, args.datasets, args.metrics, args.output_dir, suites=args.suites,
                  force=args.force, device=args.device, depth=args.depth, **options)
    if not records:  # a helper rank under torchrun: rank 0 reports
        return 0
    df, _ = rebuild(args.output_dir)
    shown = df[df["retriever"].isin({r["retriever"] for r in records})]
    # one table per headline metric: the first of each record's metrics; every accuracy@k for open-domain QA
    headlines = list(dict.fromkeys(m for r in records for i, m in enumerate(r["metrics"])
                                   if i == 0 or m.startswith("accuracy@")))
    for metric in headlines:
        datasets = sorted({r["dataset"] for r in records if metric in r["metrics"]} or {r["dataset"] for r in records})
        pivot, averaged, notes = table(shown, metric, datasets=datasets)
        print(render(pivot, metric, averaged, notes))
    print(f"\nrecords and run files: {args.output_dir}/  leaderboard: {args.output_dir / 'leaderboard.csv'}")
    return 0
