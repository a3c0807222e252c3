"""A run file is reused (for a record, a new metric, or a fusion stage) only while its content is the one
its record was computed from (the sha256 the record holds); an edited run file is computed again."""

from __future__ import annotations

import pytest

from harness.runner import run
from harness.settings import Execution
from tests.conftest import make_tiny_beir, make_tiny_bert

CPU = Execution(device="cpu", progress=False)


def _tamper(path):
    """Reverse every query's ranking in a run file (same lines, other scores)."""
    lines = path.read_text().splitlines()
    out = []
    for line in lines:
        q, z, d, rank, score, tag = line.split()
        out.append(f"{q} {z} {d} {rank} {-float(score)!r} {tag}")
    path.write_text("\n".join(out) + "\n")


@pytest.fixture()
def setup(tmp_path):
    return (make_tiny_bert(tmp_path / "a", seed=21), make_tiny_bert(tmp_path / "b", seed=22),
            make_tiny_beir(tmp_path / "tiny"), tmp_path / "out")


def test_a_new_metric_is_not_computed_from_an_edited_run_file(setup):
    a, _, folder, out = setup
    (rec,) = run([f"hf:{a}"], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    assert len(rec.run_sha256) == 64
    _tamper(out / rec.dataset / "test" / rec.run_file)
    logs: list[str] = []
    (again,) = run([f"hf:{a}"], [str(folder)], ["ndcg@10", "recall@5"], out, execution=CPU, log=logs.append)
    assert any("not the run file its record was computed from" in m for m in logs)
    assert again.metrics["ndcg@10"] == rec.metrics["ndcg@10"] and not again.reused_run
    assert again.run_sha256 == rec.run_sha256  # retrieved again: the same run file as the first time


def test_a_fusion_never_reads_an_edited_stage_run(setup, tmp_path):
    a, b, folder, out = setup
    run([f"fuse:rrf(hf:{a},hf:{b})"], [str(folder)], None, out, execution=CPU, log=lambda m: None)
    stage = next(p for p in out.rglob("a@*.trec"))
    _tamper(stage)
    logs: list[str] = []
    other = f"fuse:rrf(hf:{a},hf:{b};k=30)"  # a new fusion over the two stages, which are reused or recomputed
    (fused,) = run([other], [str(folder)], None, out, execution=CPU, log=logs.append)
    assert any("not the run file its record was computed from" in m for m in logs)
    (clean,) = run([other], [str(folder)], None, tmp_path / "clean", execution=CPU, log=lambda m: None)
    assert fused.metrics == clean.metrics and fused.per_query == clean.per_query


def test_an_unchanged_run_file_is_still_reused(setup):
    a, _, folder, out = setup
    run([f"hf:{a}"], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    logs: list[str] = []
    run([f"hf:{a}"], [str(folder)], ["ndcg@10", "recall@5"], out, execution=CPU, log=logs.append)
    assert any("reused run file" in m for m in logs)
