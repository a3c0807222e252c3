"""The prepared GPU check (issue 28): every GPU path of the harness in one run that fits in 10 minutes on
one H100, one JSON. Five parts, each recorded (with its error, if it fails) before the next starts:

(a) encode: docs/s of a BERT-base-shaped encoder, the harness in fp32 and bf16 against beir 2.2.0's
    pipeline (benchmarks/compute/gpu_encode.py's rows), beside the fp32 (TF32 off) and bf16 matmul peaks
    measured in the same run. Targets: harness fp32 >= 1.5x beir fp32 at equal vectors; harness bf16 at
    >= 40% of the bf16 matmul peak (the encoder's FLOPs counted as encode_flops.py counts them).
(b) run: ``harness run`` on SciFact with a seeded random encoder of BERT-base width, on CUDA in fp32 and on
    the same machine's CPU in fp32 (each with its own cache and results folder): nDCG@10 and Recall@100
    identical; the bf16 run's deltas reported.
(c) train: ``torchrun --nproc_per_node 1 -m harness train`` (a process group even for one process: NCCL on
    CUDA, gloo on CPU) for each objective: 30 steps with checkpoints every 10 and ``--eval``; then the newest
    checkpoint removed and ``--resume`` redoes steps 21-30 (the losses must repeat); the loss after 10 steps
    against the same run on the CPU (1e-4 relative; dropout 0 in the model, since CUDA and CPU draw other
    dropout masks).
(d) rerank and SPLADE: cross-encoder scores and SPLADE term weights of a SciFact subset on CUDA against the
    CPU (random BERT-base-shaped models; the device has no Java, so not the Lucene searches).
(e) out of memory: the encoder's token budget raised past the device's memory after the planner checked it
    and the memory taken by another tensor, so CUDA runs out: the back-off halves the budget, it is
    recorded, and the vectors equal an unconstrained run's.

    python -m benchmarks.gpu.device_check [--json FILE]          # the figures: on a CUDA machine
    python -m benchmarks.gpu.device_check --smoke [--json FILE]  # CPU smoke mode: tiny sizes, the same code
    bash benchmarks/gpu/device.sh prepare | run                  # on a lent machine without ../shared

The smoke mode (tests/test_benchmark_scripts.py runs it in CI) runs every part on the CPU with tiny models,
so the run on a lent machine is not the code's first; its figures are not figures. Without CUDA and without
--smoke the script says "skipped".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._common import FIGURES, MINILM, ROOT, SCIFACT, machine, require, stamp

OBJECTIVES = ("relevance-aware", "moco", "inbatch")


@dataclass
class Sizes:
    """Model and data sizes of a full run (on a GPU) and of the CPU smoke run."""

    hidden: int
    heads: int
    intermediate: int
    layers: int  # (a), (d), (e): BERT-base's 12
    run_layers: int  # (b): a whole SciFact run on the CPU too
    train_layers: int  # (c): 30 steps on the CPU too, for each objective
    docs: int  # (a)
    subset: int  # (c) --eval and (d): documents of SciFact
    steps: int
    batch: int
    chunk: int


FULL = Sizes(hidden=768, heads=12, intermediate=3072, layers=12, run_layers=2, train_layers=2, docs=20000,
             subset=200, steps=30, batch=16, chunk=128)
SMOKE = Sizes(hidden=64, heads=4, intermediate=128, layers=2, run_layers=1, train_layers=1, docs=48,
              subset=24, steps=6, batch=4, chunk=32)


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


# --- (a) ---------------------------------------------------------------------------------------------------
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


# --- (b) ---------------------------------------------------------------------------------------------------
def part_run(ctx: Context) -> dict[str, Any]:
    folder = ctx.model("encoder-run", ctx.sizes.run_layers)
    dataset = ctx.subset() if ctx.smoke else ctx.scifact
    runs = [("device fp32", ctx.device, "fp32"), ("cpu fp32", "cpu", "fp32")]
    if cuda(ctx):
        runs.append(("device bf16", ctx.device, "bf16"))
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
                             "compute": prov.get("compute"), "device": prov.get("device"),
                             "search": prov.get("search"), "per_query": data["per_query"]}
    a, b = out["runs"]["device fp32"], out["runs"]["cpu fp32"]
    out["device_equals_cpu"] = a["metrics"] == b["metrics"]
    out["queries_that_differ"] = sorted(q for q in a["per_query"] if a["per_query"][q] != b["per_query"].get(q))
    if "device bf16" in out["runs"]:
        c = out["runs"]["device bf16"]["metrics"]
        out["bf16_delta"] = {m: c[m] - a["metrics"][m] for m in a["metrics"]}
    for row in out["runs"].values():
        del row["per_query"]
    return out


# --- (c) ---------------------------------------------------------------------------------------------------
def part_train(ctx: Context) -> dict[str, Any]:
    s = ctx.sizes
    init = ctx.model("encoder-train", s.train_layers)
    evaluation = ctx.subset()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    out: dict[str, Any] = {}
    for objective in OBJECTIVES:
        base = ["train", "--init", str(init), "--corpus", str(ctx.scifact / "corpus.jsonl"), "--objective", objective,
                "--steps", str(s.steps), "--warmup-steps", "2", "--batch-size", str(s.batch), "--chunk-length",
                str(s.chunk), "--queue-size", str(4 * s.batch * 4), "--save-every", str(s.steps // 3),
                "--keep-last", "3", "--no-progress", "--no-plot", "--precision", "fp32"]
        row: dict[str, Any] = {}
        gpu = ctx.work / "train" / objective / "gpu"
        t = time.perf_counter()
        harness_cli([*base, "--device", ctx.device, "--output", str(gpu / "out"), "--eval", str(evaluation),
                     "--eval-output", str(gpu / "eval")], cache=gpu / "cache", launcher=torchrun)
        row["seconds"] = time.perf_counter() - t
        first = losses(gpu / "out")
        evaluated = [json.loads(x) for x in (gpu / "out" / "eval_log.jsonl").read_text().splitlines() if x]
        row["evaluations"] = len(evaluated)
        # resume: the newest checkpoint removed, as if the job died after step 2/3 of the run
        newest = sorted((gpu / "out").glob("checkpoint-*"))[-1]
        shutil.rmtree(newest)
        harness_cli([*base, "--device", ctx.device, "--output", str(gpu / "out"), "--resume"], cache=gpu / "cache",
                    launcher=torchrun)
        resumed = losses(gpu / "out")
        redone = [step for step in first if step > s.steps * 2 // 3]
        row["resume_max_rel_diff"] = max(rel(resumed[i], first[i]) for i in redone)
        cpu = ctx.work / "train" / objective / "cpu"
        harness_cli([*base, "--device", "cpu", "--output", str(cpu / "out")], cache=cpu / "cache")
        on_cpu = losses(cpu / "out")
        at = s.steps // 3
        row["loss_at_step"] = at
        row["loss"] = {"device": first[at], "cpu": on_cpu[at]}
        row["device_vs_cpu_rel_diff"] = rel(first[at], on_cpu[at])
        row["ok"] = bool(row["device_vs_cpu_rel_diff"] <= 1e-4 and row["resume_max_rel_diff"] <= 1e-4
                         and row["evaluations"] >= 1)
        out[objective] = row
    return out


def losses(output: Path) -> dict[int, float]:
    """Each step's loss in ``train_log.jsonl`` (a resumed step: its latest line)."""
    out = {}
    for line in (output / "train_log.jsonl").read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            out[int(record["step"])] = float(record["loss"])
    return out


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


