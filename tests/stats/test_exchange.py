"""Results that travel (issue 30): MTEB's result format (loaded by the mteb package itself), a flat
per-query table, and rows imported from MTEB, ranx and trec_eval as read-only leaderboard rows."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main

from .conftest import fake_record, scores, write_records


@pytest.fixture
def results(tmp_path):
    recs = [fake_record("mine", "beir/scifact", {"ndcg@10": scores(1), "recall@100": scores(2),
                                                 "recall(rel=2)@100": scores(3)}),
            fake_record("mine", "beir/nfcorpus", {"ndcg@10": scores(4)}),
            fake_record("other", "beir/scifact", {"ndcg@10": scores(5)})]
    return write_records(tmp_path / "results", recs), recs


def test_mteb_export_loads_with_mtebs_own_reader(results, tmp_path, capsys):
    mteb = pytest.importorskip("mteb")
    folder, recs = results
    assert main(["export", str(tmp_path / "mteb"), "--format", "mteb", "--output-dir", str(folder), "-r", "mine",
                 "--model-name", "me/mine", "--revision", "r1"]) == 0
    task = tmp_path / "mteb" / "me__mine" / "r1" / "SciFact.json"
    loaded = mteb.TaskResult.from_disk(task)
    assert loaded.task_name == "SciFact"
    (entry,) = loaded.scores["test"]
    assert entry["ndcg_at_10"] == pytest.approx(recs[0].metrics["ndcg@10"], abs=1e-15)
    assert entry["main_score"] == entry["ndcg_at_10"] and entry["recall_at_100"] == recs[0].metrics["recall@100"]
    assert "recall(rel=2)_at_100" not in json.dumps(loaded.scores)  # MTEB has no relevance levels: left out
    assert (tmp_path / "mteb" / "me__mine" / "r1" / "NFCorpus.json").is_file()
    # every row at once (issue 36: MTEB's export was one retriever at a time): a model folder per row
    assert main(["export", str(tmp_path / "m2"), "--format", "mteb", "--output-dir", str(folder),
                 "--revision", "r1"]) == 0
    for model in ("mine", "other"):
        assert mteb.TaskResult.from_disk(tmp_path / "m2" / model / "r1" / "SciFact.json").task_name == "SciFact"
    # one --model-name for several rows is ambiguous
    assert main(["export", str(tmp_path / "m3"), "--format", "mteb", "--output-dir", str(folder),
                 "--model-name", "me/x"]) == 2
    assert "--model-name names one model" in capsys.readouterr().err


def test_per_query_table_as_csv_and_parquet(results, tmp_path):
    folder, recs = results
    for name in ("pq.csv", "pq.parquet"):
        assert main(["export", str(tmp_path / name), "--format", "per-query", "--output-dir", str(folder)]) == 0
        df = pd.read_csv(tmp_path / name) if name.endswith("csv") else pd.read_parquet(tmp_path / name)
        mine = df[(df.retriever == "mine") & (df.dataset == "beir/scifact") & (df.metric == "ndcg@10")]
        assert dict(zip(mine.query_id, mine.value, strict=True)) == recs[0].per_query["ndcg@10"]
        assert len(df) == sum(len(v) for r in recs for v in r.per_query.values())


def test_imported_rows_are_leaderboard_rows_with_their_source(results, tmp_path, capsys):
    folder, recs = results
    main(["export", str(tmp_path / "mteb"), "--format", "mteb", "--output-dir", str(folder), "-r", "mine",
          "--model-name", "me/mine", "--revision", "r1"])
    assert main(["import", str(tmp_path / "mteb" / "me__mine"), "--format", "mteb", "--output-dir", str(folder)]) == 0
    (tmp_path / "te.txt").write_text("runid\tall\tx\nndcg_cut_10\tq1\t0.5\nndcg_cut_10\tall\t0.4321\n"
                                     "recall_100\tall\t0.9\nmap\tall\t0.3\nbpref\tall\t0.2\n")
    assert main(["import", str(tmp_path / "te.txt"), "--format", "trec_eval", "--system", "elsewhere",
                 "--dataset", "beir/scifact", "--output-dir", str(folder)]) == 0
    assert "not read: bpref" in capsys.readouterr().out
    (tmp_path / "ranx.json").write_text(json.dumps({"ndcg@10": 0.25, "precision@10": 0.1, "f1": 0.3}))
    assert main(["import", str(tmp_path / "ranx.json"), "--format", "ranx", "--system", "ranxed",
                 "--dataset", "beir/scifact", "--output-dir", str(folder)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(folder), "--dataset", "beir/scifact"]) == 0
    out = capsys.readouterr().out
    row = next(ln for ln in out.splitlines() if ln.startswith("me/mine@r1 [imported: mteb]"))
    assert f"{recs[0].metrics['ndcg@10']:.4f}" in row
    assert any(ln.startswith("elsewhere [imported: trec_eval]") and "0.4321" in ln for ln in out.splitlines())
    assert any(ln.startswith("ranxed [imported: ranx]") and "0.2500" in ln for ln in out.splitlines())
    board = pd.read_csv(folder / "leaderboard.csv")
    assert set(board[board.retriever == "elsewhere"]["map"]) == {0.3}
    # imported rows are not records: check and diff never see them
    assert main(["diff", "-r", "mine", "-r", "elsewhere", "-d", "beir/scifact", "--output-dir", str(folder)]) == 2


def test_a_file_with_nothing_readable_is_one_line(tmp_path, capsys):
    (tmp_path / "x.json").write_text(json.dumps({"f1": 0.3}))
    assert main(["import", str(tmp_path / "x.json"), "--format", "ranx", "--system", "s", "--dataset", "d",
                 "--output-dir", str(tmp_path / "r")]) == 2
    assert "no score the harness can read" in capsys.readouterr().err


@pytest.mark.parametrize("fmt,name,content", [
    ("trec_eval", "te.txt", "ndcg_cut_10\tall\tnan\n"), ("trec_eval", "te.txt", "recall_100\tall\tinf\n"),
    ("trec_eval", "te.txt", b"ndcg_cut_10\tall\t0.5\xff\n"), ("ranx", "rx.json", '{"ndcg@10": Infinity}'),
    ("ranx", "rx.json", '{"ndcg@10": "0.5x"}'), ("ranx", "rx.json", '{"ndcg@10": 0.5'),
    ("mteb", "SciFact.json", '{"task_name": "SciFact", "scores": {"test": [{"ndcg_at_10": NaN}]}}')])
def test_imported_scores_that_are_not_finite_numbers_are_refused(tmp_path, capsys, fmt, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    args = ["import", str(path), "--format", fmt, "--output-dir", str(tmp_path / "r")]
    if fmt != "mteb":
        args += ["--system", "s", "--dataset", "beir/scifact"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err, err
    assert not (tmp_path / "r" / "imported").exists() or not any((tmp_path / "r" / "imported").iterdir())


def test_mteb_export_keeps_every_split_and_times_in_seconds(tmp_path):
    """Records of one task on two splits go into one task file with both splits (each record wrote the file
    again, the last split overwriting the others), and evaluation_time is seconds: index plus search, not the
    sum of every number in timings (bytes, megabytes, counts)."""
    from harness.results.exchange import export_mteb

    recs = [fake_record("mine", "beir/scifact", {"ndcg@10": scores(1)}, split=s) for s in ("test", "train")]
    for r in recs:
        r.timings = {"index_s": 2.0, "search_s": 1.5, "peak_rss_mb": 700.0, "index_bytes": 10**7, "queries": 300}
    export_mteb(recs, tmp_path / "m", "me/mine", "r1")
    payload = json.loads((tmp_path / "m" / "me__mine" / "r1" / "SciFact.json").read_text())
    assert sorted(payload["scores"]) == ["test", "train"]
    assert payload["evaluation_time"] == 7.0
    assert sorted(payload["harness"]["fingerprint"]) == ["test", "train"]
