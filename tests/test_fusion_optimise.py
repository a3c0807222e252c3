"""Fusion weights chosen on another split (``fuse:wsum(...;optimise=dev)``), against ranx's optimize_fusion: the
same grid, the same choice, the same per-tuple scores; end to end on a tiny BEIR folder with a dev split."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.retrievers import fusion
from harness.retrievers.registry import resolve_retriever
from harness.runner import run
from harness.trec import read_qrels, read_run
from tests.fusion_reference import wsum_ref
from tests.test_compose import models  # noqa: F401  (the fixture)


@pytest.mark.parametrize("runs", [2, 3])
def test_the_weight_grid_is_ranxs_in_its_order(runs):
    pytest.importorskip("ranx")
    from ranx.fusion_optimization.optimize_weights import get_possible_weights, get_trial_configs

    theirs = get_trial_configs(get_possible_weights(0.1), runs)
    ours = fusion.weight_grid(runs, 0.1)
    assert [t for t in ours if t in theirs] == [tuple(t) for t in theirs]  # their tuples, in their order
    # ranx's float sum drops a few tuples of three: exactly those whose float sum is not 1.0
    assert {t for t in ours if t not in theirs} == {t for t in ours if sum(t) != 1.0}
    assert (len(ours), len(theirs)) == ((11, 11) if runs == 2 else (66, len(theirs)))
    assert fusion.weight_grid(2, 0.25) == [(0.0, 1.0), (0.25, 0.75), (0.5, 0.5), (0.75, 0.25), (1.0, 0.0)]
    with pytest.raises(HarnessError, match="whole number of steps"):
        fusion.weight_grid(2, 0.3)
    with pytest.raises(HarnessError, match="1,000,000,001 weight tuples"):  # refused before anything is tried
        resolve_retriever("fuse:wsum(bm25,bm25-multifield;optimise=dev;step=1e-9)")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("norm", ["min-max", "none"])
def test_optimised_weights_equal_ranx_optimize_fusion(seed, norm):
    pytest.importorskip("ranx")
    from pathlib import Path

    from ranx import Qrels, Run, optimize_fusion

    from harness.data.judgements import GradedJudgements

    # each query's documents are in both runs, with distinct scores: no fused ties, where ranx's measures break
    # ties their own way and the harness's as trec_eval (score, then docid descending)
    rng = np.random.default_rng(seed)
    pools = {f"q{q}": [f"d{i}" for i in rng.choice(30, size=int(rng.integers(5, 25)), replace=False)]
             for q in range(12)}
    runs = [{q: dict(zip(docs, rng.random(len(docs)) * 10, strict=True)) for q, docs in pools.items()}
            for _ in range(2)]
    qrels = {f"q{q}": {f"d{(q * 7 + i) % 30}": 1 + (i % 2) for i in range(3)} for q in range(12)}
    ours = fusion.optimise_wsum(runs, GradedJudgements(Path('qrels.tsv'), given=qrels), "ndcg@10", norm, 0.1, 1000)
    best, report = optimize_fusion(Qrels(qrels), [Run(r) for r in runs], norm=None if norm == "none" else norm,
                                   method="wsum", metric="ndcg@10", return_optimization_report=True,
                                   show_progress=False)
    assert list(ours.weights) == list(best["weights"])
    assert len(ours.trials) == len(report.results) == 11  # two runs: the same tuples in the same order
    for (weights, score), theirs in zip(ours.trials, report.results, strict=True):
        assert score == pytest.approx(theirs, abs=1e-12), weights


def test_optimise_names_are_canonical_and_bad_ones_are_one_line():
    spec = resolve_retriever("fuse:wsum(bm25,bm25-multifield;optimise=dev)")
    assert spec.name == "fuse:wsum(bm25,bm25-multifield;norm=none;optimise=dev;metric=ndcg@10;step=0.1)"
    assert resolve_retriever(spec.name).name == spec.name
    assert "optimise" not in resolve_retriever("fuse:wsum(bm25,bm25-multifield)").name  # old names unchanged
    for name, said in [("fuse:wsum(bm25,bm25-multifield;weights=1:2;optimise=dev)", "both given"),
                       ("fuse:wsum(bm25,bm25-multifield;metric=map)", "add optimise=SPLIT"),
                       ("fuse:wsum(bm25,bm25-multifield;optimise=dev;step=0.3)", "whole number of steps"),
                       ("fuse:wsum(bm25,bm25-multifield;optimise=../x)", "a split is a name"),
                       ("fuse:wsum(bm25,bm25-multifield;optimise=dev;step=0)", "step"),
                       ("fuse:wsum(bm25,bm25-multifield;optimise=dev;optimise=train)", "given twice"),
                       ("fuse:rrf(bm25,bm25-multifield;k=10;k=20)", "given twice")]:
        with pytest.raises(HarnessError, match=said):
            resolve_retriever(name)


def _with_dev(folder):
    """The tiny folder's 16 queries split: q0-q7 judged in test, q8-q15 in dev."""
    lines = (folder / "qrels" / "test.tsv").read_text().splitlines()
    head, rows = lines[0], lines[1:]
    for split, keep in (("test", lambda n: n < 8), ("dev", lambda n: n >= 8)):
        chosen = [r for r in rows if keep(int(r.split()[0][1:]))]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join([head, *chosen]) + "\n")
    return folder


