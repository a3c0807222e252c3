"""harness leaderboard: a retriever x dataset table of one metric, rebuilt from the result records.

``--baseline NAME`` marks cells significantly better or worse than NAME (paired test over queries, Holm
corrected); ``--against published`` lists each score beside the published one; ``--plot FILE.png`` draws
the table as a grouped bar chart. ``--efficiency`` prints what each record cost beside its score (device,
docs/s, ms/query as a batch mean, latency p50 and p95 where the run timed its queries one by one, index size,
peak memory, parameters, dimension; ``harness.results.efficiency``), its ``--plot`` the metric against query
time and index size with the Pareto front.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.common import add_output_dir, count, level


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("leaderboard", help="print the retriever x dataset table of one metric")
    add_output_dir(p)
    p.add_argument("--metric", default="ndcg@10",
                   help="a measure (nDCG@10, R@100, R(rel=2)@1000, Judged@10 ...; accuracy@k for open-domain QA; "
                        "default: ndcg@10)")
    p.add_argument("--split", default=None, help="only this split")
    p.add_argument("--judged", type=int, nargs="?", const=10, default=None, metavar="K",
                   help="beside each dataset's column, the share of the top K (default 10) that is judged "
                        "(Judged@K), so a score computed on many unjudged documents shows as such")
    p.add_argument("--dataset", "-d", dest="datasets", action="append", default=None, help="only these datasets")
    p.add_argument("--format", choices=["text", "markdown"], default="text",
                   help="text (aligned columns) or markdown (a GitHub table); default: text")
    g = p.add_argument_group("significance and published scores")
    g.add_argument("--baseline", metavar="NAME", default=None,
                   help="mark cells significantly better (▲) or worse (▼) than this retriever")
    g.add_argument("--test", choices=["t", "wilcoxon", "randomization"], default="t",
                   help="paired test for --baseline (default: t)")
    g.add_argument("--alpha", type=level, default=0.05, help="significance level after Holm correction (default 0.05)")
    g.add_argument("--seed", type=count(0), default=0, help="seed of the randomization test")
    g.add_argument("--against", metavar="published|FILE", default=None,
                   help="put each score beside the published one: 'published' (baselines/published/) or a "
                        "reference CSV (source,system,dataset,split,metric,value)")
    g.add_argument("--plot", type=Path, metavar="FILE.png", default=None,
                   help="also draw the table as a grouped bar chart (with --efficiency: the metric against "
                        "query time and index size, the Pareto front marked)")
    p.add_argument("--efficiency", action="store_true",
                   help="the metric beside what each record cost: device, docs/s, ms/query (batch mean), query "
                        "latency p50 and p95 (where the run timed queries one by one: harness run --latency N), "
                        "index size, peak memory, parameters, embedding dimension")
    p.set_defaults(func=cmd_leaderboard)


def _score_what_is_missing(args: argparse.Namespace, df: Any, wanted: list[str]) -> Any:
    """Records lacking a measure of ``wanted`` are scored from their stored run files where their dataset is
    here (``harness.results.rescore``; the retriever is not run), then the table is folded again. A metric no
    record holds, and none could be scored, is one line saying how to get it."""
    from harness.errors import HarnessError
    from harness.results.leaderboard import rebuild
    from harness.results.rescore import score_missing

    rows = df[df["split"] == args.split] if args.split and not df.empty else df
    if args.datasets and not rows.empty:
        rows = rows[rows["dataset"].isin(args.datasets)]
    if rows.empty or all(m in rows.columns and rows[m].notna().all() for m in wanted):
        return df
    written, notes = score_missing(args.output_dir, wanted, split=args.split, datasets=args.datasets)
    for note in notes:
        print(f"harness: note: {note}", file=sys.stderr)
    if written:
        print(f"harness: scored {', '.join(wanted)} from the stored run files of {written} record(s) (recorded, "
              "as `harness run --metric` records them)", file=sys.stderr)
        df, _ = rebuild(args.output_dir)
    metric = wanted[0]
    if metric not in df.columns or df[metric].isna().all():
        raise HarnessError(f"no record in {args.output_dir} holds {metric}, and none could be scored from its run "
                           f"file here (notes above); `harness run -r NAME -d DATASET --metric {metric}` scores the "
                           "run files it has without retrieving again")
    return df


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.results.baselines import normalize_metric
    from harness.results.leaderboard import rebuild, render, table, with_judged

    metric = normalize_metric(args.metric)
    if args.plot:
        from harness.io import check_output_file

        check_output_file(args.plot, "--plot", suffixes=(".png", ".pdf", ".svg"))
    df, problems = rebuild(args.output_dir)
    for problem in problems:
        print(f"harness: warning: skipped {problem}", file=sys.stderr)
    df = _score_what_is_missing(args, df, [metric] + ([f"judged@{args.judged}"] if args.judged else []))
    if args.efficiency:
        return _efficiency(args, metric)
    pivot, averaged, notes = table(df, metric, split=args.split, datasets=args.datasets)
    if args.judged is not None:
        if args.judged < 1:
            from harness.errors import HarnessError

            raise HarnessError(f"--judged {args.judged}: the cut-off must be at least 1")
        pivot, more = with_judged(df, pivot, args.judged, split=args.split)
        notes = notes + more
    marks, base = None, None
    if args.baseline and not pivot.empty:
        from harness.results.leaderboard import significance_marks
        from harness.results.records import folded_records

        records = folded_records(args.output_dir)[0]  # one record a row: two for one are named above, not used
        marks, base, extra = significance_marks(records, pivot, metric, args.baseline, split=args.split,
                                                test=args.test, alpha=args.alpha, seed=args.seed)
        notes = notes + extra
    print(render(pivot, metric, averaged, notes, args.format, marks=marks, baseline=base))
    if args.against:
        from harness.results.baselines import load_published
        from harness.results.leaderboard import against_published, render_against

        published, systems = load_published(None if args.against == "published" else args.against)
        side = against_published(df, metric, published, systems, split=args.split, datasets=args.datasets)
        print()
        print(render_against(side, metric, args.format))
    if args.plot and not pivot.empty:
        from harness.results.plots import leaderboard_chart

        averages = [c for c in pivot.columns if str(c).startswith("avg (")]
        shown = pivot if len(averaged) > 1 else pivot.drop(columns=averages)
        title = f"{metric}" + (f" (▲/▼ vs {base}, {args.test} test, Holm)" if base else "")
        print(f"plot: {leaderboard_chart(shown, metric, args.plot, title=title, marks=marks)}")
    return 0


def _efficiency(args: argparse.Namespace, metric: str) -> int:
    from harness.results.efficiency import efficiency_frame, render_efficiency
    from harness.results.records import folded_records

    records = [r for r in folded_records(args.output_dir)[0]
               if (args.split is None or r.split == args.split) and (not args.datasets or r.dataset in args.datasets)]
    frame, problems = efficiency_frame(records, metric)
    print(render_efficiency(frame, metric, args.format, problems))
    if args.plot and not frame.empty:
        from harness.results.plots import efficiency_chart

        print(f"plot: {efficiency_chart(frame, metric, args.plot)}")
    return 0
