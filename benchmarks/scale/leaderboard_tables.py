"""Tables over many records: `harness leaderboard` with and without `--baseline` over 200 records (20
retrievers x 10 datasets, 300 queries each, synthetic scores), each command a fresh process as a user runs
it, rounds alternated, min and median; beside them, in this process, the cost of the marks computed the old
way (every statistic of compare_records for every cell) against the way the leaderboard computes them now
(only its test's p-value), on the same records.

    python -m benchmarks.scale.leaderboard_tables [--retrievers 20] [--datasets 10] [--queries 300] [--rounds 3]
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


def write(folder: Path, retrievers: int, datasets: int, queries: int) -> None:
    import numpy as np

    from harness.results.records import ResultRecord

    rng = np.random.default_rng(0)
    for d in range(datasets):
        base = rng.uniform(0, 1, queries)
        for r in range(retrievers):
            per = np.clip(base + rng.normal(0.01 * r, 0.1, queries), 0, 1)
            per_query = {"ndcg@10": {f"q{i}": float(v) for i, v in enumerate(per)}}
            rec = ResultRecord(retriever=f"r{r:02d}", dataset=f"bench/d{d}", split="test",
                               metrics={"ndcg@10": float(per.mean())}, per_query=per_query, fingerprint="bench",
                               run_file="bench.trec", num_queries=queries)
            path = folder / rec.dataset / "test" / f"r{r:02d}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec.to_json()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--retrievers", type=int, default=20)
    parser.add_argument("--datasets", type=int, default=10)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"# {stamp()}, {machine()}, load average {os.getloadavg()[0]:.1f}")
    commands = {"leaderboard": [], "leaderboard --baseline r00": ["--baseline", "r00"],
                "leaderboard --baseline r00 --test randomization": ["--baseline", "r00", "--test", "randomization"]}
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "results"
        write(folder, args.retrievers, args.datasets, args.queries)
        env = {**os.environ, "HARNESS_CACHE": str(Path(tmp) / "cache"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        for _ in range(args.rounds):  # alternated: load drifts across all commands alike
            for name, extra in commands.items():
                t = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "harness", "leaderboard", "--output-dir", str(folder),
                                       "--metric", "ndcg@10", *extra], capture_output=True, text=True, env=env)
                seconds[name].append(time.perf_counter() - t)
                if proc.returncode != 0:
                    print(proc.stderr[-2000:])
                    return 1
        old, new = marks_in_process(folder)
    rows = {name: {"min_s": round(min(v), 2), "median_s": round(statistics.median(v), 2)}
            for name, v in seconds.items()}
    for name, row in rows.items():
        print(f"harness {name}: min {row['min_s']} s, median {row['median_s']} s ({args.rounds} rounds)")
    print(f"marks in process, t-test: every statistic per cell {old:.2f} s, the p-value alone {new:.3f} s")
    FIGURES.update({"records": args.retrievers * args.datasets, "queries": args.queries, "rounds": args.rounds,
                    "load_average": os.getloadavg()[0], "commands": rows,
                    "marks_in_process_s": {"every_statistic": round(old, 3), "p_value_only": round(new, 3)}})
    return 0


def marks_in_process(folder: Path) -> tuple[float, float]:
    from harness.results.leaderboard import fold, significance_marks, table
    from harness.results.records import load_records
    from harness.results.stats import compare_records

    records = [r for _, r in load_records(folder)[0]]
    pivot, _, _ = table(fold(records), "ndcg@10")
    ref = {r.dataset: r for r in records if r.label == "r00"}
    t = time.perf_counter()
    for r in records:
        if r.label != "r00":
            compare_records(ref[r.dataset], r, "ndcg@10")
    old = time.perf_counter() - t
    t = time.perf_counter()
    significance_marks(records, pivot, "ndcg@10", "r00")
    return old, time.perf_counter() - t


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
