"""Records and baselines (issue 27 class 7): two records of one leaderboard row from different computations
are named and left out, never chosen between by file name; paired baseline records of the wrong shape are an
ERROR line, not a traceback; no dataset id or baseline row writes outside the folder it belongs to."""

from __future__ import annotations

import json
import shutil

import pytest

from harness.check import Paired, baseline_record_path, judge_paired
from harness.cli import main
from harness.errors import HarnessError
from harness.results.baselines import Expected
from harness.results.leaderboard import rebuild
from harness.results.records import record_paths
from harness.runner import run
from harness.settings import Execution
from tests.conftest import make_tiny_beir, make_tiny_bert

CPU = Execution(device="cpu", progress=False)


def test_two_records_of_one_row_from_different_computations_are_named_not_chosen(tmp_path, capsys):
    model, folder, out = make_tiny_bert(tmp_path / "m"), make_tiny_beir(tmp_path / "tiny"), tmp_path / "out"
    (rec,) = run([f"hf:{model}"], [str(folder)], None, out, execution=CPU, log=lambda m: None)
    path = out / rec.dataset / "test" / rec.run_file.replace(".trec", ".json")
    copy = path.with_name("zz-copy.json")
    shutil.copy(path, copy)
    df, problems = rebuild(out)
    assert len(df) == 1 and problems == []  # a copy of the same computation counts once
    data = json.loads(copy.read_text())
    halved = {q: v / 2 for q, v in data["per_query"]["ndcg@10"].items()}  # another computation, consistent
    data["fingerprint"], data["per_query"]["ndcg@10"] = "0" * 64, halved
    data["metrics"]["ndcg@10"] = sum(halved.values()) / len(halved)
    copy.write_text(json.dumps(data))
    df, problems = rebuild(out)
    assert df.empty and len(problems) == 1 and "2 records of different computations" in problems[0]
    assert main(["leaderboard", "--output-dir", str(out)]) == 0
    assert "zz-copy.json" in capsys.readouterr().err


def test_a_record_whose_metric_is_not_its_per_query_mean_is_neither_listed_nor_reused(tmp_path, capsys):
    """A metric edited by hand (its per-query values, and the run file, untouched) is a problem named by file:
    not a leaderboard row, and not reused by a rerun, which computes the pair again."""
    model, folder, out = make_tiny_bert(tmp_path / "m"), make_tiny_beir(tmp_path / "tiny"), tmp_path / "out"
    (rec,) = run([f"hf:{model}"], [str(folder)], None, out, execution=CPU, log=lambda m: None)
    path = out / rec.dataset / "test" / rec.run_file.replace(".trec", ".json")
    data = json.loads(path.read_text())
    data["metrics"]["ndcg@10"] = 0.9876
    path.write_text(json.dumps(data))
    df, problems = rebuild(out)
    assert df.empty and len(problems) == 1 and "per-query values average" in problems[0] and path.name in problems[0]
    (again,) = run([f"hf:{model}"], [str(folder)], None, out, execution=CPU, log=lambda m: None)
    assert again.metrics["ndcg@10"] == rec.metrics["ndcg@10"] != 0.9876
    assert json.loads(path.read_text())["metrics"]["ndcg@10"] == rec.metrics["ndcg@10"]


@pytest.mark.parametrize("per_query", [["not", "an", "object"], None, {"ndcg@10": {"q1": "high"}},
                                       {"ndcg@10": {"q1": None}}, {"ndcg@10": [0.5]}, "text"])
def test_paired_baseline_records_of_the_wrong_shape_are_an_error_line(tmp_path, per_query):
    csv = tmp_path / "regression.csv"
    row = Expected("bm25", "beir/scifact", "test", "ndcg@10", 0.5, 0.01, str(csv), 2)
    path = baseline_record_path(row)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"per_query": per_query}))
    status, message, p = judge_paired(row, {"q1": 0.5}, Paired())
    assert status == "ERROR" and str(path) in message and p is None


@pytest.mark.parametrize("dataset", ["../../outside", "/abs/olute", "beir/../../x"])
def test_no_baseline_row_writes_outside_its_records_folder(tmp_path, dataset):
    row = Expected("bm25", dataset, "test", "ndcg@10", 0.5, 0.01, str(tmp_path / "b" / "regression.csv"), 3)
    with pytest.raises(HarnessError, match="regression.csv:3: dataset and split.*lies outside"):
        baseline_record_path(row)


def test_no_record_path_leaves_the_output_folder(tmp_path):
    with pytest.raises(HarnessError, match="lies outside"):
        record_paths(tmp_path / "out", "local/..", "..", "bm25")
    assert record_paths(tmp_path / "out", "local/x", "test", "bm25")[0].parent == tmp_path / "out" / "local/x/test"


