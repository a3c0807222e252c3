"""Helpers to run ``python -m harness`` in a subprocess and interrupt it at a chosen point."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def harness_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "PYTEST_"))}
    env.update(HARNESS_CACHE=str(cache), HARNESS_OFFLINE="1", HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", PYTHONPATH=str(REPO))
    return env


def start(args: list[str], cache: Path, log: Path) -> subprocess.Popen:
    """Start ``python -m harness <args>`` with stdout and stderr going to ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=REPO, env=harness_env(cache),
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_default_sigint)


def _default_sigint() -> None:
    """Ctrl-C as at a terminal: a test run started in the background (``cmd &`` in a script) inherits SIGINT
    ignored, which Python then keeps ignored, and an interrupt test would see the run finish with 0."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run(args: list[str], cache: Path, log: Path, timeout: float = 300) -> int:
    proc = start(args, cache, log)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120, what: str = "") -> None:
    """Poll until ``ready()``; fail if the process ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)
