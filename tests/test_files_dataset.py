"""`harness run --corpus C --topics T --qrels Q`: a dataset of three files, each read by its format's reader,
scored exactly as the same data in a BEIR folder; bad combinations refused in one line before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.data.formats import iter_corpus, read_queries
from harness.results.records import ResultRecord, load_records
from harness.trec import read_qrels


def _records(out: Path) -> list[ResultRecord]:
    found, problems = load_records(out)
    assert not problems
    return [r for _, r in found]


def _run(model: Path, out: Path, *data: str) -> int:
    return main(["run", "-r", f"hf:{model}", *data, "--output-dir", str(out), "--device", "cpu",
                 "--metric", "ndcg@10", "--metric", "recall@100"])


def _tsv_files(beir: Path, folder: Path, *, header: bool) -> tuple[Path, Path, Path]:
    """The BEIR folder's data as a TSV corpus (DPR's header, or MS MARCO's headerless id<TAB>text with the
    protocol's text), TSV topics and TREC qrels."""
    folder.mkdir()
    docs = list(iter_corpus(beir / "corpus.jsonl"))
    corpus = folder / ("psgs.tsv" if header else "collection.tsv")
    if header:
        corpus.write_text("id\ttext\ttitle\n" + "".join(f"{d.doc_id}\t{d.text}\t{d.title}\n" for d in docs))
    else:
        corpus.write_text("".join(f"{d.doc_id}\t{(d.title + ' ' + d.text).strip()}\n" for d in docs))
    topics = folder / "queries.tsv"
    topics.write_text("".join(f"{q}\t{t}\n" for q, t in read_queries(beir / "queries.jsonl").items()))
    qrels = folder / "qrels.txt"
    qrels.write_text("".join(f"{q} 0 {d} {g}\n" for q, docs_ in read_qrels(beir / "qrels" / "test.tsv").items()
                             for d, g in docs_.items()))
    return corpus, topics, qrels


@pytest.mark.parametrize("form", ["beir-files", "dpr-tsv", "msmarco-tsv"])
def test_three_files_score_as_the_same_data_in_a_beir_folder(tiny_beir, tiny_bert_dir, tmp_path, capsys, form):
    out = tmp_path / "out"
    assert _run(tiny_bert_dir, out, "-d", str(tiny_beir)) == 0
    if form == "beir-files":
        files = (tiny_beir / "corpus.jsonl", tiny_beir / "queries.jsonl", tiny_beir / "qrels" / "test.tsv")
    else:
        files = _tsv_files(tiny_beir, tmp_path / "tsv", header=form == "dpr-tsv")
    named = ["--corpus", str(files[0]), "--topics", str(files[1]), "--qrels", str(files[2])]
    assert _run(tiny_bert_dir, out, *named) == 0
    folder_record, = [r for r in _records(out) if r.dataset.startswith("local/")]
    files_record, = [r for r in _records(out) if r.dataset.startswith("files/")]
    assert files_record.dataset.startswith(f"files/{files[0].name.split('.')[0]}-")
    assert files_record.metrics == folder_record.metrics and files_record.num_queries == folder_record.num_queries
    assert files_record.documents_searched == folder_record.documents_searched == 40
    capsys.readouterr()
    assert _run(tiny_bert_dir, out, *named) == 0  # the same files: the same id, the record reused
    assert "reused record" in capsys.readouterr().err
    assert len(_records(out)) == 2


def test_the_files_id_works_wherever_a_dataset_id_does(tiny_beir, tiny_bert_dir, tmp_path):
    import harness

    name = (f"files:corpus={tiny_beir / 'corpus.jsonl'};topics={tiny_beir / 'queries.jsonl'};"
            f"qrels={tiny_beir / 'qrels' / 'test.tsv'}")
    (record,) = harness.run([f"hf:{tiny_bert_dir}"], [name], ["ndcg@10"], output_dir=tmp_path / "out",
                            execution=harness.settings.Execution(device="cpu", progress=False))
    assert record.dataset.startswith("files/corpus-") and record.split == "test"
    assert json.loads((tmp_path / "out" / record.dataset / "test" / (Path(record.run_file).stem + ".json"))
                      .read_text())["dataset"] == record.dataset


@pytest.mark.parametrize("args, says", [
    (["--corpus", "{c}"], "--topics and --qrels missing"),
    (["--corpus", "{c}", "--topics", "{t}"], "--qrels missing"),
    (["--corpus", "{c}", "--topics", "{t}", "--qrels", "{dir}/nothing.txt"], "nothing.txt: no such file"),
    (["--corpus", "{dir}", "--topics", "{t}", "--qrels", "{q}"], "it is a folder"),
    (["-d", "files:corpus={c};topics={t}"], "no qrels file"),
    (["-d", "files:corpus={c};topics={t};qrels={q};docs={c}"], "unknown part 'docs'"),
    (["-d", "files:corpus={c};corpus={c};topics={t};qrels={q}"], "corpus is given twice"),
])
def test_bad_file_datasets_are_one_line_and_nothing_runs(tiny_beir, tiny_bert_dir, tmp_path, capsys, args, says):
    fill = {"c": tiny_beir / "corpus.jsonl", "t": tiny_beir / "queries.jsonl", "q": tiny_beir / "qrels" / "test.tsv",
            "dir": tiny_beir}
    out = tmp_path / "out"
    assert _run(tiny_bert_dir, out, *(a.format(**fill) for a in args)) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and not (out.exists() and any(out.rglob("*")))


