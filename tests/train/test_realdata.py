"""The trainer on the real all-MiniLM-L6-v2 and SciFact from ../shared (skipped when absent)."""

from __future__ import annotations

import json

import pytest

from harness.train.checkpoint import list_checkpoints
from harness.train.config import TrainConfig
from harness.train.trainer import train

from .conftest import SHARED

MODEL = SHARED / "models" / "all-MiniLM-L6-v2"
SCIFACT = SHARED / "data" / "beir" / "scifact"

pytestmark = [pytest.mark.realdata, pytest.mark.slow,
              pytest.mark.skipif(not (MODEL / "config.json").is_file() or not (SCIFACT / "corpus.jsonl").is_file(),
                                 reason="../shared models/data absent")]


def test_further_pretraining_inherits_sentence_transformers_encoder(tmp_path):
    out = tmp_path / "minilm"
    cfg = TrainConfig(init=str(MODEL), corpus=str(SCIFACT), output=str(out), steps=2, warmup_steps=1, batch_size=2,
                      chunk_length=64, queue_size=32, num_workers=0, progress=False, plot=False, device="cpu")
    train(cfg)
    (_, folder), = list_checkpoints(out)
    meta = json.loads((folder / "harness_checkpoint.json").read_text())
    # all-MiniLM-L6-v2 declares mean pooling, a Normalize module and max_seq_length 256
    assert meta["encoder"] == {"pooling": "mean", "normalize": True, "similarity": "cos", "max_length": 256}
    assert meta["init"] == str(MODEL) and meta["step"] == 2
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert 0 <= rows[-1]["w_min"] <= rows[-1]["w_max"] <= 1
