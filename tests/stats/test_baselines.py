"""Baseline and reference CSVs: the repository's files load; malformed lines name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import DataError, HarnessError
from harness.results.baselines import (
    baselines_dir,
    load_published,
    normalize_metric,
    read_published,
    read_regression,
    same_retriever,
)

from .conftest import REPO, SHARED

HEADER = "retriever,dataset,split,metric,expected,tolerance\n"


def test_repository_regression_baselines_load():
    rows = read_regression(baselines_dir() / "regression.csv")
    got = {(r.retriever, r.metric): (r.expected, r.tolerance) for r in rows}
    assert got[("bm25", "ndcg@10")] == (0.6789, 0.0005)
    assert got[("hf:../shared/models/all-MiniLM-L6-v2", "recall@100")] == (0.925, 0.002)
    assert all(r.dataset == "beir/scifact" and r.split == "test" for r in rows)
    assert rows[0].where.endswith("regression.csv:4")  # two comment lines, then the header


def test_repository_published_references_load_and_map():
    published, systems = load_published()
    scifact = {(p.system, p.metric): p.value for p in published if p.dataset == "beir/scifact"}
    assert scifact[("bm25-flat", "ndcg@10")] == 0.6789
    assert {p.metric for p in published} >= {"ndcg@10", "recall@100", "recall@1000", "accuracy@20"}
    assert systems["bm25-flat"] == ["bm25"]
    # a model folder is given at run time (harness reproduce --model-path), never as a path in the data
    assert systems["sentence-transformers/all-MiniLM-L6-v2"] == ["hf:sentence-transformers/all-MiniLM-L6-v2",
                                                                  "all-MiniLM-L6-v2#c006c948"]  # its files by content


@pytest.mark.skipif(not (SHARED / "reference").is_dir(), reason="../shared/reference not present")
@pytest.mark.realdata
def test_published_copies_equal_shared_reference():
    for name in ("pyserini_2cr.csv", "published_scores.csv"):
        assert (REPO / "baselines" / "published" / name).read_bytes() == (SHARED / "reference" / name).read_bytes()


@pytest.mark.parametrize(("body", "line", "message"), [
    ("bm25,beir/scifact,test,ndcg@10,abc,0.001\n", 2, "expected 'abc' is not a number"),
    ("bm25,beir/scifact,test,ndcg@10,67.89,0.001\n", 2, "fractions"),
    ("bm25,beir/scifact,test,ndcg@10,0.5,-0.1\n", 2, "tolerance -0.1 is outside"),
    ("bm25,beir/scifact,test,ndcg@10,0.5\n", 2, "5 fields, the header has 6"),
    ("bm25,beir/scifact,test,bleu@4,0.5,0.1\n", 2, "bleu"),
    ("\n# note\nbm25,beir/scifact,test,ndcg@10,0.5,0.1\nbm25,beir/scifact,test,nDCG@10,0.5,0.1\n", 5,
     "duplicate of line 4"),
    (",beir/scifact,test,ndcg@10,0.5,0.1\n", 2, "empty retriever"),
])
def test_malformed_regression_rows_name_file_and_line(tmp_path, body, line, message):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + body)
    with pytest.raises(DataError) as e:
        read_regression(path)
    assert e.value.line == line and e.value.path == str(path)
    assert message in str(e.value)
    assert str(e.value).startswith(f"{path}:{line}: ")


def test_missing_column_and_missing_file(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("retriever,dataset,metric,expected\nbm25,beir/scifact,ndcg@10,0.5\n")
    with pytest.raises(DataError, match="lacks column.*split, tolerance") as e:
        read_regression(path)
    assert e.value.line == 1
    with pytest.raises(HarnessError, match="no such baseline file"):
        read_regression(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("# nothing\n")
    with pytest.raises(DataError, match="empty"):
        read_regression(tmp_path / "empty.csv")


def test_published_rows_quoted_source(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text('source,system,dataset,split,metric,value\n"a paper, table 2",sys,beir/x,test,R@100,0.5\n')
    (row,) = read_published(path)
    assert (row.source, row.metric, row.value, row.line) == ("a paper, table 2", "recall@100", 0.5, 2)


def test_metric_names_normalised():
    assert normalize_metric("nDCG@10") == "ndcg@10"
    assert normalize_metric("top-k accuracy@20") == "accuracy@20"
    assert normalize_metric("Acc@5") == "accuracy@5"


def test_same_retriever_resolves_model_folders(tmp_path, monkeypatch):
    model = tmp_path / "models" / "mini"
    model.mkdir(parents=True)
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert same_retriever("bm25", "bm25")
    assert not same_retriever("bm25", "bm25-multifield")
    assert same_retriever(f"hf:{model}", "hf:../models/mini")
    assert not same_retriever(f"hf:{model}@v1", "hf:../models/mini")
    assert not same_retriever("hf:org/absent-model", "hf:../absent-model")
    assert Path(baselines_dir()).name == "baselines"
