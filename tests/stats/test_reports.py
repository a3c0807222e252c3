"""Reports: the reproduction matrix (harness reproduce), record diffs (harness diff) and the paired
regression rule (harness check --paired)."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest

from harness.check import Paired, baseline_record_path, judge_paired, save_baseline_record
from harness.cli import main
from harness.reproduce import load, plan, source_key
from harness.results.baselines import Expected, Published, decimals, load_published, read_published, tolerance
from harness.results.diff import against_published, diff, render

from .conftest import fake_record, scores


def test_tolerance_is_half_a_unit_of_the_published_last_decimal():
    assert decimals(0.6789) == 4 and decimals(0.274) == 3 and decimals(0.7887000000000001) == 4
    assert tolerance(0.6789) == pytest.approx(5e-5) and tolerance(0.274) == pytest.approx(5e-4)
    assert source_key("pyserini 2cr/beir.yaml") == "pyserini-2cr-beir-yaml"


def test_a_source_prints_a_fixed_number_of_decimals(tmp_path):
    """Pyserini's 0.9800 reads 0.98 from a CSV: the row still gets the source's four decimals."""
    csv = tmp_path / "p.csv"
    csv.write_text("source,system,dataset,split,metric,value\n"
                   "2cr,bm25,beir/scifact,test,ndcg@10,0.6647\n2cr,bm25,beir/scifact,test,recall@1000,0.98\n"
                   "readme,contriever,beir/scifact,test,ndcg@10,0.3\nreadme,contriever,beir/nq,test,ndcg@10,0.254\n")
    rows = {(r.source, r.metric, r.dataset): r for r in read_published(csv)}
    assert rows[("2cr", "recall@1000", "beir/scifact")].tolerance == pytest.approx(5e-5)
    assert rows[("readme", "ndcg@10", "beir/scifact")].decimals == 3
    assert [r.decimals for r in read_published(csv)] == [4, 4, 3, 3]


def test_dry_run_lists_one_command_per_beir_dataset(capsys):
    published, _ = load_published()
    licensed = {"beir/bioasq", "beir/signal1m", "beir/trec-news", "beir/robust04"}
    datasets = {p.dataset for p in published if p.system == "bm25-flat"}
    assert licensed <= datasets
    assert main(["reproduce", "--system", "bm25-flat", "--suite", "beir", "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("harness run ")]
    assert len(lines) == len(datasets - licensed) == 25  # 13 public datasets and CQADupStack's 12 forums
    assert {ln.split("--dataset ")[1].split()[0] for ln in lines} == datasets - licensed
    not_public = [ln for ln in out.splitlines() if "not a public dataset" in ln]  # source (2 words) first
    assert {ln.split()[4] for ln in not_public} == licensed and len(not_public) == 3 * len(licensed)
    assert all(ln.startswith("harness run --retriever bm25 --dataset beir/") and
               "--metric ndcg@10 --metric recall@100 --metric recall@1000" in ln for ln in lines)


def test_rows_that_cannot_run_say_why(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "empty"))
    rows = [Published("pyserini 2cr/odqa_nq.yaml", "GarT5-RRF", "odqa/nq", "test", "accuracy@20", 0.7717, "x", 2),
            Published("pyserini 2cr/beir.yaml", "bm25-flat", "beir/nfcorpus", "test", "ndcg@10", 0.3218, "x", 3),
            Published("someone", "mystery", "beir/nfcorpus", "test", "ndcg@10", 0.3, "x", 4)]
    runnable, not_runnable = plan(rows, {"bm25-flat": ["bm25"]})
    assert runnable == []
    reasons = [r.reason for r in not_runnable]
    assert "needs GAR-T5" in reasons[0] and "harness fetch beir/nfcorpus" in reasons[1]
    assert "no retriever of ours is this system" in reasons[2]
    runnable, _ = plan(rows[1:2], {"bm25-flat": ["bm25"]}, need_local=False)
    assert runnable[0].retriever == "bm25" and runnable[0].tolerance == pytest.approx(5e-5)


def test_load_selects_by_source_prefix():
    runnable, not_runnable = load(systems=["contriever"], sources=["contriever-readme"], need_local=False)
    assert runnable and all(r.path.endswith("published_scores.csv") for r in runnable)


# ---- harness diff -----------------------------------------------------------------------------------------

def _pair():
    a = fake_record("hf:m", "beir/scifact", {"ndcg@10": scores(1)})
    b = fake_record("hf:m", "beir/scifact", {"ndcg@10": {q: v * 0.9 for q, v in scores(1).items()}},
                    settings={"precision": "bf16"})
    a.retriever_fingerprint = {"compute": {"precision": "fp32"}, "encoder": {"max_length": 512}}
    b.retriever_fingerprint = {"compute": {"precision": "bf16"}, "encoder": {"max_length": 256}}
    a.environment = {"packages": {"torch": "2.13.0"}}
    b.environment = {"packages": {"torch": "2.14.1"}}
    return a, b


def test_diff_names_every_difference_and_the_moved_queries():
    a, b = _pair()
    d = diff(a, b, top=3, texts={q: f"text of {q}" for q in a.per_query["ndcg@10"]})
    fields = {x.field for x in d.differences}
    assert {"settings.precision", "retriever.compute.precision", "retriever.encoder.max_length",
            "packages.torch"} <= fields
    assert len(d.moved) == 3 and abs(d.moved[0].delta) >= abs(d.moved[2].delta)
    text = render(d)
    assert "A was computed in fp32, B in bf16" in text and "the encoder recipe differs: max_length" in text
    assert "queries that moved most (ndcg@10)" in text and "text of " in text


def test_diff_against_published_names_the_source_and_the_precision():
    published, systems = load_published()
    rec = fake_record("contriever", "beir/scifact", {"ndcg@10": scores(2)}, settings={"precision": "bf16"})
    text = render(against_published(rec, published, systems))
    assert "contriever README (facebookresearch/contriever)" in text
    assert "the published runs used fp32; this one bf16" in text


def test_cli_diff_of_two_runs_in_two_precisions(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "r"
    base = ["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(out), "--device", "cpu"]
    assert main(base) == 0 and main([*base, "--precision", "bf16"]) == 0
    records = sorted(out.rglob("*.json"))
    capsys.readouterr()
    assert main(["diff", *map(str, records)]) == 0
    text = capsys.readouterr().out
    assert "settings.precision" in text and "in bf16" in text


# ---- harness check --paired ----------------------------------------------------------------------------------

def _row(tmp_path, retriever="bm25") -> Expected:
    csv = tmp_path / "regression.csv"
    csv.write_text("retriever,dataset,split,metric,expected,tolerance\n")
    return Expected(retriever, "beir/scifact", "test", "ndcg@10", 0.5, 0.5, str(csv), 2)


def test_paired_rule_passes_the_same_scores_and_fails_a_real_drop(tmp_path):
    row = _row(tmp_path)
    assert judge_paired(row, scores(3), Paired())[0] == "OK"  # no baseline record yet: a note, no verdict
    save_baseline_record(row, fake_record("bm25", "beir/scifact", {"ndcg@10": scores(3)}))
    assert baseline_record_path(row).is_file()
    status, message, p = judge_paired(row, scores(3), Paired())
    assert (status, p) == ("OK", 1.0)
    worse = {q: max(0.0, v - 0.1) for q, v in scores(3).items()}
    status, message, p = judge_paired(row, worse, Paired())
    assert status == "FAIL" and "paired: per-query scores significantly below" in message and p < 0.05
    other = dict(list(scores(3).items())[:10])
    assert judge_paired(row, other, Paired())[0] == "ERROR"


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.java
def test_check_paired_on_scifact_passes_clean_and_fails_degraded(shared_data, tmp_path, capsys):
    from .test_realdata import cut_corpus

    results = tmp_path / "results"
    assert main(["check", "--retriever", "bm25", "--paired", "--output-dir", str(results)]) == 0
    out = capsys.readouterr().out
    assert "paired p" in out and "OK: all 2 rows within tolerance" in out
    cut = cut_corpus(shared_data / "beir" / "scifact", tmp_path / "scifact-cut10")
    assert main(["check", "--retriever", "bm25", "--paired", "--output-dir", str(results),
                 "--dataset-override", f"beir/scifact={cut}"]) == 1
    fails = [ln for ln in capsys.readouterr().out.splitlines() if " FAIL " in ln]
    assert len(fails) == 2 and all("band: regression" in ln and "paired:" in ln for ln in fails)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.java
def test_reproduce_bm25_flat_on_scifact_matches_pyserini(shared_data, tmp_path, capsys):
    assert main(["reproduce", "--system", "bm25-flat", "--dataset", "beir/scifact", "--output-dir",
                 str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    # source ("pyserini 2cr/beir.yaml": two words), published system, retriever, dataset, split, metric, ...
    rows = [ln.split() for ln in out.splitlines() if ln.split()[2:4] == ["bm25-flat", "bm25"]]
    assert all(r[:2] == ["pyserini", "2cr/beir.yaml"] for r in rows) and len(rows) == 3, out
    assert {r[6]: (r[7], r[8], r[11]) for r in rows} == {"ndcg@10": ("0.6789", "0.6789", "OK"),
                                                         "recall@100": ("0.9253", "0.9253", "OK"),
                                                         "recall@1000": ("0.9767", "0.9767", "OK")}


@pytest.mark.realdata
@pytest.mark.slow
def test_reproduce_runs_the_minilm_row_from_a_local_folder(shared_data, tmp_path, capsys):
    """The published MiniLM row names the hub id; --model-path runs it from the local folder (offline), the
    system is named by its published name or by a retriever of ours, and every row shows its source."""
    from tests.conftest import MINILM

    hub = "sentence-transformers/all-MiniLM-L6-v2"
    assert main(["reproduce", "--system", hub, "--dataset", "beir/scifact", "--dry-run"]) == 0
    assert f"--retriever hf:{hub} " in capsys.readouterr().out  # without a local folder: the hub id
    assert main(["reproduce", "--system", hub, "--dataset", "beir/scifact", "--model-path", f"{hub}={MINILM}",
                 "--output-dir", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    rows = [ln for ln in out.splitlines() if f"hf:{MINILM.resolve()} " in ln]
    assert len(rows) == 2, out
    assert all(ln.startswith("computed with beir 2.2.0 DenseRetrievalExactSearch") for ln in rows), out
    assert all(" OK" in ln for ln in rows), out
    assert main(["reproduce", "--model-path", f"{hub}=/nonexistent"]) == 2


def test_baseline_records_of_the_regression_rows_are_committed():
    from harness.results.baselines import baselines_dir, read_regression

    for row in read_regression(baselines_dir() / "regression.csv"):
        path = baseline_record_path(row)
        assert path.is_file(), path
        saved = json.loads(path.read_text())
        assert row.metric in saved["per_query"] and len(saved["per_query"][row.metric]) == 300


# ---- harness report ------------------------------------------------------------------------------------------

class _Page(HTMLParser):
    """The parts of a report page the tests read: tabs, leaderboard cells, svg charts, sections."""

    def __init__(self):
        super().__init__()
        self.tabs, self.cells, self.svgs, self.h2, self._h2 = [], [], [], [], False
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "button" and "data-tab" in a:
            self.tabs.append(a["data-tab"])
        elif tag == "td" and "data-provenance" in a:
            self.cells.append(a)
        elif tag == "svg":
            self.svgs.append(a.get("aria-label", ""))
        elif tag == "h2":
            self._h2 = True
        elif tag == "script":
            self.scripts += 1 if not a.get("src") else 100  # an external script would break the offline page

    def handle_data(self, data):
        if self._h2:
            self.h2.append(data)
            self._h2 = False


def _checkpoint_records():
    recs = []
    for step, shift in [(1000, -0.2), (2000, -0.1), (3000, 0.0)]:
        recs.append(fake_record(f"/runs/ra/checkpoint-{step}", "beir/scifact", {"ndcg@10": scores(1, shift=shift)}))
    return recs


def test_report_shows_every_score_with_provenance_marks_and_curves(fake_results, tmp_path):
    from harness.results.report import report

    from .conftest import write_records

    write_records(fake_results, _checkpoint_records())
    page_html = report(fake_results, baseline="base", pair=["base", "good"])
    page = _Page()
    page.feed(page_html)
    assert page.tabs == ["ndcg@10"] and page.scripts == 1
    assert {"Leaderboard", "Reproduction", "Training curves"} <= set(page.h2)
    assert any(h.startswith("Per query: good against base") for h in page.h2)
    # every (retriever, dataset) score is a cell with its provenance and a sort key
    assert len(page.cells) == 3 * 2 + 3
    prov = [json.loads(c["data-provenance"]) for c in page.cells]
    assert {p["retriever"] for p in prov} >= {"base", "good", "same"} and all("fingerprint" in p for p in prov)
    assert all(float(c["data-sort"]) >= 0 for c in page.cells)
    # 'good' beats 'base' clearly on both datasets; the first two checkpoints trail it on SciFact; 'same' is
    # noise and the last checkpoint has base's scores: not marked
    marked = {(row.split("</td>")[0].rsplit(">", 1)[-1], mark) for row in page_html.split("<tr>")[1:]
              for mark in ("\u25b2", "\u25bc") for _ in range(row.count(" " + mark + "</span>"))}
    assert sorted(marked) == [("/runs/ra/checkpoint-1000", "\u25bc"), ("/runs/ra/checkpoint-2000", "\u25bc"),
                              ("good", "\u25b2")]
    assert page_html.count(" \u25b2</span>") == 2
    assert "training curve" in page.svgs and "sorted per-query differences" in page.svgs
    assert "avg = mean of ndcg@10 over 2 datasets" in page_html


def test_report_of_an_empty_folder_says_how_to_fill_it(tmp_path):
    from harness.results.report import report

    (tmp_path / "empty").mkdir()
    assert "harness run" in report(tmp_path / "empty")


def test_cli_report_writes_the_page(fake_results, tmp_path, capsys):
    out = tmp_path / "page.html"
    assert main(["report", "--output-dir", str(fake_results), "-o", str(out), "--baseline", "base"]) == 0
    assert out.read_text().startswith("<!doctype html>") and "wrote" in capsys.readouterr().out
    assert main(["report", "--output-dir", str(tmp_path / "missing")]) == 2
