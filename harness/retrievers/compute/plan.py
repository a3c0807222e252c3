"""The compute planner: how a forward pass will run (device type, precision, forward implementation),
decided from the device, the requested precision and the model's ``config.json`` before any model loads,
so that it can be part of the embedding cache key."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.devices import pick_device
from harness.errors import HarnessError
from harness.settings import FORWARDS, PRECISIONS

if TYPE_CHECKING:
    import torch

# glibc's malloc serves an allocation this large from a mapping of its own, unmapped again when freed
MMAP_THRESHOLD_MAX = 32 * 2**20


def default_batch_tokens(device: torch.device, precision: str, hidden_size: int) -> int:
    """Padded tokens per batch: 16384 on accelerators; on CPU 4096 in fp32, where a batch's activations
    then stay in the last-level cache (MiniLM on a 2-core EPYC, fused forward: 171 against 163 GFLOP/s
    with 16384; benchmarks/compute/forward_variants.py), and 2048 in bf16x3 (2-core Xeon with AMX, same script: 573
    against 565 GFLOP/s for MiniLM, 689 against 631 for BERT-base, compared with 4096). Also 2048 in fp32
    where 4096 tokens' query/key/value projection (3 x hidden_size floats a token) would pass 32 MiB
    (BERT-base and wider): glibc gives an allocation that large its own mapping, faulted in again at
    every layer, which slows that matmul by about a fifth (benchmarks/compute/amx_kernel.py: oneDNN at 318
    GFLOP/s on 4096 x 768 x 2304 against 414 on 2048 rows); the fp32 fused forward of BERT-base ran 5%
    faster with 2048 (forward_variants.py on the Xeon: 356.8 against 339.2 GFLOP/s; 368.0 against 354.3
    in an earlier run)."""
    if device.type != "cpu":
        return 16384
    if precision == "bf16x3" or 4096 * 3 * hidden_size * 4 > MMAP_THRESHOLD_MAX:
        return 2048
    return 4096


#: share of the device's free memory (after the weights are on it) a batch's activations may take: the rest
#: covers the allocator's fragmentation and what the estimate leaves out (embeddings, pooling, the output)
GPU_MEMORY_SHARE = 0.8


def activation_bytes(batch_tokens: int, config: dict[str, Any], max_length: int) -> int:
    """An upper bound of one forward pass's peak activation memory for a batch of ``batch_tokens`` padded
    tokens, from ``config.json``: a layer's hidden states, query/key/value and output projections
    (6 x hidden), its feed-forward intermediate, and the attention scores with their softmax (2 x heads x
    the row length, as eager attention materialises them; SDPA needs less), in float32 (autocast keeps
    softmax and norms in float32). Without grad only one layer's activations live at once."""
    hidden = int(config.get("hidden_size") or config.get("d_model") or config.get("dim") or 768)
    inter = int(config.get("intermediate_size") or config.get("d_ff") or config.get("hidden_dim") or 4 * hidden)
    heads = int(config.get("num_attention_heads") or config.get("n_heads") or config.get("num_heads") or 12)
    return 4 * batch_tokens * (6 * hidden + inter + 2 * heads * max_length)


