"""Run by test_distributed under torchrun: train a tiny model, dump this rank's queue and weights."""

import os
import sys

import torch

from harness.train.config import TrainConfig
from harness.train.trainer import train

init, corpus, out = sys.argv[1:4]
torch.set_num_threads(1)
cfg = TrainConfig(init=init, corpus=corpus, output=out, objective="relevance-aware", pairs=2, steps=3,
                  warmup_steps=1, batch_size=2, chunk_length=24, queue_size=64, momentum=0.9, lr=1e-3,
                  num_workers=0, save_every=3, progress=False, plot=False, device="cpu")
result = train(cfg)
rank = int(os.environ["RANK"])
torch.save({"queue": result.queue.state_dict(),
            "params": {k: v.detach().clone() for k, v in result.encoder.state_dict().items()}},
           os.path.join(out, f"rank{rank}.pt"))
