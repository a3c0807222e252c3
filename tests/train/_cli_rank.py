"""One rank of a group started by hand, as srun starts one (no torchrun): ``harness ARGS`` through the CLI.
Used by test_cluster.py. With HARNESS_TEST_STOP_AT=N, rank 1 stops itself (SIGSTOP) before step N, as a
rank whose file system hangs would."""

import os
import signal
import sys

import torch

from harness.cli import main

torch.set_num_threads(1)
stop_at = int(os.environ.get("HARNESS_TEST_STOP_AT", "0"))
if stop_at and os.environ.get("SLURM_PROCID", os.environ.get("RANK")) == "1":
    from harness.train import trainer

    real = trainer._step_on_ranks

    def stalling(cfg, run, step, world):
        if step + 1 == stop_at:
            os.kill(os.getpid(), signal.SIGSTOP)
        return real(cfg, run, step, world)

    trainer._step_on_ranks = stalling
sys.exit(main(sys.argv[1:]))
