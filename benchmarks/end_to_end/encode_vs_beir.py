"""(a) SciFact end to end with all-MiniLM-L6-v2: harness vs beir 2.2.0's DenseRetrievalExactSearch +
models.SentenceBERT, in the same run on the same machine. Prints wall time, peak memory and nDCG@10 of
each, the wall-time ratio, and the time of a second (cached) harness run. The harness runs with its
default compute, fp32 (the reference); ``--bf16x3`` adds a run with ``precision="bf16x3"`` (CPUs with AMX,
the same numbers to 1e-4), ``--bf16`` one with ``precision="bf16"`` (autocast; not the same numbers).

    python -m benchmarks.end_to_end.encode_vs_beir [--bf16x3] [--bf16]
"""

from __future__ import annotations

import argparse
import tempfile

from benchmarks._common import FIGURES, MINILM, SCIFACT, machine, measure, require, stamp


def main() -> None:
    require(SCIFACT, "SciFact")
    require(MINILM, "all-MiniLM-L6-v2")
    parser = argparse.ArgumentParser()
    parser.add_argument("--bf16x3", action="store_true", help="also run the harness in bf16x3 (a CPU with AMX)")
    parser.add_argument("--bf16", action="store_true", help="also run the harness with bf16 autocast")
    args = parser.parse_args()
    print(f"# encode_vs_beir  {stamp()}  {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"HARNESS_CACHE": f"{tmp}/cache", "HARNESS_OFFLINE": "1",
               "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
        step = {"model": str(MINILM), "dataset": str(SCIFACT)}
        ours = measure("harness_dense", env, output=f"{tmp}/out", **step)
        again = measure("harness_dense", env, output=f"{tmp}/out", **step)
        rows = [("harness fp32 (cold cache)", ours), ("harness (second run)", again)]
        if args.bf16x3:
            rows.append(("harness --precision bf16x3", measure("harness_dense", env, output=f"{tmp}/out-bf16x3",
                                                               precision="bf16x3", **step)))
        if args.bf16:
            rows.append(("harness --precision bf16", measure("harness_dense", env, output=f"{tmp}/out-bf16",
                                                             precision="bf16", **step)))
        beir = measure("beir_scifact", {"HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}, scifact=str(SCIFACT),
                       model=str(MINILM))
    rows.insert(0, ("beir 2.2.0 DRES + SentenceBERT", beir))
    FIGURES["pipelines"] = dict(rows)
    print(f"{'pipeline':34} {'wall s':>8} {'peak MB':>9} {'nDCG@10':>8} {'R@100':>7}  compute")
    for name, r in rows:
        res = r["result"]
        compute = " ".join(f"{v}" for v in res.get("compute", {}).values())
        print(f"{name:34} {r['wall_s']:8.1f} {r['peak_rss_mb']:9.0f} {res['ndcg@10']:8.4f} {res['recall@100']:7.4f}"
              f"  {compute}")
    for name, r in rows[1:]:
        if name != "harness (second run)":
            print(f"{name}: wall-time ratio to beir {r['wall_s'] / beir['wall_s']:.2f}, nDCG@10 difference "
                  f"{r['result']['ndcg@10'] - beir['result']['ndcg@10']:+.5f}")
    print(f"second run: {again['wall_s']:.1f} s")
    for name, r in rows[1:]:
        timings = r["result"].get("timings") or {}
        if "index_s" in timings and name != "harness (second run)":
            print(f"{name}: index (model load, tokenization, corpus encoding) {timings['index_s']:.1f} s, search "
                  f"{timings['search_s']:.1f} s, everything else "
                  f"{r['wall_s'] - timings['index_s'] - timings['search_s']:.1f} s")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
