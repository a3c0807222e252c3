"""float32 matmuls on Intel AMX in "bf16x3": three bfloat16 products, float32 accumulation and output.

A float32 ``x`` splits exactly into ``hi = bf16(x)`` and ``x - hi``; rounding the remainder to bf16 too
gives ``x = hi + lo`` up to ~2^-17 relative. ``a @ b`` is then computed as ``hi_a@hi_b + hi_a@lo_b +
lo_a@hi_b`` on the AMX tile unit, which multiplies bf16 pairs exactly and accumulates in float32. The
relative error per product is about 2^-16 (float32: 2^-24, plain bf16: 2^-8); for MiniLM's hidden states
that is within ~1e-4 of float64 where float32 is within ~1e-5 (``tests/test_amx.py``), and SciFact
nDCG@10 is unchanged (``benchmarks/end_to_end/encode_vs_beir.py``). On a CPU whose bf16 tile unit runs at ~8x its
float32 FMA rate, the three products together still cost well under one float32 matmul.

PyTorch has no CPU matmul that takes bf16 and returns float32 (``mm(..., out_dtype=)`` is CUDA-only, and
oneDNN's fp32 "bf16 fpmath" mode rounds the inputs once, losing the low parts), so the kernel is a small C
file (``amx_bf16x3.c``, no Python or torch headers) compiled on first use with the system C compiler into
the harness cache, and called through ctypes. The rows are split among ``torch.get_num_threads()``
OpenMP threads; the library links ``libgomp.so.1`` by name, which in a process that has imported torch
(PyPI's wheels) is torch's own copy, so the kernel runs on torch's intra-op threads instead of competing
with them (a separate Python thread pool lost much of its speed to torch's spinning workers).

A freshly built library is first probed in a child process (a CPU or hypervisor that advertises AMX but
faults on it then costs a fallback to fp32, not a crash); a marker beside the library records that it
passed.

:func:`unavailable_reason` says why the kernel cannot run here (no AMX, no compiler, a failed probe);
the callers then keep plain float32.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("amx_bf16x3.c")
FLAGS = ["-O3", "-fPIC", "-shared", "-fopenmp", "-mamx-tile", "-mamx-bf16", "-mavx512f", "-mavx512bw",
         "-mavx512vl", "-mavx512bf16"]
CPU_FLAGS = ("amx_tile", "amx_bf16", "avx512f", "avx512bw", "avx512vl", "avx512_bf16")
_LOAD_LOCK = threading.Lock()
_CALL_LOCK = threading.Lock()  # one call at a time uses the shared scratch


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _build(cc: str) -> Path:
    """Compile the kernel into the cache (once per source and flags), atomically."""
    from harness.paths import cache_root

    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join([cc, *FLAGS]).encode()).hexdigest()[:16]
    target = cache_root() / "kernels" / f"amx_bf16x3-{digest}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        proc = subprocess.run([cc, *FLAGS, str(SOURCE), "-o", str(built)], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise OSError(f"{cc} failed on {SOURCE.name}: {proc.stderr.strip()[-500:]}")
        os.replace(built, target)
    return target


class _Library:
    def __init__(self, path: Path):
        lib = ctypes.CDLL(str(path))
        p, i64 = ctypes.c_void_p, ctypes.c_int64
        lib.harness_amx_init.restype = ctypes.c_int
        lib.harness_amx_work.argtypes = [i64]
        lib.harness_amx_work.restype = i64
        lib.harness_amx_pack_b.argtypes = [p, i64, i64, p]
        lib.harness_amx_gemm.argtypes = [p, p, p, p, i64, i64, i64, p, ctypes.c_int]
        lib.harness_amx_pack_b.restype = lib.harness_amx_gemm.restype = None
        if lib.harness_amx_init() != 0:
            raise OSError("Linux refused this process the AMX tile state (arch_prctl XTILEDATA)")
        self.lib = lib
        self.work = _aligned(0)

    def scratch(self, elements: int) -> torch.Tensor:
        """At least ``elements`` bf16 of scratch (reused across calls, which take _CALL_LOCK)."""
        if self.work.numel() < elements:
            self.work = _aligned(elements)
        return self.work


def _aligned(elements: int) -> torch.Tensor:
    """Room for bf16 values on a 64-byte boundary: tile rows that straddle two cache lines slowed the kernel
    down a lot in some allocations (numpy's buffers are only 16-byte aligned)."""
    room = torch.empty(elements + 32, dtype=torch.int16)
    start = (-room.data_ptr() % 64) // 2
    return room[start:start + elements]


@functools.cache
def _load() -> tuple[_Library | None, str | None]:
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None, f"not an x86-64 Linux machine ({platform.system()} {platform.machine()})"
    missing = [f for f in CPU_FLAGS if f not in _cpu_flags()]
    if missing:
        return None, f"this CPU lacks {', '.join(missing)}"
    cc = _compiler()
    if cc is None:
        return None, "no C compiler (cc, gcc or $CC) to build the kernel"
    try:
        path = _build(cc)
        reason = _probe_in_child(path)
        if reason:
            return None, reason
        lib = _Library(path)
    except (OSError, subprocess.SubprocessError) as e:
        return None, str(e)
    reason = _probe(lib)
    return (None, reason) if reason else (lib, None)


def _probe_in_child(path: Path) -> str | None:
    """Load and probe the library at ``path`` in a child process once; None when it passed."""
    marker = path.with_suffix(".probed")
    if marker.is_file():
        return None
    code = ("import sys; from pathlib import Path; from harness.retrievers.compute import amx; "
            "sys.exit(amx._probe(amx._Library(Path(sys.argv[1]))) is not None)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    if proc.returncode < 0:
        return f"the kernel crashed its probe (signal {-proc.returncode})"
    if proc.returncode != 0:
        return f"the kernel failed its probe: {proc.stderr.strip()[-300:] or 'wrong results'}"
    marker.write_text("passed\n", encoding="utf-8")
    return None


def _probe(lib: _Library) -> str | None:
    gen = torch.Generator().manual_seed(0)
    a, w, b = torch.randn(70, 64, generator=gen), torch.randn(96, 64, generator=gen), torch.randn(96, generator=gen)
    try:
        got = PackedWeight(w, lib)(a, b)
    except (OSError, RuntimeError) as e:  # pragma: no cover - a broken build
        return f"the kernel failed its probe: {e}"
    want = (a.double() @ w.double().t() + b.double()).float()
    err = float((got - want).abs().max() / want.abs().max())
    return None if err < 1e-4 else f"the kernel failed its probe (relative error {err:.1e})"


def unavailable_reason() -> str | None:
    """``None`` when the bf16x3 kernel runs on this machine; otherwise why not."""
    with _LOAD_LOCK:
        return _load()[1]


def available() -> bool:
    return unavailable_reason() is None


def supports(k: int, n: int) -> bool:
    """Whether an ``[*, k] @ [k, n]`` product has the kernel's shape (multiples of 32)."""
    return k % 32 == 0 and n % 32 == 0


class PackedWeight:
    """A ``[out, in]`` float32 weight split and packed once; ``w(x, bias, out=None)`` is ``x @ w.T + bias``."""

    def __init__(self, weight: torch.Tensor, lib: _Library | None = None):
        lib = lib or _load()[0]
        if lib is None:
            raise RuntimeError(f"the AMX bf16x3 kernel is unavailable: {unavailable_reason()}")
        self.lib: _Library = lib
        n, k = weight.shape
        if not supports(k, n):
            raise ValueError(f"bf16x3 needs both sizes to be multiples of 32, not {n} x {k}")
        self.n, self.k = int(n), int(k)
        b = weight.detach().float().t().contiguous()
        self.packed = _aligned(self.n * self.k * 2)
        self.lib.lib.harness_amx_pack_b(b.data_ptr(), self.k, self.n, self.packed.data_ptr())

    def __call__(self, x: torch.Tensor, bias: torch.Tensor | None = None,
                 out: torch.Tensor | None = None) -> torch.Tensor:
        if x.dtype != torch.float32 or x.dim() != 2 or x.shape[1] != self.k:
            raise ValueError(f"expected a float32 [rows, {self.k}] input, got {x.dtype} {tuple(x.shape)}")
        x = x.contiguous()
        m = x.shape[0]
        if out is None:
            out = torch.empty(m, self.n, dtype=torch.float32)
        elif not (out.is_contiguous() and out.shape == (m, self.n) and out.dtype == torch.float32):
            raise ValueError("out must be a contiguous float32 [rows, out] tensor")
        if m == 0:
            return out
        if bias is not None:
            bias = bias.detach().float().contiguous()
            if bias.shape != (self.n,):
                raise ValueError(f"bias must have {self.n} values, not {tuple(bias.shape)}")
        threads = max(1, torch.get_num_threads())
        with _CALL_LOCK:
            work = self.lib.scratch(threads * self.lib.lib.harness_amx_work(self.k))
            self.lib.lib.harness_amx_gemm(x.data_ptr(), self.packed.data_ptr(),
                                          bias.data_ptr() if bias is not None else None, out.data_ptr(),
                                          m, self.k, self.n, work.data_ptr(), threads)
        return out

