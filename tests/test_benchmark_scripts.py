"""The benchmark scripts that only a lent GPU machine runs for their figures, run here in their CPU smoke
mode, so the run there is not their first: gpu_encode.py (issue 6, point e) and the prepared device check
(benchmarks/gpu/device_check.py, issue 28)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import MINILM, REPO, SHARED_DATA

MODULE = "benchmarks.compute.gpu_encode"
SCIFACT = SHARED_DATA / "beir" / "scifact"


def run_script(*args: str, module: str = MODULE) -> str:
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600,
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


def test_a_rerun_the_same_day_never_overwrites_a_result(tmp_path):
    from benchmarks._common import result_path

    first = result_path(tmp_path / "results", "encode_flops", "2026-12-02")
    assert first.name == "encode_flops-2026-12-02.json"
    first.write_text("{}")
    second = result_path(tmp_path / "results", "encode_flops", "2026-12-02")
    assert second.name == "encode_flops-2026-12-02-2.json"
    second.write_text("{}")
    assert result_path(tmp_path / "results", "encode_flops", "2026-12-02").name == "encode_flops-2026-12-02-3.json"
    assert result_path(tmp_path / "results", "encode_flops", "2026-12-03").name == "encode_flops-2026-12-03.json"


def test_benchmark_scripts_import_their_helpers_through_the_package():
    """A script runs as ``python -m benchmarks.<topic>.<name>``: a bare ``from _common import`` (how the flat
    scripts imported before the suite) fails only when the line runs (train_throughput did, 2026-12-02)."""
    import ast

    helpers = {p.stem for p in (REPO / "benchmarks").glob("_*.py")} - {"__init__"}
    bare = []
    for path in sorted((REPO / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            bare += [f"{path.relative_to(REPO)}:{node.lineno}" for n in names if n and n.split(".")[0] in helpers]
    assert not bare, bare


def test_benchmarks_readme_shows_what_the_json_results_say():
    """benchmarks/README.md's results section is rendered from the JSON files: a hand edit, or a new result
    not rendered in (`python -m benchmarks.report --write`), fails here."""
    from benchmarks import report

    readme = report.README.read_text()
    assert report.splice(readme, report.render()) == readme, "run `python -m benchmarks.report --write`"


def test_every_benchmark_script_has_its_question_in_the_report():
    from benchmarks import report

    scripts = {f"{p.parent.name}/{p.stem}" for p in (REPO / "benchmarks").glob("*/*.py")
               if not p.name.startswith("_")}
    assert scripts == {script for _, script, _ in report.QUESTIONS}


def test_result_files_the_docs_link_exist():
    """Every figure the READMEs and docs quote from a results JSON links the file; the file must be there."""
    missing = []
    for doc in [REPO / "README.md", REPO / "benchmarks" / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#]*results/[^)#]*\.json)\)", doc.read_text()):
            if not (doc.parent / target).is_file():
                missing.append(f"{doc.relative_to(REPO)}: {target}")
    assert not missing, missing


def test_report_orders_runs_newest_first(tmp_path, monkeypatch):
    from benchmarks import report

    folder = tmp_path / "compute" / "results"
    folder.mkdir(parents=True)
    for name in ("encode_flops-2026-12-02.json", "encode_flops-2026-12-03.json", "encode_flops-2026-12-02-2.json",
                 "encode_flops_other-2026-12-04.json"):
        (folder / name).write_text("{}")
    monkeypatch.setattr(report, "HERE", tmp_path)
    assert [p.name for p in report.results_of("compute/encode_flops")] == [
        "encode_flops-2026-12-03.json", "encode_flops-2026-12-02-2.json", "encode_flops-2026-12-02.json"]


def test_report_names_a_broken_result_file_and_its_line(tmp_path, monkeypatch):
    from benchmarks import report

    folder = tmp_path / "scale" / "results"
    folder.mkdir(parents=True)
    bad = folder / "memory_scaling-2026-12-03.json"
    bad.write_text('{\n  "printed": [\n')
    monkeypatch.setattr(report, "HERE", tmp_path)
    with pytest.raises(report.ReportError) as e:
        report.render()
    assert str(e.value).startswith(f"{bad}:3: not valid JSON")
    bad.write_text('{"printed": [], "figures": {"sizes": [{"documents": 1}]}}')
    with pytest.raises(report.ReportError) as e:
        report.render()
    assert str(e.value).startswith(f"{bad}: not a result this report knows")
    assert report.main(["--check"]) == 2


def test_device_check_says_skipped_without_cuda():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the check runs for real")
    assert run_script(module="benchmarks.gpu.device_check").startswith("skipped: no CUDA device")


def test_device_check_estimates_every_part_at_4_h100_minutes_or_less():
    """The GPU time lent is 15 minutes in all, machine start included, 10 a command: each part of the check
    fits 4 minutes by the script's own estimate (made from the work the part does), so a part can be rerun."""
    printed = run_script("--estimate", module="benchmarks.gpu.device_check")
    minutes = {m.group(1): float(m.group(2)) for m in re.finditer(r"estimate (\d_\w+): ([\d.]+) H100 min", printed)}
    assert list(minutes) == ["1_train", "2_run", "3_encode", "4_rerank_sparse", "5_oom"], printed
    assert max(minutes.values()) <= 4.0, printed


@pytest.mark.realdata
@pytest.mark.slow
def test_device_check_smoke_mode_runs_every_part_on_the_cpu(tmp_path):
    """Every part of the prepared GPU check runs on the CPU with tiny models, each writing its own JSON as it
    ends: (1) training steps in fp32 (bf16, fp16 where the CPU has them) match the CPU's fp32 loss, torchrun
    with one process evaluates and resumes to the same losses, two gloo ranks equal the whole batch; (2) two
    `harness run`s give identical metrics; (3) the harness encodes beir's vectors; (4) cross-encoder and
    SPLADE scores agree; (5) a forced out-of-memory backs off to the same vectors."""
    if not (SCIFACT / "corpus.jsonl").exists() or not MINILM.exists():
        pytest.skip("needs ../shared SciFact and the MiniLM tokenizer")
    out = tmp_path / "device_check.json"
    printed = run_script("--smoke", "--json", str(out), "--out", str(tmp_path / "parts"),
                         module="benchmarks.gpu.device_check")
    figures = json.loads(out.read_text())
    parts = figures["parts"]
    names = ["1_train", "2_run", "3_encode", "4_rerank_sparse", "5_oom"]
    assert list(parts) == names, printed
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == [f"device_check-{n}.json" for n in names]
    assert not [p for p in parts.values() if "error" in p], printed
    train = parts["1_train"]
    assert train["ok"], json.dumps(train)[:3000]
    for objective in ("relevance-aware", "moco", "inbatch"):
        assert {"fp32_every_step", "bf16_step_2"} <= set(train["precision"][objective]["checks"]), objective
        assert train["two_ranks_gloo"][objective]["ok"], objective
    assert train["torchrun_one_process"]["evaluations"] >= 1
    assert parts["2_run"]["device_equals_cpu"] and parts["2_run"]["runs"]["cpu fp32"]["metrics"]["ndcg@10"] > 0
    assert parts["3_encode"]["targets"]["harness_fp32_vs_beir_fp32"]["equal_vectors"]
    assert parts["4_rerank_sparse"]["ok"] and parts["5_oom"]["ok"] and parts["5_oom"]["backoffs"]
