"""Fusing two stage runs of 300,000 hits each (300 queries x 1,000, SciFact's test shape): the runner's path,
with the runs as arrays (``read_run_arrays``, ``fusion.line_up``, the method's scores, ``fusion.ranked``),
against the per-query dict fusion it replaced (``read_run``, one dict per query, tests/fusion_reference.py).

Each round reads the two stage run files, fuses them three ways (``rrf`` k=60, Pyserini's ``hybrid`` alpha=1.3
normalised, ``wsum`` min-max 0.5/0.5), each cut to 1,000, and writes the fused rrf run (17 significant digits,
as a fused retriever writes), both paths alternating; every fused run of the two paths must be the same,
document for document and score for score (checked). Min and median over the rounds, with the load average.

    python -m benchmarks.scale.fusion_runs [--rounds 3]
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
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    from harness.retrievers import fusion
    from harness.trec import FLOAT32_SCORE_FORMAT, FLOAT64_SCORE_FORMAT, RunArrays, read_run, read_run_arrays, write_run
    from tests.fusion_reference import hybrid_ref, rrf_ref, wsum_ref

    print(f"# fusion_runs  {stamp()}  {machine()}")
    rng = np.random.default_rng(0)
    docs, queries, depth = 5183, args.queries, 1000
    ids = [str(4983 + 7919 * i % 9_999_991) for i in range(docs)]  # SciFact-like numeric ids
    qids = [str(1 + 3 * i) for i in range(queries)]
    names = ["read the two stage runs", "rrf", "hybrid (normalised)", "wsum (min-max)", "write the fused run"]
    steps: dict[str, dict[str, list[float]]] = {}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        stage_files = []
        for s in range(2):  # a dense-like and a BM25-like run: each query's top 1,000 of the same corpus
            scores = rng.standard_normal((queries, docs)).astype(np.float32) * (1 if s == 0 else 8)
            top = np.argsort(-scores, axis=1, kind="stable")[:, :depth]
            run = RunArrays.from_hits(qids, [[ids[j] for j in row] for row in top.tolist()],
                                      np.take_along_axis(scores, top, axis=1))
            stage_files.append(Path(tmp) / f"stage{s}.trec")
            write_run(stage_files[-1], run, tag="bench", score_format=FLOAT32_SCORE_FORMAT)
        fused_by: dict[str, list[Any]] = {}
        for _ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for path_name in ("arrays", "dicts"):
                t = [time.perf_counter()]
                if path_name == "arrays":
                    stages = [read_run_arrays(f) for f in stage_files]
                    t.append(time.perf_counter())
                    lined = fusion.line_up(stages, qids)
                    rrf = fusion.ranked(lined, fusion.rrf_scores(lined, 60), depth)
                    t.append(time.perf_counter())
                    lined = fusion.line_up(stages, qids)
                    hyb = fusion.ranked(lined, fusion.hybrid_scores(lined, 1.3, True), depth)
                    t.append(time.perf_counter())
                    lined = fusion.line_up(stages, qids)
                    ws = fusion.ranked(lined, fusion.weighted(fusion.normalised(lined, "min-max"), [0.5, 0.5]),
                                       depth)
                    t.append(time.perf_counter())
                    out: Any = [rrf, hyb, ws]
                else:
                    held = [read_run(f) for f in stage_files]
                    t.append(time.perf_counter())
                    rrf = {q: rrf_ref([r.get(q, {}) for r in held], 60, depth) for q in qids}
                    t.append(time.perf_counter())
                    hyb = {q: hybrid_ref(held[0].get(q, {}), held[1].get(q, {}), 1.3, True, False, depth)
                           for q in qids}
                    t.append(time.perf_counter())
                    ws = {q: wsum_ref([r.get(q, {}) for r in held], [0.5, 0.5], "min-max", depth) for q in qids}
                    t.append(time.perf_counter())
                    out = [rrf, hyb, ws]
                write_run(Path(tmp) / f"{path_name}.trec", out[0], tag="bench", score_format=FLOAT64_SCORE_FORMAT)
                t.append(time.perf_counter())
                for name, a, b in zip(names, t[:-1], t[1:], strict=True):
                    steps.setdefault(path_name, {}).setdefault(name, []).append(b - a)
                fused_by[path_name] = out
        same = all(a.to_dict() == b for a, b in zip(fused_by["arrays"], fused_by["dicts"], strict=True))
        same = same and (Path(tmp) / "arrays.trec").read_bytes() == (Path(tmp) / "dicts.trec").read_bytes()
        assert same, "the two paths fused differently"
        hits = len(fused_by["arrays"][0])
    figures = step_table(steps, lambda p: f"runs as {p}{' (the runner)' if p == 'arrays' else ' (before)'}", 28)
    ratio = figures["arrays"]["total"]["min_s"] / figures["dicts"]["total"]["min_s"]
    FIGURES.update(stage_hits=queries * depth, fused_hits=hits, rounds=args.rounds, load_average_1m=loads,
                   arrays=figures["arrays"], dicts=figures["dicts"], arrays_over_dicts_min=ratio)
    print(f"\narrays take {ratio:.2f}x the dicts' time (min over rounds); fused hits per method: {hits:,}")
    print(f"load average (1 min) at each round: {', '.join(f'{x:.2f}' for x in loads)}")
    print("the same fused runs and rrf run file from both paths: yes")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
