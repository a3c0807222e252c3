"""The one device picker of the package (encoding, reranking, SPLADE, training, fine-tuning).

``auto`` picks CUDA, then Apple MPS, then the CPU. In a group of ranks (torchrun, or srun: ``harness.launch``)
``auto`` and a bare ``cuda`` mean this rank's own GPU (:func:`rank_gpu`: ``cuda:LOCAL_RANK`` where the node's
GPUs are visible to every rank, ``cuda:0`` where each rank sees only its own), so ranks never share one
device by accident, and a layout that does not say which GPU is whose is refused.
A named device (``cpu``, ``cuda``, ``cuda:N``, ``mps``) is checked to exist here before any work, and a
wrong one stops with the devices this machine has. Where the device decides nothing (it never changes a
number beyond float rounding), it is recorded in provenance, not in fingerprints.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch


def device_name(requested: str = "auto") -> str:
    """``requested`` with the rank's GPU applied: ``auto``/``cuda`` -> ``cuda:N`` (:func:`rank_gpu`) in a group
    of ranks when CUDA is present; ``cuda:N`` refused for a rank whose own GPU it is not, where several ranks
    share a node that sees several GPUs (they would share one); anything else unchanged (checked by
    :func:`pick_device`)."""
    from harness.launch import launch

    where = launch()
    if requested in {"auto", "cuda"} and where.world_size > 1:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{rank_gpu(where.local_rank, where.local_world_size, torch.cuda.device_count())}"
    elif requested.startswith("cuda:") and where.local_world_size > 1:
        import torch

        visible = torch.cuda.device_count()
        own = rank_gpu(where.local_rank, where.local_world_size, visible) if visible else None
        if visible > 1 and requested != f"cuda:{own}":  # cuda:$LOCAL_RANK, or cuda:0 where a rank sees one GPU
            raise HarnessError(f"--device {requested} on local rank {where.local_rank} of "
                               f"{where.local_world_size}: not this rank's own GPU (cuda:{own}), so ranks would "
                               "share one; use --device cuda (each rank its own GPU, by local rank)")
    return requested


def rank_gpu(local_rank: int, local_world_size: int, visible: int) -> int:
    """The index of this rank's GPU among the ``visible`` ones: its local rank where every rank of the node sees
    at least one GPU each (torchrun's layout), 0 where it sees exactly one (Slurm's ``--gpus-per-task=1`` or
    ``--gpu-bind``, ``CUDA_VISIBLE_DEVICES`` set per rank; or ranks meant to share one GPU). Anything else
    (2 .. ranks-1 GPUs for more ranks) does not say which GPU is whose, and is refused in one line."""
    if visible == 1:
        return 0
    if 0 <= local_rank < visible and local_world_size <= visible:
        return local_rank
    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    seen = f"CUDA_VISIBLE_DEVICES={shown}" if shown is not None else "CUDA_VISIBLE_DEVICES unset"
    raise HarnessError(f"local rank {local_rank} of {local_world_size} ranks on this node sees {visible} GPUs "
                       f"({seen}): which one is its own is ambiguous; give every rank its own GPU (torchrun "
                       f"--nproc_per_node {visible}, or Slurm --gpus-per-task=1) or every rank one GPU each")


def available_devices() -> list[str]:
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        found.append("mps")
    return found


def pick_device(requested: str | torch.device = "auto") -> torch.device:
    """The torch device for ``requested`` (see the module docstring)."""
    import torch

    if isinstance(requested, torch.device):
        requested = str(requested)
    name = device_name(requested)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError):
        raise HarnessError(f"--device {requested!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    present = available_devices()
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise HarnessError(f"--device {requested}: no such CUDA device on this machine "
                           f"(available: {', '.join(present)})")
    if dev.type == "mps" and "mps" not in present:
        raise HarnessError(f"--device mps: Apple MPS is not available here (available: {', '.join(present)})")
    if dev.type not in {"cpu", "cuda", "mps"}:
        raise HarnessError(f"--device {requested}: unsupported device type (available: {', '.join(present)})")
    return dev


def collective_device(backend: str) -> torch.device:
    """The device a torch.distributed backend takes tensors on: this rank's bound GPU for NCCL (which refuses
    CPU tensors), the CPU for gloo."""
    import torch

    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def exact_float32(device: torch.device) -> None:
    """float32 as float32 on a CUDA device: TensorFloat-32 off for matmuls and cuDNN (torch's default for
    matmuls, but a user's ``set_float32_matmul_precision`` or a library may have turned it on). Every fp32
    computation on CUDA (encoding, reranking, SPLADE, training) calls this before it runs."""
    import torch

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@contextmanager
def tensor_float32() -> Iterator[None]:
    """TensorFloat-32 allowed for CUDA matmuls and cuDNN inside the block (``--precision tf32``: float32
    weights and activations, matmul inputs rounded to TF32's 10-bit mantissa on Ampere and later tensor
    cores), the flags as they were restored afterwards, so nothing outside the block (a reference fp32
    encoder of the same process, a reranker) runs in TF32. Only the encode forward of a tf32 run enters it."""
    import torch

    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul
        torch.backends.cudnn.allow_tf32 = cudnn


#: how CUDA libraries word an allocation that failed where torch does not raise its OutOfMemoryError
_OOM_WORDS = ("CUBLAS_STATUS_ALLOC_FAILED", "CUDNN_STATUS_ALLOC_FAILED", "CUDA error: out of memory",
              "CUDA out of memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` says the device ran out of memory: torch's OutOfMemoryError, or an allocation failure
    of cuBLAS or cuDNN surfacing as a RuntimeError."""
    import torch

    return isinstance(error, torch.OutOfMemoryError) or any(w in str(error) for w in _OOM_WORDS)


def release_cached_memory(device: torch.device) -> None:
    """Give the caching allocator's free blocks back (after an out-of-memory error, outside its except block,
    so that no traceback still holds the failed batch's tensors)."""
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
