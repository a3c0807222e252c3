"""The Python API: harness.run, harness.evaluate, harness.results.leaderboard (what the README shows)."""

from __future__ import annotations

import harness
from harness.retrievers.registry import folder_name
from harness.settings import Execution


def test_run_evaluate_and_leaderboard_from_python(tiny_beir, tiny_bert_dir, tmp_path):
    records = harness.run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r",
                          execution=Execution(device="cpu", progress=False))
    (rec,) = records
    run_file = tmp_path / "r" / rec.dataset / "test" / rec.run_file
    assert harness.evaluate(tiny_beir / "qrels" / "test.tsv", run_file, ["ndcg@10"]) == rec.metrics
    table = harness.leaderboard(tmp_path / "r", "nDCG@10")
    assert rec.retriever == folder_name(tiny_bert_dir)  # a folder is named by its name and content
    assert table.loc[rec.retriever, rec.dataset] == rec.metrics["ndcg@10"]


def test_importing_harness_imports_nothing_heavy():
    import subprocess
    import sys

    code = "import sys, harness; print(sorted(m for m in ('torch', 'pandas', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr
