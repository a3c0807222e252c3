"""Helpers shared by the benchmark scripts: locate ../shared, run a step in a child process and
measure its wall time and peak resident memory (ru_maxrss of that child alone)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCIFACT = SHARED / "data" / "beir" / "scifact"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"



def measure(code: str, env: dict | None = None, timeout: int = 3600) -> dict:
    """Run ``code`` (a Python snippet that may set RESULT) in a fresh interpreter; wall time, peak RSS."""
    wrapper = ("import json, resource, time\nt = time.perf_counter()\nRESULT = None\n" + code +
               "\nprint('BENCH_RESULT ' + json.dumps({'wall_s': time.perf_counter() - t, "
               "'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 'result': RESULT}))\n")
    proc = subprocess.run([sys.executable, "-c", wrapper], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"benchmark step failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def require(path: Path, what: str) -> None:
    if not path.exists():
        print(f"skipped: {what} not found at {path}")
        raise SystemExit(0)


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
