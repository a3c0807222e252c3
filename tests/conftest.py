"""Shared fixtures: tiny BEIR folders and tiny random BERTs made on the spot, and the real data in
../shared when present (tests using it are marked ``realdata`` and skipped without it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATA = SHARED / "data"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"
VOCAB_WORDS = ("the a of and to in is was for on with as by at from that this protein cell gene cancer tumor "
               "expression patients study results method data model retrieval dense query document vector "
               "search score rank learning training loss weight relevance pair window crop token").split()


@pytest.fixture(scope="session", autouse=True)
def _offline_and_cache(tmp_path_factory):
    """No test touches the network; caches go to a session folder (or $HARNESS_TEST_CACHE, shared with CI)."""
    os.environ["HARNESS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HARNESS_CACHE"] = os.environ.get("HARNESS_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    os.environ["HARNESS_CONFIG"] = str(tmp_path_factory.mktemp("config") / "config.json")  # not the user's file
    os.environ["HARNESS_PLAN_MEMO"] = "0"  # tests stand in for devices and kernels: plans are made each time
    yield


def word_tokenizer(vocab: Path):
    """A BERT WordPiece tokenizer over ``vocab`` (built explicitly: transformers 5 ignores ``vocab_file``
    in ``BertTokenizerFast(...)`` and would map every word to [UNK])."""
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(str(vocab), lowercase=True)
    return BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def make_tiny_bert(folder: Path, *, seed: int = 0, hidden: int = 16, layers: int = 1, st_files: bool = False) -> Path:
    """A random BERT with a word-level vocab saved as a Hugging Face folder (optionally with
    sentence-transformers files declaring CLS pooling + normalisation)."""
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *VOCAB_WORDS, *[f"w{i}" for i in range(40)]]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = word_tokenizer(folder / "vocab.txt")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    if st_files:
        (folder / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            {"word_embedding_dimension": hidden, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    return folder


def make_tiny_beir(folder: Path, *, n_docs: int = 40, n_queries: int = 8, seed: int = 0) -> Path:
    """A BEIR-format folder whose queries share words with their relevant documents."""
    import random

    rng = random.Random(seed)
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    docs = []
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for i in range(n_docs):
            words = [rng.choice(VOCAB_WORDS) for _ in range(rng.randint(5, 30))]
            docs.append(words)
            f.write(json.dumps({"_id": f"d{i}", "title": f"w{i % 40}", "text": " ".join(words)}) + "\n")
    with open(folder / "queries.jsonl", "w", encoding="utf-8") as f, \
            open(folder / "qrels" / "test.tsv", "w", encoding="utf-8") as q:
        q.write("query-id\tcorpus-id\tscore\n")
        for j in range(n_queries):
            target = rng.randrange(n_docs)
            f.write(json.dumps({"_id": f"q{j}", "text": " ".join(docs[target][:4])}) + "\n")
            q.write(f"q{j}\td{target}\t{rng.choice([1, 2])}\n")
            q.write(f"q{j}\td{(target + 1) % n_docs}\t0\n")
    return folder


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture()
def tiny_beir(tmp_path) -> Path:
    return make_tiny_beir(tmp_path / "tiny")


@pytest.fixture()
def shared_data(monkeypatch) -> Path:
    if not (SHARED_DATA / "beir" / "scifact" / "corpus.jsonl").is_file():
        pytest.skip("../shared/data is not present")
    monkeypatch.setenv("HARNESS_DATA", str(SHARED_DATA))
    return SHARED_DATA
