"""`harness evaluate` against pytrec_eval (trec_eval's C code), each as a user runs it: a fresh process that
parses the qrels and the run file and computes the measures. Two synthetic runs: 5,000 queries x 1,000 hits
with graded qrels (grades 0-3, 40 judgements a query, about half of them retrieved), and one shaped like MS MARCO
passage dev (6,980 queries x 1,000 hits, binary qrels with about 1.06 relevant passages a query). Scores are
printed with six decimals and rounded to four, so that equal scores are common (trec_eval breaks them by
document id).

Each round runs pytrec_eval, `harness evaluate` and `harness.evaluate` (the Python API, given the two files),
in an order that rotates from round to round; min and median over the rounds, and the load average at each.
Then, untimed, the values: the harness's per-query values equal pytrec_eval's to 1e-12 and, exactly (==), what
the per-query functions compute on trec_eval's ranking (the harness before runs were read as arrays).

    python -m benchmarks.scale.evaluate_vs_pytrec [--rounds 3] [--queries 5000] [--depth 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import FIGURES, ROOT, machine, stamp

#: the measures both sides compute: trec_eval's names (pytrec_eval) and ir_measures' (the harness)
MEASURES = {"ndcg_cut_10": "nDCG@10", "recall_100": "R@100", "recall_1000": "R@1000", "map": "AP",
            "recip_rank": "RR", "P_10": "P@10"}
TREC_MEASURES = ["ndcg_cut.10", "recall.100", "recall.1000", "map", "recip_rank", "P.10"]

PYTREC = """
import json, sys
import pytrec_eval
qrels_path, run_path, measures = sys.argv[1], sys.argv[2], sys.argv[3].split()
with open(qrels_path) as f:
    qrels = pytrec_eval.parse_qrel(f)
with open(run_path) as f:
    run = pytrec_eval.parse_run(f)
per_query = pytrec_eval.RelevanceEvaluator(qrels, set(measures)).evaluate(run)
names = next(iter(per_query.values())).keys()
print(json.dumps({m: sum(v[m] for v in per_query.values()) / len(per_query) for m in names}))
"""

API = """
import json, sys
import harness
print(json.dumps(harness.evaluate(sys.argv[1], sys.argv[2], sys.argv[3].split())))
"""


def write_run(folder: Path, name: str, queries: int, depth: int, graded: bool, seed: int) -> tuple[Path, Path, int]:
    """A run file and its qrels: ``queries`` x ``depth`` hits, scores with ties; returns the judgements' count."""
    import numpy as np

    rng = np.random.default_rng(seed)
    run, qrels = folder / f"{name}.trec", folder / f"{name}.qrels"
    judgements = 0
    with open(run, "w") as fr, open(qrels, "w") as fq:
        for q in range(queries):
            qid = str(1_000_000 + 7 * q)
            docs = rng.choice(8_841_823, depth, replace=False).tolist()  # MS MARCO's passage ids
            scores = np.round(np.sort(rng.normal(10, 3, depth))[::-1], 4).tolist()
            fr.write("".join(f"{qid} Q0 {d} {r} {s:.6f} bench\n"
                             for r, (d, s) in enumerate(zip(docs, scores, strict=True), start=1)))
            if graded:
                found = rng.choice(depth, 20, replace=False).tolist()
                judged = {docs[i]: int(g) for i, g in zip(found, rng.choice(4, 20, p=[.4, .3, .2, .1]), strict=True)}
                judged |= {int(d): int(g) for d, g in zip(rng.choice(8_841_823, 20), rng.choice(4, 20), strict=True)}
            else:  # 1.06 relevant a query; 85% of them retrieved, mostly near the top
                relevant = 2 if rng.random() < 0.06 else 1
                judged = {}
                for _ in range(relevant):
                    at = int(min(rng.exponential(60), depth - 1))
                    judged[docs[at] if rng.random() < 0.85 else int(rng.integers(8_841_823))] = 1
            fq.write("".join(f"{qid} 0 {d} {g}\n" for d, g in judged.items()))
            judgements += len(judged)
    return qrels, run, judgements


def timed(command: list[str], env: dict[str, str]) -> tuple[float, dict[str, float]]:
    t = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} failed:\n{proc.stderr[-2000:]}")
    return seconds, json.loads(proc.stdout)