# --- (d) ---------------------------------------------------------------------------------------------------
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


# --- (e) ---------------------------------------------------------------------------------------------------
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
    "a_encode": part_encode, "b_run": part_run, "c_train": part_train, "d_rerank_sparse": part_rerank_sparse,
    "e_oom": part_oom}


def main() -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="CPU smoke mode: tiny sizes (what CI runs)")
    parser.add_argument("--device", default=None, help="cuda (default) or cpu with --smoke")
    parser.add_argument("--scifact", type=Path, default=SCIFACT, help="a BEIR folder (SciFact)")
    parser.add_argument("--tokenizer", type=Path, default=MINILM, help="a folder with a BERT tokenizer")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--json", type=Path, help="also write the figures here after every part")
    args = parser.parse_args()
    device = args.device or ("cpu" if args.smoke else "cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device on this machine (--smoke runs every part on the CPU)")
        return 0
    for what, path in (("SciFact", args.scifact / "corpus.jsonl"), ("a BERT tokenizer", args.tokenizer)):
        require(path, what)
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {unknown}; choose from {list(PARTS)}")
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU (smoke run, not a figure)"
    FIGURES.update({"device": name, "smoke": args.smoke, "machine": machine(), "date": stamp(),
                    "torch": torch.__version__, "parts": {}})
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
            FIGURES["parts"][part] = result
            print(f"{part}: {summary(result)}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(FIGURES, indent=2, default=str) + "\n")
    return 1 if failed else 0


def summary(result: dict[str, Any]) -> str:
    if "error" in result:
        return f"ERROR {result['error'][:300]}"
    keys = ("ok", "device_equals_cpu", "targets", "bf16_delta")
    shown = {k: result[k] for k in keys if k in result}
    if "backoffs" in result:
        shown["backoffs"] = len(result["backoffs"])
    shown.update({k: v.get("ok") for k, v in result.items() if isinstance(v, dict) and "ok" in v})
    return f"{json.dumps(shown, default=str)[:600]} ({result['seconds']} s)"


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
