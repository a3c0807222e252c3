"""Run by test_distributed under torchrun: train with --eval on 2 gloo ranks; every rank must finish."""

import sys

import torch

from harness.train.config import TrainConfig
from harness.train.trainer import train

init, corpus, out, dataset, results = sys.argv[1:6]
torch.set_num_threads(1)
cfg = TrainConfig(init=init, corpus=corpus, output=out, objective="moco", steps=2, warmup_steps=1, batch_size=2,
                  chunk_length=24, queue_size=16, momentum=0.9, lr=1e-3, num_workers=0, save_every=1,
                  progress=False, plot=False, device="cpu", eval=[dataset], eval_output=results,
                  eval_baselines=True, dist_timeout=120)
result = train(cfg)
print(f"rank done: {len(result.evaluations)} evaluations", flush=True)
