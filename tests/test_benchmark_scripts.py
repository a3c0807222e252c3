"""The benchmark scripts that only a lent GPU machine runs for their figures, run here in their CPU smoke
mode, so the run there is not their first: gpu_encode.py (issue 6, point e)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.conftest import MINILM, REPO, SHARED_DATA

MODULE = "benchmarks.compute.gpu_encode"
SCIFACT = SHARED_DATA / "beir" / "scifact"


def run_script(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", MODULE, *args], capture_output=True, text=True, timeout=600,
                          cwd=REPO, env={**os.environ, "BENCH_RESULTS": "0"})  # a smoke run records nothing
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_gpu_encode_says_skipped_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the script runs for real")
    assert run_script().startswith("skipped: no CUDA device")


@pytest.mark.realdata
@pytest.mark.slow
def test_gpu_encode_smoke_run_on_cpu():
    if not (SCIFACT / "corpus.jsonl").exists() or not MINILM.exists():
        pytest.skip("needs ../shared SciFact and the MiniLM tokenizer")
    out = run_script("--device", "cpu", "--docs", "24", "--layers", "2", "--more-batch-tokens", "1024")
    rows = {}
    for line in out.splitlines():
        m = re.match(r"(harness .+?|beir .+?|sentence-transformers .+?)\s+(\d+)\s+-\s+(\S+)$", line)
        if m:
            rows[m.group(1)] = (float(m.group(2)), float(m.group(3)))
    names = list(rows)
    assert len(names) == 5, out
    assert names[0].startswith("harness bf16") and names[1].startswith("harness fp32"), names
    assert rows[names[2]][1] == 0.0  # the reference itself
    # the harness in fp32 encodes what beir encodes (same text rule, truncation, mean pooling)
    assert rows[names[1]][1] < 1e-5, out
    # bf16 rows: close to fp32, and much closer than two different documents are
    apart = float(re.search(r"differ by (\S+) \(median\)", out).group(1))
    for name in (names[0], names[3], names[4]):
        assert rows[name][1] < min(2e-2, apart / 10), (name, out)
    assert all(docs_s > 0 for docs_s, _ in rows.values())
