"""Where a dense harness run spends its time, idle and beside busy co-runners: the same run (all-MiniLM-L6-v2
over SciFact's first ``--docs`` documents, a fresh cache, in this process) under cProfile with 0 and then
``--co-runners`` single-threaded busy loops beside it (after an unreported warm-up run, so that neither pays
the imports), each op's own time (the linear layers through oneDNN,
attention, the copies, layer norms and residual additions, the rest) and how much each grew under the load.

It answers why the harness loses more than beir on a shared host (benchmarks/README, encode_vs_beir): an op
that is many short parallel regions, each ending at a barrier that waits for a descheduled thread, grows more
than the large matmuls do. One run each: the shares within a run are the figures, not the seconds.

    python -m benchmarks.compute.forward_under_load [--docs 800] [--co-runners 1]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path

from benchmarks._common import FIGURES, MINILM, SCIFACT, co_runners, machine, require, stamp

#: cProfile's names of the ops reported on their own
OPS = {"linear (oneDNN)": "_linear_pointwise", "attention (SDPA)": "scaled_dot_product_attention",
       "copy_": "'copy_'", "cat": "torch.cat", "layer_norm": "layer_norm", "add_": "'add_'",
       "add (residual into the block's rows)": "built-in method add of"}


def _profile(data: Path, count: int) -> dict:
    from harness.runner import run

    with co_runners(count), tempfile.TemporaryDirectory() as tmp:
        os.environ["HARNESS_CACHE"] = f"{tmp}/cache"
        load = os.getloadavg()[0]
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        run([f"hf:{MINILM}"], [str(data)], output_dir=Path(tmp) / "out", log=lambda _: None)
        profile.disable()
        wall = time.perf_counter() - start
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    ops = {}
    for name, needle in OPS.items():
        ops[name] = sum(s[2] for key, s in stats.items() if needle in f"{key[0]}:{key[2]}")  # own time
    forward = max(s[3] for key, s in stats.items()  # FusedBertForward.__call__ (its linear's __call__ is inside)
                  if key[0].endswith("fused_bert.py") and key[2] == "__call__")
    return {"co_runners": count, "load_1min_before": load, "wall_s": wall, "forward_s": forward,
            "ops_s": ops, "rest_of_forward_s": forward - sum(ops.values())}


def main() -> None:
    require(SCIFACT, "SciFact")
    require(MINILM, "all-MiniLM-L6-v2")
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=800)
    parser.add_argument("--co-runners", type=int, default=1)
    args = parser.parse_args()
    os.environ.update({"HARNESS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"})
    from benchmarks.end_to_end.encode_vs_beir import _first_documents

    print(f"# forward_under_load  {stamp()}  {machine()}")
    _profile(_first_documents(50), 0)  # warm-up, not reported: imports and the first model load are paid here
    data = _first_documents(args.docs)
    runs = [_profile(data, 0), _profile(data, args.co_runners)]
    idle, loaded = runs
    print(f"harness run of all-MiniLM-L6-v2 on SciFact's first {args.docs} documents, under cProfile "
          f"(load before: {idle['load_1min_before']:.2f} idle, {loaded['load_1min_before']:.2f} with "
          f"{args.co_runners} co-runner(s))")
    print(f"{'':24} {'idle s':>8} {'loaded s':>9} {'grew':>6}")
    rows = [("whole run", idle["wall_s"], loaded["wall_s"]), ("fused forward", idle["forward_s"], loaded["forward_s"]),
            *((f"  {name}", idle["ops_s"][name], loaded["ops_s"][name]) for name in OPS),
            ("  rest of the forward", idle["rest_of_forward_s"], loaded["rest_of_forward_s"])]
    for name, a, b in rows:
        print(f"{name:24} {a:8.2f} {b:9.2f} {b / a if a > 0.01 else float('nan'):6.1f}x")
    FIGURES.update(docs=args.docs, runs=runs)


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
