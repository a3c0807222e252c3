"""The bf16x3 AMX kernel on its own, and what it changes: prints

1. the kernel's speed on MiniLM's and BERT-base's matmul shapes against fp32 (``torch.nn.functional.linear``,
   oneDNN), best of 6 interleaved rounds, with each one's error against float64: into a fresh output each
   call, and ("bf16x3 out=") into one output kept across calls, which shows what faulting a fresh output
   of over 32 MiB in costs; ``--variant "MC=128 A_BYTES=524288 B_BYTES=524288"`` also builds the kernel
   with other block sizes and prints it beside;
2. the one-time cost of building and probing the kernel in a fresh cache, against loading it once built;
3. how far bf16x3 moves all-MiniLM-L6-v2's vectors of the first 300 SciFact documents from fp32 (and,
   for scale, how far the fp32 fused forward is from transformers' own);
4. where the time of one bf16x3 forward (16 x 256 tokens, MiniLM) goes, by torch profiler.

    python -m benchmarks.compute.amx_kernel [--variant "MC=128 A_BYTES=524288"] [--docs 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import MINILM, SCIFACT, machine, require, stamp

SHAPES = [(2048, 384, 1152), (2048, 384, 384), (2048, 384, 1536), (2048, 1536, 384),
          (4096, 768, 2304), (4096, 768, 768), (4096, 768, 3072), (4096, 3072, 768), (2048, 768, 2304)]


def kernel_speed(variants: dict) -> None:
    import torch
    import torch.nn.functional as F

    from harness.retrievers.compute import amx

    gen = torch.Generator().manual_seed(0)
    print("shape (M x K x N)      " + "".join(f"{name:>16}" for name in ["fp32 oneDNN", *variants, "bf16x3 out="])
          + "   (model GFLOP/s; relative error vs float64)")
    for m, k, n in SHAPES:
        x, w, b = torch.randn(m, k, generator=gen), torch.randn(n, k, generator=gen), torch.randn(n, generator=gen)
        want = x.double() @ w.double().t() + b.double()
        calls = {"fp32 oneDNN": lambda x, b, w=w: F.linear(x, w, b)}
        calls.update({name: amx.PackedWeight(w, lib).__call__ for name, lib in variants.items()})
        reused = torch.empty(m, n)  # the default kernel again, writing into one output kept across calls
        calls["bf16x3 out="] = lambda x, b, w=calls["bf16x3"], out=reused: w(x, b, out=out)
        best = dict.fromkeys(calls, float("inf"))
        errors = {}
        with torch.inference_mode():
            for name, call in calls.items():
                got = call(x, b)
                errors[name] = float((got.double() - want).abs().max() / want.abs().max())
            for _ in range(6):
                for name, call in calls.items():
                    t = time.perf_counter()
                    call(x, b)
                    best[name] = min(best[name], time.perf_counter() - t)
        print(f"{m:5} x {k:4} x {n:4}      " + "".join(
            f"{2 * m * k * n / best[name] / 1e9:7.0f} ({errors[name]:.0e})" for name in calls))


def build_variant(defines: str) -> object:
    from harness.retrievers.compute import compile_kernel

    out = Path(tempfile.mkdtemp()) / "variant.so"
    return compile_kernel(out, [f"-D{d}" for d in defines.split()])


def first_use() -> None:
    code = "from harness.retrievers.compute import kernel_available; assert kernel_available()"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "HARNESS_CACHE": cache}
        walls = []
        for _ in range(2):
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            walls.append(time.perf_counter() - t)
    print(f"process that imports the kernel: fresh cache (build + child probe) {walls[0]:.2f} s, "
          f"built {walls[1]:.2f} s: first use costs {walls[0] - walls[1]:.2f} s once")


def vector_differences(docs: int) -> None:
    import numpy as np

    from harness.data.beir import doc_text, iter_corpus
    from harness.retrievers.config import read_encoder_config
    from harness.retrievers.encoder import HFEncoder

    texts = [doc_text(d) for _, d in zip(range(docs), iter_corpus(SCIFACT / "corpus.jsonl"), strict=False)]
    cfg = read_encoder_config(MINILM)
    vectors = {name: HFEncoder(str(MINILM), cfg, device="cpu", progress=False, **options).encode(texts)
               for name, options in (("bf16x3", {"precision": "bf16x3"}), ("fp32", {"precision": "fp32"}),
                                     ("transformers", {"forward": "transformers"}))}
    print(f"all-MiniLM-L6-v2, first {docs} SciFact documents, normalised vectors: largest difference "
          f"bf16x3 vs fp32 {np.abs(vectors['bf16x3'] - vectors['fp32']).max():.1e}, fp32 fused vs transformers "
          f"{np.abs(vectors['fp32'] - vectors['transformers']).max():.1e}")


def forward_profile() -> None:
    import torch
    from transformers import AutoModel

    from harness.retrievers.compute.fused_bert import FusedBertForward

    forward = FusedBertForward(AutoModel.from_pretrained(MINILM).eval(), backend="amx")
    ids = torch.randint(1000, 20000, (16, 256))
    mask = torch.ones_like(ids)
    for _ in range(2):
        forward(ids, mask)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        t = time.perf_counter()
        for _ in range(3):
            forward(ids, mask)
        wall = (time.perf_counter() - t) / 3
    ops = {e.key: e.self_cpu_time_total / 3 / 1e3 for e in prof.key_averages()}
    named = {"attention (fp32 SDPA)": "aten::_scaled_dot_product_flash_attention_for_cpu", "GELU": "aten::gelu",
             "layer norm": "aten::native_layer_norm", "residual add": "aten::add_"}
    parts = {label: ops.get(key, 0.0) for label, key in named.items()}
    print(f"one bf16x3 forward, MiniLM, 16 x 256 tokens: {wall * 1e3:.0f} ms; "
          + ", ".join(f"{label} {ms:.0f} ms" for label, ms in parts.items())
          + f"; the rest (the kernel's matmuls, embeddings, copies) {wall * 1e3 - sum(parts.values()):.0f} ms")


def main() -> None:
    require(MINILM, "all-MiniLM-L6-v2")
    require(SCIFACT, "SciFact")
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", action="append", default=[], help='e.g. "MC=128 A_BYTES=524288"')
    parser.add_argument("--docs", type=int, default=300)
    args = parser.parse_args()
    from harness.retrievers.compute import amx

    print(f"# amx_kernel  {stamp()}  {machine()}")
    if not amx.available():
        print(f"skipped: {amx.unavailable_reason()}")
        return
    from harness.retrievers.compute import kernel_library

    kernel_speed({"bf16x3": kernel_library(), **{v: build_variant(v) for v in args.variant}})
    first_use()
    vector_differences(args.docs)
    forward_profile()


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
