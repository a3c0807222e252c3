"""Estimates of memory and disk before long work, and early refusals that name the fix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

GiB = 1024**3


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable; None elsewhere)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            n += block.count(b"\n")
    return n


def longest_line(path: Path) -> int:
    """Bytes of the longest line of a file (one streamed pass)."""
    import numpy as np

    longest, carry = 0, 0
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
            if ends.size == 0:
                carry += len(block)
                continue
            longest = max(longest, carry + int(ends[0]) + 1)
            if ends.size > 1:
                longest = max(longest, int(np.diff(ends).max()))
            carry = len(block) - int(ends[-1]) - 1
    return max(longest, carry)


def embedding_plan(n_docs: int, dim: int, itemsize: int, shard_size: int, model_bytes: int,
                   n_queries: int, depth: int) -> dict[str, Any]:
    """Disk for the stored vectors; peak memory of encoding one shard and of searching one shard."""
    disk = n_docs * dim * itemsize
    shard = min(shard_size, n_docs)
    text = shard * 2048  # a generous bound on a shard's document text and token ids in memory
    encode_peak = model_bytes * 2 + shard * dim * 4 + text
    search_peak = shard * dim * 4 * 2 + n_queries * dim * 4 + n_queries * depth * 2 * 12
    return {"documents": n_docs, "disk_bytes": disk, "memory_bytes": max(encode_peak, search_peak)}


def check_plan(plan: dict[str, Any], cache_dir: Path, *, already_on_disk: int = 0) -> None:
    """Refuse early, naming the options that would make the job fit."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(cache_dir).free
    need = plan["disk_bytes"] - already_on_disk
    if need > free:
        raise HarnessError(
            f"the embeddings of {plan['documents']:,} documents need {need / GiB:.1f} GiB in {cache_dir}, but only "
            f"{free / GiB:.1f} GiB is free. Fix: --embed-dtype float16 halves it; or point HARNESS_CACHE at a bigger "
            f"disk; or encode in shards on several machines (torchrun).")
    mem = available_memory()
    if mem is not None and plan["memory_bytes"] > mem and not os.environ.get("HARNESS_IGNORE_MEMORY_CHECK"):
        raise HarnessError(
            f"encoding and searching need about {plan['memory_bytes'] / GiB:.1f} GiB of memory, {mem / GiB:.1f} GiB is "
            f"available. Fix: a smaller --shard-size (documents per shard), --embed-dtype float16, or fewer queries "
            f"at once. (HARNESS_IGNORE_MEMORY_CHECK=1 skips this check.)")