def test_weights_optimised_on_dev_end_to_end(models, tmp_path, monkeypatch):  # noqa: F811
    pytest.importorskip("ranx")
    from ranx import Qrels, Run, optimize_fusion

    from tests.conftest import make_tiny_beir

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    a, b, _ = models
    folder = _with_dev(make_tiny_beir(tmp_path / "tiny", n_queries=16, seed=3))
    out = tmp_path / "r"
    name = f"fuse:wsum(hf:{a},hf:{b};norm=min-max;optimise=dev)"
    lines: list[str] = []
    (fused,) = run([name], [str(folder)], ["ndcg@10"], out, log=lines.append)
    chosen = fused.retriever_provenance["optimised"]
    assert chosen["split"] == "dev" and chosen["metric"] == "ndcg@10" and len(chosen["trials"]) == 11
    # the stages ran on dev too, with records of their own; the choice is ranx's on those runs
    dev_runs = [read_run(out / fused.dataset / "dev" / s["run_file"]) for s in chosen["stages"]]
    assert all(set(r) == {f"q{i}" for i in range(8, 16)} for r in dev_runs)
    best = optimize_fusion(Qrels(read_qrels(folder / "qrels" / "dev.tsv")), [Run(r) for r in dev_runs],
                           norm="min-max", method="wsum", metric="ndcg@10", show_progress=False)
    assert chosen["weights"] == list(best["weights"])
    # the test run is wsum with those weights over the test stage runs as written
    test_runs = [read_run(out / fused.dataset / "test" / s["run_file"]) for s in fused.retriever_provenance["stages"]]
    written = read_run(out / fused.dataset / "test" / fused.run_file)
    assert set(written) == {f"q{i}" for i in range(8)}
    for q, docs in written.items():
        assert docs == wsum_ref([r[q] for r in test_runs], chosen["weights"], "min-max", 1000)
    # reused as it is; another dev judgement is another fingerprint, computed again
    (again,) = run([name], [str(folder)], ["ndcg@10"], out, log=lines.append)
    assert again.fingerprint == fused.fingerprint
    dev = folder / "qrels" / "dev.tsv"
    dev.write_text(dev.read_text().replace("\t1\n", "\t2\n", 1) + "q8\td0\t1\n")
    (changed,) = run([name], [str(folder)], ["ndcg@10"], out, log=lines.append)
    assert changed.fingerprint != fused.fingerprint


def test_optimising_on_the_evaluated_split_or_a_missing_one_is_refused(models, tmp_path, monkeypatch):  # noqa: F811
    from tests.conftest import make_tiny_beir

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    a, b, _ = models
    folder = _with_dev(make_tiny_beir(tmp_path / "tiny", n_queries=16, seed=3))
    with pytest.raises(HarnessError, match="very queries they are evaluated on"):
        run([f"fuse:wsum(hf:{a},hf:{b};optimise=test)"], [str(folder)], ["ndcg@10"], tmp_path / "r",
            log=lambda m: None)
    shutil.rmtree(tmp_path / "r", ignore_errors=True)
    with pytest.raises(HarnessError, match="train"):
        run([f"fuse:wsum(hf:{a},hf:{b};optimise=train)"], [str(folder)], ["ndcg@10"], tmp_path / "r",
            log=lambda m: None)


def test_a_bad_tuning_measure_or_split_is_refused_before_any_stage_runs(models, tmp_path, monkeypatch):  # noqa: F811
    from tests.conftest import make_tiny_beir

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    a, b, _ = models
    folder = _with_dev(make_tiny_beir(tmp_path / "tiny", n_queries=16, seed=3))
    for name, said in [(f"fuse:wsum(hf:{a},hf:{b};optimise=dev;metric=ndcg@ten)", "ndcg@ten"),
                       (f"fuse:rrf(bm25,fuse:wsum(hf:{a},hf:{b};optimise=nosuch))", "nosuch")]:
        with pytest.raises(HarnessError, match=said):
            run([name], [str(folder)], ["ndcg@10"], tmp_path / "r", log=lambda m: None)
        assert not list((tmp_path / "r").rglob("*.trec"))  # nothing ran
