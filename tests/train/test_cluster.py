"""Clusters without torchrun and ranks that stall, simulated on the CPU with gloo.

- ``srun harness train ...``: Slurm's variables (SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID, the
  step's node list and tasks per node) start the group as torchrun's do; torchrun's win where both are set;
  a batch script's own shell (no job step) is one process.
- A rank that stops mid-run (SIGSTOP, as an NFS hang does): the others wait --step-timeout, not the
  two-hour --dist-timeout, and end with one line naming the rank, the step and the option; the stopped rank,
  once continued, ends with one line too; the last checkpoint resumes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.launch import expand_hostlist, launch, tasks_on_node
from harness.train.checkpoint import latest_resumable, list_checkpoints, read_metadata

REPO = Path(__file__).resolve().parents[2]
RANK = Path(__file__).with_name("_cli_rank.py")


def test_srun_variables_become_torchruns():
    env = {"SLURM_PROCID": "5", "SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
           "SLURM_STEP_NODELIST": "gpu[007-008]", "SLURM_STEP_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_ID": "123456"}
    where = launch(env)
    assert (where.rank, where.world_size, where.local_rank, where.local_world_size, where.launcher) == \
        (5, 8, 1, 4, "slurm")
    assert env["RANK"] == "5" and env["WORLD_SIZE"] == "8" and env["LOCAL_RANK"] == "1"
    assert env["LOCAL_WORLD_SIZE"] == "4" and env["MASTER_ADDR"] == "gpu007" and env["MASTER_PORT"] == "23456"


def test_torchruns_variables_win_and_a_batch_shell_is_one_process():
    both = {"TORCHELASTIC_RUN_ID": "x", "RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
            "SLURM_PROCID": "3", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_NODELIST": "n1"}
    assert launch(both).launcher == "torchrun" and launch(both).world_size == 2 and "MASTER_ADDR" not in both
    batch_shell = {"SLURM_PROCID": "0", "SLURM_NTASKS": "8", "SLURM_JOB_NODELIST": "n[1-2]"}  # sbatch, no srun
    assert launch(batch_shell).group is False and "RANK" not in batch_shell


def test_slurm_host_lists_and_task_counts():
    assert expand_hostlist("gpu[01-03,07],login1") == ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]
    assert expand_hostlist("a-node[9-10]") == ["a-node9", "a-node10"] and expand_hostlist("solo") == ["solo"]
    assert [tasks_on_node("4(x2),2", i) for i in range(4)] == [4, 4, 2, 0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _srun(args: list[str], world: int, extra: dict[str, str] | None = None) -> list[subprocess.Popen]:
    """Start ``world`` ranks as srun does on one node: Slurm's variables only, no torchrun."""
    port = str(_free_port())
    procs = []
    for rank in range(world):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "TORCHELASTIC"))
               and k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR"}}
        env.update({"SLURM_PROCID": str(rank), "SLURM_STEP_NUM_TASKS": str(world), "SLURM_LOCALID": str(rank),
                    "SLURM_NODEID": "0", "SLURM_STEP_NODELIST": "localhost", "SLURM_STEP_TASKS_PER_NODE": str(world),
                    "SLURM_JOB_ID": "1", "MASTER_PORT": port, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
                    **(extra or {})})
        procs.append(subprocess.Popen([sys.executable, str(RANK), *args], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    return procs


def _train_args(bert: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--init", str(bert), "--corpus", str(corpus), "--output", str(out), "--objective", "moco",
            "--steps", "6", "--warmup-steps", "1", "--batch-size", "2", "--chunk-length", "24", "--queue-size", "16",
            "--save-every", "2", "--num-workers", "0", "--no-progress", "--no-plot", "--device", "cpu", *extra]


@pytest.mark.slow
def test_srun_without_torchrun_trains_as_torchrun_does(tiny_bert, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    procs = _srun(_train_args(tiny_bert, tiny_corpus, out), world=2)
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    (step, folder), = list_checkpoints(out)[-1:]
    assert step == 6 and read_metadata(folder)["world_size"] == 2


@pytest.mark.slow
def test_a_stalled_rank_ends_every_rank_in_one_line_within_the_step_timeout(tiny_bert, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = _train_args(tiny_bert, tiny_corpus, out, "--step-timeout", "5")
    rank0, rank1 = _srun(args, world=2, extra={"HARNESS_TEST_STOP_AT": "4"})
    t0 = time.monotonic()
    _, err0 = rank0.communicate(timeout=120)
    waited = time.monotonic() - t0
    rank1.send_signal(signal.SIGCONT)  # the stalled rank wakes to find its peer gone
    _, err1 = rank1.communicate(timeout=120)
    for code, err, rank in ((rank0.returncode, err0, 0), (rank1.returncode, err1, 1)):
        assert code != 0, err
        lines = [x for x in err.splitlines() if x.strip()]
        assert "Traceback" not in err and sum("error" in x.lower() for x in lines) == 1, err[-3000:]
        assert lines[-1].startswith(f"harness: error: step 4: rank {rank} of 2:"), lines[-1]
        assert "--step-timeout 5 s" in lines[-1] and "--resume" in lines[-1]
    assert waited < 60  # the step's wait, not --dist-timeout's two hours
    assert latest_resumable(out) == out / "checkpoint-0000002"
    procs = _srun([*args, "--resume"], world=2)
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert [s for s, _ in list_checkpoints(out)] == [4, 6]
