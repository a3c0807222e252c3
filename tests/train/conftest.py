"""Fixtures for the trainer tests: a tiny random BERT with a word-level vocab, and a tiny corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

WORDS = [
    "the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by", "at", "from", "that",
    "this", "protein", "cell", "cells", "gene", "genes", "cancer", "tumor", "expression", "patients", "study",
    "results", "method", "data", "model", "retrieval", "dense", "query", "document", "vector", "search",
    "score", "rank", "learning", "training", "loss", "weight", "relevance", "pair", "window", "crop", "token"
]
REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def make_tiny_bert(folder: Path, seed: int = 0, dropout: float = 0.1) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *[f"w{i}" for i in range(40)]]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    from tests.conftest import word_tokenizer

    tok = word_tokenizer(folder / "vocab.txt")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


def write_tiny_corpus(folder: Path, n_docs: int = 30, seed: int = 0) -> Path:
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for i in range(n_docs):
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))
            f.write(json.dumps({"_id": f"d{i}", "title": f"doc {i}", "text": text}) + "\n")
    return folder / "corpus.jsonl"


@pytest.fixture()
def tiny_corpus(tmp_path) -> Path:
    return write_tiny_corpus(tmp_path / "corpus")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import torch

    torch.set_num_threads(1)
