"""harness.experiment: systems x measures per dataset, with compare's paired tests and Holm correction."""

from __future__ import annotations

import random

import pandas as pd
import pytest

import harness
from harness.errors import HarnessError
from harness.results.power import paired_power
from harness.results.stats import holm, paired_pvalue, paired_scores
from harness.settings import Execution
from tests.conftest import make_tiny_beir

EXECUTION = Execution(device="cpu", progress=False)
MEASURES = ["nDCG@10", "recall@5"]
CANONICAL = {"nDCG@10": "ndcg@10", "recall@5": "recall@5"}


def _run_file(path, *, seed: int, n_queries: int = 8, n_docs: int = 40):
    """A run of random scores over every query and document of the tiny BEIR folders."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for q in range(n_queries):
            scores = sorted(((rng.random(), f"d{d}") for d in range(n_docs)), reverse=True)
            for rank, (score, doc) in enumerate(scores, 1):
                f.write(f"q{q} Q0 {doc} {rank} {score:.6f} seed{seed}\n")
    return path


@pytest.fixture()
def setup(tmp_path, tiny_bert_dir):
    datasets = [str(make_tiny_beir(tmp_path / "tiny-a", seed=0)), str(make_tiny_beir(tmp_path / "tiny-b", seed=1))]
    systems = [f"hf:{tiny_bert_dir}", f"run:{_run_file(tmp_path / 'one.trec', seed=1)}",
               f"run:{_run_file(tmp_path / 'two.trec', seed=2)}"]
    return systems, datasets, tmp_path / "results"


def test_experiment_table_equals_the_records_and_compares_statistics(setup, capsys):
    systems, datasets, out = setup
    df = harness.experiment(systems, datasets, MEASURES, baseline=0, output_dir=out, execution=EXECUTION)
    capsys.readouterr()
    records = harness.run(systems, datasets, MEASURES, out, execution=EXECUTION)  # reused: the same records
    assert capsys.readouterr().err.count("reused record") == 6
    assert df.shape == (6, 2 + 2 + 2 * 5 + 1)
    assert list(df.columns) == ["dataset", "system", "nDCG@10", "recall@5",
                                *(f"{m} {what}" for m in MEASURES
                                  for what in ("delta", "p", "p corrected", "sig", "detectable")), "queries"]
    assert list(zip(df["dataset"], df["system"], strict=True)) == [(r.dataset, r.label) for r in records]
    assert df["queries"].dtype == "Int64" and df["nDCG@10 sig"].dtype == "boolean"
    by_row = {(r.dataset, r.label): r for r in records}
    base = {r.dataset: r for r in records[::3]}
    for m, canonical in CANONICAL.items():
        expected_p = []
        for _, row in df.iterrows():
            rec = by_row[(row["dataset"], row["system"])]
            assert row[m] == rec.metrics[canonical]
            if rec is base[rec.dataset]:  # the baseline's own row: no test
                assert all(pd.isna(row[f"{m} {what}"]) for what in ("delta", "p", "p corrected", "sig", "detectable"))
                assert pd.isna(row["queries"])
                continue
            _, a, b = paired_scores(base[rec.dataset], rec, canonical)
            assert row[f"{m} p"] == paired_pvalue("t", a, b)
            assert row[f"{m} delta"] == pytest.approx(rec.metrics[canonical] - base[rec.dataset].metrics[canonical])
            assert row[f"{m} detectable"] == paired_power([y - x for x, y in zip(a, b, strict=True)]).detectable
            assert row["queries"] == len(a) == 8
            expected_p.append(row[f"{m} p"])
        tested = df[df["system"] != records[0].label]
        assert len(expected_p) == 4  # 2 non-baseline systems x 2 datasets, corrected together
        assert list(tested[f"{m} p corrected"]) == holm(expected_p)
        assert list(tested[f"{m} sig"]) == [q <= 0.05 and d != 0 for q, d in
                                            zip(tested[f"{m} p corrected"], tested[f"{m} delta"], strict=True)]


def test_experiment_baseline_by_name_other_tests_and_no_baseline(setup):
    systems, datasets, out = setup
    plain = harness.experiment(systems, datasets[:1], ["ndcg@10"], output_dir=out, execution=EXECUTION)
    assert list(plain.columns) == ["dataset", "system", "ndcg@10"] and len(plain) == 3
    df = harness.experiment(systems, datasets[:1], ["ndcg@10"], baseline=systems[1], test="wilcoxon",
                            correction=None, output_dir=out, execution=EXECUTION)
    assert df["ndcg@10 p"].isna().tolist() == [False, True, False]
    assert df["ndcg@10 p corrected"].tolist()[::2] == df["ndcg@10 p"].tolist()[::2]  # no correction
    records = harness.run(systems, datasets[:1], ["ndcg@10"], out, execution=EXECUTION)
    _, a, b = paired_scores(records[1], records[2], "ndcg@10")
    assert df["ndcg@10 p"][2] == paired_pvalue("wilcoxon", a, b)
    by_label = harness.experiment(systems, datasets[:1], ["ndcg@10"], baseline=records[1].label, test="wilcoxon",
                                  correction=None, output_dir=out, execution=EXECUTION)
    pd.testing.assert_frame_equal(by_label, df)
    by_index = harness.experiment(systems, datasets[:1], ["ndcg@10"], baseline=-2, test="wilcoxon",
                                  correction=None, output_dir=out, execution=EXECUTION)
    pd.testing.assert_frame_equal(by_index, df)


def test_experiment_bad_names_are_one_line(setup):
    systems, datasets, out = setup
    for s, d in ((["nosuch-system"], datasets), (systems, ["nosuch/data"])):  # the very line harness.run gives
        with pytest.raises(HarnessError) as ran:
            harness.run(s, d, ["ndcg@10"], out, execution=EXECUTION)
        with pytest.raises(HarnessError) as e:
            harness.experiment(s, d, ["ndcg@10"], baseline=0, output_dir=out, execution=EXECUTION)
        assert str(e.value) == str(ran.value) and "\n" not in str(e.value)
    cases = [(systems, {"baseline": 3}, "baseline 3 is not an index"),
             (systems, {"test": "z"}, "unknown test 'z'"),
             (systems, {"correction": "bonferroni"}, "unknown correction"),
             (systems[1:], {"baseline": "nosuch"}, "baseline 'nosuch' is none of the systems")]
    for s, options, message in cases:
        with pytest.raises(HarnessError, match=message) as e:
            harness.experiment(s, datasets[:1], ["ndcg@10"], output_dir=out, execution=EXECUTION, **options)
        assert "\n" not in str(e.value)


def test_experiment_is_exported_lazily():
    assert "experiment" in harness.__all__ and harness.experiment is harness.api.experiment
