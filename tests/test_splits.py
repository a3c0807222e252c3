"""--split (issue 29): which topics and judgements a run evaluates; recorded and part of the record's path,
so dev and test never overwrite each other; a folder with one judged split needs no flag; check and reproduce
pick baseline rows by split and run each on its own."""

from __future__ import annotations

import shutil

import pytest

from harness.cli import main
from harness.metrics import evaluate, mean
from harness.results.baselines import Expected
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_qrels, read_run

CPU = Execution(device="cpu", progress=False)


def _with_dev(folder):
    """The tiny folder's test judgements, and dev judgements of its first four queries only."""
    lines = (folder / "qrels" / "test.tsv").read_text().splitlines()
    keep = {f"q{i}" for i in range(4)}
    (folder / "qrels" / "dev.tsv").write_text("\n".join([lines[0]] + [x for x in lines[1:]
                                                                       if x.split("\t")[0] in keep]) + "\n")
    return folder


def test_dev_and_test_are_two_records_that_never_overwrite(tiny_beir, tiny_bert_dir, tmp_path):
    folder, out = _with_dev(tiny_beir), tmp_path / "results"
    model = f"hf:{tiny_bert_dir}"
    (test,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    (dev,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None, split="dev")
    assert (test.split, dev.split) == ("test", "dev") and (test.num_queries, dev.num_queries) == (8, 4)
    assert (out / test.dataset / "test" / test.run_file).is_file()
    assert (out / dev.dataset / "dev" / dev.run_file).is_file()
    assert dev.fingerprint != test.fingerprint
    per_query = evaluate(read_qrels(folder / "qrels" / "dev.tsv"), read_run(out / dev.dataset / "dev" / dev.run_file),
                         ["ndcg@10"])
    assert dev.metrics["ndcg@10"] == pytest.approx(mean(per_query["ndcg@10"]), abs=1e-12)
    board = (out / "leaderboard.csv").read_text().splitlines()
    assert sorted(line.split(",")[3] for line in board[1:]) == ["dev", "test"]
    # a second test run reuses its record; the dev record is untouched
    again = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)[0]
    assert again.fingerprint == test.fingerprint and again.metrics == test.metrics


def test_a_folder_with_only_dev_judgements_runs_on_dev(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    folder = _with_dev(tiny_beir)
    (folder / "qrels" / "test.tsv").unlink()
    out = tmp_path / "results"
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(folder), "--device", "cpu", "--output-dir", str(out),
                 "--split", "dev"]) == 0
    assert list((out / "local" / folder.name).glob("dev/*.json"))
    (rec,) = run([f"hf:{tiny_bert_dir}"], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    assert rec.split == "dev"  # the folder's one judged split, as the record says
    # two judged splits and no test: the flag is needed, and the message lists them
    shutil.copy(folder / "qrels" / "dev.tsv", folder / "qrels" / "train.tsv")
    capsys.readouterr()
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(folder), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no qrels/test.tsv" in err and "dev, train: pass --split dev" in err
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(folder), "--output-dir", str(out), "--split",
                 "validation"]) == 2
    assert "dev, train" in capsys.readouterr().err


def test_check_runs_each_baseline_row_on_its_own_split(tiny_beir, tiny_bert_dir, tmp_path):
    from harness.check import check

    folder, out = _with_dev(tiny_beir), tmp_path / "results"
    model = f"hf:{tiny_bert_dir}"
    (test,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    (dev,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None, split="dev")
    assert test.metrics["ndcg@10"] != dev.metrics["ndcg@10"]
    rows = [Expected(model, str(folder), split, "ndcg@10", rec.metrics["ndcg@10"], 1e-9, "b.csv", i)
            for i, (split, rec) in enumerate((("test", test), ("dev", dev)), start=2)]
    results = check(rows, out, execution=CPU, log=lambda m: None)
    assert [r.status for r in results] == ["OK", "OK"], [r.message for r in results]
    assert [r.got for r in results] == [test.metrics["ndcg@10"], dev.metrics["ndcg@10"]]