def fit_gpu_budget(batch_tokens: int, config: dict[str, Any], max_length: int, free_bytes: int
                   ) -> tuple[int, dict[str, int] | None]:
    """The token budget checked against the device's free memory: halved until :func:`activation_bytes`
    fits in :data:`GPU_MEMORY_SHARE` of ``free_bytes`` (never below one text of ``max_length`` tokens; a
    text that still does not fit is refused by the encoder's out-of-memory back-off). Returns the budget
    and, when it was lowered, what to record (the budget only groups texts into batches: float rounding)."""
    allowed = GPU_MEMORY_SHARE * free_bytes
    budget = batch_tokens
    while budget > max_length and activation_bytes(budget, config, max_length) > allowed:
        budget = max(max_length, budget // 2)
    if budget == batch_tokens:
        return budget, None
    return budget, {"batch_tokens_asked": batch_tokens, "batch_tokens": budget, "free_bytes": int(free_bytes),
                    "estimated_bytes_asked": activation_bytes(batch_tokens, config, max_length),
                    "estimated_bytes": activation_bytes(budget, config, max_length)}


def device_free_bytes(device: torch.device) -> int | None:
    """Free memory on a CUDA device (None elsewhere: host memory is not planned per batch)."""
    if device.type != "cuda":
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


@dataclass(frozen=True)
class Compute:
    """Where and how the forward pass runs: device type, precision (fp32; bf16x3, float32 matmuls as three
    bf16 products on AMX; tf32, float32 with TensorFloat-32 matmuls on CUDA; or bf16/fp16 autocast) and
    forward implementation ("fused-bert+amx", "fused-bert+onednn", "fused-bert+addmm" or "transformers")."""

    device: str
    precision: str
    forward: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def plan_compute(model_dir: Path | str, device: str = "auto", precision: str = "fp32",
                 forward: str = "auto") -> Compute:
    """The :class:`Compute` an :class:`HFEncoder` with these arguments will use (no model is loaded).

    ``precision`` is what runs, never a guess: fp32 (the reference; TF32 off on CUDA) unless a speed mode
    is asked for. bf16x3 needs the fused BERT forward (a plain BERT with sizes that are multiples of 32)
    on a CPU with AMX and a C compiler, and says why not otherwise; fp16 needs CUDA; tf32 (float32 weights
    and activations, TensorFloat-32 matmuls during the forward only) a CUDA device of compute capability
    8.0 or later, refused here, before any model loads, elsewhere. ``forward`` auto: the
    fused BERT forward for a BERT encoder in fp32 or bf16x3 on CPU, transformers' own forward otherwise;
    "transformers" forces the latter.

    The plan is remembered (:func:`plan_memo_key`): a run whose records are all reusable decides so without
    importing torch. Anything the plan depends on that is read without torch is in the memo's key; what
    torch itself would say (a CUDA device, oneDNN) is fixed by the rest of it (the machine since its boot,
    the torch build, the visible devices, this code). ``HARNESS_PLAN_MEMO=0`` plans every time (the tests do,
    where they stand in for devices and kernels).
    """
    if precision not in PRECISIONS:
        raise HarnessError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if forward not in FORWARDS:
        raise HarnessError(f"--forward must be one of {', '.join(FORWARDS)}, not {forward!r}")
    if os.environ.get("HARNESS_PLAN_MEMO", "1").strip() == "0":
        return _plan_now(model_dir, device, precision, forward)
    memo = _memo_file(plan_memo_key(model_dir, device, precision, forward))
    try:
        remembered = json.loads(memo.read_text(encoding="utf-8"))
        compute = Compute(**{k: str(remembered[k]) for k in ("device", "precision", "forward")})
        if compute.precision == precision and compute.device in DEVICE_TYPES and compute.forward in IMPLEMENTATIONS:
            return compute
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not planned here yet (or an unreadable memo): planned again, with torch
    # a memo that is not a plan of this request (edited, truncated): planned again and written over
    compute = _plan_now(model_dir, device, precision, forward)
    try:
        from harness.io import atomic_write_json

        atomic_write_json(memo, compute.to_dict())
    except OSError:
        pass  # a read-only cache plans again next time
    return compute


#: what a plan may say: device types and forward implementations
DEVICE_TYPES = ("cpu", "cuda", "mps")
IMPLEMENTATIONS = ("fused-bert+amx", "fused-bert+onednn", "fused-bert+addmm", "transformers")

#: the files whose code decides a plan: a change to any of them plans again
_PLAN_CODE = ("plan.py", "fused_bert.py", "amx.py", "amx_bf16x3.c", "../../devices.py", "../../settings.py")


def plan_memo_key(model_dir: Path | str, device: str, precision: str, forward: str) -> str:
    """What a plan depends on, read without torch: the request, the model's config.json, the torch build,
    the machine (host, boot, CPU flags, NVIDIA driver and GPUs, visible devices, the C compiler asked for)
    and the planner's own code."""
    from importlib.metadata import PackageNotFoundError, version

    def read(path: Path | str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError:
            return b"-"

    try:  # the version and the installed files' hashes: a CPU and a CUDA build of one version differ
        from importlib.metadata import distribution

        torch_version = version("torch") + (distribution("torch").read_text("RECORD") or "")
    except PackageNotFoundError:
        torch_version = "-"
    here = Path(__file__).resolve().parent
    cpu_flags = next((line for line in read("/proc/cpuinfo").decode(errors="replace").splitlines()
                      if line.startswith(("flags", "Features"))), "")
    nvidia = Path("/proc/driver/nvidia/gpus")
    gpus = sorted(p.name for p in nvidia.iterdir()) if nvidia.is_dir() else []
    parts: list[bytes | str] = [
        "plan-1", device, precision, forward, read(Path(model_dir) / "config.json"), torch_version,
        os.uname().nodename, os.uname().machine, read("/proc/sys/kernel/random/boot_id"), cpu_flags,
        read("/proc/driver/nvidia/version"), ",".join(gpus), *(os.environ.get(v, "-") for v in (
            "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "PYTORCH_ENABLE_MPS_FALLBACK", "CC")),
        *(read(here / name) for name in _PLAN_CODE)]
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _memo_file(key: str) -> Path:
    from harness.paths import cache_root

    return cache_root() / "compute-plans" / f"{key[:32]}.json"


def _plan_now(model_dir: Path | str, device: str, precision: str, forward: str) -> Compute:
    from harness.retrievers.compute.fused_bert import onednn_works, unsupported_reason

    dev = pick_device(device)
    if precision == "fp16" and dev.type != "cuda":
        raise HarnessError(f"--precision fp16 needs a CUDA device (this run uses {dev.type}); use bf16 or fp32")
    if precision == "tf32":
        check_tf32(dev)
    config_path = Path(model_dir) / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}  # transformers reports a missing or broken config when it loads the model
    fusable = (forward == "auto" and dev.type == "cpu" and isinstance(config, dict)
               and unsupported_reason(config) is None)
    if precision == "bf16x3":
        why_not = (f"it runs on CPUs with AMX (this run uses {dev.type})" if dev.type != "cpu"
                   else bf16x3_unavailable(config if fusable else None, forward))
        if why_not:
            raise HarnessError(f"--precision bf16x3 does not apply to {model_dir}: {why_not}; use fp32")
        return Compute(device=dev.type, precision=precision, forward="fused-bert+amx")
    if not (fusable and precision == "fp32"):
        return Compute(device=dev.type, precision=precision, forward="transformers")
    return Compute(device=dev.type, precision=precision,
                   forward="fused-bert+onednn" if onednn_works() else "fused-bert+addmm")


def check_tf32(dev: torch.device) -> None:
    """Refuse ``--precision tf32`` in one line where it would not be what runs: off CUDA (TF32 is a mode of
    NVIDIA's tensor cores), and on a GPU older than Ampere (compute capability 8.0), where the flag is ignored
    and the run would be fp32 labelled tf32."""
    if dev.type != "cuda":
        from harness.retrievers.compute import amx

        faster = " or bf16x3 (AMX)" if amx.available() else ""
        raise HarnessError("--precision tf32 needs a CUDA device (TF32 is an Ampere+ tensor-core mode); on this "
                           f"machine use fp32{faster}")
    import torch

    major, minor = torch.cuda.get_device_capability(dev)
    if major < 8:
        raise HarnessError(f"--precision tf32 needs an Ampere or later GPU (compute capability 8.0+); "
                           f"{torch.cuda.get_device_name(dev)} is {major}.{minor}: use fp32, bf16 or fp16")


def bf16x3_unavailable(config: dict[str, Any] | None, forward: str = "auto") -> str | None:
    """``None`` when a model with this ``config.json`` (None: the fused forward does not apply) can run
    in bf16x3 here; otherwise why not."""
    if forward != "auto":
        return f"--forward {forward} keeps the model's own forward"
    if config is None:
        return "it needs the fused BERT forward (a plain BERT encoder)"
    sizes = (config.get("hidden_size", 768), config.get("intermediate_size", 3072))
    if any(int(n) % 32 for n in sizes):
        return f"hidden and intermediate sizes {sizes} are not multiples of 32"
    from harness.retrievers.compute import amx

    return amx.unavailable_reason()