def check_values(qrels_path: Path, run_path: Path) -> dict[str, float]:
    """The harness's per-query values against pytrec_eval's (to 1e-12) and against the per-query functions on
    trec_eval's ranking (exactly); returns the largest difference from pytrec_eval per measure."""
    import pytrec_eval

    from harness.metrics import evaluate, parse_measure
    from harness.trec import RunArrays, ranked, read_qrels, read_run, read_run_arrays

    qrels = read_qrels(qrels_path)
    arrays = read_run_arrays(run_path)
    assert isinstance(arrays, RunArrays) and arrays.source is None, "the run was not read as arrays"
    ours = evaluate(qrels, arrays, list(MEASURES.values()))
    run = read_run(run_path)
    theirs = pytrec_eval.RelevanceEvaluator(qrels, set(TREC_MEASURES)).evaluate(run)
    worst = {}
    for trec, name in MEASURES.items():
        assert set(ours[name]) == set(qrels)
        worst[name] = max(abs(ours[name][q] - theirs.get(q, {}).get(trec, 0.0)) for q in qrels)
        assert worst[name] <= 1e-12, (name, worst[name])
    measures = {n: parse_measure(n) for n in MEASURES.values()}
    for qid, rels in qrels.items():  # the per-query functions: the harness before issue 38
        ranking = [d for d, _ in ranked(run.get(qid, {}))]
        for name, m in measures.items():
            assert ours[name][qid] == m(rels, ranking), (qid, name)
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=5000, help="queries of the graded run (default 5000)")
    parser.add_argument("--msmarco-queries", type=int, default=6980)
    parser.add_argument("--depth", type=int, default=1000)
    args = parser.parse_args()
    print(f"# {stamp()}, {machine()}, load average {os.getloadavg()[0]:.1f}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    figures: dict = {"rounds": args.rounds, "depth": args.depth, "measures": list(MEASURES.values()), "runs": {}}
    loads: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, queries, graded, seed in (("graded", args.queries, True, 0),
                                             ("msmarco-dev-shaped", args.msmarco_queries, False, 1)):
            qrels, run, judgements = write_run(Path(tmp), name, queries, args.depth, graded, seed)
            sides = {
                "pytrec_eval": [sys.executable, "-c", PYTREC, str(qrels), str(run), " ".join(TREC_MEASURES)],
                "harness evaluate": [sys.executable, "-m", "harness", "evaluate", "--qrels", str(qrels), "--run",
                                     str(run), *(a for m in MEASURES.values() for a in ("--metric", m)), "--json"],
                "harness.evaluate": [sys.executable, "-c", API, str(qrels), str(run),
                                     " ".join(MEASURES.values())]}
            seconds: dict[str, list[float]] = {side: [] for side in sides}
            means: dict[str, dict[str, float]] = {}
            for r in range(args.rounds):  # alternated: the order rotates, load drifts across every side alike
                order = list(sides)[r % len(sides):] + list(sides)[:r % len(sides)]
                for side in order:
                    loads.append(os.getloadavg()[0])
                    s, out = timed(sides[side], env)
                    seconds[side].append(s)
                    means[side] = out.get("metrics", out)
            worst = check_values(qrels, run)
            harness_means = {k: round(v, 4) for k, v in means["harness evaluate"].items()}
            pytrec_means = {MEASURES[k]: round(v, 4) for k, v in means["pytrec_eval"].items()}
            rows = {side: {"min_s": round(min(v), 2), "median_s": round(statistics.median(v), 2),
                           "seconds": [round(x, 2) for x in v]} for side, v in seconds.items()}
            base = rows["pytrec_eval"]
            for side, row in rows.items():
                if side != "pytrec_eval":
                    row["faster_min"] = round(base["min_s"] / row["min_s"], 2)
                    row["faster_median"] = round(base["median_s"] / row["median_s"], 2)
            print(f"\n{name}: {queries:,} queries x {args.depth:,} hits, {judgements:,} judgements "
                  f"({judgements / queries:.2f} a query)")
            for side, row in rows.items():
                extra = (f"  {row['faster_min']:.2f}x faster (min), {row['faster_median']:.2f}x (median)"
                         if "faster_min" in row else "")
                print(f"  {side:18s} min {row['min_s']:6.2f} s  median {row['median_s']:6.2f} s{extra}")
            print(f"  means  harness {harness_means}")
            print(f"         pytrec  {pytrec_means}")
            print(f"  per query: largest difference from pytrec_eval {max(worst.values()):.1e}; equal (==) to the "
                  "per-query functions")
            figures["runs"][name] = {"queries": queries, "hits": queries * args.depth, "judgements": judgements,
                                     "sides": rows, "means": harness_means, "pytrec_means": pytrec_means,
                                     "largest_difference_from_pytrec_eval": max(worst.values()),
                                     "equal_to_per_query_functions": True}
    figures["load_average"] = {"min": min(loads), "max": max(loads)}
    print(f"\nload average during the rounds: {min(loads):.1f} to {max(loads):.1f}")
    FIGURES.update(figures)
    return 0


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
