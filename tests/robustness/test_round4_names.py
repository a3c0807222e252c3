"""Exact or refuse, round 4 (issue 35), class 8: every name the leaderboard prints (a run file's or a model
folder's content name, a composition of them, ``local/<folder>``, a row with its settings) is accepted back
by ``check``, ``diff``, ``compare``, ``report`` and ``leaderboard --baseline``; a name whose content cannot be
found is refused in one line."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from harness.cli import main


def _write(path, seed: int, folder):
    """A run file; its tag is the test's folder, so no other test's file has its content (names are content)."""
    import random

    rng = random.Random(seed)
    docs = [json.loads(x)["_id"] for x in (folder / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(x)["_id"] for x in (folder / "queries.jsonl").read_text().splitlines()]
    lines = [f"{q} Q0 {d} {i} {20 - i + rng.random():.6f} {path.parent.parent.name}\n" for q in queries
             for i, d in enumerate(rng.sample(docs, 15), start=1)]
    path.write_text("".join(lines))
    return path


@pytest.fixture
def printed(tiny_beir, tmp_path, monkeypatch, capsys):
    """Two run files run from another folder; the names the leaderboard printed for them, from elsewhere."""
    runs = tmp_path / "runs"
    runs.mkdir()
    _write(runs / "a.trec", 0, tiny_beir), _write(runs / "b.trec", 1, tiny_beir)
    out = tmp_path / "results"
    monkeypatch.chdir(runs)
    assert main(["run", "-r", "run:a.trec", "-r", "run:b.trec", "-d", str(tiny_beir), "--output-dir", str(out),
                 "--metric", "ndcg@10"]) == 0
    monkeypatch.chdir(tmp_path)  # the printed names are all the user has now: no path in them
    board = pd.read_csv(out / "leaderboard.csv")
    names = sorted(board["retriever"])
    assert all(n.startswith("run:") and "#" in n for n in names)
    assert set(board["dataset"]) == {"local/tiny"}
    capsys.readouterr()
    return out, names, dict(zip(board["retriever"], board["ndcg@10"], strict=True))


def test_check_takes_the_printed_names(printed, tmp_path, capsys):
    out, names, scores = printed
    rows = "".join(f"{n},local/tiny,test,ndcg@10,{scores[n]:.4f},0.0001\n" for n in names)
    (tmp_path / "b.csv").write_text("retriever,dataset,split,metric,expected,tolerance\n" + rows)
    assert main(["check", str(tmp_path / "b.csv"), "--output-dir", str(out)]) == 0, capsys.readouterr()
    assert "OK: all 2 rows" in capsys.readouterr().out


def test_diff_compare_report_and_baseline_take_the_printed_names(printed, tmp_path, capsys):
    out, (a, b), _ = printed
    assert main(["diff", "-r", a, "-r", b, "-d", "local/tiny", "--output-dir", str(out)]) == 0
    assert main(["compare", "-r", a, "-r", b, "-d", "local/tiny", "--output-dir", str(out)]) == 0, \
        capsys.readouterr().err
    assert main(["report", "--output-dir", str(out), "--pair", a, b, "--baseline", a]) == 0
    assert main(["leaderboard", "--output-dir", str(out), "--baseline", a]) == 0
    capsys.readouterr()


def test_a_composition_of_printed_names_runs(printed, tmp_path, capsys):
    out, (a, b), _ = printed
    assert main(["run", "-r", f"fuse:rrf({a},{b})", "-d", "local/tiny", "--output-dir", str(out)]) == 0, \
        capsys.readouterr().err
    board = pd.read_csv(out / "leaderboard.csv")
    assert f"fuse:rrf({a},{b};k=60)" in set(board["retriever"])


def test_a_printed_name_whose_file_changed_is_refused_in_one_line(printed, tmp_path, capsys):
    out, (a, _), _ = printed
    path = tmp_path / "runs" / "a.trec"
    path.write_text(path.read_text() + "q0 Q0 d39 99 0.001 added\n")
    assert main(["compare", "-r", a, "-r", "bm25", "-d", "local/tiny", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and a in err and "content" in err, err


def test_a_row_with_settings_is_accepted_by_its_label(printed, tmp_path, capsys):
    out, (a, _), _ = printed
    assert main(["run", "-r", a, "-d", "local/tiny", "--drop-self-hits", "--output-dir", str(out),
                 "--metric", "ndcg@10"]) == 0
    board = pd.read_csv(out / "leaderboard.csv").fillna("")
    (row,) = board[board["settings"] != ""].itertuples()
    label = f"{row.retriever} [{row.settings}]"
    (tmp_path / "b.csv").write_text("retriever,dataset,split,metric,expected,tolerance\n"
                                    f"{label},local/tiny,test,ndcg@10,{row._5:.4f},0.0001\n")
    capsys.readouterr()
    assert main(["check", str(tmp_path / "b.csv"), "--output-dir", str(out)]) == 0, capsys.readouterr()
    assert main(["diff", "-r", label, "-r", a, "-d", "local/tiny", "--output-dir", str(out)]) == 0


def test_a_model_folders_printed_name_is_accepted(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(out),
                 "--metric", "ndcg@10", "--device", "cpu"]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    (name,) = board["retriever"]
    assert "#" in name and str(tiny_bert_dir) not in name
    (tmp_path / "b.csv").write_text("retriever,dataset,split,metric,expected,tolerance\n"
                                    f"{name},local/tiny,test,ndcg@10,{board['ndcg@10'][0]:.4f},0.0001\n")
    capsys.readouterr()
    assert main(["check", str(tmp_path / "b.csv"), "--output-dir", str(out), "--device", "cpu"]) == 0, \
        capsys.readouterr()
