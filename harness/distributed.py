"""torchrun support for encoding: one process per device, shards dealt round-robin, rank 0 merges.

Outside torchrun (no ``WORLD_SIZE`` > 1) everything here is a no-op and torch.distributed is not touched.
"""

from __future__ import annotations

import os


def world() -> tuple[int, int]:
    """(rank, world size), initialising the process group on first use under torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def barrier() -> None:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.barrier()


def cpu_threads() -> int:
    """Threads for CPU compute in this process: the cores this process may run on (its CPU affinity,
    which containers and batch schedulers set), shared among the ranks torchrun started on this node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
