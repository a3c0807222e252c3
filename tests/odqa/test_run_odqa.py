"""The runner on an ODQA folder: same run files, records, reuse and leaderboard as BEIR."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.runner import run
from harness.settings import Execution

CPU = Execution(device="cpu", progress=False)


def test_dense_run_on_odqa_folder(tiny_odqa, tiny_bert_dir, tmp_path):
    out = tmp_path / "results"
    (rec,) = run([str(tiny_bert_dir)], [str(tiny_odqa)], output_dir=out, execution=CPU)
    assert list(rec.metrics) == ["accuracy@1", "accuracy@5", "accuracy@20", "accuracy@100"]
    assert rec.num_queries == 5 and rec.protocol["match"] == "string"
    assert set(rec.first_hit_rank) == {"0", "1", "2", "3", "4"}
    assert rec.first_hit_rank["4"] is None                      # no passage holds its answer
    # 5 passages retrieved for every question: accuracy@5 = share of answerable questions = 4/5
    assert rec.metrics["accuracy@5"] == pytest.approx(0.8)
    run_file = out / rec.dataset / "test" / rec.run_file
    assert len(run_file.read_text().splitlines()) == 25
    board = (out / "leaderboard.csv").read_text().splitlines()
    assert board[0].endswith("accuracy@1,accuracy@5,accuracy@20,accuracy@100")
    # reuse, then new metrics from the saved run file
    (again,) = run([str(tiny_bert_dir)], [str(tiny_odqa)], output_dir=out, execution=CPU)
    assert again.fingerprint == rec.fingerprint and not again.reused_run
    (more,) = run([str(tiny_bert_dir)], [str(tiny_odqa)], ["accuracy@2"], output_dir=out, execution=CPU)
    # the record keeps every metric it had and adds the new one, from the run file alone
    assert more.reused_run and list(more.metrics) == [*rec.metrics, "accuracy@2"]


def test_beir_metric_on_odqa_is_refused(tiny_odqa, tiny_bert_dir, tmp_path, capsys):
    code = main(["run", "-r", str(tiny_bert_dir), "-d", str(tiny_odqa), "--metric", "ndcg@10",
                 "--output-dir", str(tmp_path / "r"), "--device", "cpu"])
    assert code == 2 and "accuracy@k" in capsys.readouterr().err


@pytest.mark.java
@pytest.mark.slow
def test_bm25_on_odqa_folder_via_json_collection(tiny_odqa, tmp_path, capsys):
    out = tmp_path / "results"
    code = main(["run", "-r", "bm25", "-r", "bm25-multifield", "-d", str(tiny_odqa), "--output-dir", str(out)])
    assert code == 0
    shown = capsys.readouterr().out
    assert "accuracy@20" in shown
    recs = [json.loads(p.read_text()) for p in out.rglob("bm25*.json")]
    assert len(recs) == 2
    for rec in recs:
        assert rec["first_hit_rank"]["0"] == 1        # "who won super bowl 50" -> passage 1
        assert "Collection" in rec["index"]["path"]


def test_leaderboard_shows_accuracy(tiny_bert_dir, tiny_odqa, tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "r"
    run([str(tiny_bert_dir)], [str(tiny_odqa)], output_dir=out, execution=CPU, log=lambda m: None)
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(out), "--metric", "top@5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("accuracy@5") and "local/tiny-odqa " in text
