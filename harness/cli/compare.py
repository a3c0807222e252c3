"""harness compare: are two retrievers really different? Paired tests over per-query scores.

For each dataset (and metric): means of A and B, the mean difference B - A with a bootstrap confidence
interval, wins/ties/losses, and the p-values of the paired t-test, the Wilcoxon signed-rank test and the
paired randomization test; Holm's correction across the datasets compared.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.common import (
    add_execution,
    add_metrics,
    add_output_dir,
    add_settings,
    add_split,
    count,
    execution_from_args,
    level,
    settings_from_args,
)
from harness.settings import RESAMPLES, SEED


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("compare", help="paired significance tests of retriever B against retriever A",
                       description="Run (or reuse) two retrievers on datasets and test their per-query differences.")
    p.add_argument("--retriever", "-r", dest="retrievers", action="append", required=True, metavar="NAME",
                   help="give it twice: A (the reference), then B; differences are B - A")
    p.add_argument("--dataset", "-d", dest="datasets", action="append", default=[], metavar="ID|PATH",
                   help="registered id or BEIR folder; repeatable")
    p.add_argument("--suite", dest="suites", action="append", default=[], metavar="NAME",
                   help="every dataset of a suite (beir, odqa); repeatable")
    add_metrics(p, ["ndcg@10"])
    add_split(p)
    add_output_dir(p)
    p.add_argument("--test", choices=["t", "wilcoxon", "randomization"], default="t",
                   help="the test whose Holm-adjusted p decides the 'sig' column and the plot label (default: t)")
    p.add_argument("--alpha", type=level, default=0.05, help="significance level (default 0.05)")
    p.add_argument("--seed", type=count(0), default=SEED, help=f"seed of the randomization test and the bootstrap "
                                                           f"(default {SEED})")
    p.add_argument("--resamples", type=count(1, 10_000_000), default=RESAMPLES,
                   help=f"randomization and bootstrap resamples (default {RESAMPLES:,}, as `harness report`)")
    p.add_argument("--confidence", type=level, default=0.95, help="bootstrap interval level (default 0.95)")
    p.add_argument("--plot", type=Path, default=None, metavar="FILE.png", help="per-query difference plot")
    p.add_argument("--json", type=Path, default=None, metavar="FILE.json", help="also write every statistic as JSON")
    p.add_argument("--force", action="store_true", help="recompute runs even when a matching one exists")
    p.add_argument("--format", choices=["text", "markdown", "latex"], default="text",
                   help="text (aligned columns), markdown (a GitHub table) or latex (a booktabs table for a paper, "
                        "B's score marked where it differs significantly from A's); default: text")
    add_settings(p)
    add_execution(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.errors import HarnessError
    from harness.io import atomic_write_json, check_output_file
    from harness.results.baselines import canonical_name
    from harness.results.records import ResultRecord
    from harness.results.stats import apply_holm, compare_records
    from harness.runner import run

    if len(args.retrievers) != 2:
        raise HarnessError("name exactly two different retrievers: --retriever A --retriever B")
    if args.json:
        check_output_file(args.json, "--json", suffixes=(".json",))
    if args.plot:
        check_output_file(args.plot, "--plot", suffixes=(".png", ".pdf", ".svg"))
    from harness.results.records import row_of_label
    from harness.retrievers.names import look_in

    look_in(args.output_dir)  # names a table printed (content-named files and folders) are found again
    plain = [row_of_label(n, args.output_dir)[0] for n in args.retrievers]  # 'name [settings]' rows by their name
    name_a, name_b = (canonical_name(n) or n for n in plain)  # folders by their canonical names
    if name_a == name_b:
        raise HarnessError(f"{args.retrievers[0]} and {args.retrievers[1]} are one retriever ({name_a}); "
                           "name two different ones")
    if not args.datasets and not args.suites:
        raise HarnessError("name a dataset (--dataset beir/scifact or a folder) or a suite (--suite beir)")
    metrics = args.metrics or ["ndcg@10"]
    records = _recorded(args, metrics)  # both rows already in the results folder: no data, model or run needed
    if records is None:
        records = run(args.retrievers, args.datasets, metrics, args.output_dir, suites=args.suites,
                      settings=settings_from_args(args), execution=execution_from_args(args), force=args.force,
                      split=args.split)
    by_dataset: dict[str, dict[str, ResultRecord]] = {}
    for r in records:
        by_dataset.setdefault(r.dataset, {})[r.retriever] = r
    comparisons = [compare_records(d[name_a], d[name_b], m, resamples=args.resamples, seed=args.seed,
                                   confidence=args.confidence)
                   for d in by_dataset.values() if name_a in d and name_b in d for m in _names(metrics)]
    apply_holm(comparisons)
    print(render(comparisons, args.test, args.alpha, args.confidence, args.format, resamples=args.resamples,
                 seed=args.seed))
    if args.json:
        atomic_write_json(args.json, {"a": args.retrievers[0], "b": args.retrievers[1], "test": args.test,
                                      "alpha": args.alpha, "seed": args.seed, "resamples": args.resamples,
                                      "comparisons": [c.to_dict() for c in comparisons]})
        print(f"statistics: {args.json}")
    if args.plot:
        from harness.results.plots import difference_chart

        print(f"plot: {difference_chart(comparisons, args.plot, test=args.test)}")
    return 0


def _recorded(args: argparse.Namespace, metrics: list[str]) -> list[Any] | None:
    """The records of both rows on every dataset asked for, when the results folder holds them all with the
    metrics asked for (reference settings, no --force): what a comparison reads, found without the dataset or
    the model (a shell without the data reads them as `harness diff` does); None sends the caller to run."""
    from harness.data.registry import SUITES
    from harness.results.records import find_record

    if args.force or settings_from_args(args).changed() or not args.output_dir.is_dir():
        return None
    datasets = [*args.datasets, *(d for s in args.suites for d in SUITES.get(s, []))]
    wanted = _names(metrics)
    found = []
    for dataset in datasets:
        for name in args.retrievers:
            record = find_record(args.output_dir, name, dataset, args.split)
            if record is None or any(m not in record.per_query for m in wanted):
                return None
            found.append(record)
    return found or None


def _names(metrics: list[str]) -> list[str]:
    from harness.results.baselines import normalize_metric

    return list(dict.fromkeys(normalize_metric(m) for m in metrics))


def render(comparisons: list[Any], test: str, alpha: float, confidence: float, fmt: str = "text", *,
           resamples: int = RESAMPLES, seed: int = SEED) -> str:
    from tabulate import tabulate

    if not comparisons:
        return "nothing compared"
    if fmt == "latex":
        return render_latex(comparisons, test, alpha, confidence)
    a, b = comparisons[0].a, comparisons[0].b
    rows = []
    for c in comparisons:
        adjusted = c.holm[test] if c.holm else c.pvalue(test)
        sig = ("B better" if c.mean_diff > 0 else "A better") if adjusted <= alpha and c.mean_diff != 0 else "no"
        rows.append([c.dataset, c.metric, c.queries, f"{c.mean_a:.4f}", f"{c.mean_b:.4f}", f"{c.mean_diff:+.4f}",
                     f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]", f"{c.wins}/{c.ties}/{c.losses}", _p(c.t.pvalue),
                     _p(c.wilcoxon.pvalue), _p(c.randomization.pvalue), _p(adjusted), sig,
                     f"{c.detectable:.4f}"])
    table_fmt = {"text": "simple", "markdown": "github"}[fmt]
    body = tabulate(rows, headers=["dataset", "metric", "queries", "A", "B", "B - A", f"{confidence:.0%} CI",
                                   "W/T/L", "p t", "p wilcoxon", "p rand", f"p Holm ({test})", f"sig @{alpha:g}",
                                   "detectable"],
                    tablefmt=table_fmt, disable_numparse=True)
    n = len({c.dataset for c in comparisons})
    return (f"A = {a}\nB = {b}\n{body}\n"
            f"W/T/L: queries where B wins/ties/loses. Holm: across {n} dataset(s), per metric and test. "
            f"CI: percentile bootstrap; CI and p rand from {resamples:,} resamples, seed {seed}. detectable: the "
            "smallest |B - A| the paired t-test finds with 80% power at alpha 0.05 with this many queries and "
            "this spread of per-query differences (a smaller true difference is likely missed).")


#: LaTeX's special characters, escaped in names (dataset ids, retriever rows)
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
        "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _tex(text: object) -> str:
    return "".join(_TEX.get(ch, ch) for ch in str(text))


def render_latex(comparisons: list[Any], test: str, alpha: float, confidence: float) -> str:
    """A booktabs table (``\\usepackage{booktabs}``): per dataset and metric A, B with a mark where the
    Holm-adjusted p of ``test`` is at most ``alpha`` (dagger: B better, ddagger: B worse), B - A with its
    confidence interval, the p-value and the detectable difference; the caption says how."""
    a, b = _tex(comparisons[0].a), _tex(comparisons[0].b)
    lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{llrrrrrr}", r"\toprule",
             f"Dataset & Metric & A & B & B $-$ A & {confidence:.0%} CI & $p$ (Holm) & Detectable \\\\".replace(
                 "%", r"\%"), r"\midrule"]
    for c in comparisons:
        adjusted = c.holm[test] if c.holm else c.pvalue(test)
        mark = ""
        if adjusted <= alpha and c.mean_diff != 0:
            mark = r"$^{\dagger}$" if c.mean_diff > 0 else r"$^{\ddagger}$"
        lines.append(f"{_tex(c.dataset)} & {_tex(c.metric)} & {c.mean_a:.4f} & {c.mean_b:.4f}{mark} & "
                     f"{c.mean_diff:+.4f} & [{c.ci_low:+.4f}, {c.ci_high:+.4f}] & {_p(adjusted)} & "
                     f"{c.detectable:.4f} \\\\")
    n = len({c.dataset for c in comparisons})
    lines += [r"\bottomrule", r"\end{tabular}",
              f"\\caption{{A = {a}, B = {b}. $\\dagger$/$\\ddagger$: B significantly better/worse than A (paired "
              f"{_tex(test)} test over queries, Holm-corrected across {n} dataset(s), $\\alpha = {alpha:g}$). CI: "
              "percentile bootstrap. Detectable: the smallest difference the paired $t$-test finds with 80\\% "
              "power at $\\alpha = 0.05$ over these queries.}", r"\end{table}"]
    return "\n".join(lines)


def _p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-4 else f"{p:.4f}"
