"""(b) Achieved encoding FLOP/s against this machine's measured fp32 matmul peak.

The peak is the best of several 2048 x 2048 fp32 matmuls, all threads, through each library torch can call
(torch.mm, i.e. MKL, and oneDNN's linear), measured before and after the encoding. The model's FLOPs are
counted per document from its real token count n: per layer 2*n*(4*d^2 + 2*d*f) for the projections and
feed-forward, plus 4*n^2*d for attention scores and weighted values (multiply-add = 2 FLOPs). Padding
tokens are not counted as useful work. Each compute is measured: the harness default (the fused BERT
forward in fp32), on a CPU with AMX the opt-in ``--precision bf16x3`` (float32 matmuls as three bf16
products) and transformers' own forward (``--forward transformers``), interleaved part by
part (250 documents each, rotating which goes first) so that a change in the machine's speed during the
run (other tenants, clock) falls on all alike. bf16x3's FLOPs are the model's, as for the others (its
tile unit does three bf16 products for each), so its share of the fp32 peak can pass 100%; the bf16
matmul peak (torch.mm on bf16 inputs, bf16 output) is printed beside it for scale.

    python -m benchmarks.compute.encode_flops [--docs N]
"""

from __future__ import annotations

import argparse
import json
import time

from benchmarks._common import MINILM, SCIFACT, bf16_matmul_peak, describe_peak, machine, matmul_peak, require, stamp


def model_flops(lengths, d: int, f: int, layers: int) -> float:
    return float(sum(layers * (2 * n * (4 * d * d + 2 * d * f) + 4 * n * n * d) for n in lengths))


def main() -> None:
    require(SCIFACT, "SciFact")
    require(MINILM, "all-MiniLM-L6-v2")
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000, help="documents to encode (default 2000)")
    args = parser.parse_args()
    from harness.data.beir import doc_text, iter_corpus
    from harness.retrievers.config import read_encoder_config
    from harness.retrievers.encoder import HFEncoder

    texts = [doc_text(d) for _, d in zip(range(args.docs), iter_corpus(SCIFACT / "corpus.jsonl"), strict=False)]
    print(f"# encode_flops  {stamp()}  {machine()}")
    peak, by_library = matmul_peak()
    from harness.retrievers.compute import kernel_available

    # the default (fp32 everywhere since 2026-12-02), bf16x3 where the kernel runs (opt-in), transformers' forward
    computes = [{}, *([{"precision": "bf16x3"}] if kernel_available() else []), {"forward": "transformers"}]
    encoders = {}
    for options in computes:
        enc = HFEncoder(str(MINILM), read_encoder_config(MINILM), device="cpu", progress=False, **options)
        encoders.setdefault(f"{enc.compute.precision} {enc.compute.forward}", enc)  # one row per distinct compute
    walls = dict.fromkeys(encoders, 0.0)
    for enc in encoders.values():
        enc.encode(texts[:64])  # warm-up
    names = list(encoders)
    for part, start in enumerate(range(0, len(texts), 250)):
        for name in names[part % len(names):] + names[:part % len(names)]:
            t = time.perf_counter()
            encoders[name].encode(texts[start:start + 250])
            walls[name] += time.perf_counter() - t
    after, after_by_library = matmul_peak()
    peak = max(peak, after)
    by_library = {name: max(flops, after_by_library.get(name, 0.0)) for name, flops in by_library.items()}
    cfg = json.loads((MINILM / "config.json").read_text())
    lengths = [len(x) for x in enc.tokenize(texts)]
    flops = model_flops(lengths, cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"])
    print(f"documents {len(texts)}, tokens {sum(lengths)}, model FLOPs {flops / 1e12:.2f} T")
    print(f"fp32 matmul peak (2048^3, best before/after): {peak / 1e9:.1f} GFLOP/s ({describe_peak(by_library)})")
    print(f"bf16 matmul peak (2048^3, torch.mm, bf16 in and out): {bf16_matmul_peak() / 1e9:.1f} GFLOP/s")
    for name, wall in walls.items():
        print(f"{name:26} ({encoders[name].batch_tokens:5} tokens a batch): wall {wall:5.1f} s, "
              f"{len(texts) / wall:5.1f} docs/s, {sum(lengths) / wall:5.0f} tokens/s, "
              f"{flops / wall / 1e9:5.1f} GFLOP/s = {flops / wall / peak:.0%} of the fp32 peak")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
