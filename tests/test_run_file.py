"""Where a run goes: one naming rule (OUTPUT/<dataset>/<split>/<retriever>[+<settings digest>].trec), printed
at the end of every run, and `--run-file PATH` for a copy where the user wants it (one run only, checked
before anything runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.results.records import ResultRecord, load_records


def _records(out: Path) -> list[ResultRecord]:
    found, problems = load_records(out)
    assert not problems
    return [r for _, r in found]


def _run(tiny_beir: Path, model: Path, out: Path, *extra: str) -> int:
    return main(["run", "-r", f"hf:{model}", "-d", str(tiny_beir), "--output-dir", str(out), "--device", "cpu",
                 "--metric", "ndcg@10", *extra])


def test_each_run_file_is_printed_at_its_place_by_the_naming_rule(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(tiny_beir, tiny_bert_dir, out) == 0
    assert _run(tiny_beir, tiny_bert_dir, out, "--max-length", "16") == 0
    printed = [line.removeprefix("run file: ") for line in capsys.readouterr().out.splitlines()
               if line.startswith("run file: ")]
    (plain,), (other,) = [r for r in _records(out) if not r.settings], [r for r in _records(out) if r.settings]
    folder = out / plain.dataset / plain.split
    assert printed == [str(folder / "tiny-bert0@" f"{plain.retriever.split('#')[1]}.trec"),
                       str(folder / other.run_file)]
    assert other.run_file.startswith(Path(printed[0]).stem + "+") and other.run_file.endswith(".trec")
    assert all(Path(p).is_file() for p in printed)


def test_run_file_copies_the_run_and_is_written_again_when_the_run_is_reused(tiny_beir, tiny_bert_dir, tmp_path,
                                                                            capsys):
    out, target = tmp_path / "out", tmp_path / "mine.trec"
    assert _run(tiny_beir, tiny_bert_dir, out, "--run-file", str(target)) == 0
    (record,) = _records(out)
    source = out / record.dataset / record.split / record.run_file
    assert target.read_bytes() == source.read_bytes() and target.stat().st_size > 0
    assert f"run file: {target}" in capsys.readouterr().out.splitlines()
    target.write_text("stale\n")
    assert _run(tiny_beir, tiny_bert_dir, out, "--run-file", str(target)) == 0  # reused: copied again
    assert target.read_bytes() == source.read_bytes()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("extra, says", [
    (["-r", "bm25"], "give one --retriever and one --dataset"),
    (["--suite", "beir"], "give one --retriever and one --dataset"),
])
def test_run_file_for_more_than_one_run_is_refused_before_anything_runs(tiny_beir, tiny_bert_dir, tmp_path, capsys,
                                                                        extra, says):
    out = tmp_path / "out"
    assert _run(tiny_beir, tiny_bert_dir, out, "--run-file", str(tmp_path / "r.trec"), *extra) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and not out.exists()


def test_run_file_that_is_a_folder_or_in_no_folder_is_refused_in_one_line(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(tiny_beir, tiny_bert_dir, out, "--run-file", str(tmp_path)) == 2
    assert "is a folder; name a file" in capsys.readouterr().err
    assert _run(tiny_beir, tiny_bert_dir, out, "--run-file", str(tmp_path / "nowhere" / "r.trec")) == 2
    err = capsys.readouterr().err.strip()
    assert "does not exist; create it first" in err and len(err.splitlines()) == 1 and not out.exists()


def test_a_run_ends_with_one_table_of_every_measure_it_computed(tiny_bert_dir, tmp_path, capsys):
    from tests.conftest import make_tiny_beir

    a, b = make_tiny_beir(tmp_path / "a"), make_tiny_beir(tmp_path / "b", seed=1)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(a), "-d", str(b), "--output-dir", str(out),
                 "--device", "cpu", "-m", "ndcg@10", "-m", "RR@10", "-m", "recall@5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header == ["dataset", "retriever", "ndcg@10", "mrr@10", "recall@5"]
    records = {r.dataset: r for r in _records(out)}
    body = [line.split() for line in lines[2:] if line.startswith(("local/", "avg (")) and "= mean over" not in line]
    assert "avg (2) = mean over local/a, local/b; — where a dataset lacks the measure" in lines
    assert [row[0] for row in body] == ["local/a", "local/b", "avg"]  # one retriever: one mean row
    for row in body[:2]:
        rec = records[row[0]]
        assert row[2:] == [f"{rec.metrics[m]:.4f}" for m in ("ndcg@10", "mrr@10", "recall@5")]
    avg = body[2]
    assert avg[:2] == ["avg", "(2)"] and avg[3:] == [
        f"{(records['local/a'].metrics[m] + records['local/b'].metrics[m]) / 2:.4f}"
        for m in ("ndcg@10", "mrr@10", "recall@5")]
    assert sum(line.startswith("dataset ") for line in lines) == 1  # one table


def test_run_file_in_a_file_and_repeated_datasets(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    (tmp_path / "plain").write_text("x")
    out = tmp_path / "out"
    assert _run(tiny_beir, tiny_bert_dir, out, "--run-file", str(tmp_path / "plain" / "r.trec")) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert _run(tiny_beir, tiny_bert_dir, out, "-d", str(tiny_beir)) == 0  # the same dataset twice
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("run file: ")]
    assert len(printed) == 1
