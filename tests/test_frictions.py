"""What a new user hit first (issue 27): a pipe closed by `head`, `nan` in a text leaderboard, an unknown
`report --pair` name, a diff of two different kinds of retriever, the width of `harness list retrievers`,
the statistics of compare and report, and the trainer saying what its first step means and how long it takes."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pandas as pd
import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.results.diff import Difference, causes
from harness.results.leaderboard import render


def test_a_closed_pipe_is_quiet(tmp_path):
    qrels, run = tmp_path / "q.tsv", tmp_path / "r.trec"
    qrels.write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n" for i in range(3000)))
    run.write_text("".join(f"q{i} Q0 d{i} 1 1.0 t\n" for i in range(3000)))
    proc = subprocess.run(f"{sys.executable} -m harness evaluate --qrels {qrels} --run {run} --per-query | head -1",
                          shell=True, capture_output=True, text=True)
    assert proc.stdout.strip() and "Broken pipe" not in proc.stderr and "Traceback" not in proc.stderr


def test_the_text_leaderboard_shows_no_nan():
    pivot = pd.DataFrame({"a": [0.5, math.nan], "b": [0.25, 0.75]}, index=["x", "y"])
    pivot.index.name = "retriever"
    text = render(pivot, "ndcg@10", ["a", "b"], [])
    assert "nan" not in text and "—" in text


def test_report_pair_with_an_unknown_name_is_refused():
    from harness.results.records import ResultRecord
    from harness.results.report import pair_section

    records = [ResultRecord(retriever=n, dataset="d", split="test", metrics={"ndcg@10": 0.5},
                            per_query={"ndcg@10": {"q": 0.5}}, fingerprint=n, run_file="r.trec") for n in ("a", "b")]
    with pytest.raises(HarnessError, match="--pair 'c': no record of that name.*names: a, b"):
        pair_section(records, ["a", "c"], None)


def test_diff_of_bm25_and_a_dense_model_names_the_kinds_not_a_precision():
    found = causes([Difference("retriever.kind", "bm25", "dense"),
                    Difference("retriever.compute.precision", None, "fp32")], "A", "B")
    assert found == ["A is a bm25 retriever, B a dense one: they compute different things"]
    assert causes([Difference("retriever.compute.precision", None, "fp32")], "A", "B") == []


def test_list_retrievers_fits_140_columns(capsys):
    assert main(["list", "retrievers"]) == 0
    assert max(len(line) for line in capsys.readouterr().out.splitlines()) <= 140


def test_run_help_names_every_kind_of_retriever(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert all(s in out for s in ("hf:", "sparse:", "fuse:rrf", "rerank:"))


def test_compare_and_report_use_one_statistics_setting_and_say_it():
    from harness.cli.compare import render as render_compare
    from harness.results.records import ResultRecord
    from harness.results.stats import compare_records
    from harness.settings import RESAMPLES, SEED

    per_query = {f"q{i}": (i % 7) / 7 for i in range(40)}
    a = ResultRecord(retriever="a", dataset="d", split="test", metrics={"ndcg@10": 0.5},
                     per_query={"ndcg@10": per_query}, fingerprint="a", run_file="a.trec")
    b = ResultRecord(retriever="b", dataset="d", split="test", metrics={"ndcg@10": 0.5},
                     per_query={"ndcg@10": {q: v * 0.9 for q, v in per_query.items()}}, fingerprint="b",
                     run_file="b.trec")
    c = compare_records(a, b, "ndcg@10")
    again = compare_records(a, b, "ndcg@10", resamples=RESAMPLES, seed=SEED)
    assert (c.ci_low, c.ci_high) == (again.ci_low, again.ci_high)
    assert f"{RESAMPLES:,} resamples, seed {SEED}" in render_compare([c], "t", 0.05, 0.95)


def test_the_trainer_says_what_step_one_means_and_how_long_the_rest_takes(tmp_path, capsys):
    from tests.train.conftest import make_tiny_bert, write_tiny_corpus

    init, corpus = make_tiny_bert(tmp_path / "init"), write_tiny_corpus(tmp_path / "corpus")
    assert main(["train", "--init", str(init), "--corpus", str(corpus), "--output", str(tmp_path / "o"),
                 "--objective", "moco", "--steps", "12", "--warmup-steps", "1", "--batch-size", "3",
                 "--chunk-length", "24", "--queue-size", "12", "--save-every", "12", "--num-workers", "0",
                 "--no-progress", "--no-plot", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "step 1 has no negatives yet" in err and "for the 2 steps left" in err
    rows = [json.loads(x) for x in (tmp_path / "o" / "train_log.jsonl").read_text().splitlines()]
    assert rows[0]["negatives"] == 0 and rows[1]["negatives"] > 0


def test_report_bar_labels_have_room_on_the_left():
    import re

    from harness.results.report import _charts

    names = ["bm25", "all-MiniLM-L6-v2#c006c948 [precision=bf16x3]", "fuse:rrf(bm25,all-MiniLM-L6-v2#c006c948;k=60)"]
    pivot = pd.DataFrame({"beir/scifact": [0.6789, 0.6451, 0.7001]}, index=names)
    svg = _charts(pivot, "ndcg@10")
    for x, label in re.findall(r'<text x="(\d+)" y="\d+" text-anchor="end">([^<]*)</text>', svg):
        assert 7 * len(label) <= int(x), (label, x)  # about 7 px a character fit left of the anchor
        assert len(label) <= 36


@pytest.mark.parametrize("argv, says", [
    (["compare", "-r", "a", "-r", "b", "-d", "x", "--alpha", "2"], "--alpha: expected a number between 0 and 1"),
    (["compare", "-r", "a", "-r", "b", "-d", "x", "--alpha", "nan"], "--alpha: expected a number between 0 and 1"),
    (["leaderboard", "--baseline", "bm25", "--alpha", "0"], "--alpha: expected a number between 0 and 1"),
    (["check", "--paired", "--alpha", "1"], "--alpha: expected a number between 0 and 1"),
    (["compare", "-r", "a", "-r", "b", "-d", "x", "--resamples", "0"], "--resamples: expected an integer"),
    (["compare", "-r", "a", "-r", "b", "-d", "x", "--seed", "-1"], "--seed: expected an integer of at least 0"),
    (["compare", "-r", "a", "-r", "b", "-d", "x", "--confidence", "1.5"], "--confidence: expected a number"),
    (["leaderboard", "--nope"], "harness leaderboard: error: unrecognized arguments: --nope"),
])
def test_a_usage_error_is_one_line_naming_the_command(argv, says, capsys):
    """A statistic's level outside (0, 1) or a resample count below 1 gave a verdict or a traceback; argparse's
    errors printed the whole usage block, and an unknown option named the top-level command."""
    from harness.cli import main

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and says in err and "--help` lists the options" in err


def test_report_refuses_a_baseline_no_record_has(tmp_path, capsys):
    """report --baseline nope exited 0 with a page (leaderboard --baseline nope exits 2); diff --top -1 listed
    all but the last query."""
    from harness.cli import main
    from tests.conftest import make_tiny_beir

    data = make_tiny_beir(tmp_path / "tiny", n_docs=10, n_queries=2)
    assert main(["run", "-r", "bm25", "-d", str(data), "--output-dir", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert main(["report", "--output-dir", str(tmp_path / "out"), "--baseline", "nope"]) == 2
    assert "--baseline 'nope' is not a retriever" in capsys.readouterr().err
    assert main(["report", "--output-dir", str(tmp_path / "out"), "--baseline", "bm25"]) == 0
    with pytest.raises(SystemExit):
        main(["diff", "a.json", "b.json", "--top", "-1"])


def test_a_huge_resample_count_is_refused_not_run_out_of_memory(capsys):
    from harness.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "-r", "a", "-r", "b", "-d", "x", "--resamples", "99999999999999"])
    assert "at most 10,000,000" in capsys.readouterr().err
