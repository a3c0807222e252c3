"""Scale benchmark for the open-domain QA path: a synthetic DPR-format corpus streamed through sharded
encoding (a tiny random BERT), merge, index (exact, HNSW, IVF-PQ) and search, with time and peak memory
per stage. Each stage runs in its own process, so its peak RSS is its own.

    .venv/bin/python -m benchmarks.scale.odqa_scale --passages 2000000 --jobs 4 --out /tmp/odqa-scale

Prints a table and writes ``<out>/report.json``; docs/ODQA.md extrapolates the figures to 21M passages.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

N_WORDS = 2000


def _words() -> list[str]:
    """Letter-only synthetic words ("baa", "bab", ...): whole tokens of the tiny model's vocabulary."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [f"{letters[1 + i // 676 % 25]}{letters[i // 26 % 26]}{letters[i % 26]}" for i in range(N_WORDS)]


def make_corpus(folder: Path, n: int, words_per_passage: int, n_queries: int, seed: int = 0) -> dict:
    """passages.tsv (DPR layout) and questions.jsonl whose answers are 3-word spans of a passage."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocab = np.array(_words())
    folder.mkdir(parents=True, exist_ok=True)
    targets = set(rng.choice(n, size=n_queries, replace=False).tolist())
    questions = []
    with open(folder / "passages.tsv", "w", encoding="utf-8") as f:
        f.write("id\ttext\ttitle\n")
        block = 100_000
        for start in range(0, n, block):
            m = min(block, n - start)
            ids = rng.integers(0, N_WORDS, size=(m, words_per_passage))
            rows = [" ".join(r) for r in vocab[ids]]
            titles = vocab[rng.integers(0, N_WORDS, size=m)]
            f.write("".join(f"{start + i + 1}\t{t}\t{ti}\n"
                            for i, (t, ti) in enumerate(zip(rows, titles, strict=True))))
            for i in range(m):
                if start + i in targets:
                    w = rows[i].split()
                    questions.append({"id": f"q{len(questions)}", "question": " ".join(w[:6]),
                                      "answers": [" ".join(w[2:5])]})
    with open(folder / "questions.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(q) + "\n" for q in questions)
    return {"passages": n, "questions": len(questions), "bytes": (folder / "passages.tsv").stat().st_size}


def make_model(folder: Path, hidden: int, layers: int) -> None:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_words()]) + "\n")
    from tokenizers.implementations import BertWordPieceTokenizer

    # built from the vocab explicitly: recent transformers ignore vocab_file in BertTokenizerFast(...)
    wordpiece = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)
    tok = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=N_WORDS + 5, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=2 * hidden, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)


def _setup(args):
    os.environ["HARNESS_CACHE"] = str(Path(args["out"]) / "cache")
    os.environ["HARNESS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(args["threads"])
    from harness.odqa.dataset import from_folder
    from harness.retrievers.registry import resolve_retriever
    from harness.settings import EncodeSettings, Execution

    retriever = resolve_retriever(str(Path(args["out"]) / "model")).load(
        EncodeSettings(batch_tokens=args["batch_tokens"]),
        Execution(device="cpu", shard_size=args["shard_size"], progress=False))
    return retriever, from_folder(Path(args["out"]) / "corpus", "bench/synthetic")


def stage_encode(args, job: int):
    from harness.odqa.shards import encode_shard

    retriever, ds = _setup(args)
    return encode_shard(retriever, ds, job, args["jobs"], log=lambda m: None)


def stage_merge(args):
    from harness.odqa.shards import merge, plan_for

    retriever, ds = _setup(args)
    info = merge(retriever, ds, args["jobs"], log=lambda m: None)
    return {**info, "plan": plan_for(retriever, ds, args["jobs"]).to_dict()}


def _queries(retriever, ds):
    qs = ds.questions()
    return qs, retriever.encoders.encoder.encode([q.text for q in qs], "query")


def stage_exact(args):
    import numpy as np

    from harness.search import topk_exact

    retriever, ds = _setup(args)
    retriever.index(ds)
    qs, vectors = _queries(retriever, ds)
    t0 = time.perf_counter()
    _, docs, _ = topk_exact(vectors, retriever.corpus_store(ds).shards(), args["k"])
    search_s = time.perf_counter() - t0
    np.save(Path(args["out"]) / "exact.npy", np.array([[int(d) for d in row] for row in docs]))
    # answer matching on the exact run: streams the passage file once for the retrieved texts
    from harness.odqa.evaluate import evaluate_dataset

    run = {q.qid: {d: float(-r) for r, d in enumerate(row)} for q, row in zip(qs, docs, strict=True)}
    t1 = time.perf_counter()
    per_query, _ = evaluate_dataset(ds, run, ["accuracy@1", "accuracy@20", "accuracy@100"])
    return {"search_s": round(search_s, 2), "match_s": round(time.perf_counter() - t1, 2),
            "accuracy": {m: sum(v.values()) / len(v) for m, v in per_query.items()}}


def stage_ann(args, kind: str):
    import numpy as np

    from harness.ann import IndexConfig, build, recall_vs_exact, search

    retriever, ds = _setup(args)
    retriever.index(ds)
    m = retriever.corpus_store(ds).manifest()
    config = IndexConfig(kind=kind, hnsw_m=args["hnsw_m"], ef_construction=args["ef_construction"],
                         ef_search=args["ef_search"], nlist=args["nlist"], pq_m=args["pq_m"], nprobe=args["nprobe"],
                         train_size=args["train_size"])
    index, ids, build_s = build(retriever.corpus_store(ds).shards(), m["dim"], m["count"], config)
    _, vectors = _queries(retriever, ds)
    t0 = time.perf_counter()
    _, docs = search(index, ids, vectors, args["k"], config)
    search_s = time.perf_counter() - t0
    exact = [[str(d) for d in row] for row in np.load(Path(args["out"]) / "exact.npy")]
    return {"build_s": round(build_s, 2), "search_s": round(search_s, 2), "config": config.to_dict(),
            f"recall@{args['k']}_vs_exact": round(recall_vs_exact(docs, exact, args["k"]), 4),
            "recall@10_vs_exact": round(recall_vs_exact(docs, exact, 10), 4)}


def _child(fn, args, extra, queue):
    t0 = time.perf_counter()
    result = fn(args, *extra)
    queue.put({"result": result, "seconds": round(time.perf_counter() - t0, 2),
               "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})


def run_stage(name, fn, args, *extra) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, extra, queue))
    p.start()
    out = queue.get()
    p.join()
    if p.exitcode:
        raise SystemExit(f"stage {name} failed ({p.exitcode})")
    shown = {k: v for k, v in out["result"].items() if k not in ("config", "plan")}
    print(f"{name:<14} {out['seconds']:>9.1f} s  peak RSS {out['peak_rss_mib']:>8.1f} MiB  "
          f"{json.dumps(shown)[:200]}", flush=True)
    return {"stage": name, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=2_000_000)
    ap.add_argument("--words", type=int, default=12, help="words per synthetic passage")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=4, help="encoding jobs (--shard i/n), run one after another")
    ap.add_argument("--shard-size", type=int, default=100_000)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-tokens", type=int, default=32768)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--hnsw-m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=40)
    ap.add_argument("--ef-search", type=int, default=128)
    ap.add_argument("--nlist", type=int, default=2048)
    ap.add_argument("--pq-m", type=int, default=8)
    ap.add_argument("--nprobe", type=int, default=32)
    ap.add_argument("--train-size", type=int, default=100_000)
    ap.add_argument("--indexes", default="hnsw,ivfpq")
    ap.add_argument("--out", type=Path, default=Path("/tmp/odqa-scale"))
    a = ap.parse_args()
    args = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()}
    stages = []
    t0 = time.perf_counter()
    if not (a.out / "corpus" / "passages.tsv").is_file():
        info = make_corpus(a.out / "corpus", a.passages, a.words, a.queries)
        stages.append({"stage": "generate", "seconds": round(time.perf_counter() - t0, 2), "result": info})
        print(f"generate       {stages[-1]['seconds']:>9.1f} s  {info}", flush=True)
    if not (a.out / "model" / "config.json").is_file():
        make_model(a.out / "model", a.hidden, a.layers)
    for job in range(a.jobs):
        stages.append(run_stage(f"encode {job}/{a.jobs}", stage_encode, args, job))
    stages.append(run_stage("merge", stage_merge, args))
    stages.append(run_stage("exact search", stage_exact, args))
    for kind in a.indexes.split(","):
        stages.append(run_stage(f"index {kind}", stage_ann, args, kind))
        (a.out / "report.json").write_text(json.dumps({"settings": args, "stages": stages}, indent=2))
    report = {"settings": args, "stages": stages, "total_s": round(time.perf_counter() - t0, 1),
              "cpu_count": os.cpu_count()}
    (a.out / "report.json").write_text(json.dumps(report, indent=2))
    from benchmarks._common import FIGURES

    FIGURES.update(report)
    print(f"total {report['total_s']} s; report: {a.out / 'report.json'}")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
