"""The forward pass alone, on full-length batches: the fused BERT forward (oneDNN and addmm linear in fp32,
and the AMX kernel in bf16x3 where this CPU has it) against transformers' own, at 2,048, 4,096 and
16,384 tokens per batch, for all-MiniLM-L6-v2 (256 tokens per text) and a BERT-base-sized encoder
(random weights, 512 tokens per text; Contriever's shape). Variants are interleaved round by round and
the best round is kept, so drift in the machine's speed falls on all.
Then attention alone: PyTorch's fused scaled_dot_product_attention on one 4,096-token batch of each
shape, the part of the forward that is not a large matmul.

    python -m benchmarks.compute.forward_variants [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

from benchmarks._common import MINILM, machine, require, stamp


def flops(tokens: int, length: int, d: int, f: int, layers: int) -> float:
    return layers * (2 * tokens * (4 * d * d + 2 * d * f) + 4 * tokens * length * d)


def attention(batch: int, heads: int, length: int, d: int, repeat: int = 20) -> str:
    """Speed of the fused attention kernel alone (fp32, no mask) on one batch of this shape."""
    import torch
    import torch.nn.functional as F

    q, k, v = (torch.randn(batch, heads, length, d // heads) for _ in range(3))
    with torch.inference_mode():
        F.scaled_dot_product_attention(q, k, v)
        best = float("inf")
        for _ in range(repeat):
            t = time.perf_counter()
            F.scaled_dot_product_attention(q, k, v)
            best = min(best, time.perf_counter() - t)
    work = 4 * batch * length * length * d
    return (f"attention alone ({batch} x {heads} heads x {length} x {d // heads}): {best * 1e3:.1f} ms per layer, "
            f"{work / best / 1e9:.1f} GFLOP/s, {batch * heads * length * length / 1e6:.1f} M exponentials")


def main() -> None:
    require(MINILM, "all-MiniLM-L6-v2")
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import torch
    from transformers import AutoModel, BertConfig, BertModel

    from harness.distributed import cpu_threads
    from harness.retrievers.compute import amx
    from harness.retrievers.compute.fused_bert import FusedBertForward, onednn_works

    torch.set_num_threads(cpu_threads())
    print(f"# forward_variants  {stamp()}  {machine()}  torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, model, length in (("all-MiniLM-L6-v2", AutoModel.from_pretrained(MINILM), 256),
                                ("BERT-base (random)", BertModel(BertConfig()), 512)):
        model.eval()
        cfg = model.config
        texts = 16384 // length
        ids = torch.randint(1000, 20000, (texts, length))
        mask = torch.ones_like(ids)
        work = flops(texts * length, length, cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers)
        forwards = {"transformers": lambda a, b, m=model: m(input_ids=a, attention_mask=b).last_hidden_state,
                    "fused (addmm)": FusedBertForward(model, backend="addmm")}
        if onednn_works():
            forwards["fused (oneDNN)"] = FusedBertForward(model, backend="onednn")
        if amx.available():
            forwards["fused (bf16x3)"] = FusedBertForward(model, backend="amx")
        best: dict[tuple[str, int], float] = {}
        with torch.inference_mode():
            for fwd in forwards.values():
                fwd(ids[:2], mask[:2])
            for _ in range(args.rounds):
                for label, fwd in forwards.items():
                    for batch_tokens in (2048, 4096, 16384):
                        per = batch_tokens // length
                        t = time.perf_counter()
                        for s in range(0, texts, per):
                            fwd(ids[s:s + per], mask[s:s + per])
                        key = (label, batch_tokens)
                        best[key] = min(best.get(key, float("inf")), time.perf_counter() - t)
        print(f"{name}: {texts} texts x {length} tokens, {work / 1e12:.2f} TFLOP per pass")
        for (label, batch_tokens), wall in best.items():
            print(f"  {label:15} batches of {batch_tokens:5} tokens: {wall:6.2f} s  {work / wall / 1e9:6.1f} GFLOP/s")
        print(f"  {attention(4096 // length, cfg.num_attention_heads, length, cfg.hidden_size)}")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
