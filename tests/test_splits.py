"""--split (issue 29): which topics and judgements a run evaluates; recorded and part of the record's path,
so dev and test never overwrite each other; a folder with one judged split needs no flag; check and reproduce
pick baseline rows by split and run each on its own."""

from __future__ import annotations

import shutil

import pytest

from harness.cli import main
from harness.metrics import evaluate, mean
from harness.results.baselines import Expected
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_qrels, read_run

CPU = Execution(device="cpu", progress=False)


def _with_dev(folder):
    """The tiny folder's test judgements, and dev judgements of its first four queries only."""
    lines = (folder / "qrels" / "test.tsv").read_text().splitlines()
    keep = {f"q{i}" for i in range(4)}
    (folder / "qrels" / "dev.tsv").write_text("\n".join([lines[0]] + [x for x in lines[1:]
                                                                       if x.split("\t")[0] in keep]) + "\n")
    return folder


def test_dev_and_test_are_two_records_that_never_overwrite(tiny_beir, tiny_bert_dir, tmp_path):
    folder, out = _with_dev(tiny_beir), tmp_path / "results"
    model = f"hf:{tiny_bert_dir}"
    (test,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    (dev,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None, split="dev")
    assert (test.split, dev.split) == ("test", "dev") and (test.num_queries, dev.num_queries) == (8, 4)
    assert (out / test.dataset / "test" / test.run_file).is_file()
    assert (out / dev.dataset / "dev" / dev.run_file).is_file()
    assert dev.fingerprint != test.fingerprint
    per_query = evaluate(read_qrels(folder / "qrels" / "dev.tsv"), read_run(out / dev.dataset / "dev" / dev.run_file),
                         ["ndcg@10"])
    assert dev.metrics["ndcg@10"] == pytest.approx(mean(per_query["ndcg@10"]), abs=1e-12)
    board = (out / "leaderboard.csv").read_text().splitlines()
    assert sorted(line.split(",")[3] for line in board[1:]) == ["dev", "test"]
    # a second test run reuses its record; the dev record is untouched
    again = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)[0]
    assert again.fingerprint == test.fingerprint and again.metrics == test.metrics


def test_a_folder_with_only_dev_judgements_runs_on_dev(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    folder = _with_dev(tiny_beir)
    (folder / "qrels" / "test.tsv").unlink()
    out = tmp_path / "results"
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(folder), "--device", "cpu", "--output-dir", str(out),
                 "--split", "dev"]) == 0
    assert list((out / "local" / folder.name).glob("dev/*.json"))
    (rec,) = run([f"hf:{tiny_bert_dir}"], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    assert rec.split == "dev"  # the folder's one judged split, as the record says
    # two judged splits and no test: the flag is needed, and the message lists them
    shutil.copy(folder / "qrels" / "dev.tsv", folder / "qrels" / "train.tsv")
    capsys.readouterr()
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(folder), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no qrels/test.tsv" in err and "dev, train: pass --split dev" in err
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(folder), "--output-dir", str(out), "--split",
                 "validation"]) == 2
    assert "dev, train" in capsys.readouterr().err


def test_check_runs_each_baseline_row_on_its_own_split(tiny_beir, tiny_bert_dir, tmp_path):
    from harness.check import check

    folder, out = _with_dev(tiny_beir), tmp_path / "results"
    model = f"hf:{tiny_bert_dir}"
    (test,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    (dev,) = run([model], [str(folder)], ["ndcg@10"], out, execution=CPU, log=lambda m: None, split="dev")
    assert test.metrics["ndcg@10"] != dev.metrics["ndcg@10"]
    rows = [Expected(model, str(folder), split, "ndcg@10", rec.metrics["ndcg@10"], 1e-9, "b.csv", i)
            for i, (split, rec) in enumerate((("test", test), ("dev", dev)), start=2)]
    results = check(rows, out, execution=CPU, log=lambda m: None)
    assert [r.status for r in results] == ["OK", "OK"], [r.message for r in results]
    assert [r.got for r in results] == [test.metrics["ndcg@10"], dev.metrics["ndcg@10"]]


def test_trec_topics_and_qrels_read_like_beir_files(tiny_beir, tiny_bert_dir, tmp_path):
    """A folder with TREC files (tagged topics or Anserini's TSV topics, TREC 4-column qrels) gives the same
    record numbers as the BEIR files they were written from."""
    import json

    from harness.trec import read_topics

    lines = (tiny_beir / "queries.jsonl").read_text().splitlines()
    queries = {json.loads(x)["_id"]: json.loads(x)["text"] for x in lines}
    qrels = read_qrels(tiny_beir / "qrels" / "test.tsv")
    for layout in ("txt", "tsv"):
        folder = tmp_path / f"trec-{layout}"
        (folder / "qrels").mkdir(parents=True)
        shutil.copy(tiny_beir / "corpus.jsonl", folder / "corpus.jsonl")
        if layout == "txt":
            (folder / "topics.txt").write_text("".join(
                f"<top>\n<num> Number: {q}\n<title> {t}\n\n<desc> Description:\nnot the query\n</top>\n\n"
                for q, t in queries.items()))
        else:
            (folder / "topics.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in queries.items()))
        (folder / "qrels" / "test.tsv").write_text("".join(f"{q} 0 {d} {g}\n" for q, docs in qrels.items()
                                                           for d, g in docs.items()))
        assert read_topics(next(folder.glob("topics.*"))) == queries
        (a,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", execution=CPU,
                   log=lambda m: None)
        (b,) = run([f"hf:{tiny_bert_dir}"], [str(folder)], ["ndcg@10"], tmp_path / "b", execution=CPU,
                   log=lambda m: None)
        assert a.per_query == b.per_query and a.num_queries == b.num_queries == 8


@pytest.mark.parametrize("text,why", [("<top>\n<title> no number\n</top>\n", "has no <num>"),
                                      ("1\tone\n1\tagain\n", "duplicate topic"), ("1 no tab\n", "qid<TAB>text")])
def test_bad_topics_name_the_file_and_line(tmp_path, text, why):
    from harness.errors import DataError
    from harness.trec import read_topics

    path = tmp_path / "topics.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=why):
        read_topics(path)


@pytest.mark.parametrize("split", ["../../x", "..", "a/b", "", "dev test"])
def test_a_split_that_could_leave_its_folders_is_refused(tiny_beir, tmp_path, capsys, split):
    from harness.cli import main

    assert main(["run", "-r", "bm25", "-d", str(tiny_beir), "--split", split, "--output-dir", str(tmp_path)]) == 2
    assert "a split is a name of letters" in capsys.readouterr().err
    assert not any(tmp_path.rglob("*.json"))


def test_topics_with_bytes_that_are_not_utf8_name_the_file_and_line(tmp_path):
    from harness.errors import DataError
    from harness.trec import read_topics

    path = tmp_path / "topics.txt"
    path.write_bytes(b"<top>\n<num> 1\n<title> caf\xe9\n</top>\n")
    with pytest.raises(DataError, match=r"topics.txt:3: invalid UTF-8"):
        read_topics(path)