def test_the_python_api_takes_what_harness_run_takes(tiny_beir, tiny_bert_dir, tmp_path):
    """harness.run(corpus=, topics=, qrels=, run_file=) as `harness run --corpus --topics --qrels --run-file`."""
    import harness
    from harness.errors import HarnessError

    execution = harness.settings.Execution(device="cpu", progress=False)
    (record,) = harness.run([f"hf:{tiny_bert_dir}"], [], ["ndcg@10"], tmp_path / "out", execution=execution,
                            corpus=tiny_beir / "corpus.jsonl", topics=tiny_beir / "queries.jsonl",
                            qrels=tiny_beir / "qrels" / "test.tsv", run_file=tmp_path / "mine.trec")
    assert record.dataset.startswith("files/corpus-")
    assert (tmp_path / "mine.trec").read_bytes() == \
        (tmp_path / "out" / record.dataset / record.split / record.run_file).read_bytes()
    with pytest.raises(HarnessError, match="qrels missing"):
        harness.run([f"hf:{tiny_bert_dir}"], [], corpus=tiny_beir / "corpus.jsonl", topics=tiny_beir / "q.jsonl")
    with pytest.raises(HarnessError, match="names one run"):
        harness.run([f"hf:{tiny_bert_dir}", "bm25"], [str(tiny_beir)], run_file=tmp_path / "two.trec")


@pytest.mark.parametrize("part", ["corpus", "topics", "qrels"])
def test_a_gzipped_file_that_is_not_read_is_refused_with_the_fix(tiny_beir, tiny_bert_dir, tmp_path, capsys, part):
    import gzip
    import shutil

    files = {"corpus": tiny_beir / "corpus.jsonl", "topics": tiny_beir / "queries.jsonl",
             "qrels": tiny_beir / "qrels" / "test.tsv"}
    with open(files[part], "rb") as src, gzip.open(tmp_path / (files[part].name + ".gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    files[part] = tmp_path / (files[part].name + ".gz")
    args = [a for k, v in files.items() for a in (f"--{k}", str(v))]
    assert _run(tiny_bert_dir, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err.strip()
    assert "gunzip it first" in err and len(err.splitlines()) == 1


def test_one_retriever_name_as_a_string_is_one_name(tiny_beir, tiny_bert_dir, tmp_path):
    import harness

    (record,) = harness.run(f"hf:{tiny_bert_dir}", [str(tiny_beir)], ["ndcg@10"], tmp_path / "out",
                            execution=harness.settings.Execution(device="cpu", progress=False))
    assert record.dataset == "local/tiny"


def test_the_leaderboard_scores_a_missing_measure_of_a_files_dataset(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    """`harness leaderboard --metric map` scores a files: record from its run file, the dataset opened again by
    the name its record keeps; changed qrels are named and the record left as it is."""
    out = tmp_path / "out"
    qrels = tmp_path / "qrels.txt"
    qrels.write_text((tiny_beir / "qrels" / "test.tsv").read_text())
    named = ["--corpus", str(tiny_beir / "corpus.jsonl"), "--topics", str(tiny_beir / "queries.jsonl"),
             "--qrels", str(qrels)]
    assert _run(tiny_bert_dir, out, *named) == 0
    (record,) = _records(out)
    assert record.dataset_provenance["opened_as"].startswith("files:corpus=") and "map" not in record.metrics
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(out), "--metric", "map"]) == 0
    shown = capsys.readouterr()
    (scored,) = _records(out)
    assert "map" in scored.metrics and record.dataset in shown.out and "left out" not in shown.err
    from harness.metrics import evaluate, mean
    from harness.trec import read_run

    run = read_run(out / scored.dataset / scored.split / scored.run_file)
    assert scored.metrics["map"] == pytest.approx(mean(evaluate(read_qrels(qrels), run, ["map"])["map"]), abs=1e-12)
    qrels.write_text(qrels.read_text() + "q0\td5\t1\n")  # the judgements changed: not scored against new ones
    capsys.readouterr()
    main(["leaderboard", "--output-dir", str(out), "--metric", "recip_rank"])
    assert "changed since the record was computed" in capsys.readouterr().err
    assert "recip_rank" not in _records(out)[0].metrics


def test_a_changed_corpus_is_seen_when_two_of_the_files_share_a_name(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    """The record's file checksums are keyed so that no file hides another: with corpus and topics both named
    data.tsv, a rewritten corpus is a new dataset fingerprint (before, the topics' checksum overwrote the
    corpus's under the one name, and the old record was reused for a different corpus)."""
    corpus, topics, qrels = _tsv_files(tiny_beir, tmp_path / "tsv", header=False)
    (tmp_path / "c").mkdir()
    (tmp_path / "t").mkdir()
    corpus = corpus.rename(tmp_path / "c" / "data.tsv")
    topics = topics.rename(tmp_path / "t" / "data.tsv")
    named = ["--corpus", str(corpus), "--topics", str(topics), "--qrels", str(qrels)]
    out = tmp_path / "out"
    assert _run(tiny_bert_dir, out, *named) == 0
    (before,) = _records(out)
    assert len(before.dataset_provenance["sha256"]) == 3  # every file named, none hidden
    lines = corpus.read_text().splitlines()
    corpus.write_text("".join(f"{line.split(chr(9))[0]}\tthe the the the\n" for line in lines))
    capsys.readouterr()
    assert _run(tiny_bert_dir, out, *named) == 0
    assert "reused record" not in capsys.readouterr().err
    (after,) = _records(out)
    assert after.metrics != before.metrics
    assert after.dataset_provenance["sha256"] != before.dataset_provenance["sha256"]
