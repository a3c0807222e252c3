"""Training throughput of `harness train` on this machine: tokens per second, and the share of the
machine's measured fp32 matmul peak that the training step reaches.

    .venv/bin/python -m benchmarks.training.train_throughput [--init MODEL] [--corpus SOURCE] [--steps 8]

FLOPs are counted the usual way: 2 x (non-embedding parameters) per token for a forward pass plus the
attention scores (4 x layers x hidden x sequence length per token); a backward pass costs twice the
forward. Anchors go forward and backward (3x), keys only forward through the key encoder (1x); in-batch
keys go through the trained encoder (3x). Padding tokens are computed too, so they count as FLOPs, but
tokens per second counts real (non-padding) tokens only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def peak_with_threads(threads: int) -> tuple[float, str]:
    """The fp32 matmul peak (GFLOP/s) with this many torch threads: best of torch.mm and oneDNN."""
    import torch

    from benchmarks._common import describe_peak, matmul_peak

    torch.set_num_threads(threads)
    peak, by_library = matmul_peak()
    return peak / 1e9, describe_peak(by_library)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--init", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--corpus", default=str(SHARED / "data" / "beir" / "scifact"))
    p.add_argument("--objective", default="relevance-aware")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--chunk-length", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    import torch

    from harness.train.config import TrainConfig
    from harness.train.crops import ContrastiveBatches, SpecialIds
    from harness.train.data import build_token_stream, make_windows, resolve_source
    from harness.train.trainer import LOG_FILE, train

    if not Path(args.init).is_dir() and "/" not in args.init:
        print(f"init model {args.init} not found", file=sys.stderr)
        return 2
    peak, peak_detail = peak_with_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(init=args.init, corpus=args.corpus, output=tmp, objective=args.objective,
                          steps=args.steps, warmup_steps=1, batch_size=args.batch_size,
                          chunk_length=args.chunk_length, num_workers=1, threads=args.threads,
                          **({"queue_size": 4096} if args.objective != "inbatch" else {}),
                          save_every=10**9, save_state=False, progress=False, plot=False, device="cpu")
        # save_every > steps: the only checkpoint is written after the last step, outside the timed steps
        res = train(cfg)
        rows = [json.loads(x) for x in (Path(tmp) / LOG_FILE).read_text().splitlines()]
        encoder = res.encoder
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(args.init)
        stream = build_token_stream(resolve_source(args.corpus), tok, _cache())
    windows = make_windows(stream.offsets, cfg.chunk_length, cfg.window_mode)
    data = ContrastiveBatches(str(stream.folder), windows, batch_size=cfg.batch_size, m=cfg.m, seed=cfg.seed,
                              ratio_min=cfg.ratio_min, ratio_max=cfg.ratio_max, augmentation=cfg.augmentation,
                              prob=cfg.prob_augmentation, max_length=512, ids=SpecialIds.from_tokenizer(tok))
    mc = encoder.model.config
    n_params = sum(p.numel() for n, p in encoder.model.named_parameters() if "embeddings" not in n)
    skip = min(2, args.steps - 1)  # warm-up steps excluded
    flops, seconds, real = 0.0, 0.0, 0
    for row in rows[skip:]:
        b = data[row["step"] - 1]
        for ids, factor in ((b["anchor_ids"], 3), (b["key_ids"], 3 if cfg.objective == "inbatch" else 1)):
            n, t = ids.shape
            per_token = 2 * n_params + 4 * mc.num_hidden_layers * mc.hidden_size * t
            flops += factor * per_token * n * t
        tokens = int(b["anchor_mask"].sum() + b["key_mask"].sum())
        real += tokens
        seconds += tokens / row["tokens_per_s"]
    tps = real / seconds
    achieved = flops / seconds / 1e9
    print(f"machine: {torch.get_num_threads()} torch threads, fp32 matmul peak {peak:.1f} GFLOP/s "
          f"(2048^2, best of 8; {peak_detail})")
    print(f"model: {args.init} ({n_params / 1e6:.1f}M non-embedding parameters), objective {cfg.objective}, "
          f"batch {cfg.batch_size} windows x (1 + {cfg.m}) crops, chunk {cfg.chunk_length}")
    median = statistics.median(r["tokens_per_s"] for r in rows[skip:])
    print(f"throughput: {tps:,.0f} tokens/s (median step {median:,.0f}),"
          f" {achieved:.1f} GFLOP/s = {100 * achieved / peak:.0f}% of the measured matmul peak")
    return 0


def _cache() -> Path:
    from harness.paths import cache_root

    return cache_root() / "train-tokens"


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
