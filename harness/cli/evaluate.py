"""harness evaluate: score any TREC run file against qrels, as trec_eval would."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.cli.common import add_metrics


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="score a TREC run file against qrels (trec_eval semantics)",
                       description="Score a TREC run file against qrels as trec_eval -c scores it (a judged query the "
                                   "run misses counts 0). trec_eval's habits work: -m with its measure names "
                                   "(ndcg_cut.10, P.5,10, map, recip_rank), -l N, -q. Results are keyed by the names "
                                   "given.")
    p.add_argument("--qrels", type=Path, required=True, help="TREC qrels or BEIR qrels TSV")
    p.add_argument("--run", type=Path, required=True, help="TREC run file")
    add_metrics(p, ["ndcg@10", "recall@100"])
    p.add_argument("-l", "--relevance-level", dest="rel", type=int, default=None, metavar="N",
                   help="trec_eval's -l: a grade of at least N is relevant, for every measure that takes a relevance "
                        "level and does not write its own (R, P, AP, RR, Success; nDCG uses the grades themselves) "
                        "(default: 1)")
    p.add_argument("-q", "--per-query", action="store_true", help="print one line per query too (trec_eval's -q)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from harness.metrics import mean
    from harness.metrics.evaluate import evaluate_inputs
    from harness.metrics.measures import REL

    metrics = args.metrics or ["ndcg@10", "recall@100"]
    if args.rel is not None:
        REL.parse(str(args.rel), "-l")  # at least 1, said in one line
    per_query = evaluate_inputs(args.qrels, args.run, metrics, rel=args.rel)
    summary = {m: mean(v) for m, v in per_query.items()}
    queries = len(next(iter(per_query.values()), {}))  # every judged query (an unanswered one scores 0)
    if args.json:
        print(json.dumps({"metrics": summary, "num_queries": queries,
                          **({"per_query": per_query} if args.per_query else {})}, indent=2))
        return 0
    if args.per_query:
        for m, values in per_query.items():
            for q, v in values.items():
                print(f"{m}\t{q}\t{v:.4f}")
    for m, v in summary.items():
        print(f"{m}\tall\t{v:.4f}")
    print(f"queries\tall\t{queries}")
    return 0