def test_a_dataset_folder_named_with_dots_only_gets_a_plain_id(tmp_path):
    from harness.datasets import local_dataset_id

    folder = make_tiny_beir(tmp_path / "...")
    assert local_dataset_id(folder, tmp_path / "out") == "local/dataset"


def test_a_dataset_with_records_of_two_splits_shows_its_evaluation_split_and_says_so():
    """A train-split record (a fusion's optimise=train stage) beside the test one: the leaderboard cell is the
    dataset's evaluation split, with a note naming the split left out, never whichever row came last."""
    import pandas as pd

    from harness.results.leaderboard import table

    df = pd.DataFrame([
        {"retriever": "bm25", "settings": "", "dataset": "beir/scifact", "split": "test", "ndcg@10": 0.6789},
        {"retriever": "bm25", "settings": "", "dataset": "beir/scifact", "split": "train", "ndcg@10": 0.6974},
        {"retriever": "bm25", "settings": "", "dataset": "local/tiny", "split": "dev", "ndcg@10": 0.5},
        {"retriever": "bm25", "settings": "", "dataset": "local/tiny", "split": "train", "ndcg@10": 0.4}])
    pivot, cols, notes = table(df, "ndcg@10")
    assert pivot.loc["bm25", "beir/scifact"] == 0.6789
    assert any("beir/scifact" in n and "train" in n and "--split train" in n for n in notes)
    # no evaluation split to prefer (a folder judged on dev and train): each split is a column of its own
    assert pivot.loc["bm25", "local/tiny (dev)"] == 0.5 and pivot.loc["bm25", "local/tiny (train)"] == 0.4
    assert cols == ["beir/scifact"] and pivot.loc["bm25", "avg (1)"] == 0.6789  # a dataset's splits not averaged
    assert any("not averaged" in n for n in notes)
    pivot, _, _ = table(df, "ndcg@10", split="train")
    assert pivot.loc["bm25", "beir/scifact"] == 0.6974


def test_diff_and_compare_read_the_evaluation_split_when_a_row_has_several(tmp_path, capsys):
    """Records of one row on two splits (test, and train from a tuning stage): diff and compare by name take
    the dataset's evaluation split, as the leaderboard shows it, and diff --split takes the other; two records
    of one split stay refused."""
    from harness.results.records import find_record

    folder, out = make_tiny_beir(tmp_path / "tiny"), tmp_path / "out"
    shutil.copy(folder / "qrels" / "test.tsv", folder / "qrels" / "train.tsv")
    for split in ("test", "train"):
        assert main(["run", "-r", "bm25", "-r", "bm25-multifield", "-d", str(folder), "--output-dir", str(out),
                     "--split", split, "--metric", "ndcg@10"]) == 0
    (dataset,) = {p.parent.parent.relative_to(out).as_posix() for p in out.rglob("*.trec")}
    assert find_record(out, "bm25", dataset).split == "test"
    assert find_record(out, "bm25", dataset, "train").split == "train"
    # a row with a train record only is not paired with another row's test record: the split is the dataset's
    assert main(["run", "-r", "bm25(k1=1.2;b=0.75)", "-d", str(folder), "--output-dir", str(out), "--split", "train",
                 "--metric", "ndcg@10"]) == 0
    assert find_record(out, "bm25(k1=1.2;b=0.75)", dataset) is None
    assert find_record(out, "bm25(k1=1.2;b=0.75)", dataset, "train").split == "train"
    capsys.readouterr()
    assert main(["diff", "-r", "bm25", "-r", "bm25-multifield", "-d", dataset, "--output-dir", str(out)]) == 0
    assert main(["diff", "-r", "bm25", "-r", "bm25-multifield", "-d", dataset, "--output-dir", str(out),
                 "--split", "train"]) == 0
    assert main(["diff", "-r", "bm25", "-r", "bm25-multifield", "-d", dataset, "--output-dir", str(out),
                 "--split", "dev"]) == 2
    assert "no record of 'bm25'" in capsys.readouterr().err


def test_a_record_whose_metric_is_outside_its_measures_range_is_refused(tmp_path):
    """nDCG@10 = 1.7 with per-query values edited to agree was listed (1.7000, with an average of 1.1384)."""
    from harness.errors import DataError
    from harness.results.records import read_record

    model, folder, out = make_tiny_bert(tmp_path / "m"), make_tiny_beir(tmp_path / "tiny"), tmp_path / "out"
    (rec,) = run([f"hf:{model}"], [str(folder)], None, out, execution=CPU, log=lambda m: None)
    path = out / rec.dataset / "test" / rec.run_file.replace(".trec", ".json")
    data = json.loads(path.read_text())
    data["per_query"]["ndcg@10"] = {q: 1.7 for q in data["per_query"]["ndcg@10"]}
    data["metrics"]["ndcg@10"] = 1.7
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"outside the measure's range \[0, 1\]: the record was edited"):
        read_record(path)
