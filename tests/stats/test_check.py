"""harness check: judging rows, the table, JUnit XML, exit status (runs faked), dataset overrides."""

from __future__ import annotations

from xml.etree import ElementTree as ET

import pytest

import harness.runner
from harness.check import check, judge, junit_xml, parse_overrides, render
from harness.cli import main
from harness.errors import HarnessError
from harness.results.baselines import Expected
from harness.results.records import ResultRecord

SCORES = {("bm25", "beir/scifact"): {"ndcg@10": 0.6789, "recall@100": 0.9253},
          ("dense", "beir/scifact"): {"ndcg@10": 0.60, "recall@100": 0.925},
          ("bm25", "/tmp/cut"): {"ndcg@10": 0.40, "recall@100": 0.70}}


@pytest.fixture
def fake_run(monkeypatch):
    calls = []

    def run(retrievers, datasets, metrics, output_dir, **kw):
        calls.append((list(retrievers), list(datasets), list(metrics)))
        (r,), (d,) = retrievers, datasets
        if (r, d) not in SCORES:
            raise HarnessError(f"unknown retriever {r!r}")
        return [ResultRecord(retriever=r, dataset=d, split="test", metrics=dict(SCORES[(r, d)]), per_query={},
                             fingerprint="fake", run_file="fake.trec")]

    monkeypatch.setattr(harness.runner, "run", run)
    return calls


def row(retriever="bm25", metric="ndcg@10", expected=0.6789, tol=0.0005, line=2, split="test"):
    return Expected(retriever, "beir/scifact", split, metric, expected, tol, "baselines/x.csv", line)


def test_judge_band_is_two_sided_unless_improvement_allowed():
    assert judge(row(), 0.6794)[0] == "OK"  # on the band's edge
    assert judge(row(), 0.6783)[0] == "FAIL"
    assert "regression" in judge(row(), 0.5)[1]
    assert judge(row(), 0.70) == ("FAIL", "above the expected band: update the baseline if the change is intended")
    assert judge(row(), 0.70, allow_improvement=True)[0] == "OK"


def test_check_runs_each_retriever_once_with_its_metrics(fake_run):
    rows = [row(), row(metric="recall@100", expected=0.9253, line=3), row("dense", expected=0.6451, tol=0.001, line=4),
            row("absent", line=5), row(split="dev", line=6, retriever="dense", metric="recall@100")]
    results = check(rows, log=lambda m: None)
    assert [r.status for r in results] == ["OK", "OK", "FAIL", "ERROR", "ERROR"]
    assert fake_run[0] == (["bm25"], ["beir/scifact"], ["ndcg@10", "recall@100"])
    # once per (retriever, dataset, split): the dev row is run on dev (this fake answers with test, which the
    # check refuses rather than judge a test number against a dev baseline)
    assert len(fake_run) == 4 and fake_run[3] == (["dense"], ["beir/scifact"], ["recall@100"])
    assert results[2].delta == pytest.approx(0.60 - 0.6451)
    assert "split 'test'" in results[4].message
    text = render(results)
    assert "FAIL" in text and "-0.0451" in text and " 0.001 " in text
    assert text.splitlines()[-1] == ("NOT OK: 3 of 5 rows (1 FAIL, 2 ERROR); "
                                     "baseline rows: baselines/x.csv line(s) 4, 5, 6")


def test_override_runs_another_dataset_against_the_same_rows(fake_run):
    results = check([row()], overrides=parse_overrides(["beir/scifact=/tmp/cut"]), log=lambda m: None)
    assert fake_run[0][1] == ["/tmp/cut"]
    assert results[0].status == "FAIL" and results[0].dataset_run == "/tmp/cut"
    assert "(ran /tmp/cut)" in render(results)
    with pytest.raises(HarnessError, match="ID=PATH"):
        parse_overrides(["beir/scifact"])


def test_junit_xml_has_a_case_per_row_and_failures():
    from harness.check import CheckResult

    rs = [CheckResult(row(), 0.6789, "OK"), CheckResult(row(metric="recall@100", line=3), 0.5, "FAIL", "regression"),
          CheckResult(row("x", line=4), None, "ERROR", "could not run")]
    root = ET.fromstring(junit_xml(rs))
    suite = root.find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert cases[0].get("name") == "bm25 ndcg@10" and cases[0].get("classname") == "beir.scifact.test"
    assert cases[1].find("failure") is not None and "expected 0.6789" in cases[1].find("failure").get("message")
    assert cases[2].find("error") is not None and "baselines/x.csv:4" in cases[2].find("error").text


def test_cli_exit_status_table_and_junit(fake_run, tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text("retriever,dataset,split,metric,expected,tolerance\nbm25,beir/scifact,test,ndcg@10,0.6789,0.0005\n")
    assert main(["check", str(good), "--output-dir", str(tmp_path / "r"), "--junit", str(tmp_path / "j.xml")]) == 0
    assert "OK: all 1 rows within tolerance" in capsys.readouterr().out
    assert ET.parse(tmp_path / "j.xml").getroot().get("failures") == "0"
    assert main(["check", str(good), "--dataset-override", "beir/scifact=/tmp/cut", "--output-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "0.4000" in out and "-0.2789" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("retriever,dataset,split,metric,expected,tolerance\nbm25,beir/scifact,test,ndcg@10,x,0.1\n")
    assert main(["check", str(bad)]) == 2
    assert f"{bad}:2: expected 'x' is not a number" in capsys.readouterr().err


def test_cli_filters_rows_by_retriever(fake_run, tmp_path, capsys):
    path = tmp_path / "b.csv"
    path.write_text("retriever,dataset,split,metric,expected,tolerance\nbm25,beir/scifact,test,ndcg@10,0.6789,0.0005\n"
                    "dense,beir/scifact,test,ndcg@10,0.6451,0.001\n")
    assert main(["check", str(path), "--retriever", "bm25", "--output-dir", str(tmp_path)]) == 0
    assert len(fake_run) == 1
    assert main(["check", str(path), "--retriever", "nothing"]) == 2
