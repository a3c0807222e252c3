"""How many threads a CPU encoding runs on, window by window: every core this process may use
(:func:`harness.distributed.cpu_threads`), fewer while other work holds some of them.

On a shared host each of the forward's parallel regions ends at a barrier that waits for whichever thread the
host descheduled. With one busy co-runner on the 2-core guest, SciFact's first 400 documents took 19.7 s on
one thread and 26.4 s on two; idle, 21.3 s on one and 11.8 s on two (benchmarks/README, section 1). The
vectors are the same bits on any number of threads (tests/test_threads.py checks 1, 2 and 3 on both forwards),
so the count changes the time alone, and it is chosen by measuring:

A count given by the caller (``Execution(threads=N)``, the API's ``threads``) or by ``OMP_NUM_THREADS`` is
fixed: the tuner only counts the batches, for the record.

- the signal: the time this process's threads spent runnable but waiting for a core (the kernel's
  ``/proc/self/task/*/schedstat``), as a share of a window's wall time times its threads; where the kernel
  does not say, the count stays at every core;
- every :data:`WINDOW` batches: with a waiting share over :data:`CONTENDED`, one thread fewer is tried for a
  window, and kept where its work per second beats the window before by :data:`MARGIN`; below every core,
  one more is tried the same way every :data:`PROBE` windows (the other work may have ended). A failed
  trial waits :data:`PROBE` windows before the next one.

Work per second is the batch's padded tokens weighted by ``1 + length / (6 * hidden)`` (attention's share
of a BERT layer's FLOPs grows with the length), so that windows of shorter texts do not look faster.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypedDict

#: batches a window measures
WINDOW = 8
#: the share of a window's thread time spent waiting for a core above which fewer threads are tried
CONTENDED = 0.2
#: how much faster a trial must be to be kept (well above the spread of adjacent windows on an idle host: a
#: count kept wrongly stays for :data:`PROBE` windows; one co-runner on two cores made one thread 1.3x faster)
MARGIN = 1.15
#: windows between trials of one more thread (and after a failed trial)
PROBE = 16


def runqueue_wait_ns() -> int | None:
    """The nanoseconds this process's threads have spent runnable and waiting for a core, summed; None where
    the kernel does not say (no schedstat) or a thread ended while it was read."""
    total = 0
    try:
        with os.scandir("/proc/self/task") as tasks:
            for task in tasks:
                with open(f"{task.path}/schedstat", "rb") as f:
                    total += int(f.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return total


def set_torch_threads(n: int) -> None:
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


class ThreadsUsed(TypedDict):
    """What a record keeps: the most threads, how many batches ran on each count, and whether the count was
    fixed (given) or tuned."""

    most: int
    batches: dict[str, int]
    fixed: bool


class ThreadTuner:
    """Chooses the thread count of a CPU encoding between batches (see the module docstring); ``fixed``: runs
    every batch on ``most`` threads, counting them."""

    def __init__(self, most: int, *, fixed: bool = False, set_threads: Callable[[int], None] = set_torch_threads,
                 wait_ns: Callable[[], int | None] = runqueue_wait_ns):
        self.most = max(1, most)
        self.fixed = fixed
        self.current = self.most
        self._set, self._wait_ns = set_threads, wait_ns
        self.batches: dict[int, int] = {}
        self._work = self._seconds = 0.0
        self._count = 0
        self._wait_start = wait_ns()
        self._trial_from: int | None = None  # the count a trial left, while one runs
        self._rate_before = 0.0
        self._idle_windows = 0  # windows since the last trial
        self._wait_after = 0  # windows to wait before the next trial
        self.apply()

    def apply(self) -> None:
        """Set the current count (torch's is global: another encoder may have set its own)."""
        self._set(self.current)

    def batch_done(self, work: float, seconds: float) -> None:
        """One batch of ``work`` units took ``seconds`` on the current count; every :data:`WINDOW` batches,
        decide the next window's count."""
        self.batches[self.current] = self.batches.get(self.current, 0) + 1
        self._work += work
        self._seconds += seconds
        self._count += 1
        if self.fixed or self._count < WINDOW:
            return
        rate = self._work / max(self._seconds, 1e-9)
        wait = self._wait_ns()
        share = None
        if wait is not None and self._wait_start is not None and wait >= self._wait_start:
            share = (wait - self._wait_start) / (max(self._seconds, 1e-9) * 1e9 * self.current)
        self._work = self._seconds = 0.0
        self._count = 0
        self._wait_start = wait
        if self._trial_from is not None:  # a trial window ended: keep it where it was faster
            if rate < self._rate_before * MARGIN:
                self.current = self._trial_from
                self._wait_after = PROBE
                self.apply()
            self._trial_from = None
            self._idle_windows = 0
            return
        self._idle_windows += 1
        if self._idle_windows < self._wait_after:
            return
        if self.current > 1 and share is not None and share > CONTENDED:
            self._try(self.current - 1, rate)
        elif self.current < self.most and self._idle_windows >= PROBE:
            self._try(self.current + 1, rate)

    def _try(self, threads: int, rate: float) -> None:
        self._trial_from, self._rate_before = self.current, rate
        self.current = threads
        self._wait_after = 0
        self.apply()

    def used(self) -> ThreadsUsed:
        return {"most": self.most, "batches": {str(k): v for k, v in sorted(self.batches.items())},
                "fixed": self.fixed}
