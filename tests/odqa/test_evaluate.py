"""accuracy@k and first-hit ranks, hand-computed; dataset resolution, registry entries and downloads."""

from __future__ import annotations

import gzip
import hashlib

import pytest

from harness.data.registry import DATASETS, SUITES, RemoteFile, expand
from harness.datasets import resolve_dataset
from harness.errors import HarnessError
from harness.odqa.dataset import OdqaDataset, fetch_file
from harness.odqa.evaluate import evaluate_answers, evaluate_dataset, parse_accuracy

TEXTS = {"a": "the Denver Broncos won", "b": "nothing here", "c": "Denver", "d": "Broncos of Denver"}


def test_accuracy_and_first_hit_hand_computed():
    answers = {"q1": ["Denver Broncos"], "q2": ["Denver"], "q3": ["Seattle"], "q4": ["x"]}
    run = {"q1": {"b": 3.0, "c": 2.0, "a": 1.0},   # first hit at rank 3
           "q2": {"c": 1.0, "a": 0.5},              # rank 1
           "q3": {"a": 1.0, "b": 0.5}}              # none; q4 not answered at all
    per_query, first = evaluate_answers(answers, run, TEXTS, ["accuracy@1", "acc@2", "accuracy@3"])
    assert first == {"q1": 3, "q2": 1, "q3": None, "q4": None}
    assert per_query["accuracy@1"] == {"q1": 0.0, "q2": 1.0, "q3": 0.0, "q4": 0.0}
    assert per_query["accuracy@2"]["q1"] == 0.0
    assert per_query["accuracy@3"]["q1"] == 1.0


def test_ranking_is_the_runs_own_order_not_re_sorted():
    # DPR and Pyserini score the retriever's order as it came: equal (or rounded-equal) scores are not
    # re-ranked by id, so "b" (no answer) stays first and "d" second
    _, first = evaluate_answers({"q": ["Broncos"]}, {"q": {"b": 1.0, "d": 1.0}}, TEXTS, ["accuracy@1"])
    assert first == {"q": 2}
    _, first = evaluate_answers({"q": ["Broncos"]}, {"q": {"d": 1.0, "b": 1.0}}, TEXTS, ["accuracy@1"])
    assert first == {"q": 1}


def test_regex_dataset_mode():
    _, first = evaluate_answers({"q": [r"den\w+"]}, {"q": {"b": 2.0, "c": 1.0}}, TEXTS, ["accuracy@2"], "regex")
    assert first == {"q": 2}


def test_bad_metric_names():
    assert parse_accuracy("Accuracy@20") == 20
    with pytest.raises(HarnessError, match="accuracy@k"):
        parse_accuracy("ndcg@10")


def test_folder_resolves_as_odqa_and_evaluates(tiny_odqa):
    ds = resolve_dataset(str(tiny_odqa))
    assert isinstance(ds, OdqaDataset) and ds.id == "local/tiny-odqa"
    assert ds.default_metrics[0] == "accuracy@1" and ds.judgements().measure("top@20") == ("accuracy@20", 20)
    run = {"0": {"4": 2.0, "1": 1.0}, "1": {"3": 1.0}, "2": {"2": 1.0}, "3": {"5": 1.0}, "4": {"1": 1.0}}
    per_query, first = evaluate_dataset(ds, run, ["accuracy@1", "accuracy@2"])
    assert first == {"0": 2, "1": 1, "2": 1, "3": 1, "4": None}
    assert sum(per_query["accuracy@1"].values()) == 3


def test_registry_entries():
    ids = expand(SUITES["odqa"])
    for name in ("odqa/nq", "odqa/trivia", "odqa/webq", "odqa/curatedtrec", "odqa/squad", "odqa/entityqs/P17"):
        assert name in ids
        spec = DATASETS.get(name)
        assert spec.kind == "odqa" and all(r.url.startswith("https://") for r in spec.downloads)
        assert any(r.md5 == "612fe66e0b6b41ee28f806140226c563" for r in spec.downloads)  # psgs_w100.tsv.gz
    assert DATASETS.get("odqa/curatedtrec").protocol.match == "regex"
    assert len(DATASETS.get("odqa/entityqs").subsets) == 24


def test_registered_dataset_offline_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "empty"))
    with pytest.raises(HarnessError) as e:
        resolve_dataset("odqa/nq")
    msg = str(e.value)
    assert "nq-test.qa.csv" in msg and "psgs_w100.tsv.gz" in msg and "612fe66e" in msg


def test_download_checks_md5_and_gunzips(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "psgs.tsv.gz"
    with gzip.open(src, "wb") as f:
        f.write(b"id\ttext\ttitle\n1\thello\tT\n")
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    out = fetch_file(RemoteFile(src.as_uri(), "odqa/w/psgs.tsv", md5=md5, unpack="gunzip"), tmp_path / "data")
    assert out.read_text().startswith("id\ttext")
    with pytest.raises(HarnessError, match="checksum mismatch"):
        fetch_file(RemoteFile(src.as_uri(), "odqa/x/psgs.tsv", md5="0" * 32, unpack="gunzip"), tmp_path / "data2")
