"""Exact or refuse, round 4 (issue 35), class 3: imported numbers are taken only under their measure's rules:
in the measure's range, numbers (not text standing for one), one value per (system, dataset, split, measure),
and trec_eval output at the relevance level it was made with (``--rel``, recorded in the measure's name)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main
from harness.metrics import parse_measure


def _import(tmp_path, fmt: str, name: str, content: str, *extra: str) -> list[str]:
    path = tmp_path / name
    path.write_text(content)
    args = ["import", str(path), "--format", fmt, "--output-dir", str(tmp_path / "r"), *extra]
    if fmt != "mteb":
        args += ["--system", "s", "--dataset", "beir/scifact"]
    return args


def _refused(capsys, tmp_path, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    imported = tmp_path / "r" / "imported"
    assert not imported.exists() or not any(imported.iterdir())
    return err


@pytest.mark.parametrize("fmt,name,content,line", [
    ("ranx", "rx.json", json.dumps({"ndcg@10": 4.321}), None),
    ("ranx", "rx.json", json.dumps({"recall@100": -0.5}), None),
    ("ranx", "rx.json", json.dumps({"map@100": 1.0000001}), None),
    ("mteb", "SciFact.json", json.dumps({"task_name": "SciFact", "scores": {"test": [{"ndcg_at_10": 4.321}]}}), None),
    ("trec_eval", "te.txt", "map\tall\t0.3\nndcg_cut_10\tall\t-0.5\n", 2),
    ("trec_eval", "te.txt", "P_10\tall\t1.5\n", 1),
])
def test_a_score_outside_its_measures_range_is_refused(tmp_path, capsys, fmt, name, content, line):
    assert main(_import(tmp_path, fmt, name, content)) == 2
    where = f"{tmp_path / name}:{line}:" if line else str(tmp_path / name)
    _refused(capsys, tmp_path, where, "[0, 1]")


@pytest.mark.parametrize("fmt,name,content", [
    ("ranx", "rx.json", json.dumps({"ndcg@10": "0.5"})),
    ("ranx", "rx.json", json.dumps({"m": {"scores": {"ndcg@10": "0.5"}}})),
    ("mteb", "SciFact.json", json.dumps({"task_name": "SciFact", "scores": {"test": [{"ndcg_at_10": "0.5"}]}})),
])
def test_a_score_given_as_text_is_refused(tmp_path, capsys, fmt, name, content):
    assert main(_import(tmp_path, fmt, name, content)) == 2
    _refused(capsys, tmp_path, str(tmp_path / name), "'0.5'", "not a number")


def test_conflicting_duplicates_are_refused_with_both_lines(tmp_path, capsys):
    content = "ndcg_cut_10\tall\t0.5\nmap\tall\t0.3\nndcg_cut_10\tall\t0.6\n"
    assert main(_import(tmp_path, "trec_eval", "te.txt", content)) == 2
    _refused(capsys, tmp_path, f"{tmp_path / 'te.txt'}:3:", "line 1", "0.5", "0.6")


def test_conflicting_duplicates_in_an_mteb_file_are_refused(tmp_path, capsys):
    content = json.dumps({"task_name": "SciFact", "scores": {"test": [
        {"ndcg_at_10": 0.5, "hf_subset": "default"}, {"ndcg_at_10": 0.7, "hf_subset": "other"}]}})
    assert main(_import(tmp_path, "mteb", "SciFact.json", content)) == 2
    _refused(capsys, tmp_path, str(tmp_path / "SciFact.json"), "ndcg@10", "0.5", "0.7")


def test_an_identical_duplicate_is_one_row(tmp_path, capsys):
    content = "ndcg_cut_10\tall\t0.5\nndcg_cut_10\tall\t0.5\n"
    assert main(_import(tmp_path, "trec_eval", "te.txt", content)) == 0
    (saved,) = (tmp_path / "r" / "imported").glob("*.json")
    assert len(json.loads(saved.read_text())["rows"]) == 1


def test_trec_eval_output_at_another_relevance_level_says_so_in_the_name(tmp_path, capsys):
    content = "map\tall\t0.3\nrecall_1000\tall\t0.8\nndcg_cut_10\tall\t0.6\nP_10\tall\t0.4\n"
    assert main(_import(tmp_path, "trec_eval", "te.txt", content, "--rel", "2")) == 0
    (saved,) = (tmp_path / "r" / "imported").glob("*.json")
    metrics = {r["metric"]: r["value"] for r in json.loads(saved.read_text())["rows"]}
    assert metrics == {"map(rel=2)": 0.3, "recall(rel=2)@1000": 0.8, "ndcg@10": 0.6, "p(rel=2)@10": 0.4}
    assert parse_measure("AP(rel=2)") == parse_measure("map(rel=2)")
    board = pd.read_csv(tmp_path / "r" / "leaderboard.csv")
    assert board.loc[0, "map(rel=2)"] == 0.3 and "map" not in board.columns
    capsys.readouterr()
    assert main(_import(tmp_path, "trec_eval", "te0.txt", content, "--rel", "0")) == 2
    assert "at least 1" in capsys.readouterr().err
    # an option that does nothing for the format is refused (ranx and MTEB print no relevance level to set)
    assert main(_import(tmp_path, "ranx", "rx.json", json.dumps({"ndcg@10": 0.5}), "--rel", "2")) == 2
    assert "--rel" in capsys.readouterr().err


def test_an_imported_file_edited_out_of_range_is_a_problem_not_a_row(tmp_path, capsys):
    assert main(_import(tmp_path, "trec_eval", "te.txt", "ndcg_cut_10\tall\t0.5\n")) == 0
    (saved,) = (tmp_path / "r" / "imported").glob("*.json")
    obj = json.loads(saved.read_text())
    obj["rows"][0]["value"] = 4.321
    saved.write_text(json.dumps(obj))
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(tmp_path / "r")]) in (0, 2)
    out = capsys.readouterr()
    assert "4.321" not in out.out and str(saved) in out.err
