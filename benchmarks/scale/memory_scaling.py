"""(c) Peak resident memory against corpus size: synthetic corpora of 100k and 1M short documents,
encoded with a tiny random BERT whose hidden size is 384 (so 1M x 384 float32 = 1.43 GiB of vectors),
then searched. Each size runs in its own process; prints peak RSS and the vectors' size.

    python -m benchmarks.scale.memory_scaling [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from benchmarks._common import FIGURES, machine, measure, stamp

WORDS = ("protein cell gene cancer tumor expression patients study results method data model retrieval dense "
         "query document vector search score rank learning training loss weight relevance").split()


def make_model(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from tokenizers.implementations import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(str(folder / "vocab.txt"), lowercase=True)  # vocab_file= is ignored now
    BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]").save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(vocab), hidden_size=384, num_hidden_layers=1, num_attention_heads=6,
                         intermediate_size=384, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def make_corpus(folder: Path, n: int, n_queries: int = 1000) -> Path:
    rng = random.Random(n)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n):
            f.write(json.dumps({"_id": str(i), "title": "", "text": " ".join(rng.choices(WORDS, k=6))}) + "\n")
    with open(folder / "queries.jsonl", "w") as f, open(folder / "qrels" / "test.tsv", "w") as q:
        q.write("query-id\tcorpus-id\tscore\n")
        for j in range(n_queries):
            f.write(json.dumps({"_id": f"q{j}", "text": " ".join(rng.choices(WORDS, k=4))}) + "\n")
            q.write(f"q{j}\t{rng.randrange(n)}\t1\n")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    print(f"# memory_scaling  {stamp()}  {machine()}")
    print(f"{'documents':>10} {'vectors MiB':>12} {'peak RSS MiB':>13} {'wall s':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        model = make_model(Path(tmp) / "model")
        for n in args.sizes:
            data = make_corpus(Path(tmp) / f"corpus-{n}", n)
            r = measure("harness_dense", {"HARNESS_CACHE": f"{tmp}/cache-{n}", "HARNESS_OFFLINE": "1",
                                          "TQDM_DISABLE": "1"}, model=str(model), dataset=str(data),
                        output=f"{tmp}/out-{n}", metrics=["recall@100"])
            FIGURES.setdefault("sizes", []).append({"documents": n, "peak_rss_mb": r["peak_rss_mb"],
                                                    "wall_s": r["wall_s"]})
            print(f"{n:>10} {n * 384 * 4 / 2**20:>12.0f} {r['peak_rss_mb']:>13.0f} {r['wall_s']:>8.1f}")


if __name__ == "__main__":
    from benchmarks._common import run_and_record

    run_and_record(main, __file__)
