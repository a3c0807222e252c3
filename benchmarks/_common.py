"""Helpers shared by the benchmark scripts: locate ../shared, run a step in a child process and
measure its wall time and peak resident memory (ru_maxrss of that child alone)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCIFACT = SHARED / "data" / "beir" / "scifact"
MINILM = SHARED / "models" / "all-MiniLM-L6-v2"


def matmul_peak(size: int = 2048, repeat: int = 8) -> tuple[float, dict[str, float]]:
    """The machine's fp32 matmul peak in FLOP/s, with the figure of each library that torch can call.

    Best of ``repeat`` size x size products through torch.mm (the BLAS torch was built with: MKL in the
    PyPI wheels) and, where this build has it, oneDNN's linear (the kernel the fused forward uses). The
    peak is the best of the two: on this project's AMD EPYC oneDNN reaches ~215 GFLOP/s where MKL's sgemm
    stops at ~185, and a share of a weaker library's peak would overstate how close the encoder gets.
    """
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    calls = {"torch.mm": lambda: torch.mm(a, b)}
    onednn = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if onednn is not None and torch.backends.mkldnn.is_available():
        bt = b.t().contiguous()  # linear takes [out, in] weights
        calls["oneDNN"] = lambda: onednn(a, bt, None, "none", [], "")
    by_library = {}
    with torch.inference_mode():
        for name, call in calls.items():
            try:
                call()
            except (RuntimeError, NotImplementedError):
                continue
            best = 0.0
            for _ in range(repeat):
                t = time.perf_counter()
                call()
                best = max(best, 2 * size**3 / (time.perf_counter() - t))
            by_library[name] = best
    return max(by_library.values()), by_library


def bf16_matmul_peak(size: int = 2048, repeat: int = 8) -> float:
    """Best FLOP/s of size x size bf16 products (bf16 in and out) through torch.mm: for scale beside
    bf16x3, whose tile unit runs three of them for each float32 product."""
    import torch

    a, b = torch.randn(size, size).bfloat16(), torch.randn(size, size).bfloat16()
    best = 0.0
    with torch.inference_mode():
        torch.mm(a, b)
        for _ in range(repeat):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * size**3 / (time.perf_counter() - t))
    return best


def describe_peak(by_library: dict[str, float]) -> str:
    return ", ".join(f"{name} {flops / 1e9:.1f}" for name, flops in by_library.items())


def step_table(steps: dict[str, dict[str, list[float]]], heading: Callable[[str], str], width: int,
               total_note: str = "") -> dict[str, Any]:
    """Per path (e.g. arrays, dicts) and step, the min and median seconds over the rounds and their total,
    printed as a table under ``heading(path)``; the figures by path."""
    figures: dict[str, Any] = {}
    for path_name, timed in steps.items():
        total = [sum(r) for r in zip(*timed.values(), strict=True)]
        rows = {name: {"min_s": min(v), "median_s": statistics.median(v)} for name, v in timed.items()}
        figures[path_name] = {"steps": rows, "total": {"min_s": min(total), "median_s": statistics.median(total)}}
        print(f"\n{heading(path_name)}")
        print(f"{'step':{width}} {'min s':>7} {'median s':>9}")
        for name, r in rows.items():
            print(f"{name:{width}} {r['min_s']:7.3f} {r['median_s']:9.3f}")
        print(f"{'total':{width}} {min(total):7.3f} {statistics.median(total):9.3f}{total_note}")
    return figures


@contextlib.contextmanager
def co_runners(count: int) -> Iterator[None]:
    """``count`` single-threaded busy loops (other processes) for as long as the block runs: a known,
    repeatable load instead of whatever else the host runs."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def measure(step: str, env: dict | None = None, timeout: int = 3600, **kwargs) -> dict:
    """Run ``benchmarks._steps.<step>(**kwargs)`` in a fresh interpreter: its wall time, peak RSS, result."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks._child", step, json.dumps(kwargs)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})})
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            return json.loads(line[len("BENCH_RESULT "):])
    raise RuntimeError(f"benchmark step {step} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


class _Tee:
    def __init__(self, stream):
        self.stream, self.lines, self._partial = stream, [], ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        self._partial += text
        *done, self._partial = self._partial.split("\n")
        self.lines += done
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def __getattr__(self, name: str):  # isatty, encoding, fileno: the real stream's
        return getattr(self.stream, name)


#: figures a script adds for its results JSON (beside everything it printed)
FIGURES: dict = {}


def run_and_record(main, script: str) -> None:
    """Run a benchmark's ``main()``, then write what it printed and the ``FIGURES`` it set as a dated JSON
    result beside the script: ``<topic>/results/<script>-<YYYY-MM-DD>.json`` (with the command, machine,
    commit and time). A run that skipped (``skipped: ...``) writes nothing, nor one under
    ``BENCH_RESULTS=0`` (the tests' smoke runs)."""
    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        code = main()
    finally:
        sys.stdout = tee.stream
    if tee._partial:
        tee.lines.append(tee._partial)
    if any(line.startswith("skipped:") for line in tee.lines[:3]) or os.environ.get("BENCH_RESULTS") == "0":
        return
    out = result_path(Path(script).resolve().parent / "results", Path(script).stem,
                      time.strftime("%Y-%m-%d", time.gmtime()))
    payload = {"script": str(Path(script).resolve().relative_to(ROOT)), "command": " ".join(sys.argv),
               "date": stamp(), "machine": machine(), "commit": commit(), "figures": FIGURES, "printed": tee.lines}
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")
    if isinstance(code, int) and code:
        raise SystemExit(code)


def result_path(folder: Path, name: str, date: str) -> Path:
    """``<name>-<date>.json``, or ``<name>-<date>-2.json`` (3, ...) when a result of that day is already
    there: a rerun the same day (another machine, another setting) never overwrites an earlier result."""
    folder.mkdir(parents=True, exist_ok=True)
    out, n = folder / f"{name}-{date}.json", 1
    while out.exists():
        n += 1
        out = folder / f"{name}-{date}-{n}.json"
    return out


def commit() -> str | None:
    try:
        proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                              timeout=30)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=ROOT, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (proc.stdout.strip() + ("+changes" if dirty else "")) if proc.returncode == 0 else None


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
