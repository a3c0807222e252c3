"""harness diff: why two numbers differ (settings, protocol, data, model, versions; moved queries)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.common import add_output_dir, count


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("diff", help="explain why two results differ: every differing setting, the metric deltas "
                                    "and the queries that moved most",
                       description="Compare two result records: give their paths, or --retriever twice (or once "
                                   "with --against published) and --dataset, found in --output-dir.")
    p.add_argument("records", nargs="*", type=Path, metavar="RECORD.json", help="two record files")
    p.add_argument("--retriever", "-r", dest="retrievers", action="append", default=[], metavar="NAME",
                   help="a retriever as the leaderboard names it (with [settings] when not the reference); twice")
    p.add_argument("--dataset", "-d", default=None, metavar="ID", help="the dataset of both records")
    p.add_argument("--split", default=None, metavar="NAME",
                   help="the split of both records (default: the one the leaderboard shows, the evaluation split)")
    p.add_argument("--against", choices=["published"], default=None,
                   help="compare one record with the published scores of its system (baselines/published/)")
    p.add_argument("--metric", default=None, help="the metric whose per-query moves are listed (default: the first)")
    p.add_argument("--top", type=count(0), default=10, help="how many moved queries to list (default 10)")
    p.add_argument("--format", choices=["text", "markdown"], default="text",
                   help="text (aligned columns) or markdown (a GitHub table); default: text")
    add_output_dir(p)
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.results.baselines import load_published, normalize_metric
    from harness.results.diff import against_published, diff, render
    from harness.results.records import read_record

    if args.records:
        records = [read_record(p) for p in args.records]
    else:
        if not args.dataset:
            raise HarnessError("give two record files, or --retriever (twice, or once with --against published) "
                               "and --dataset")
        records = [_find(args.output_dir, name, args.dataset, args.split) for name in args.retrievers]
    if args.against == "published":
        if len(records) != 1:
            raise HarnessError("--against published compares one record: give one --retriever or one file")
        published, systems = load_published()
        print(render(against_published(records[0], published, systems), args.format))
        return 0
    if len(records) != 2:
        raise HarnessError("give exactly two records (two files or --retriever twice)")
    a, b = records
    if a.dataset != b.dataset or a.split != b.split:
        raise HarnessError(f"the records are of different datasets ({a.dataset}/{a.split}, {b.dataset}/{b.split}); "
                           "per-query scores only compare on one")
    metric = normalize_metric(args.metric) if args.metric else None
    print(render(diff(a, b, metric=metric, top=args.top, texts=_texts(a)), args.format))
    return 0


def _find(output_dir: Path, name: str, dataset: str, split: str | None) -> Any:
    from harness.errors import HarnessError
    from harness.results.records import find_record, folded_records

    found = find_record(output_dir, name, dataset, split)
    if found is None:
        shown = ", ".join(sorted(r.label for r in folded_records(output_dir)[0] if r.dataset == dataset)) or "none"
        raise HarnessError(f"no record of {name!r} on {dataset} in {output_dir} (records there: {shown})")
    return found


def _texts(record: Any) -> dict[str, str]:
    """The queries' texts, when the dataset can be read here (not needed for the comparison)."""
    from harness.datasets import resolve_dataset
    from harness.errors import HarnessError

    for name in (record.dataset, record.dataset_provenance.get("path", "")):
        try:
            return resolve_dataset(name, allow_fetch=False).queries()
        except (HarnessError, OSError):
            continue
    return {}
