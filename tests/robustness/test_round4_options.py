"""Exact or refuse, round 4 (issue 35), class 7: an option that applies to no retriever (or no dataset) of the
run is refused in one line, never silently ignored; a configuration value that points nowhere is refused, or
warned about where the path may appear later."""

from __future__ import annotations

import json

import pytest

from harness.cli import main


def _one_line(capsys, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def _run_file(folder, tmp_path):
    queries = [json.loads(x)["_id"] for x in (folder / "queries.jsonl").read_text().splitlines()]
    path = tmp_path / "r.trec"
    path.write_text("".join(f"{q} Q0 d{i} {i} {1.0 / (i + 1)} x\n" for q in queries for i in range(5)))
    return path


@pytest.mark.parametrize("option", [["--backend", "sentence-transformers"], ["--precision", "bf16"],
                                    ["--max-length", "64"], ["--index", "hnsw"], ["--embed-dtype", "float16"],
                                    ["--query-prefix", "query: "]])
def test_a_dense_option_with_no_dense_retriever_is_refused(tiny_beir, tmp_path, capsys, option):
    r = _run_file(tiny_beir, tmp_path)
    assert main(["run", "-r", f"run:{r}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "o"), *option]) == 2
    _one_line(capsys, option[0], "applies to no retriever")
    assert not (tmp_path / "o" / "local").exists() or not list((tmp_path / "o").rglob("*.json"))


def test_bm25_with_backend_is_refused(tiny_beir, tmp_path, capsys):
    assert main(["run", "-r", "bm25", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "o"),
                 "--backend", "sentence-transformers"]) == 2
    _one_line(capsys, "--backend", "bm25")


def test_an_option_that_applies_to_one_retriever_of_the_run_is_taken(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    r = _run_file(tiny_beir, tmp_path)
    assert main(["run", "-r", f"run:{r}", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--device", "cpu",
                 "--output-dir", str(tmp_path / "o"), "--embed-dtype", "float16", "--metric", "ndcg@10"]) == 0
    capsys.readouterr()


def test_drop_self_hits_where_every_protocol_has_it_is_refused(tiny_beir, tmp_path, capsys, monkeypatch):
    import shutil

    shutil.copytree(tiny_beir, tmp_path / "data" / "beir" / "scifact")
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    r = _run_file(tiny_beir, tmp_path)
    assert main(["run", "-r", f"run:{r}", "-d", "beir/scifact", "--drop-self-hits", "--output-dir",
                 str(tmp_path / "o")]) == 2
    _one_line(capsys, "--drop-self-hits", "beir/scifact")


def test_config_set_to_a_path_that_points_nowhere(tmp_path, capsys):
    assert main(["config", "set", "data", str(tmp_path / "no" / "such" / "folder")]) == 2
    _one_line(capsys, str(tmp_path / "no" / "such" / "folder"), "does not exist")
    (tmp_path / "file").write_text("x")
    assert main(["config", "set", "cache", str(tmp_path / "file")]) == 2
    _one_line(capsys, "not a folder")
    # a folder that may appear later (its parent exists: a fetch or a mount makes it) is stored, with a warning
    assert main(["config", "set", "data", str(tmp_path / "later")]) == 0
    assert "warning" in _one_line(capsys, str(tmp_path / "later"), "does not exist yet")
    assert main(["config", "unset", "data"]) == 0
    capsys.readouterr()
