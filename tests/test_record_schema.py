"""Records are read through their schema: every field of the type ResultRecord declares, or the file and field
are named in one line (exit 2), never a traceback in report or diff."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.errors import DataError
from harness.results.records import ResultRecord

BASE = dict(schema="harness-result/2", retriever="r", dataset="d", split="test", fingerprint="f",
            run_file="r.trec", metrics={"ndcg@10": 0.5}, per_query={"ndcg@10": {"q": 0.5}})


def test_a_valid_record_reads():
    assert ResultRecord.from_json({**BASE, "environment": {"python": "3.11"}, "device": None}, "x").retriever == "r"


@pytest.mark.parametrize("bad,field", [
    ({"environment": None}, "environment"), ({"corpus": None}, "corpus"), ({"index": []}, "index"),
    ({"retriever_spec": "bm25"}, "retriever_spec"), ({"num_queries": True}, "num_queries"),
    ({"documents_searched": "5183"}, "documents_searched"), ({"reused_run": 1}, "reused_run"),
    ({"timings": [1, 2]}, "timings"), ({"settings": None}, "settings"),
])
def test_a_field_of_the_wrong_type_is_named(bad, field):
    with pytest.raises(DataError, match=f"x.json: field '{field}' is"):
        ResultRecord.from_json({**BASE, **bad}, "x.json")


def test_diff_of_a_broken_record_is_one_line(tmp_path, capsys):
    good, bad = tmp_path / "a.json", tmp_path / "b.json"
    good.write_text(json.dumps(BASE))
    bad.write_text(json.dumps({**BASE, "environment": None}))
    assert main(["diff", str(good), str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b.json: field 'environment' is null" in err[0]
