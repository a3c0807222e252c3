"""From search to metrics on 300,000 hits (300 queries x 1,000, SciFact's test shape): each step a run passes
through after the model, timed alone, on the harness's own functions. The issue's target is under 2 s for the
whole path on this machine.

Steps, in the runner's order: exact search of 300 query vectors over 5,183 x 384 vectors (faiss, top 1,000;
the corpus and queries random, the query encoding left out: it is the model's time, not the hits'), the hits
made a run, the protocol's cut (``runner._protocol_cut``: order, identical-id rule, depth), the run file
written (each score formatted once; the run as it reads back returned), read back and evaluated (nDCG@10 and
Recall@100 against qrels of SciFact's shape: 339 judgements). Two paths: the runner's, with the run as arrays
(``RunArrays.from_hits``, cut and written as arrays, read back by ``read_run_arrays``), and the one before
it, with a dict per query (a Python object per hit), for comparison. Both write the same file (checked).
Each round runs every step of both paths once; min and median over the rounds, with the load average.

    python -m benchmarks.scale.hits_pipeline [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import FIGURES, machine, stamp, step_table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from harness.metrics import evaluate
    from harness.runner import _protocol_cut
    from harness.search import topk_exact
    from harness.trec import FLOAT32_SCORE_FORMAT, RunArrays, read_run, read_run_arrays, write_run

    print(f"# hits_pipeline  {stamp()}  {machine()}")
    rng = np.random.default_rng(0)
    docs, queries, dim, depth = 5183, 300, 384, 1000
    corpus = rng.standard_normal((docs, dim), dtype=np.float32)
    corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
    vectors = rng.standard_normal((queries, dim), dtype=np.float32)
    ids = [str(4983 + 7919 * i % 9_999_991) for i in range(docs)]  # SciFact-like numeric ids
    qids = [str(1 + 3 * i) for i in range(queries)]
    qrels = {q: {ids[int(j)]: 1 for j in rng.choice(docs, size=1 + (i % 3), replace=False)}
             for i, q in enumerate(qids)}
    shards = [(ids, corpus)]
    steps: dict[str, dict[str, list[float]]] = {}
    loads = []
    names = ["exact search (faiss)", "hits to a run", "protocol cut", "write the run file (quantised)",
             "read the run file", "evaluate (2 measures)"]
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for path_name in ("arrays", "dicts"):
                path = Path(tmp) / f"{path_name}.trec"
                t = [time.perf_counter()]
                scores, hit_ids, _ = topk_exact(vectors, shards, depth)
                t.append(time.perf_counter())
                if path_name == "arrays":
                    run: Any = RunArrays.from_hits(qids, hit_ids, scores)
                else:
                    run = {q: {d: float(s) for d, s in zip(hit_ids[row], scores[row], strict=False)}
                           for row, q in enumerate(qids)}
                t.append(time.perf_counter())
                run, _ = _protocol_cut(run, depth, drop_self_hits=True)
                t.append(time.perf_counter())
                run = write_run(path, run, tag="bench", score_format=FLOAT32_SCORE_FORMAT)  # quantised as written
                t.append(time.perf_counter())
                back = read_run_arrays(path) if path_name == "arrays" else read_run(path)
                t.append(time.perf_counter())
                per_query = evaluate(qrels, back, ["ndcg@10", "recall@100"])
                t.append(time.perf_counter())
                found = len(back) if isinstance(back, RunArrays) else sum(map(len, back.values()))
                assert found == queries * depth and len(per_query["ndcg@10"]) == queries
                for name, a, b in zip(names, t, t[1:], strict=False):
                    steps.setdefault(path_name, {}).setdefault(name, []).append(b - a)
            assert (Path(tmp) / "arrays.trec").read_bytes() == (Path(tmp) / "dicts.trec").read_bytes()
    figures = step_table(steps, lambda p: f"run as {p}{' (the runner)' if p == 'arrays' else ' (before)'}", 32,
                         "   (target: under 2 s)")
    FIGURES.update(hits=queries * depth, rounds=args.rounds, load_average_1m=loads, target_s=2.0,
                   steps=figures["arrays"]["steps"], total=figures["arrays"]["total"], dict_path=figures["dicts"])
    print(f"\nload average (1 min) at each round: {', '.join(f'{x:.2f}' for x in loads)}")
    print("identical run files from both paths: yes")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
