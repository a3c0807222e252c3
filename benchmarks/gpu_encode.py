"""(e) GPU only: documents per second for a BERT-base-sized encoder in bf16 (harness encoder, autocast)
against beir's DenseRetrievalExactSearch + SentenceBERT (fp32, batch 128) on the same documents.
The encoder has BERT-base's shape with random weights (no download needed) and MiniLM's vocabulary.

    python benchmarks/gpu_encode.py [--docs 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import MINILM, SCIFACT, machine, require, stamp


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA device on this machine (this benchmark needs a GPU)")
        return
    require(SCIFACT, "SciFact")
    require(MINILM, "MiniLM tokenizer")
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20000)
    args = parser.parse_args()
    from transformers import AutoTokenizer, BertConfig, BertModel

    from harness.data.beir import doc_text, iter_corpus
    from harness.retrievers.config import CONTRIEVER
    from harness.retrievers.encoder import HFEncoder

    texts = [doc_text(d) for d in iter_corpus(SCIFACT / "corpus.jsonl")]
    texts = (texts * (args.docs // len(texts) + 1))[: args.docs]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "bert-base-random"
        AutoTokenizer.from_pretrained(MINILM).save_pretrained(folder)
        BertModel(BertConfig()).save_pretrained(folder)
        enc = HFEncoder(str(folder), CONTRIEVER, device="cuda", batch_tokens=131072, progress=False)
        enc.encode(texts[:256])
        torch.cuda.synchronize()
        t = time.perf_counter()
        enc.encode(texts)
        torch.cuda.synchronize()
        ours = len(texts) / (time.perf_counter() - t)
        from sentence_transformers import SentenceTransformer, models

        st = SentenceTransformer(modules=[models.Transformer(str(folder), max_seq_length=512),
                                          models.Pooling(768, "mean")], device="cuda")
        st.encode(texts[:256], batch_size=128)
        torch.cuda.synchronize()
        t = time.perf_counter()
        st.encode(texts, batch_size=128, convert_to_tensor=True)
        torch.cuda.synchronize()
        theirs = len(texts) / (time.perf_counter() - t)
    print(f"# gpu_encode  {stamp()}  {machine()}  {torch.cuda.get_device_name()}")
    print(f"harness bf16 autocast: {ours:.0f} docs/s; sentence-transformers fp32 batch 128 (beir's pipeline): "
          f"{theirs:.0f} docs/s; speed-up {ours / theirs:.2f}x")


if __name__ == "__main__":
    main()
