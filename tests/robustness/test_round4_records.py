"""Exact or refuse, round 4 (issue 35), class 10: two records for one row (same retriever, settings, dataset
and split; e.g. one left by an older version under another file name, with another number) are named, both
files, by every command that folds records, and neither number is used until one is removed; two imported
files giving one row two values likewise."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from tests.stats.conftest import fake_record, scores, write_records


@pytest.fixture
def two_for_one(tmp_path):
    """'a' and 'b' on scifact; a second record of 'a' under another file name, another computation."""
    out = write_records(tmp_path / "results", [fake_record("a", "beir/scifact", {"ndcg@10": scores(1)}),
                                               fake_record("b", "beir/scifact", {"ndcg@10": scores(2)})])
    first = out / "beir" / "scifact" / "test" / "a.json"
    old = json.loads(first.read_text())
    old["fingerprint"], old["harness_version"] = "older", "0.1"
    old["per_query"]["ndcg@10"] = scores(3)
    old["metrics"]["ndcg@10"] = sum(old["per_query"]["ndcg@10"].values()) / 60
    (first.parent / "a-from-an-older-version.json").write_text(json.dumps(old))
    return out


def _named(err: str, first: str = "a.json") -> None:
    line = next((ln for ln in err.splitlines() if "a-from-an-older-version.json" in ln), None)
    assert line is not None and first in line, err
    assert "delete" in line


def test_leaderboard_with_a_baseline_names_both_and_uses_neither(two_for_one, capsys):
    assert main(["leaderboard", "--output-dir", str(two_for_one), "--baseline", "b"]) == 0
    out = capsys.readouterr()
    _named(out.err)
    assert not any(ln.startswith("a ") for ln in out.out.splitlines())


def test_diff_refuses_the_row_naming_both(two_for_one, capsys):
    assert main(["diff", "-r", "a", "-r", "b", "-d", "beir/scifact", "--output-dir", str(two_for_one)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    _named(err)


def test_export_names_both(two_for_one, tmp_path, capsys):
    assert main(["export", str(tmp_path / "pq.csv"), "--format", "per-query", "--output-dir",
                 str(two_for_one)]) == 0
    _named(capsys.readouterr().err)
    assert ",a," not in (tmp_path / "pq.csv").read_text()


def test_report_names_both(two_for_one, tmp_path, capsys):
    assert main(["report", "--output-dir", str(two_for_one), "-o", str(tmp_path / "r.html")]) == 0
    _named(capsys.readouterr().err)


def test_compare_and_check_by_label_refuse_the_row(tmp_path, capsys):
    bf16 = {"precision": "bf16"}
    out = write_records(tmp_path / "results", [fake_record("a", "beir/scifact", {"ndcg@10": scores(1)},
                                                           settings=bf16)])
    (first,) = (out / "beir" / "scifact" / "test").glob("*.json")
    old = json.loads(first.read_text())
    old["fingerprint"] = "older"
    (first.parent / "a-from-an-older-version.json").write_text(json.dumps(old))
    (tmp_path / "b.csv").write_text("retriever,dataset,split,metric,expected,tolerance\n"
                                    "a [precision=bf16],beir/scifact,test,ndcg@10,0.5,0.01\n")
    assert main(["compare", "-r", "a [precision=bf16]", "-r", "bm25", "-d", "beir/scifact", "--output-dir",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    _named(err, first.name)
    assert main(["check", str(tmp_path / "b.csv"), "--output-dir", str(out)]) == 1
    _named(capsys.readouterr().out, first.name)


def test_two_imported_files_for_one_row_are_named_not_chosen(tmp_path, capsys):
    out = tmp_path / "r"
    for n, value in enumerate((0.5, 0.6)):
        (tmp_path / f"te{n}.txt").write_text(f"ndcg_cut_10\tall\t{value}\n")
        assert main(["import", str(tmp_path / f"te{n}.txt"), "--format", "trec_eval", "--system", "s",
                     "--dataset", "beir/scifact", "--output-dir", str(out)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(out)]) == 0
    got = capsys.readouterr()
    line = next((ln for ln in got.err.splitlines() if "te0.txt" in ln and "te1.txt" in ln), None)
    assert line is not None, got.err
    assert "0.5000" not in got.out and "0.6000" not in got.out
