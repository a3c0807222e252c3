"""(e) GPU: documents per second of a BERT-base-sized encoder, the harness in bf16 (autocast, its CUDA
default) and in fp32, against beir 2.2.0's pipeline: models.SentenceBERT.encode_corpus with batch 128 on
the corpus sorted longest first, which is what DenseRetrievalExactSearch runs on each corpus chunk, in
fp32 (beir's default) and with its weights cast to bf16. Same documents (SciFact repeated to --docs), same
process, one warm-up each. Prints docs/s, peak GPU memory, and how far each pipeline's vectors lie from
beir's fp32 ones (a fast path that encodes something else shows there).

The encoder has BERT-base's shape (12 layers, 768 wide, Contriever's mean pooling) with random weights,
so nothing is downloaded; the tokenizer is all-MiniLM-L6-v2's (BERT's uncased vocabulary).

    python -m benchmarks.compute.gpu_encode [--docs 20000] [--device cuda] [--scifact DIR] [--tokenizer DIR]
    bash benchmarks/gpu/device.sh prepare | run benchmarks.compute.gpu_encode   # a lent machine, no ../shared

Without CUDA it prints "skipped"; ``--device cpu --docs 16 --layers 2`` is a smoke run of the same code
(tests/test_benchmark_scripts.py runs it), not a figure. When beir does not import (its models need
datasets beside sentence-transformers), the beir rows call sentence-transformers directly with beir's
arguments and say so.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._common import MINILM, SCIFACT, machine, require, stamp


def main() -> None:
    import numpy as np
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20000, help="documents to encode (SciFact, repeated)")
    parser.add_argument("--device", default="cuda", help="cuda (the figure) or cpu (a smoke run)")
    parser.add_argument("--scifact", type=Path, default=SCIFACT, help="a BEIR folder with corpus.jsonl")
    parser.add_argument("--tokenizer", type=Path, default=MINILM, help="a folder with a BERT tokenizer")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (12: BERT-base)")
    parser.add_argument("--more-batch-tokens", default="65536",
                        help="comma-separated token budgets for extra harness bf16 rows (up to 2048 documents "
                             "a batch), beside its default; '' for none")
    args = parser.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("skipped: no CUDA device on this machine (this benchmark needs a GPU; --device cpu is a smoke run)")
        return
    require(args.scifact / "corpus.jsonl", "SciFact corpus")
    require(args.tokenizer, "a BERT tokenizer")
    from transformers import AutoTokenizer, BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    from harness.data.beir import doc_text, iter_corpus

    hf_logging.disable_progress_bar()
    docs = list(iter_corpus(args.scifact / "corpus.jsonl"))
    docs = (docs * (args.docs // len(docs) + 1))[: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bert-base-random"
        AutoTokenizer.from_pretrained(args.tokenizer).save_pretrained(folder)
        torch.manual_seed(0)
        BertModel(BertConfig(num_hidden_layers=args.layers), add_pooling_layer=False).save_pretrained(folder)
        texts = [doc_text(d) for d in docs]
        # beir's corpus records, longest first by characters (DenseRetrievalExactSearch.search's order)
        order = np.argsort([-len(d.title + d.text) for d in docs], kind="stable")
        corpus = [{"title": docs[i].title, "text": docs[i].text} for i in order]
        rows = [harness_row(folder, texts, args.device, precision) for precision in ("bf16", "fp32")]
        budgets = [int(b) for b in args.more_batch_tokens.split(",") if b.strip()]
        rows += [beir_row(folder, corpus, order, args.device, dtype) for dtype in (torch.float32, torch.bfloat16)]
        rows += [harness_row(folder, texts, args.device, "bf16", b, max_batch=2048) for b in budgets]
    reference = rows[2]  # beir fp32
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU (smoke run, not a figure)"
    print(f"# gpu_encode  {stamp()}  {machine()}  {name}  {args.docs} docs, {args.layers} layers")
    print(f"{'pipeline':66} {'docs/s':>8} {'peak GiB':>9} {'max diff':>9}")
    for row in rows:
        diff = relative_difference(row["vectors"], reference["vectors"]).max()
        peak = f"{row['peak_gib']:9.2f}" if row["peak_gib"] is not None else f"{'-':>9}"
        print(f"{row['name']:66} {row['docs_s']:8.0f} {peak} {diff:9.1e}")
    ref = reference["vectors"]
    apart = np.median(relative_difference(ref, np.roll(ref, 1, axis=0)))
    print(f"max diff: largest ||v - v_beir_fp32|| / ||v_beir_fp32|| over the documents; for scale, two "
          f"different documents' beir fp32 vectors differ by {apart:.1e} (median)")
    base = reference["docs_s"]
    for row in rows[:2] + rows[3:]:
        print(f"{row['name']}: {row['docs_s'] / base:.2f}x beir fp32")


def harness_row(folder: Path, texts: list[str], device: str, precision: str, batch_tokens: int | None = None,
                max_batch: int = 256) -> dict:
    from harness.retrievers.config import CONTRIEVER
    from harness.retrievers.encoder import HFEncoder

    enc = HFEncoder(str(folder), CONTRIEVER, device=device, precision=precision, batch_tokens=batch_tokens,
                    max_batch=max_batch, progress=False)
    enc.encode(texts[:256])  # warm-up: kernels, allocator
    vectors, seconds, peak = timed(lambda: enc.encode(texts), device)
    name = (f"harness {enc.compute.precision} ({enc.compute.forward}, {enc.batch_tokens} tokens, "
            f"<={max_batch} docs a batch)")
    return {"name": name,
            "docs_s": len(texts) / seconds, "peak_gib": peak, "vectors": vectors}


def beir_row(folder: Path, corpus: list[dict], order, device: str, dtype) -> dict:
    """beir's encode_corpus on ``corpus`` (records in ``order`` of the documents); vectors come back in
    the documents' order."""
    import numpy as np
    import torch

    try:
        from beir.retrieval.models import SentenceBERT

        model = SentenceBERT(str(folder), max_length=512, device=device)
        encode, st, label = model.encode_corpus, model.doc_model, "beir 2.2.0 SentenceBERT"
    except ImportError as e:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(str(folder), device=device)
        st.max_seq_length = 512

        def encode(docs, **kwargs):
            return st.encode([(d["title"] + " " + d["text"]).strip() for d in docs], **kwargs)

        label = f"sentence-transformers as beir calls it (no beir: {e.name})"
    st.to(dtype)
    kwargs = {"batch_size": 128, "convert_to_tensor": True, "show_progress_bar": False}
    encode(corpus[:256], **kwargs)
    encoded, seconds, peak = timed(lambda: encode(corpus, **kwargs).float().cpu().numpy(), device)
    vectors = np.empty_like(encoded)
    vectors[order] = encoded
    precision = "fp32" if dtype == torch.float32 else "bf16 weights"
    return {"name": f"{label} {precision}, batch 128", "docs_s": len(corpus) / seconds, "peak_gib": peak,
            "vectors": vectors}


def timed(fn, device: str):
    """fn()'s result, its seconds, and the peak GPU memory it allocated in GiB (None on CPU)."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = fn()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    return out, seconds, torch.cuda.max_memory_allocated() / 2**30 if cuda else None


def relative_difference(a, b):
    """Each document's ||a - b|| / ||b||, for two pipelines' vectors of the same documents (same rows)."""
    import numpy as np

    return np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
