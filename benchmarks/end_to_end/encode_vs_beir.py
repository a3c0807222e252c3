"""(a) SciFact end to end with all-MiniLM-L6-v2: harness against beir 2.2.0's DenseRetrievalExactSearch +
models.SentenceBERT, with beir at its default batch size (128) and at the batch size found fastest on this
machine, alternately, several rounds each, so that a lead can be told from the host's noise.

1. Batch search: beir's corpus encoding (``encode_corpus``, longest first, as DRES calls it) at each of
   ``--batches`` on every ``--search-every``-th SciFact document (648 of 5,183 by default), in one process
   with the model loaded once, two passes (in order, then reversed); the fastest best pass gives beir's batch.
2. Rounds: ``--rounds`` times, each pipeline end to end (load, encode, search, evaluate) in a fresh
   interpreter: harness fp32 (the default compute; a fresh ``HARNESS_CACHE`` and output each round, so it
   really encodes), beir at its best batch, beir at its default batch, and harness bf16x3 on a CPU with AMX
   (``--bf16x3``; skipped with a line without it). The first pipeline of each round moves on by one, so no
   pipeline always runs first. ``--harness-batch-tokens 2048,8192`` adds harness fp32 rows with those token
   budgets (the default is 4096 on CPU), ``--harness-transformers`` one with the transformers forward in
   place of the fused one (same numbers), ``--harness-threads 1`` harness fp32 rows on that many threads
   (``OMP_NUM_THREADS`` for that pipeline alone; same numbers), ``--bf16`` a row with bf16 autocast (not the
   same numbers).
3. Per pipeline: every round's wall time, min and median, peak RSS, nDCG@10 and Recall@100 (which must be
   the same in every round), and the 1-minute load average before each run; then the ratios min/min and
   median/median against beir at its best batch and at its default, and nDCG@10 differences to beir.

    python -m benchmarks.end_to_end.encode_vs_beir [--rounds 3] [--bf16x3] [--batches 8,16,32,64,128]
        [--harness-batch-tokens 2048,8192] [--harness-threads 1] [--label idle|loaded]

``OMP_NUM_THREADS=1 python -m ...`` runs every pipeline on one thread (both torch and the harness obey it).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import tempfile
from pathlib import Path

from benchmarks._common import FIGURES, MINILM, SCIFACT, co_runners, machine, measure, require, stamp

ENV = {"HARNESS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


class _Stopped(Exception):
    pass


def _stop(signum, frame) -> None:
    raise _Stopped


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _first_documents(n: int) -> Path:
    """A BEIR folder of SciFact's first ``n`` documents, its queries, and the test judgements on those documents
    (made once in the temporary folder; both pipelines read the same one)."""
    import json
    import tempfile

    folder = Path(tempfile.gettempdir()) / f"encode_vs_beir-scifact-{n}"
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    lines = (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    kept = {json.loads(line)["_id"] for line in lines}
    qrels = (SCIFACT / "qrels" / "test.tsv").read_text(encoding="utf-8").splitlines()
    (folder / "qrels" / "test.tsv").write_text(
        "\n".join([qrels[0], *[r for r in qrels[1:] if r.split("\t")[1] in kept]]) + "\n", encoding="utf-8")
    (folder / "queries.jsonl").write_text((SCIFACT / "queries.jsonl").read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def main() -> int:
    require(SCIFACT, "SciFact")
    require(MINILM, "all-MiniLM-L6-v2")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every pipeline (at least 3 for the figures)")
    parser.add_argument("--batches", type=_ints, default=[8, 16, 32, 64, 128], help="beir batch sizes to search")
    parser.add_argument("--search-every", type=int, default=8, help="batch search on every N-th document")
    parser.add_argument("--beir-batch", type=int, default=None, help="skip the search: beir's best batch is this")
    parser.add_argument("--bf16x3", action="store_true", help="also run the harness in bf16x3 (a CPU with AMX)")
    parser.add_argument("--bf16", action="store_true", help="also run the harness with bf16 autocast")
    parser.add_argument("--harness-batch-tokens", type=_ints, default=[],
                        help="also run harness fp32 with these token budgets a batch (comma-separated)")
    parser.add_argument("--harness-threads", type=_ints, default=[],
                        help="also run harness fp32 on these numbers of threads (comma-separated)")
    parser.add_argument("--harness-transformers", action="store_true",
                        help="also run harness fp32 with --forward transformers (not the fused forward)")
    parser.add_argument("--label", default=None, help="idle or loaded: how the host was (the load is recorded)")
    parser.add_argument("--co-runners", type=int, default=0,
                        help="a known load: this many single-threaded busy loops run beside every step")
    parser.add_argument("--docs", type=int, default=None,
                        help="SciFact's first N documents only (with the test judgements on them), for a quick run")
    args = parser.parse_args()
    import torch

    threads = os.environ.get("OMP_NUM_THREADS")
    print(f"# encode_vs_beir  {stamp()}  {machine()}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads"
          f"{f' (OMP_NUM_THREADS={threads})' if threads else ''}, load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}" + (f", labelled {args.label}" if args.label else ""))
    FIGURES.update({"label": args.label, "rounds": args.rounds, "torch_threads": torch.get_num_threads(),
                    "omp_num_threads": threads, "load_average_start": list(os.getloadavg())})
    data = _first_documents(args.docs) if args.docs else SCIFACT
    FIGURES["co_runners"] = args.co_runners
    if args.co_runners:
        print(f"{args.co_runners} co-runner(s): single-threaded busy loops beside every step (a known load)")
    with co_runners(args.co_runners):
        return _steps(args, data)


def _steps(args: argparse.Namespace, data: Path) -> int:
    from harness.retrievers.compute import kernel_available, kernel_unavailable_reason

    FIGURES["documents_limit"] = args.docs
    step = {"model": str(MINILM), "dataset": str(data)}
    beir_args = {"scifact": str(data), "model": str(MINILM)}

    # 1. beir's fastest batch size on this machine
    if args.beir_batch:
        best, search = args.beir_batch, None
        print(f"beir batch search skipped: --beir-batch {best}")
    else:
        search = measure("beir_batch_search", ENV, batches=args.batches, every=args.search_every, **beir_args)
        res = search["result"]
        best = res["best_batch"]
        print(f"beir batch search: encode_corpus on {res['documents']} documents (every {res['every']}-th of "
              f"SciFact, longest first), {res['passes']} passes, {res['torch_threads']} threads")
        for b, secs in res["seconds"].items():
            print(f"  batch {int(b):4}: {' '.join(f'{s:6.1f}' for s in secs)} s  (best {min(secs):6.1f}; load "
                  f"{' '.join(f'{x:.2f}' for x in res['load_1min_before'][b])})" + ("  <- fastest" if int(b) == best
                                                                                    else ""))
    FIGURES["batch_search"] = search
    FIGURES["beir_best_batch"] = best

    # 2. the rounds
    pipelines: list[tuple[str, str, dict]] = [
        ("harness fp32", "harness_dense", {**step}),
        (f"beir batch {best} (best)", "beir_scifact", {**beir_args, "batch_size": best}),
    ]
    if best != 128:
        pipelines.append(("beir batch 128 (default)", "beir_scifact", {**beir_args, "batch_size": 128}))
    if args.bf16x3:
        if kernel_available():
            pipelines.append(("harness bf16x3", "harness_dense", {**step, "precision": "bf16x3"}))
        else:
            print(f"harness bf16x3 not run: {kernel_unavailable_reason()}")
            FIGURES["bf16x3_not_run"] = kernel_unavailable_reason()
    for bt in args.harness_batch_tokens:
        pipelines.append((f"harness fp32, {bt} tokens a batch", "harness_dense", {**step, "batch_tokens": bt}))
    for n in args.harness_threads:
        pipelines.append((f"harness fp32, {n} thread{'s' if n > 1 else ''}", "harness_dense",
                          {**step, "_env": {"OMP_NUM_THREADS": str(n)}}))
    if args.harness_transformers:
        pipelines.append(("harness fp32, transformers forward", "harness_dense", {**step, "forward": "transformers"}))
    if args.bf16:
        pipelines.append(("harness bf16 autocast", "harness_dense", {**step, "precision": "bf16"}))
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in pipelines}
    cached = again = None
    signal.signal(signal.SIGTERM, _stop)  # kill PID: summarise and record the rounds done so far
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for r in range(args.rounds):
                order = pipelines[r % len(pipelines):] + pipelines[:r % len(pipelines)]
                for i, (name, fn, kwargs) in enumerate(order):
                    kwargs = dict(kwargs)
                    env = {**ENV, **kwargs.pop("_env", {})}
                    if fn == "harness_dense":  # a cache and an output of this run alone: it encodes
                        env["HARNESS_CACHE"] = f"{tmp}/cache-{r}-{i}"
                        kwargs = {**kwargs, "output": f"{tmp}/out-{r}-{i}"}
                    load = _load()
                    m = measure(fn, env, **kwargs)
                    m["load_1min_before"], m["round"] = load, r + 1
                    runs[name].append(m)
                    timings = m["result"].get("timings") or {}
                    inside = (f"  index {timings['index_s']:.1f} s, search {timings['search_s']:.1f} s"
                              if "index_s" in timings else "")
                    used = m["result"].get("cpu_threads")
                    if used:  # the batches the harness ran on each thread count
                        inside += "  threads " + ", ".join(f"{n}: {b}" for n, b in used["batches"].items())
                    print(f"round {r + 1}  {name:34} {m['wall_s']:7.1f} s  load {load:5.2f}  "
                          f"{m['peak_rss_mb']:5.0f} MB  nDCG@10 {m['result']['ndcg@10']:.5f}{inside}", flush=True)
                    if name == "harness fp32" and cached is None:
                        cached = (env, kwargs)
            if cached is not None:  # the same request again: the record is reused, nothing is encoded
                env, kwargs = cached
                load = _load()
                again = measure("harness_dense", env, **kwargs)
                again["load_1min_before"] = load
        except _Stopped:
            done = sum(len(v) for v in runs.values())
            print(f"stopped (SIGTERM) after {done} of {args.rounds * len(pipelines)} runs: the figures below are "
                  "of the runs done")
            FIGURES["stopped_early"] = f"after {done} of {args.rounds * len(pipelines)} runs"
            runs = {k: v for k, v in runs.items() if v}
    FIGURES["load_average_end"] = list(os.getloadavg())

    # 3. figures
    summary: dict[str, dict] = {}
    for name, rs in runs.items():
        walls = [x["wall_s"] for x in rs]
        ndcgs = {round(x["result"]["ndcg@10"], 10) for x in rs}
        summary[name] = {"wall_s": min(walls), "median_wall_s": statistics.median(walls), "wall_s_rounds": walls,
                         "peak_rss_mb": max(x["peak_rss_mb"] for x in rs), "result": rs[0]["result"],
                         "ndcg@10_same_every_round": len(ndcgs) == 1,
                         "load_1min_before": [x["load_1min_before"] for x in rs], "runs": rs}
    if not any(n.startswith("beir") for n in summary):
        print("no beir run finished: no ratios")
        return 1
    beir_best = summary.get(f"beir batch {best} (best)") or summary["beir batch 128 (default)"]
    beir_default = summary.get("beir batch 128 (default)") or (beir_best if best == 128 else None)
    # the report's table takes the first beir row as its reference: beir at its best batch
    order = [*([f"beir batch {best} (best)"] if f"beir batch {best} (best)" in summary else []),
             *(["beir batch 128 (default)"] if "beir batch 128 (default)" in summary
                                            else []), *(n for n in summary if not n.startswith("beir"))]
    FIGURES["pipelines"] = {n: summary[n] for n in order}
    if again is not None:
        FIGURES["pipelines"]["harness fp32 (second run, cached)"] = again
    print(f"{'pipeline':34} {'min s':>7} {'median s':>8} {'peak MB':>8} {'nDCG@10':>8} {'R@100':>7}  load before")
    for name in order:
        s = summary[name]
        res = s["result"]
        print(f"{name:34} {s['wall_s']:7.1f} {s['median_wall_s']:8.1f} {s['peak_rss_mb']:8.0f} {res['ndcg@10']:8.4f} "
              f"{res['recall@100']:7.4f}  {' '.join(f'{x:.2f}' for x in s['load_1min_before'])}"
              + ("" if s["ndcg@10_same_every_round"] else "  (nDCG@10 differs between rounds!)"))
    if again is not None:
        print(f"{'harness fp32 (second run, cached)':34} {again['wall_s']:7.1f}")
    ratios = {}
    for name in order:
        if name.startswith("beir"):
            continue
        s = summary[name]
        ratios[name] = {
            "min_vs_beir_best": s["wall_s"] / beir_best["wall_s"],
            "median_vs_beir_best": s["median_wall_s"] / beir_best["median_wall_s"],
            "min_vs_beir_default": s["wall_s"] / beir_default["wall_s"] if beir_default else None,
            "median_vs_beir_default": s["median_wall_s"] / beir_default["median_wall_s"] if beir_default else None,
            "ndcg@10_minus_beir": s["result"]["ndcg@10"] - beir_best["result"]["ndcg@10"],
            "recall@100_minus_beir": s["result"]["recall@100"] - beir_best["result"]["recall@100"]}
        x = ratios[name]
        default = (f"against beir batch 128 (default) min/min {x['min_vs_beir_default']:.2f}, median/median "
                   f"{x['median_vs_beir_default']:.2f}" if beir_default else "beir batch 128 (default) not run")
        print(f"{name}: against beir batch {best} (best) min/min {x['min_vs_beir_best']:.2f}, median/median "
              f"{x['median_vs_beir_best']:.2f}; {default}; nDCG@10 - beir {x['ndcg@10_minus_beir']:+.2e}, "
              f"Recall@100 - beir {x['recall@100_minus_beir']:+.2e}")
    FIGURES["ratios"] = ratios
    loads = [x for s in summary.values() for x in s["load_1min_before"]]
    print(f"load average (1 min) before the runs: min {min(loads):.2f}, median {statistics.median(loads):.2f}, "
          f"max {max(loads):.2f}")
    FIGURES["load_1min_before_runs"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
    return 0


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
