"""The prepared GPU check (issues 28, 34): the GPU paths of the harness in five parts, in the order of what
they prove, each written to its own JSON as soon as it ends (a run cut off keeps what it finished), each
estimated at 4 minutes or less on one H100 (the script prints its estimate per part, made from the work the
part does: :func:`estimate`). The device time lent is 15 minutes in all, machine start included, at most
10 a command: run the parts one command each where time is short.

(1) train: training steps against the CPU's fp32 loss. (i) In this process, for each objective, the same
    steps on the device's CPU in fp32 and on the device in fp32, bf16 and fp16 (dropout 0, the learning
    rate 0 at step 1): every fp32 step within 1e-4 of the CPU's loss; bf16 and fp16 at step 2 (same weights,
    only the encoder's precision differs: the loss itself is fp32) within the tolerances in
    :data:`TOLERANCES`. (ii) ``torchrun --nproc_per_node 1`` (a process group even for one process: NCCL)
    relevance-aware with checkpoints and ``--eval``, the newest checkpoint removed and ``--resume`` (the
    redone steps' losses within 1e-4). (iii) ``torchrun --nproc_per_node 2 --dist-backend gloo`` on this
    one GPU, each objective at half the batch per rank: the CUDA-to-collective moves run, and the losses
    equal the whole-batch run of (i). Multi-rank NCCL needs two GPUs and is said so in the JSON.
(2) run: ``harness run`` on SciFact with a seeded random encoder of BERT-base width on CUDA in fp32 and on
    the same machine's CPU in fp32: nDCG@10 and Recall@100 identical; the bf16 and tf32 runs' deltas against
    the device's fp32 reported, with each run's encode time (the record's ``timings.index_s``).
(3) encode: docs/s of a BERT-base-shaped encoder, the harness in fp32 and bf16 against beir 2.2.0's
    pipeline, beside the fp32 (TF32 off) and bf16 matmul peaks measured in the same run.
(4) rerank and SPLADE: cross-encoder scores and SPLADE term weights of a SciFact subset, CUDA against CPU.
(5) out of memory: the encoder's token budget raised past the device's memory after the planner checked
    it: the back-off halves the budget, records it, and gives an unconstrained run's vectors.

    python -m benchmarks.gpu.device_check [--parts 1_train,...] [--out DIR]   # the figures: a CUDA machine
    python -m benchmarks.gpu.device_check --smoke [--out DIR]                 # CPU smoke: tiny sizes, same code
    python -m benchmarks.gpu.device_check --estimate                          # the H100 estimate per part
    bash benchmarks/gpu/device.sh prepare | run [PART]                        # a lent machine without ../shared

The smoke mode (tests/test_benchmark_scripts.py runs it in CI) runs every part on the CPU with tiny models
(fp16 where the CPU's autocast has it), so the run on a lent machine is not the code's first; its figures
are not figures. Without CUDA and without --smoke the script says "skipped".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import FIGURES, MINILM, ROOT, SCIFACT, machine, require, stamp

OBJECTIVES = ("relevance-aware", "moco", "inbatch")
#: relative differences allowed against the CPU's fp32 loss: fp32 at every step; bf16 and fp16 at step 2,
#: where the weights are the initial ones (learning rate 0 at step 1) and only the encoder's forward
#: precision differs (the logits and the loss are fp32: harness.train.loop.fp32_loss)
TOLERANCES = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 1e-2, "resume": 1e-4, "two_ranks": 1e-4}


@dataclass
class Sizes:
    """Model and data sizes of a full run (on a GPU) and of the CPU smoke run."""

    hidden: int
    heads: int
    intermediate: int
    layers: int  # (3), (4), (5): BERT-base's 12
    run_layers: int  # (2): a whole SciFact run on the CPU too
    train_layers: int  # (1): the CPU's reference steps too
    docs: int  # (3)
    subset: int  # (1) --eval and (4): documents of SciFact
    steps: int  # (1) ii: checkpoints every steps // 3
    precision_steps: int  # (1) i and iii
    batch: int  # (1): windows per rank; the whole batch is twice this
    chunk: int


FULL = Sizes(hidden=768, heads=12, intermediate=3072, layers=12, run_layers=1, train_layers=2, docs=10000,
             subset=200, steps=12, precision_steps=4, batch=8, chunk=128)
SMOKE = Sizes(hidden=64, heads=4, intermediate=128, layers=2, run_layers=1, train_layers=1, docs=48,
              subset=24, steps=6, precision_steps=3, batch=2, chunk=32)


@dataclass
class Context:
    sizes: Sizes
    device: str
    smoke: bool
    scifact: Path
    tokenizer: Path
    work: Path

    def model(self, name: str, layers: int, head: str = "encoder") -> Path:
        """A seeded random BERT of the run's width (dropout 0), saved with the tokenizer: an encoder, a
        cross-encoder (one logit) or a masked-LM head (SPLADE)."""
        import torch
        from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

        folder = self.work / "models" / name
        if folder.exists():
            return folder
        s = self.sizes
        config = BertConfig(hidden_size=s.hidden, num_attention_heads=s.heads, intermediate_size=s.intermediate,
                            num_hidden_layers=layers, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                            num_labels=1)
        tokenizer = AutoTokenizer.from_pretrained(self.tokenizer)
        config.vocab_size = len(tokenizer)
        torch.manual_seed(0)
        model = {"encoder": lambda: BertModel(config, add_pooling_layer=False),
                 "cross-encoder": lambda: BertForSequenceClassification(config),
                 "mlm": lambda: BertForMaskedLM(config)}[head]()
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        return folder

    def subset(self) -> Path:
        """A BEIR folder of SciFact's first test queries and the documents they judge, topped up with the
        corpus's first documents to ``sizes.subset``."""
        folder = self.work / "scifact-subset"
        if folder.exists():
            return folder
        from harness.data.beir import iter_corpus

        qrels = [line.split("\t") for line in (self.scifact / "qrels" / "test.tsv").read_text().splitlines()[1:]]
        n = self.sizes.subset
        queries = list(dict.fromkeys(q for q, _, _ in qrels))[: max(2, n // 10)]
        judged = {d for q, d, _ in qrels if q in queries}
        docs = [d for d in iter_corpus(self.scifact / "corpus.jsonl") if d.doc_id in judged]
        docs += [d for d in iter_corpus(self.scifact / "corpus.jsonl") if d.doc_id not in judged][: n - len(docs)]
        (folder / "qrels").mkdir(parents=True)
        with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
            for d in docs:
                f.write(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n")
        wanted = set(queries)
        with open(folder / "queries.jsonl", "w", encoding="utf-8") as f:
            for line in (self.scifact / "queries.jsonl").read_text(encoding="utf-8").splitlines():
                if json.loads(line)["_id"] in wanted:
                    f.write(line + "\n")
        rows = [r for r in qrels if r[0] in wanted]
        (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join("\t".join(r) + "\n"
                                                                                          for r in rows))
        return folder


def harness_cli(args: list[str], *, cache: Path, timeout: int = 600, launcher: list[str] | None = None) -> str:
    """``python -m harness ARGS`` (under ``launcher``, e.g. torchrun) with its own cache; its output, or a
    RuntimeError with the command and the end of what it printed."""
    env = {**os.environ, "HARNESS_CACHE": str(cache), "HARNESS_CONFIG": str(cache / "config.json"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    cmd = [*(launcher or [sys.executable]), "-m", "harness", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> exit {proc.returncode}: {(proc.stdout + proc.stderr)[-1500:]}")
    return proc.stdout


def cuda(ctx: Context) -> bool:
    return ctx.device.startswith("cuda")


# --- the estimate ------------------------------------------------------------------------------------------
#: assumptions of the H100 estimate (the JSON records each part's measured seconds beside it, so the first GPU
#: run corrects them): a fresh `python -m harness` process (interpreter, torch and transformers imports, CUDA
#: context, model load) and torchrun's start; fp32 (TF32 off) at 40% of the H100 SXM's 67 TFLOP/s and bf16 at
#: 25% of its 989 by a transformer's forward and backward; the device's 16 CPU cores at 0.6 TFLOP/s fp32; a
#: training step of these small models bound by kernel launches at 50 ms.
PROCESS_S, TORCHRUN_S, STEP_S = 15.0, 25.0, 0.05
GPU_FP32, GPU_BF16, CPU_FP32 = 0.4 * 67e12, 0.25 * 989e12, 0.6e12
SCIFACT_DOCS, SCIFACT_QUERIES, SCIFACT_TOKENS = 5183, 300, 327  # documents, test queries, mean tokens (BERT's)


def token_flops(s: Sizes, layers: int, tokens: float, length: float) -> float:
    """Forward FLOPs of ``tokens`` tokens in texts of ``length`` (encode_flops.model_flops per token)."""
    return layers * tokens * (2 * (4 * s.hidden ** 2 + 2 * s.hidden * s.intermediate) + 4 * length * s.hidden)


def estimate(s: Sizes) -> dict[str, dict[str, float]]:
    """Each part's estimated seconds on one H100 (with its work: processes, FLOPs on the GPU and the CPU)."""
    crop = 0.275 * s.chunk + 2  # a crop's mean length: a ratio uniform in [0.05, 0.5] of the window, [CLS] [SEP]
    whole = 2 * s.batch

    def step_flops(objective: str, batch: int) -> float:
        m = 4 if objective == "relevance-aware" else 1
        grad = (1 + (m if objective == "inbatch" else 0)) * batch * crop  # tokens with gradient: 3x forward
        plain = (0 if objective == "inbatch" else m) * batch * crop  # the key encoder's forward
        return token_flops(s, s.train_layers, 3 * grad + plain, crop)

    train_cpu = sum(step_flops(o, whole) for o in OBJECTIVES) * s.precision_steps
    train_gpu = (3 * train_cpu + step_flops("relevance-aware", whole) * 2 * s.steps) / GPU_FP32
    evals = 3 * token_flops(s, s.train_layers, s.subset * SCIFACT_TOKENS, SCIFACT_TOKENS) / GPU_FP32
    steps = (3 * 3 * s.precision_steps + 2 * s.steps + 3 * s.precision_steps) * STEP_S
    run_tokens = (SCIFACT_DOCS + SCIFACT_QUERIES) * SCIFACT_TOKENS
    run_cpu = token_flops(s, s.run_layers, run_tokens, SCIFACT_TOKENS)
    enc = token_flops(s, s.layers, s.docs * SCIFACT_TOKENS, SCIFACT_TOKENS)
    pairs = s.subset * 2 * SCIFACT_TOKENS
    mlm_head = s.subset * SCIFACT_TOKENS * 2 * 30522 * s.hidden  # SPLADE's vocabulary projection
    rr_cpu = token_flops(s, s.layers, pairs, 2 * SCIFACT_TOKENS) + \
        token_flops(s, s.layers, s.subset * SCIFACT_TOKENS, SCIFACT_TOKENS) + mlm_head
    oom = 2 * token_flops(s, s.layers, 8 * s.subset * SCIFACT_TOKENS, SCIFACT_TOKENS)
    parts = {
        "1_train": {"processes": 1 + 2 + 3 * 2, "gpu_s": train_gpu + evals + steps, "cpu_s": train_cpu / CPU_FP32,
                    "start_s": PROCESS_S + 2 * TORCHRUN_S + 3 * TORCHRUN_S},
        "2_run": {"processes": 4, "gpu_s": 3 * run_cpu / GPU_FP32, "cpu_s": run_cpu / CPU_FP32,
                  "start_s": 4 * PROCESS_S},  # device fp32, bf16 and tf32 (at most fp32's time), the CPU's fp32
        "3_encode": {"processes": 0, "gpu_s": 2 * enc / GPU_FP32 + 3 * enc / GPU_BF16 + 20, "cpu_s": 10,
                     "start_s": PROCESS_S},
        "4_rerank_sparse": {"processes": 0, "gpu_s": rr_cpu / GPU_FP32, "cpu_s": rr_cpu / CPU_FP32,
                            "start_s": 10},
        "5_oom": {"processes": 0, "gpu_s": oom / GPU_FP32, "cpu_s": 5, "start_s": 10},
    }
    for row in parts.values():
        row["seconds"] = round(row["gpu_s"] + row["cpu_s"] + row["start_s"], 1)
    return parts


# --- (1) training steps ------------------------------------------------------------------------------------
@contextlib.contextmanager
def environ(**values: str) -> Iterator[None]:
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def train_args(ctx: Context, init: Path, objective: str, batch: int, steps: int) -> list[str]:
    """The options every training run of part 1 shares (learning rate 0 at step 1: warm-up of 2 steps)."""
    s = ctx.sizes
    return ["--init", str(init), "--corpus", str(ctx.scifact / "corpus.jsonl"), "--objective", objective,
            "--steps", str(steps), "--warmup-steps", "2", "--batch-size", str(batch), "--chunk-length", str(s.chunk),
            *(["--queue-size", str(16 * s.batch * 4)] if objective != "inbatch" else []),
            *(["--pairs", "4"] if objective == "relevance-aware" else []), "--num-workers", "0", "--no-progress",
            "--no-plot", "--lr", "1e-4"]


def part_train(ctx: Context) -> dict[str, Any]:
    import torch

    s = ctx.sizes
    init = ctx.model("encoder-train", s.train_layers)
    whole = 2 * s.batch
    out: dict[str, Any] = {"tolerances": TOLERANCES, "precision": {}, "two_ranks_gloo": {},
                           "nccl_multi_rank": "not run: multi-rank NCCL needs two GPUs" if cuda(ctx) and
                           torch.cuda.device_count() < 2 else "not run: (iii) uses gloo; NCCL with two ranks "
                           "is `torchrun --nproc_per_node 2` without --dist-backend"}
    # (i) in this process: the CPU's fp32 reference, and the device in fp32, bf16 and fp16
    precisions = ["fp32", "bf16", "fp16"] if cuda(ctx) else ["fp32", "bf16"] + (["fp16"] if cpu_fp16() else [])
    for objective in OBJECTIVES:
        row: dict[str, Any] = {}
        runs = {"cpu fp32": ("cpu", "fp32"), **{f"device {p}": (ctx.device, p) for p in precisions}}
        for name, (device, precision) in runs.items():
            folder = ctx.work / "train" / objective / name.replace(" ", "-")
            with environ(HARNESS_CACHE=str(ctx.work / "train-cache"), HARNESS_CONFIG=str(folder / "config.json")):
                in_process_train([*train_args(ctx, init, objective, whole, s.precision_steps), "--device", device,
                                  "--precision", precision, "--output", str(folder / "out"), "--save-every",
                                  str(s.precision_steps)])
            row[name] = losses(folder / "out")
        cpu = row["cpu fp32"]
        fp32 = max(rel(row["device fp32"][i], cpu[i]) for i in cpu)
        checks = {"fp32_every_step": {"max_rel_diff": fp32, "ok": fp32 <= TOLERANCES["fp32"]}}
        for p in precisions[1:]:
            d = rel(row[f"device {p}"][2], cpu[2])
            checks[f"{p}_step_2"] = {"rel_diff": d, "ok": d <= TOLERANCES[p]}
        out["precision"][objective] = {"losses": row, "checks": checks, "ok": all(c["ok"] for c in checks.values())}
    # (ii) torchrun, one process (a group: NCCL on CUDA): checkpoints, --eval, then --resume
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    base = [*train_args(ctx, init, "relevance-aware", whole, s.steps), "--device", ctx.device, "--save-every",
            str(s.steps // 3), "--keep-last", "3", "--precision", "fp32"]
    gpu = ctx.work / "train" / "torchrun"
    t = time.perf_counter()
    harness_cli(["train", *base, "--output", str(gpu / "out"), "--eval", str(ctx.subset()), "--eval-output",
                 str(gpu / "eval")], cache=gpu / "cache", launcher=[*torchrun, "1"])
    first = losses(gpu / "out")
    evaluated = [json.loads(x) for x in (gpu / "out" / "eval_log.jsonl").read_text().splitlines() if x]
    shutil.rmtree(sorted((gpu / "out").glob("checkpoint-*"))[-1])  # as if the job died after 2/3 of the run
    harness_cli(["train", *base, "--output", str(gpu / "out"), "--resume"], cache=gpu / "cache",
                launcher=[*torchrun, "1"])
    resumed = losses(gpu / "out")
    redone = [step for step in first if step > s.steps * 2 // 3]
    gap = max(rel(resumed[i], first[i]) for i in redone)
    out["torchrun_one_process"] = {"seconds": time.perf_counter() - t, "evaluations": len(evaluated),
                                   "resume_max_rel_diff": gap, "ok": gap <= TOLERANCES["resume"] and bool(evaluated)}
    # (iii) two ranks on this one device with gloo, half the batch each: the whole batch's losses of (i)
    for objective in OBJECTIVES:
        folder = ctx.work / "train" / objective / "two-ranks"
        harness_cli(["train", *train_args(ctx, init, objective, s.batch, s.precision_steps), "--device", ctx.device,
                     "--precision", "fp32", "--dist-backend", "gloo", "--output", str(folder / "out"),
                     "--save-every", str(s.precision_steps)], cache=folder / "cache", launcher=[*torchrun, "2"])
        two, one = losses(folder / "out"), out["precision"][objective]["losses"]["device fp32"]
        d = max(rel(two[i], one[i]) for i in one)
        out["two_ranks_gloo"][objective] = {"losses": two, "max_rel_diff_vs_whole_batch": d,
                                            "ok": d <= TOLERANCES["two_ranks"]}
    out["ok"] = all(r["ok"] for r in out["precision"].values()) and out["torchrun_one_process"]["ok"] and \
        all(r["ok"] for r in out["two_ranks_gloo"].values())
    return out


def in_process_train(args: list[str]) -> None:
    """``harness train ARGS`` in this process (no process start to pay for each run)."""
    from harness.cli import main

    code = main(["train", *args])
    if code:
        raise RuntimeError(f"harness train {' '.join(args)} -> exit {code}")


def cpu_fp16() -> bool:
    """Whether this torch autocasts fp16 on the CPU (the smoke run's fp16 row)."""
    import torch

    try:
        with torch.autocast("cpu", dtype=torch.float16):
            return bool((torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float16)
    except (RuntimeError, TypeError):
        return False


def losses(output: Path) -> dict[int, float]:
    """Each step's loss in ``train_log.jsonl`` (a resumed step: its latest line)."""
    out = {}
    for line in (output / "train_log.jsonl").read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            out[int(record["step"])] = float(record["loss"])
    return out


def rel(a: float, b: float) -> float:
    """|a - b| relative to |b| (absolute where b is 0: step 1 of a queue objective has loss 0)."""
    return abs(a - b) / max(abs(b), 1.0)


# --- (2) a SciFact run --------------------------------------------------------------------------------------
def part_run(ctx: Context) -> dict[str, Any]:
    folder = ctx.model("encoder-run", ctx.sizes.run_layers)
    dataset = ctx.subset() if ctx.smoke else ctx.scifact
    runs = [("device fp32", ctx.device, "fp32"), ("cpu fp32", "cpu", "fp32")]
    if cuda(ctx):  # the speed modes, each against the device's fp32
        runs += [("device bf16", ctx.device, "bf16"), ("device tf32", ctx.device, "tf32")]
    out: dict[str, Any] = {"dataset": str(dataset), "layers": ctx.sizes.run_layers, "runs": {}}
    for name, device, precision in runs:
        where = ctx.work / "run" / name.replace(" ", "-")
        t = time.perf_counter()
        harness_cli(["run", "--retriever", f"hf:{folder}", "--dataset", str(dataset), "--device", device,
                     "--precision", precision, "--metric", "ndcg@10", "--metric", "recall@100",
                     "--output-dir", str(where / "results")], cache=where / "cache")
        record = next(p for p in (where / "results").rglob("*.json") if "leaderboard" not in p.name)
        data = json.loads(record.read_text())
        prov = data.get("retriever_provenance", {})
        out["runs"][name] = {"metrics": data["metrics"], "seconds": time.perf_counter() - t,
                             "encode_s": data.get("timings", {}).get("index_s"), "settings": data.get("settings"),
                             "compute": prov.get("compute"), "device": prov.get("device"),
                             "search": prov.get("search"), "per_query": data["per_query"]}
    a, b = out["runs"]["device fp32"], out["runs"]["cpu fp32"]
    out["device_equals_cpu"] = a["metrics"] == b["metrics"]
    out["queries_that_differ"] = sorted(q for q in a["per_query"] if a["per_query"][q] != b["per_query"].get(q))
    for mode in ("bf16", "tf32"):
        if f"device {mode}" in out["runs"]:
            c = out["runs"][f"device {mode}"]
            out[f"{mode}_delta"] = {m: c["metrics"][m] - a["metrics"][m] for m in a["metrics"]}
            if a["encode_s"] and c["encode_s"]:
                out[f"{mode}_encode_speedup"] = a["encode_s"] / c["encode_s"]
    for row in out["runs"].values():
        del row["per_query"]
    return out


# --- (3) encoding ----------------------------------------------------------------------------------------
def part_encode(ctx: Context) -> dict[str, Any]:
    import numpy as np
    import torch

    from benchmarks._common import bf16_matmul_peak, matmul_peak
    from benchmarks.compute.encode_flops import model_flops
    from benchmarks.compute.gpu_encode import beir_row, harness_row, relative_difference
    from harness.data.beir import doc_text, iter_corpus
    from harness.retrievers.config import CONTRIEVER
    from harness.retrievers.encoder import HFEncoder

    s = ctx.sizes
    folder = ctx.model("encoder", s.layers)
    docs = list(iter_corpus(ctx.scifact / "corpus.jsonl"))
    docs = (docs * (s.docs // len(docs) + 1))[: s.docs]
    texts = [doc_text(d) for d in docs]
    order = np.argsort([-len(d.title + d.text) for d in docs], kind="stable")
    corpus = [{"title": docs[i].title, "text": docs[i].text} for i in order]
    rows = {"harness fp32": harness_row(folder, texts, ctx.device, "fp32"),
            "beir fp32": beir_row(folder, corpus, order, ctx.device, torch.float32)}
    if cuda(ctx):
        rows["harness bf16"] = harness_row(folder, texts, ctx.device, "bf16")
        rows["beir bf16 weights"] = beir_row(folder, corpus, order, ctx.device, torch.bfloat16)
    reference = rows["beir fp32"]["vectors"]
    lengths = [len(x) for x in HFEncoder(str(folder), CONTRIEVER, device="cpu", progress=False).tokenize(texts)]
    flops = model_flops(lengths, s.hidden, s.intermediate, s.layers)
    peaks = gpu_peaks() if cuda(ctx) else {"fp32": matmul_peak(256, 2)[0], "bf16": bf16_matmul_peak(256, 2)}
    out: dict[str, Any] = {"documents": len(texts), "tokens": int(sum(lengths)), "model_flops": flops,
                           "matmul_peak_flops": peaks, "rows": {}}
    for name, row in rows.items():
        out["rows"][name] = {"label": row["name"], "docs_s": row["docs_s"], "peak_gib": row["peak_gib"],
                             "achieved_flops": flops * row["docs_s"] / len(texts),
                             "max_rel_diff_vs_beir_fp32": float(relative_difference(row["vectors"], reference).max())}
    r = out["rows"]
    out["targets"] = {
        "harness_fp32_vs_beir_fp32": {"ratio": r["harness fp32"]["docs_s"] / r["beir fp32"]["docs_s"], "want": 1.5,
                                      "equal_vectors": r["harness fp32"]["max_rel_diff_vs_beir_fp32"] < 1e-4}}
    if "harness bf16" in r:
        out["targets"]["harness_bf16_share_of_bf16_peak"] = {
            "share": r["harness bf16"]["achieved_flops"] / peaks["bf16"], "want": 0.4}
    for t in out["targets"].values():
        t["met"] = bool(t.get("ratio", t.get("share", 0)) >= t["want"] and t.get("equal_vectors", True))
    return out


def gpu_peaks(size: int = 8192, repeat: int = 10) -> dict[str, float]:
    """Best FLOP/s of size x size products on the GPU: fp32 with TF32 off (the reference computation) and
    bf16."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(size, size, device="cuda", dtype=dtype)
        b = torch.randn(size, size, device="cuda", dtype=dtype)
        torch.mm(a, b)
        best = 0.0
        for _ in range(repeat):
            torch.cuda.synchronize()
            t = time.perf_counter()
            torch.mm(a, b)
            torch.cuda.synchronize()
            best = max(best, 2 * size**3 / (time.perf_counter() - t))
        out[name] = best
        del a, b
    torch.cuda.empty_cache()
    return out


# --- (4) rerank and SPLADE ----------------------------------------------------------------------------------
def part_rerank_sparse(ctx: Context) -> dict[str, Any]:
    import numpy as np

    from harness.data.beir import doc_text, iter_corpus
    from harness.retrievers.rerank import CrossEncoderScorer, ScoreCache
    from harness.retrievers.sparse import SparseRetriever
    from harness.retrievers.spec import RetrieverSpec
    from harness.settings import Execution

    subset = ctx.subset()
    docs = [doc_text(d) for d in iter_corpus(subset / "corpus.jsonl")]
    queries = [json.loads(x)["text"] for x in (subset / "queries.jsonl").read_text().splitlines() if x]
    pairs = [(queries[i % len(queries)], d) for i, d in enumerate(docs)]
    ce_model, mlm = ctx.model("cross-encoder", ctx.sizes.layers, "cross-encoder"), ctx.model("mlm", ctx.sizes.layers,
                                                                                             "mlm")
    out: dict[str, Any] = {"pairs": len(pairs), "documents": len(docs)}
    scores = {}
    for device in (ctx.device, "cpu"):
        scorer = CrossEncoderScorer(RetrieverSpec(name="ce", kind="rerank", model=str(ce_model)),
                                    Execution(device=device, progress=False))
        cache = ScoreCache(ctx.work / f"ce-{device}.sqlite")
        known: dict[str, float] = {}
        keys = [f"{i}" for i in range(len(pairs))]
        scorer._score_pairs(pairs, keys, cache, known)
        cache.close()
        scores[device] = np.array([known[k] for k in keys])
    ce = np.abs(scores[ctx.device] - scores["cpu"])
    out["cross_encoder"] = {"max_abs_diff": float(ce.max()), "score_scale": float(np.abs(scores["cpu"]).max()),
                            "same_order_per_query": same_order(pairs, scores[ctx.device], scores["cpu"])}
    weights = {}
    for device in (ctx.device, "cpu"):
        splade = SparseRetriever(RetrieverSpec(name="sp", kind="sparse", model=str(mlm)),
                                 execution=Execution(device=device, progress=False))
        weights[device] = splade.encode(docs, splade.doc_max_length)
    same = sum(a == b for a, b in zip(weights[ctx.device], weights["cpu"], strict=True))
    largest = max((abs(a.get(t, 0) - b.get(t, 0)) for a, b in zip(weights[ctx.device], weights["cpu"], strict=True)
                   for t in set(a) | set(b)), default=0)
    out["splade"] = {"documents_with_identical_quantised_weights": same, "of": len(docs),
                     "max_quantised_weight_diff": largest}
    out["ok"] = bool(ce.max() <= 1e-4 * max(1.0, out["cross_encoder"]["score_scale"]) and largest <= 1)
    return out


def same_order(pairs: list[tuple[str, str]], a, b) -> bool:
    import numpy as np

    by_query: dict[str, list[int]] = {}
    for i, (q, _) in enumerate(pairs):
        by_query.setdefault(q, []).append(i)
    return all(list(np.argsort(-a[idx], kind="stable")) == list(np.argsort(-b[idx], kind="stable"))
               for idx in map(np.array, by_query.values()))


# --- (5) out of memory ----------------------------------------------------------------------------------
def part_oom(ctx: Context) -> dict[str, Any]:
    import numpy as np
    import torch

    from harness.data.beir import doc_text, iter_corpus
    from harness.retrievers.config import CONTRIEVER
    from harness.retrievers.encoder import HFEncoder

    folder = ctx.model("encoder", ctx.sizes.layers)
    docs = list(iter_corpus(ctx.scifact / "corpus.jsonl"))[: 8 * ctx.sizes.subset]
    texts = [doc_text(d) for d in docs]
    expected = HFEncoder(str(folder), CONTRIEVER, device=ctx.device, progress=False).encode(texts, "doc")
    enc = HFEncoder(str(folder), CONTRIEVER, device=ctx.device, progress=False, max_batch=len(texts))
    planned = enc.batch_tokens
    enc.batch_tokens = 1 << 24  # past any device's memory, after the planner's check
    blocker = None
    if cuda(ctx):
        free, _ = torch.cuda.mem_get_info()
        blocker = torch.empty(max(0, free - (2 << 30)), dtype=torch.uint8, device=ctx.device)  # leave 2 GiB
    else:  # the CPU does not run out: a batch of more than 8 texts "does not fit" (the smoke run)
        real = enc.forward

        def tight(input_ids, mask):
            if input_ids.shape[0] > 8:
                raise torch.OutOfMemoryError("out of memory (simulated on the CPU)")
            return real(input_ids, mask)

        enc.forward = tight  # type: ignore[method-assign]
    try:
        got = enc.encode(texts, "doc")
    finally:
        del blocker
        if cuda(ctx):
            torch.cuda.empty_cache()
    diff = float(np.abs(got - expected).max())
    return {"documents": len(texts), "planned_batch_tokens": planned, "forced_batch_tokens": 1 << 24,
            "backoffs": enc.backoffs, "final_batch_tokens": enc.batch_tokens, "max_abs_diff_vs_plain": diff,
            "ok": bool(enc.backoffs and diff < 1e-4)}


PARTS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "1_train": part_train, "2_run": part_run, "3_encode": part_encode, "4_rerank_sparse": part_rerank_sparse,
    "5_oom": part_oom}


def print_estimate() -> dict[str, dict[str, float]]:
    rows = estimate(FULL)
    for part, row in rows.items():
        print(f"estimate {part}: {row['seconds'] / 60:.1f} H100 min ({row['start_s']:.0f} s of process starts, "
              f"{row['gpu_s']:.0f} s GPU, {row['cpu_s']:.0f} s CPU)")
    print(f"estimate all parts: {sum(r['seconds'] for r in rows.values()) / 60:.1f} H100 min, machine start not "
          "counted")
    return rows


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Whole or not at all: a run killed while writing leaves the previous file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU smoke mode: tiny sizes (what CI runs)")
    parser.add_argument("--estimate", action="store_true", help="print the H100 estimate per part and stop")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu with --smoke")
    parser.add_argument("--scifact", type=Path, default=SCIFACT, help="a BEIR folder (SciFact)")
    parser.add_argument("--tokenizer", type=Path, default=MINILM, help="a folder with a BERT tokenizer")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--out", type=Path, help="write each part's JSON here (device_check-PART.json) when it ends")
    parser.add_argument("--json", type=Path, help="also write every part's figures to this one file")
    args = parser.parse_args()
    if args.estimate:
        print_estimate()
        return 0
    device = args.device or ("cpu" if args.smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device on this machine (--smoke runs every part on the CPU; --estimate prints "
              "the H100 estimate per part)")
        return 0
    estimates = print_estimate()
    for what, path in (("SciFact", args.scifact / "corpus.jsonl"), ("a BERT tokenizer", args.tokenizer)):
        require(path, what)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU (smoke run, not a figure)"
    FIGURES.update({"device": name, "smoke": args.smoke, "machine": machine(), "date": stamp(),
                    "torch": torch.__version__, "parts": {}})
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    failed = 0
    with tempfile.TemporaryDirectory(prefix="device-check-") as tmp:
        ctx = Context(SMOKE if args.smoke else FULL, device, args.smoke, args.scifact, args.tokenizer, Path(tmp))
        for part in parts:
            t = time.perf_counter()
            try:
                result = PARTS[part](ctx)
            except Exception as e:  # a part that fails is recorded and the next one runs
                failed += 1
                result = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
            result["seconds"] = round(time.perf_counter() - t, 1)
            result["estimated_h100_seconds"] = estimates[part]["seconds"]
            FIGURES["parts"][part] = result
            print(f"{part}: {summary(result)}", flush=True)
            if args.out:
                write_json(args.out / f"device_check-{part}.json",
                           {k: v for k, v in FIGURES.items() if k != "parts"} | {"part": part, "result": result})
            if args.json:
                write_json(args.json, FIGURES)
    return 1 if failed else 0


def summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error'][:300]}"
    keys = ("ok", "device_equals_cpu", "targets", "bf16_delta", "tf32_delta", "tf32_encode_speedup")
    shown = {k: result[k] for k in keys if k in result}
    if "backoffs" in result:
        shown["backoffs"] = len(result["backoffs"])
    shown.update({k: v.get("ok") for k, v in result.items() if isinstance(v, dict) and "ok" in v})
    return (f"{json.dumps(shown, default=str)[:600]} ({result['seconds']} s; estimated "
            f"{result['estimated_h100_seconds']} s on an H100)")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    if "--estimate" in sys.argv:
        raise SystemExit(main())
    run_and_record(main, __file__)
