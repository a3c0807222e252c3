"""Who started this process: torchrun, Slurm's ``srun`` (without torchrun), or the user alone; read from the
environment, with no torch imported.

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR`` and
``MASTER_PORT``; torch's ``env://`` start reads them. ``srun harness train ...`` (one task per GPU, as
Contriever's own scripts start) sets Slurm's variables instead; :func:`launch` writes torchrun's from them
(rank ``SLURM_PROCID``, world size ``SLURM_STEP_NUM_TASKS``, local rank ``SLURM_LOCALID``, tasks on this
node from ``SLURM_STEP_TASKS_PER_NODE``, the master the first host of ``SLURM_STEP_NODELIST``, the port
``MASTER_PORT`` or one derived from the job id). torchrun's variables win where both are there (torchrun
started under srun). Only a job step counts: a batch script's own shell (``SLURM_NTASKS`` of the job, one
process) is not a group of ranks.
"""

from __future__ import annotations

import os
import re
from collections.abc import MutableMapping
from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class Launch:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    launcher: str  # "torchrun", "slurm" or "none"

    @property
    def group(self) -> bool:
        """Whether this process is one of a group that starts torch.distributed (torchrun even for one
        process, so a one-GPU torchrun runs the NCCL paths a cluster runs; srun with more than one task)."""
        return self.launcher == "torchrun" or self.world_size > 1


def launch(env: MutableMapping[str, str] | None = None) -> Launch:
    """This process's place in its group; under srun, torchrun's variables are written into ``env`` (the
    process environment by default) so that torch's ``env://`` start finds them."""
    env = os.environ if env is None else env
    if "TORCHELASTIC_RUN_ID" in env or "WORLD_SIZE" in env:
        world = _int(env, "WORLD_SIZE", 1)
        return Launch(_int(env, "RANK", 0), world, _int(env, "LOCAL_RANK", 0),
                      _int(env, "LOCAL_WORLD_SIZE", world), "torchrun" if "TORCHELASTIC_RUN_ID" in env else "env")
    if "SLURM_PROCID" in env and _int(env, "SLURM_STEP_NUM_TASKS", 1) > 1:
        return _adopt_slurm(env)
    return Launch(0, 1, 0, 1, "none")


def _adopt_slurm(env: MutableMapping[str, str]) -> Launch:
    rank, world = _int(env, "SLURM_PROCID", 0), _int(env, "SLURM_STEP_NUM_TASKS", 1)
    local_rank, node = _int(env, "SLURM_LOCALID", 0), _int(env, "SLURM_NODEID", 0)
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or ""
    hosts = expand_hostlist(nodes)
    if not hosts:
        raise HarnessError("srun started this process as one of several tasks, but SLURM_STEP_NODELIST is empty: "
                           "no master address to start the group at; set MASTER_ADDR (and MASTER_PORT)")
    local_world = tasks_on_node(env.get("SLURM_STEP_TASKS_PER_NODE", ""), node) or 1
    env.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(local_rank),
                "LOCAL_WORLD_SIZE": str(local_world)})
    env.setdefault("MASTER_ADDR", hosts[0])
    env.setdefault("MASTER_PORT", str(20000 + _int(env, "SLURM_JOB_ID", 0) % 20000))
    return Launch(rank, world, local_rank, local_world, "slurm")


def expand_hostlist(spec: str) -> list[str]:
    """Slurm's compressed host list, expanded: ``gpu[01-03,07],login1`` -> gpu01 gpu02 gpu03 gpu07 login1
    (zero padding kept; one bracket per name, as Slurm writes step node lists)."""
    hosts: list[str] = []
    for part in re.findall(r"[^,\[]+(?:\[[^\]]*\])?[^,]*", spec):
        m = re.fullmatch(r"([^\[]*)\[([^\]]*)\](.*)", part)
        if not m:
            hosts.append(part)
            continue
        prefix, ranges, suffix = m.groups()
        for item in ranges.split(","):
            lo, _, hi = item.partition("-")
            if not hi:
                hosts.append(f"{prefix}{lo}{suffix}")
                continue
            width = len(lo)
            hosts += [f"{prefix}{i:0{width}d}{suffix}" for i in range(int(lo), int(hi) + 1)]
    return hosts


def tasks_on_node(spec: str, node: int) -> int:
    """Tasks on node ``node`` from Slurm's ``SLURM_STEP_TASKS_PER_NODE`` (``4(x2),2``: 4, 4, 2); 0 when not
    said."""
    counts: list[int] = []
    for item in filter(None, spec.split(",")):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not m:
            return 0
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[node] if node < len(counts) else 0


def _int(env: MutableMapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise HarnessError(f"{name}={value!r} in the environment is not a whole number (set by torchrun or Slurm; "
                           "unset it or launch again)") from None
