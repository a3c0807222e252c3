"""The trainer experiment of docs/TRAINING.md: does relevance-aware weighting help, with everything else equal?

Three arms trained from the same init with the same seeds (paired):
- ``ra``: relevance-aware (clamp guard), B windows x m key crops;
- ``uniform``: the same objective with equal weights (``--weight-guard uniform``): the weighting is the only
  difference from ``ra`` (same crops, dropout, queue, normalisation);
- ``moco``: Contriever MoCo with the crops per step matched (B(1+m)/2 windows x 2 crops) and the queue fill
  matched (its queue is scaled so that it fills after the same number of steps as ``ra``'s).
Two inits:
- ``minilm``: all-MiniLM-L6-v2, a supervised retriever, discriminative from step 0 (the weights are informative
  at once: this isolates the weighting);
- ``mlm``: a small BERT made by this script and MLM-trained briefly on the corpora (no retrieval training), then
  contrastive: no pretrained non-retrieval BERT is available offline.
Each final checkpoint is evaluated at its full max length on SciFact test (nDCG@10, per query) and SQuAD-dev
(accuracy@20, per question), beside BM25 and the init; few-shot fine-tuning (8/32/128 SciFact train pairs)
from each arm's seed-0 checkpoint and from the init. Paired tests across seeds (t) and per query
(randomization, on the per-query mean over seeds).

Every finished unit is kept in the results JSON (``--results``, committed) and skipped on a rerun, so the
experiment resumes across sessions (checkpoints do not need to survive: a unit is done once its numbers are in
the JSON). Every harness command is printed before it runs.

    HARNESS_DATA=../shared/data python -m benchmarks.training.trainer_experiment   # the CPU budget (hours, 2 cores)
    HARNESS_DATA=../shared/data python -m benchmarks.training.trainer_experiment --scale gpu
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
SQUAD = SHARED / "data" / "odqa" / "squad-dev"
ARMS = ("ra", "uniform", "moco")
SCALES = {
    "cpu": dict(steps=100, warmup=10, batch=16, pairs=4, chunk=128, queue=4096, lr=2e-5, momentum=0.999,
                mlm_steps=1500, mlm_batch=32, mlm_layers=4, mlm_hidden=256, shots=(8, 32, 128), ft_steps=60,
                ft_batch=8, seeds=(0, 1, 2)),
    "gpu": dict(steps=5000, warmup=500, batch=64, pairs=4, chunk=256, queue=65536, lr=5e-5, momentum=0.9995,
                mlm_steps=20000, mlm_batch=128, mlm_layers=6, mlm_hidden=384, shots=(8, 32, 128), ft_steps=200,
                ft_batch=16, seeds=(0, 1, 2, 3, 4)),
}


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=Path, default=Path("runs/trainer-experiment"), help="checkpoints and records")
    p.add_argument("--results", type=Path, default=Path(__file__).parent / "results" / "trainer_experiment.json",
                   help="the results JSON (resumable: finished units are skipped)")
    p.add_argument("--scale", choices=list(SCALES), default="cpu")
    p.add_argument("--inits", nargs="+", default=["minilm", "mlm"], choices=["minilm", "mlm"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--summary-only", action="store_true", help="print the tables from the results JSON")
    return p.parse_args()


class Results:
    """The results JSON: one entry per finished unit, written after each (atomically)."""

    def __init__(self, path: Path, header: dict):
        self.path = path
        self.data = json.loads(path.read_text()) if path.is_file() else {"header": header, "units": {}}

    def done(self, key: str) -> bool:
        return key in self.data["units"]

    def get(self, key: str) -> dict:
        return self.data["units"][key]

    def put(self, key: str, value: dict) -> None:
        from harness.io import atomic_write_json

        self.data["units"][key] = {**value, "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        atomic_write_json(self.path, self.data)


def harness(args: list[str]) -> None:
    from harness.cli import main

    print("+ harness " + " ".join(args), flush=True)
    rc = main(args)
    if rc:
        raise SystemExit(f"harness {args[0]} failed with exit status {rc}")


def evaluate(results: Results, key: str, retriever: str, root: Path, device: str) -> dict:
    """SciFact nDCG@10 and SQuAD-dev accuracy@20 of a retriever, per query kept."""
    if results.done(key):
        return results.get(key)
    scores: dict = {}
    for dataset, metric in (("beir/scifact", "ndcg@10"), (str(SQUAD), "accuracy@20")):
        rec = run_scored(root / "results", retriever, dataset, metric, device)
        per_query = rec.per_query[metric]
        scores[metric] = {"mean": rec.metrics[metric], "per_query": _pack(per_query, metric)}
    results.put(key, scores)
    return scores


def run_scored(out: Path, retriever: str, dataset: str, metric: str, device: str):
    """``harness run`` of one retriever on one dataset into ``out``, and the record it wrote."""
    from harness.datasets import resolve_dataset
    from harness.results.records import read_record, record_paths
    from harness.retrievers.registry import resolve_retriever

    harness(["run", "-r", retriever, "-d", dataset, "--metric", metric, "--output-dir", str(out), "--device", device])
    ds = resolve_dataset(dataset)
    path, _ = record_paths(out, ds.id, ds.split, resolve_retriever(retriever).slug)
    return read_record(path)


def _pack(per_query: dict[str, float], metric: str) -> dict:
    """Per-query values for the JSON: rounded for nDCG; for accuracy (0/1) a bit string in qid order."""
    qids = sorted(per_query, key=lambda q: (len(q), q))
    if metric.startswith("accuracy@"):
        bits = "".join("1" if per_query[q] else "0" for q in qids)
        return {"qids": "sorted by (length, id)", "bits": hex(int("1" + bits, 2))[2:]}
    return {q: round(per_query[q], 6) for q in qids}


def _unpack(packed: dict) -> list[float]:
    if "bits" in packed:
        return [float(b) for b in bin(int(packed["bits"], 16))[3:]]
    return [packed[q] for q in sorted(packed, key=lambda q: (len(q), q))]


def mlm_folder(root: Path) -> Path:
    return root / "mlm-init"


def arm_checkpoint(root: Path, init: str, arm: str, seed: int, s: dict) -> Path:
    """The final checkpoint of one training run (``train_arm`` writes it)."""
    return root / f"{init}-{arm}-seed{seed}" / f"checkpoint-{s['steps']:07d}"


def mlm_init(root: Path, s: dict, threads: int, device: str) -> Path:
    """A small BERT (MiniLM's tokenizer) MLM-trained on the SciFact corpus and the SQuAD-dev passages."""
    folder = mlm_folder(root)
    if (folder / "harness_checkpoint.json").is_file():
        return folder
    import random

    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    from harness.data.beir import doc_text, iter_corpus
    from harness.odqa.formats import iter_passages
    from harness.retrievers.config import EncoderConfig
    from harness.train.checkpoint import checkpoint_metadata

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    tok = AutoTokenizer.from_pretrained(MINILM)
    texts = [doc_text(d) for d in iter_corpus(SHARED / "data" / "beir" / "scifact" / "corpus.jsonl")]
    texts += [d.text for d in iter_passages(SQUAD / "passages.tsv")]
    ids = [t for x in tok(texts, add_special_tokens=False, truncation=False)["input_ids"] for t in x]
    h = s["mlm_hidden"]
    model = BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=h, num_hidden_layers=s["mlm_layers"],
                                       num_attention_heads=h // 64, intermediate_size=4 * h,
                                       max_position_embeddings=512)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 100) * max(0.0, 1 - i / s["mlm_steps"]))
    rng, L = random.Random(0), 126
    special = torch.tensor([tok.cls_token_id, tok.sep_token_id])
    print(f"+ MLM pre-training of a {s['mlm_layers']}-layer, {h}-wide BERT for {s['mlm_steps']} steps "
          f"on {len(ids):,} tokens", flush=True)
    model.train()
    for step in range(s["mlm_steps"]):
        starts = [rng.randrange(0, len(ids) - L) for _ in range(s["mlm_batch"])]
        x = torch.tensor([[tok.cls_token_id, *ids[a:a + L], tok.sep_token_id] for a in starts], device=device)
        labels = x.clone()  # the original tokens; the loss reads them at the masked positions only
        chosen = (torch.rand(x.shape, device=device) < 0.15) & ~torch.isin(x, special.to(device))
        roll = torch.rand(x.shape, device=device)
        x = torch.where(chosen & (roll < 0.8), torch.full_like(x, tok.mask_token_id), x)
        x = torch.where(chosen & (roll >= 0.8) & (roll < 0.9), torch.randint_like(x, tok.vocab_size), x)
        # the vocabulary projection only at the masked positions (the loss is the same; ~3x less compute)
        hidden = model.bert(input_ids=x).last_hidden_state[chosen]
        loss = torch.nn.functional.cross_entropy(model.cls(hidden), labels[chosen])
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 250 == 0 or step == s["mlm_steps"] - 1:
            print(f"  MLM step {step}: loss {loss.item():.3f}", flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    model.bert.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    enc = EncoderConfig(pooling="mean", max_length=256, source="MLM init of benchmarks/training/trainer_experiment.py")
    meta = checkpoint_metadata(encoder=enc, objective="mlm", hyperparameters={k: s[k] for k in s if "mlm" in k},
                               data_checksum="", step=s["mlm_steps"], init="random")
    (folder / "harness_checkpoint.json").write_text(json.dumps(meta, indent=2))
    return folder


def train_arm(root: Path, init: str, init_path: Path, arm: str, seed: int, s: dict, threads: int,
              device: str) -> Path:
    final = arm_checkpoint(root, init, arm, seed, s)
    out = final.parent
    if final.is_dir():
        return final
    m, B = s["pairs"], s["batch"]
    if arm == "moco":  # crops per step matched: B(1+m) crops; queue fill matched: same steps to fill
        batch = B * (1 + m) // 2
        extra = ["--objective", "moco", "--batch-size", str(batch),
                 "--queue-size", str(s["queue"] * batch // (m * B))]
    else:
        extra = ["--objective", "relevance-aware", "--pairs", str(m), "--batch-size", str(B),
                 "--queue-size", str(s["queue"]), "--weight-guard", "uniform" if arm == "uniform" else "clamp"]
    harness(["train", "--init", str(init_path), "--corpus", "beir/scifact", "--output", str(out), "--seed", str(seed),
             "--steps", str(s["steps"]), "--warmup-steps", str(s["warmup"]), "--chunk-length", str(s["chunk"]),
             "--lr", str(s["lr"]), "--momentum", str(s["momentum"]), "--max-length", "256",
             "--save-every", str(s["steps"]), "--keep-last", "1", "--no-state", "--num-workers", "1",
             "--threads", str(threads), "--device", device, "--no-progress", "--no-plot", *extra])
    return final


def verify_rebuilt(results: Results, key: str, retriever: str, root: Path, device: str) -> None:
    """A checkpoint rebuilt after its folder was lost (few-shot needs it again) is checked against the
    SciFact nDCG@10 recorded when it was first trained: the few-shot rows must start from the model the
    tables report. The check is recorded (``<key>/rebuilt``) and a mismatch is flagged in the summary."""
    if not results.done(key) or results.done(key + "/rebuilt"):
        return
    now = run_scored(root / "results-rebuilt", retriever, "beir/scifact", "ndcg@10", device).metrics["ndcg@10"]
    was = results.get(key)["ndcg@10"]["mean"]
    results.put(key + "/rebuilt", {"ndcg@10": now, "recorded": was, "abs_diff": abs(now - was)})
    print(f"== {key} rebuilt: SciFact nDCG@10 {now:.6f}, recorded {was:.6f}", flush=True)


def weight_trace(out: Path, m: int) -> dict:
    """The relevance weights' entropy over the run (uniform = log m), from the training log."""
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    ent = [r["w_entropy"] for r in log if "w_entropy" in r]
    if not ent:
        return {}
    uniform = math.log(m)
    first = next((r["step"] for r in log if "w_entropy" in r and r["w_entropy"] < uniform - 0.01), None)
    return {"uniform": uniform, "first": ent[0], "last": ent[-1], "min": min(ent),
            "first_step_below_uniform_by_0.01": first, "every_10_steps": ent[::10]}


def fewshot(results: Results, root: Path, key: str, init_path: Path, shots: int, s: dict, threads: int,
            device: str) -> dict:
    if results.done(key):
        return results.get(key)
    out = root / key.replace("/", "-")
    harness(["finetune", "--init", str(init_path), "--dataset", "beir/scifact", "--split", "train", "--shots",
             str(shots), "--steps", str(s["ft_steps"]), "--batch-size", str(s["ft_batch"]), "--output", str(out),
             "--seed", "0", "--threads", str(threads), "--device", device, "--no-progress", "--no-plot"])
    from harness.train.checkpoint import list_checkpoints

    ckpt = list_checkpoints(out)[-1][1]
    rec = run_scored(root / "results", str(ckpt), "beir/scifact", "ndcg@10", device)
    value = {"ndcg@10": {"mean": rec.metrics["ndcg@10"], "per_query": _pack(rec.per_query["ndcg@10"], "ndcg@10")}}
    results.put(key, value)
    return value


def main() -> int:
    args = parse()
    s = SCALES[args.scale]
    command = "python -m benchmarks.training.trainer_experiment " + " ".join(sys.argv[1:])
    results = Results(args.results, {"scale": args.scale, "settings": s, "command": command})
    if not args.summary_only:
        import torch

        torch.set_num_threads(args.threads)
        root = args.root
        root.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        evaluate(results, "bm25", "bm25", root, args.device)
        for init in args.inits:
            rebuilt = init == "mlm" and not (mlm_folder(root) / "harness_checkpoint.json").is_file()
            init_path = MINILM if init == "minilm" else mlm_init(root, s, args.threads, args.device)
            if rebuilt:
                verify_rebuilt(results, "mlm/init", str(init_path), root, args.device)
            evaluate(results, f"{init}/init", f"hf:{init_path}" if init == "minilm" else str(init_path), root,
                     args.device)
            for seed in s["seeds"]:
                for arm in ARMS:
                    key = f"{init}/{arm}/seed{seed}"
                    if results.done(key):
                        continue
                    ckpt = train_arm(root, init, init_path, arm, seed, s, args.threads, args.device)
                    scores = evaluate(results, key + "/eval", str(ckpt), root, args.device)
                    results.put(key, {**scores, "weights": weight_trace(ckpt.parent, s["pairs"])})
                    print(f"== {key}: nDCG@10 {scores['ndcg@10']['mean']:.4f}, accuracy@20 "
                          f"{scores['accuracy@20']['mean']:.4f} ({time.time() - t0:.0f} s so far)", flush=True)
            for shots in s["shots"]:
                fewshot(results, root, f"{init}/init/fewshot{shots}", init_path, shots, s, args.threads, args.device)
                for arm in ARMS:
                    if results.done(f"{init}/{arm}/fewshot{shots}"):
                        continue
                    lost = not arm_checkpoint(root, init, arm, 0, s).is_dir()
                    ckpt = train_arm(root, init, init_path, arm, 0, s, args.threads, args.device)
                    if lost:
                        verify_rebuilt(results, f"{init}/{arm}/seed0", str(ckpt), root, args.device)
                    fewshot(results, root, f"{init}/{arm}/fewshot{shots}", ckpt, shots, s, args.threads,
                            args.device)
    print(summary(results, s))
    return 0


def summary(results: Results, s: dict) -> str:
    """Markdown tables from whatever units are finished."""
    from scipy import stats

    from harness.results.power import paired_power, seed_summary
    from harness.results.stats import randomization_test

    u = results.data["units"]
    lines = [f"scale {results.data['header']['scale']}; command: `{_as_module(results.data['header']['command'])}`",
             ""]
    if "bm25" in u:
        lines.append(f"BM25: SciFact nDCG@10 {u['bm25']['ndcg@10']['mean']:.4f}, SQuAD-dev accuracy@20 "
                     f"{u['bm25']['accuracy@20']['mean']:.4f}")
    for init in ("minilm", "mlm"):
        if f"{init}/init" not in u:
            continue
        lines += ["", f"### init {init}", "",
                  f"init: SciFact nDCG@10 {u[f'{init}/init']['ndcg@10']['mean']:.4f}, SQuAD-dev accuracy@20 "
                  f"{u[f'{init}/init']['accuracy@20']['mean']:.4f}", "",
                  "| arm | metric | " + " | ".join(f"seed {x}" for x in s["seeds"]) + " | mean | std |",
                  "|---|---|" + "---|" * (len(s["seeds"]) + 2)]
        for arm in ARMS:
            for metric in ("ndcg@10", "accuracy@20"):
                vals = [u[f"{init}/{arm}/seed{x}"][metric]["mean"] for x in s["seeds"] if f"{init}/{arm}/seed{x}" in u]
                if vals:
                    cells = [f"{v:.4f}" for v in vals] + [""] * (len(s["seeds"]) - len(vals))
                    std = statistics.stdev(vals) if len(vals) > 1 else float("nan")
                    lines.append(f"| {arm} | {metric} | " + " | ".join(cells) + f" | {statistics.mean(vals):.4f} | "
                                 f"{std:.4f} |")
        lines += ["", "| comparison | metric | mean diff | paired t over seeds (p) | per query, randomization (p) | "
                      "detectable over these seeds (80%) | seeds the difference needs |",
                  "|---|---|---|---|---|---|---|"]
        for a, b in (("ra", "uniform"), ("ra", "moco"), ("uniform", "moco")):
            seeds = [x for x in s["seeds"] if f"{init}/{a}/seed{x}" in u and f"{init}/{b}/seed{x}" in u]
            for metric in ("ndcg@10", "accuracy@20"):
                if len(seeds) < 2:
                    continue
                va = [u[f"{init}/{a}/seed{x}"][metric]["mean"] for x in seeds]
                vb = [u[f"{init}/{b}/seed{x}"][metric]["mean"] for x in seeds]
                t = stats.ttest_rel(va, vb).pvalue
                qa = [statistics.mean(c) for c in zip(*[_unpack(u[f"{init}/{a}/seed{x}"][metric]["per_query"])
                                                        for x in seeds], strict=True)]
                qb = [statistics.mean(c) for c in zip(*[_unpack(u[f"{init}/{b}/seed{x}"][metric]["per_query"])
                                                        for x in seeds], strict=True)]
                r = randomization_test(qb, qa, resamples=10_000, seed=0).pvalue
                power = seed_summary(vb, va)  # differences a - b, paired by seed (harness.results.power)
                needed = "more than 10^6" if power.seeds_needed is None else f"{power.seeds_needed:,}"
                lines.append(f"| {a} - {b} | {metric} | {statistics.mean(va) - statistics.mean(vb):+.4f} | "
                             f"{t:.3f} | {r:.4f} | {power.detectable:.4f} | {needed} |")
        ent = [(x, u[f"{init}/ra/seed{x}"].get("weights", {})) for x in s["seeds"] if f"{init}/ra/seed{x}" in u]
        if ent:
            lines += ["", "relevance weights (ra): entropy, uniform = log m = "
                      f"{math.log(s['pairs']):.4f} nats"]
            for x, w in ent:
                if w:
                    lines.append(f"- seed {x}: step 1 {w['first']:.4f}, last {w['last']:.4f}, min {w['min']:.4f}; "
                                 f"first step 0.01 below uniform: {w['first_step_below_uniform_by_0.01']}")
        for k in [k for k in u if k.startswith(f"{init}/") and k.endswith("/rebuilt")]:
            r = u[k]
            lines.append(f"- {k[:-len('/rebuilt')]} rebuilt for few-shot: SciFact nDCG@10 {r['ndcg@10']:.6f} vs "
                         f"{r['recorded']:.6f} recorded" + (" (MISMATCH)" if r["abs_diff"] > 1e-6 else " (same)"))
        few = [(k, v) for k, v in u.items() if k.startswith(f"{init}/") and "fewshot" in k]
        if few:
            lines += ["", "| few-shot from | " + " | ".join(f"{n} shots" for n in s["shots"]) + " |",
                      "|---|" + "---|" * len(s["shots"])]
            for src in ("init", *ARMS):
                cells = [f"{u[f'{init}/{src}/fewshot{n}']['ndcg@10']['mean']:.4f}" if f"{init}/{src}/fewshot{n}" in u
                         else "—" for n in s["shots"]]
                lines.append(f"| {src} (seed 0) | " + " | ".join(cells) + " |")
            pairs = [(a, b, n) for a, b in (("ra", "uniform"), ("ra", "moco"), ("ra", "init"), ("uniform", "init"))
                     for n in s["shots"] if f"{init}/{a}/fewshot{n}" in u and f"{init}/{b}/fewshot{n}" in u]
            if pairs:
                lines += ["", "| few-shot comparison (one fine-tuning seed) | shots | nDCG@10 diff | "
                          "per query, randomization (p) | detectable over these queries (80%) |",
                          "|---|---|---|---|---|"]
            for a, b, n in pairs:
                qa = _unpack(u[f"{init}/{a}/fewshot{n}"]["ndcg@10"]["per_query"])
                qb = _unpack(u[f"{init}/{b}/fewshot{n}"]["ndcg@10"]["per_query"])
                r = randomization_test(qb, qa, resamples=10_000, seed=0).pvalue
                mde = paired_power([x - y for x, y in zip(qa, qb, strict=True)]).detectable
                lines.append(f"| {a} - {b} | {n} | {statistics.mean(qa) - statistics.mean(qb):+.4f} | {r:.4f} | "
                             f"{mde:.4f} |")
    return "\n".join(lines)


def _as_module(command: str) -> str:
    """The recorded command as it runs today: results written when the script was benchmarks/trainer_experiment.py
    name that path, which no longer exists; the module is benchmarks.training.trainer_experiment."""
    words = command.split()
    if len(words) > 1 and words[0] == "python" and words[1].endswith("trainer_experiment.py"):
        words = ["python", "-m", "benchmarks.training.trainer_experiment", *words[2:]]
    return " ".join(words)


if __name__ == "__main__":
    sys.exit(main())
