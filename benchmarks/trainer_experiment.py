"""The trainer experiment of docs/TRAINING.md: further pre-training all-MiniLM-L6-v2 on the SciFact corpus
with relevance-aware and with moco, the same budget, several seeds, each evaluated on SciFact test next to
the init model (same max length) and BM25.

    HARNESS_DATA=../shared/data .venv/bin/python benchmarks/trainer_experiment.py --root runs/trainer-exp

Every training run is the `harness train` command printed before it runs; results go to <root>/results
(the leaderboard) and a summary to <root>/summary.json and <root>/summary.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("runs/trainer-experiment"))
    p.add_argument("--init", default=str(SHARED / "models" / "all-MiniLM-L6-v2"))
    p.add_argument("--dataset", default="beir/scifact")
    p.add_argument("--objectives", nargs="+", default=["relevance-aware", "moco"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--chunk-length", type=int, default=128)
    p.add_argument("--queue-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--momentum", type=float, default=0.999)
    p.add_argument("--max-length", type=int, default=64, help="encoder max length in training and evaluation")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-bm25", action="store_true")
    return p.parse_args()


def init_checkpoint(args: argparse.Namespace, folder: Path) -> Path:
    """The init model as a step-0 checkpoint with the experiment's max length, so it is evaluated under
    exactly the truncation the trained models get."""
    from harness.train.checkpoint import checkpoint_metadata, list_checkpoints, save_checkpoint
    from harness.train.encoder import init_encoder_config, load_encoder

    if list_checkpoints(folder):
        return list_checkpoints(folder)[-1][1]
    cfg = init_encoder_config(args.init, None, None, args.max_length)
    loaded = load_encoder(args.init, cfg)
    meta = checkpoint_metadata(encoder=cfg, objective="init", hyperparameters={}, data_checksum="", step=0,
                               init=args.init)
    return save_checkpoint(folder, 0, loaded.encoder.model, loaded.tokenizer, meta, None, 1)


def main() -> int:
    args = parse()
    import torch

    torch.set_num_threads(args.threads)
    from harness.cli import main as harness
    from harness.runner import run
    from harness.settings import Execution

    root, results = args.root, args.root / "results"
    root.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    t0 = time.time()
    init_ckpt = init_checkpoint(args, root / "init")
    rec, = run([str(init_ckpt)], [args.dataset], ["ndcg@10"], results, execution=Execution(device="cpu"))
    rows.append({"system": f"init (max_length {args.max_length})", "seed": None,
                 "ndcg@10": rec.metrics["ndcg@10"]})
    if not args.no_bm25:
        try:
            rec, = run(["bm25"], [args.dataset], ["ndcg@10"], results, execution=Execution(device="cpu"))
            rows.append({"system": "bm25", "seed": None, "ndcg@10": rec.metrics["ndcg@10"]})
        except Exception as e:  # BM25 needs Java; the trained rows still count
            print(f"bm25 not evaluated: {e}", file=sys.stderr)
    for objective in args.objectives:
        for seed in args.seeds:
            out = root / f"{objective}-seed{seed}"
            cmd = ["train", "--init", args.init, "--corpus", args.dataset, "--objective", objective,
                   "--output", str(out), "--seed", str(seed), "--steps", str(args.steps),
                   "--warmup-steps", str(args.warmup_steps), "--batch-size", str(args.batch_size),
                   "--chunk-length", str(args.chunk_length), "--queue-size", str(args.queue_size),
                   "--lr", str(args.lr), "--momentum", str(args.momentum), "--max-length", str(args.max_length),
                   "--save-every", str(args.steps), "--keep-last", "1", "--no-state", "--num-workers", "1",
                   "--threads", str(args.threads), "--device", "cpu", "--eval", args.dataset,
                   "--eval-output", str(results), "--no-progress"]
            print("harness " + " ".join(cmd), flush=True)
            if not list((out / "eval_log.jsonl").parent.glob("eval_log.jsonl")):
                rc = harness(cmd)
                if rc:
                    return rc
            evals = [json.loads(x) for x in (out / "eval_log.jsonl").read_text().splitlines()]
            score = [e for e in evals if e["step"] == args.steps][-1]["metrics"]["ndcg@10"]
            rows.append({"system": objective, "seed": seed, "ndcg@10": score})
            print(f"{objective} seed {seed}: nDCG@10 {score:.4f}  ({time.time() - t0:.0f}s so far)", flush=True)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "aggregate": {}}
    for objective in args.objectives:
        scores = [r["ndcg@10"] for r in rows if r["system"] == objective]
        summary["aggregate"][objective] = {"mean": statistics.mean(scores),
                                           "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                                           "min": min(scores), "max": max(scores), "n": len(scores)}
    summary["seconds"] = time.time() - t0
    (root / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = ["| system | seed | nDCG@10 |", "|---|---|---|"]
    lines += [f"| {r['system']} | {'' if r['seed'] is None else r['seed']} | {r['ndcg@10']:.4f} |" for r in rows]
    lines += ["", "| objective | mean | std (n-1) | min | max |", "|---|---|---|---|---|"]
    lines += [f"| {o} | {a['mean']:.4f} | {a['std']:.4f} | {a['min']:.4f} | {a['max']:.4f} |"
              for o, a in summary["aggregate"].items()]
    (root / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
