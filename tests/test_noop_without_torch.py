"""A run whose records are all reusable decides so without importing torch: the compute plan (part of every
dense cache key) is remembered under a key of everything it depends on that can be read without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.retrievers.compute import plan


@pytest.fixture(autouse=True)
def _memo_on(monkeypatch, tmp_path):
    """The memo on, in a cache of these tests' own (other tests stand in for devices: HARNESS_PLAN_MEMO=0)."""
    monkeypatch.setenv("HARNESS_PLAN_MEMO", "1")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))

BLOCKED = """
import sys
class NoTorch:
    def find_spec(self, name, path, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch was imported: " + name)
sys.meta_path.insert(0, NoTorch())
from harness.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(code)
"""


def test_a_reusable_run_is_decided_without_importing_torch(tiny_beir, tiny_bert_dir, tmp_path):
    args = ["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "out"),
            "--device", "cpu", "--metric", "ndcg@10"]
    assert main(args) == 0
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "reused record and run file" in proc.stderr and "ndcg@10" in proc.stdout
    # a metric the record lacks is computed from the run file: still no torch
    proc = subprocess.run([sys.executable, "-c", BLOCKED, *args, "--metric", "recall@5"], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "evaluating new metrics" in proc.stderr and "recall@5" in proc.stdout


def test_the_plan_is_remembered_under_what_it_depends_on(tiny_bert_dir, tmp_path):
    first = plan.plan_compute(tiny_bert_dir, "cpu", "fp32", "auto")
    key = plan.plan_memo_key(tiny_bert_dir, "cpu", "fp32", "auto")
    memo = plan._memo_file(key)
    assert json.loads(memo.read_text()) == first.to_dict()
    assert plan.plan_compute(tiny_bert_dir, "cpu", "fp32", "auto") == first
    assert plan.plan_memo_key(tiny_bert_dir, "cpu", "fp32", "transformers") != key
    assert plan.plan_memo_key(tiny_bert_dir, "auto", "fp32", "auto") != key
    assert plan.plan_memo_key(tiny_bert_dir, "cpu", "bf16", "auto") != key
    import shutil

    other = tmp_path / "bert"
    shutil.copytree(tiny_bert_dir, other)
    assert plan.plan_memo_key(other, "cpu", "fp32", "auto") == key  # the config's content, not its path
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "position_embedding_type": "relative_key"}))
    assert plan.plan_memo_key(other, "cpu", "fp32", "auto") != key
    assert plan.plan_compute(other, "cpu", "fp32", "auto").forward == "transformers"  # not fused: planned anew


def test_an_unreadable_memo_is_planned_again(tiny_bert_dir, monkeypatch):
    first = plan.plan_compute(tiny_bert_dir, "cpu", "fp32", "auto")
    memo = plan._memo_file(plan.plan_memo_key(tiny_bert_dir, "cpu", "fp32", "auto"))
    for broken in ("{", '{"device": "cpu"}', "[]", '{"device": "cpu", "precision": "bf16", "forward": "transformers"}',
                   '{"device": "tpu", "precision": "fp32", "forward": "transformers"}',
                   '{"device": "cpu", "precision": "fp32", "forward": "made-up"}'):
        memo.write_text(broken)
        assert plan.plan_compute(tiny_bert_dir, "cpu", "fp32", "auto") == first
        assert json.loads(memo.read_text()) == first.to_dict()
    before = plan.plan_memo_key(tiny_bert_dir, "cpu", "fp32", "auto")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # what torch would see changes: planned again
    assert plan.plan_memo_key(tiny_bert_dir, "cpu", "fp32", "auto") != before
