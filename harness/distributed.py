"""torch.distributed, in one place: process-group start, collectives, barriers (``tests/test_house.py`` fails
when another module calls torch.distributed itself).

- The group starts with the device bound: under torchrun with CUDA, ``torch.cuda.set_device(LOCAL_RANK)``
  comes first, so implicit CUDA allocations and object collectives land on this rank's GPU, not cuda:0.
- The backend is NCCL when the process trains or encodes on CUDA, gloo otherwise; every collective is given
  tensors on the backend's device (NCCL refuses CPU tensors; gloo takes them) and hands results back on
  the caller's device.
- Every collective and barrier waits at most the group's timeout (``--dist-timeout``; default
  :data:`DEFAULT_TIMEOUT_S`, long enough for a checkpoint and an evaluation on rank 0 while the others wait).
- :func:`solo` runs work on one rank as if it were alone (an evaluation during training): inside it
  :func:`world` is (0, 1) and :func:`barrier` does nothing, so code that synchronises ranks (encoding a
  corpus) cannot wait for ranks that are not there.

Outside torchrun (no ``TORCHELASTIC_RUN_ID``, no ``WORLD_SIZE`` > 1) everything here is a no-op and
torch.distributed is not touched; under torchrun a group starts even for one process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DEFAULT_TIMEOUT_S = 7200
_SOLO = [False]


def _launched() -> bool:
    """Whether torchrun started this process: then a group starts even for one process (so that a one-GPU
    torchrun runs the NCCL paths a cluster runs, and NCCL refuses what it would refuse there)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def start(cuda: bool, timeout_s: int = DEFAULT_TIMEOUT_S) -> tuple[int, int, bool]:
    """(rank, world size, whether this call created the group). Under torchrun: NCCL with this rank's GPU
    bound first when ``cuda``, else gloo; a group that exists is joined as it is."""
    import torch
    import torch.distributed as dist

    if not _launched():
        return 0, 1, False
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    if cuda:
        torch.cuda.set_device(local_rank())  # before any CUDA work: no rank may default to cuda:0
    dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=timedelta(seconds=timeout_s))
    return dist.get_rank(), dist.get_world_size(), True


def stop() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """(rank, world size), starting the group on first use under torchrun (NCCL when CUDA is there)."""
    if _SOLO[0] or not _launched():
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        start(torch.cuda.is_available())
    return dist.get_rank(), dist.get_world_size()


def is_distributed() -> bool:
    """Whether collectives reach other ranks now (a started group of more than one, outside :func:`solo`)."""
    if _SOLO[0] or not _launched():
        return False
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if is_distributed():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def solo() -> Iterator[None]:
    """Run the body on this rank alone: no collective inside it reaches (or waits for) another rank."""
    before = _SOLO[0]
    _SOLO[0] = True
    try:
        yield
    finally:
        _SOLO[0] = before


def _backend_device(like: torch.Tensor) -> torch.device:
    """Where the backend wants tensors (``devices.collective_device``): this rank's GPU for NCCL, the CPU for
    gloo."""
    import torch.distributed as dist

    from harness.devices import collective_device

    return collective_device(str(dist.get_backend()))


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over ranks, on ``x``'s device (``x`` itself outside a group)."""
    if not is_distributed():
        return x
    import torch.distributed as dist

    y = x.to(_backend_device(x)).contiguous()
    dist.all_reduce(y)
    return y.to(x.device)


def all_gather(x: torch.Tensor) -> list[torch.Tensor]:
    """``x`` of every rank, in rank order, on ``x``'s device (same shapes on every rank)."""
    if not is_distributed():
        return [x]
    import torch
    import torch.distributed as dist

    y = x.to(_backend_device(x)).contiguous()
    parts = [torch.empty_like(y) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, y)
    return [p.to(x.device) for p in parts]


def all_gather_object(obj: Any) -> list[Any]:
    """A picklable object of every rank, in rank order (object collectives only where tensors do not fit)."""
    if not is_distributed():
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rank_and_size() -> tuple[int, int]:
    """(rank, world size) of a started group without starting one ((0, 1) when alone)."""
    if not is_distributed():
        return 0, 1
    import torch.distributed as dist

    return dist.get_rank(), dist.get_world_size()


def cpu_threads() -> int:
    """Threads for CPU compute in this process: the cores this process may run on (its CPU affinity,
    which containers and batch schedulers set), shared among the ranks torchrun started on this node."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
