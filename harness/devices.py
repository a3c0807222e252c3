"""The one device picker of the package (encoding, reranking, SPLADE, training, fine-tuning).

``auto`` picks CUDA, then Apple MPS, then the CPU. Under torchrun (``WORLD_SIZE`` > 1) ``auto`` and a bare
``cuda`` mean this process's own GPU, ``cuda:LOCAL_RANK``, so ranks never share one device by accident.
A named device (``cpu``, ``cuda``, ``cuda:N``, ``mps``) is checked to exist here before any work, and a
wrong one stops with the devices this machine has. Where the device decides nothing (it never changes a
number beyond float rounding), it is recorded in provenance, not in fingerprints.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from harness.errors import HarnessError

if TYPE_CHECKING:
    import torch


def device_name(requested: str = "auto") -> str:
    """``requested`` with torchrun's local rank applied: ``auto``/``cuda`` -> ``cuda:LOCAL_RANK`` under
    torchrun when CUDA is present; anything else unchanged (checked by :func:`pick_device`)."""
    if requested in {"auto", "cuda"} and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return requested


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
