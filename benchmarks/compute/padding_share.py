"""How much of an encoding pass is padding? The upper bound of what unpadded (variable-length) attention and
unpadded linear layers could save, on the harness's own batches.

Unpadding runs each layer on the real tokens only (FlashAttention's varlen kernels; on CUDA
``torch.nn.attention.varlen.varlen_attn``, half precision only). What it can save is what padding costs: the
FLOPs of the padded tokens. The harness already sorts texts by length and fills batches up to a token
budget (``HFEncoder.batches``), so this counts, on real texts and the real tokenizer and batching, the tokens
and model FLOPs with padding against without: SciFact's corpus and queries, and the DPR-format SQuAD dev
passages and questions (../shared), at each token budget the harness uses (4,096 on CPU in fp32, 2,048 in
bf16x3, 16,384 on GPUs), for all-MiniLM-L6-v2's shape at its max length (256) and BERT-base's (768 wide,
12 layers) at 512. No timing: counts only, so the load does not matter.

    python -m benchmarks.compute.padding_share
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np

from benchmarks._common import FIGURES, MINILM, SCIFACT, SHARED, machine, require, stamp

SQUAD = SHARED / "data" / "odqa" / "squad-dev"
#: (name, hidden size, feed-forward size, layers, max length)
SHAPES = [("all-MiniLM-L6-v2", 384, 1536, 6, 256), ("BERT-base shape", 768, 3072, 12, 512)]
BUDGETS = {"CPU fp32": 4096, "CPU bf16x3": 2048, "GPU": 16384}


def flops(lengths: np.ndarray, d: int, f: int, layers: int) -> float:
    """A BERT encoder's forward FLOPs over sequences of these lengths (the linear layers and attention)."""
    n = lengths.astype(np.float64)
    return float(layers * (2 * n * (4 * d * d + 2 * d * f) + 4 * n * n * d).sum())


def main() -> None:
    require(SCIFACT, "SciFact")
    require(MINILM, "all-MiniLM-L6-v2")
    require(SQUAD, "SQuAD dev (DPR formats)")
    from harness.data.corpus import doc_text
    from harness.data.formats import iter_corpus, read_queries
    from harness.data.tsv import iter_passages
    from harness.odqa.formats import read_questions
    from harness.retrievers.config import read_encoder_config
    from harness.retrievers.encoder import HFEncoder

    print(f"# padding_share  {stamp()}  {machine()}")
    texts = {
        "SciFact corpus": [doc_text(d) for d in iter_corpus(SCIFACT / "corpus.jsonl")],
        "SciFact queries": list(read_queries(SCIFACT / "queries.jsonl").values()),
        "SQuAD dev passages": [doc_text(d) for d in iter_passages(SQUAD / "passages.tsv")],
        "SQuAD dev questions": [q.text for q in read_questions(SQUAD / "questions.qa.csv")],
    }
    config = read_encoder_config(MINILM)
    rows = []
    for shape, d, f, layers, max_length in SHAPES:
        enc = HFEncoder(str(MINILM), dataclasses.replace(config, max_length=max_length), device="cpu",
                        progress=False)
        for name, items in texts.items():
            lengths = np.array([len(x) for x in enc.tokenize(items)], dtype=np.int64)
            for budget_name, budget in BUDGETS.items():
                enc.batch_tokens = budget
                padded = np.concatenate([np.full(len(b), lengths[b].max()) for b in enc.batches(lengths)])
                real = np.concatenate([lengths[b] for b in enc.batches(lengths)])
                row = {"shape": shape, "max_length": max_length, "texts": name, "count": len(items),
                       "budget": budget_name, "batch_tokens": budget, "tokens": int(real.sum()),
                       "padded_tokens": int(padded.sum()),
                       "token_share": 1 - float(real.sum()) / float(padded.sum()),
                       "flop_share": 1 - flops(real, d, f, layers) / flops(padded, d, f, layers)}
                rows.append(row)
    print(f"{'shape':18} {'texts':20} {'budget':11} {'tokens':>10} {'padded':>10} {'padding':>8} {'of FLOPs':>8}")
    for r in rows:
        print(f"{r['shape']:18} {r['texts']:20} {r['budget']:11} {r['tokens']:10,} {r['padded_tokens']:10,} "
              f"{r['token_share']:8.2%} {r['flop_share']:8.2%}")
    worst = max(rows, key=lambda r: r["flop_share"])
    print(f"largest share of FLOPs spent on padding: {worst['flop_share']:.2%} ({worst['shape']}, {worst['texts']}, "
          f"{worst['budget']}): the most unpadding could save on these batches")
    FIGURES.update(rows=rows, largest_flop_share=worst["flop_share"])
    json.dumps(FIGURES)  # plain numbers only


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
