"""Run under torchrun by the trainer's equivalence tests: ``_train_worker.py CONFIG.json OUT.pt``. Trains with
the TrainConfig in CONFIG.json (every rank) and writes the final weights (rank 0), or the error's message."""

import json
import os
import sys

import torch

from harness.errors import HarnessError
from harness.train.config import TrainConfig
from harness.train.trainer import train

config, out = sys.argv[1:3]
torch.set_num_threads(1)
try:
    result = train(TrainConfig(**json.loads(open(config).read())), resume="--resume" in sys.argv)
except HarnessError as e:
    if int(os.environ["RANK"]) == 0:
        open(out + ".error", "w").write(str(e))
    raise SystemExit(2) from None
if int(os.environ["RANK"]) == 0:
    torch.save({k: v.detach().clone() for k, v in result.encoder.state_dict().items()}, out)
