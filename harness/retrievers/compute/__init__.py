"""The compute stack of dense encoding, in one room: the planner (:mod:`.plan`), the fused BERT forward
(:mod:`.fused_bert`) and the bf16x3 AMX kernel (:mod:`.amx`, its C source beside it).

The rest of the harness sees only "encode texts with these settings" (``retrievers.encoder.HFEncoder``,
which asks :func:`plan_compute` how to run). Benchmarks and tests use the names below, never a module's
private ones.
"""

from __future__ import annotations

from typing import Any

from harness.retrievers.compute.plan import Compute, bf16x3_unavailable, default_batch_tokens, plan_compute

__all__ = ["Compute", "bf16x3_unavailable", "default_batch_tokens", "plan_compute", "kernel_available",
           "kernel_unavailable_reason", "compile_kernel", "kernel_library", "KERNEL_SOURCE", "KERNEL_FLAGS",
           "c_compiler"]


def kernel_available() -> bool:
    """Whether the bf16x3 kernel runs here (AMX, a C compiler, the kernel built and probed)."""
    from harness.retrievers.compute import amx

    return amx.available()


def kernel_unavailable_reason() -> str | None:
    from harness.retrievers.compute import amx

    return amx.unavailable_reason()


def c_compiler() -> str | None:
    from harness.retrievers.compute import amx

    return amx._compiler()


def kernel_library() -> Any:
    """The loaded bf16x3 kernel library (None where it is unavailable)."""
    from harness.retrievers.compute import amx

    return amx._load()[0]


def compile_kernel(out: Any, extra_flags: tuple[str, ...] = ()) -> Any:
    """Compile the kernel source with extra compiler flags into ``out`` and load it (benchmark variants)."""
    import subprocess

    from harness.retrievers.compute import amx

    cc = amx._compiler()
    if cc is None:
        raise RuntimeError("no C compiler")
    subprocess.run([cc, *amx.FLAGS, *extra_flags, str(amx.SOURCE), "-o", str(out)], check=True)
    return amx._Library(out)


def __getattr__(name: str) -> Any:
    if name in {"KERNEL_SOURCE", "KERNEL_FLAGS"}:
        from harness.retrievers.compute import amx

        return amx.SOURCE if name == "KERNEL_SOURCE" else list(amx.FLAGS)
    raise AttributeError(name)
