"""End to end on a tiny BEIR folder: run files, records, leaderboard, reuse, errors."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.metrics import evaluate, mean
from harness.runner import run
from harness.settings import EncodeSettings, Execution
from harness.trec import read_qrels, read_run

CPU = Execution(device="cpu", progress=False)


def _hf(tiny_bert_dir) -> str:
    return f"hf:{tiny_bert_dir}"


def test_dense_run_writes_run_record_and_leaderboard(tiny_beir, tiny_bert_dir, tmp_path):
    out = tmp_path / "results"
    logs: list[str] = []
    (rec,) = run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10", "recall@5"], out, log=logs.append)
    run_file = out / rec.dataset / "test" / rec.run_file
    assert run_file.is_file()
    # the record's numbers are exactly those of the run file on disk
    per_query = evaluate(read_qrels(tiny_beir / "qrels" / "test.tsv"), read_run(run_file), ["ndcg@10", "recall@5"])
    assert rec.metrics["ndcg@10"] == pytest.approx(mean(per_query["ndcg@10"]), abs=1e-12)
    assert rec.per_query["recall@5"] == pytest.approx(per_query["recall@5"])
    assert rec.num_queries == 8
    for key in ("environment", "dataset_provenance", "retriever_provenance", "timings", "protocol"):
        assert getattr(rec, key)
    assert rec.retriever_provenance["revision"].startswith("sha256:")
    assert len(rec.dataset_provenance["sha256"]["corpus.jsonl"]) == 64
    board = (out / "leaderboard.csv").read_text().splitlines()
    assert board[0] == "retriever,settings,dataset,split,ndcg@10,recall@5"
    assert len(board) == 2


def test_second_run_recomputes_nothing(tiny_beir, tiny_bert_dir, tmp_path):
    out = tmp_path / "results"
    first = run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)[0]
    run_file = out / first.dataset / "test" / first.run_file
    mtime = run_file.stat().st_mtime_ns
    logs: list[str] = []
    second = run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10"], out, log=logs.append)[0]
    assert second.metrics == first.metrics
    assert run_file.stat().st_mtime_ns == mtime
    assert any("reused record and run file" in m for m in logs)
    # a new metric is computed from the existing run file, without retrieving again
    logs.clear()
    third = run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10", "mrr@10"], out, log=logs.append)[0]
    assert "mrr@10" in third.metrics and run_file.stat().st_mtime_ns == mtime
    assert any("reused run file" in m for m in logs)


def test_a_different_precision_is_not_reused_silently(tiny_beir, tiny_bert_dir, tmp_path):
    out = tmp_path / "results"
    fp32 = run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None, execution=CPU)[0]
    assert fp32.retriever_provenance["compute"]["precision"] == "fp32"
    logs: list[str] = []
    bf16 = run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10"], out, log=logs.append, execution=CPU,
               settings=EncodeSettings(precision="bf16"))[0]
    # neither the fp32 record nor the fp32 embeddings were reused (the cache may be shared with other tests,
    # so bf16 embeddings of this corpus may exist already)
    assert not any("reused record" in m for m in logs)
    assert bf16.index["path"] != fp32.index["path"] and bf16.run_file != fp32.run_file
    assert bf16.fingerprint != fp32.fingerprint
    assert bf16.retriever_provenance["compute"] == {"device": "cpu", "precision": "bf16", "forward": "transformers"}
    assert [c["precision"] for c in bf16.index["computed_with"]] == ["bf16"]


def test_embeddings_are_reused_across_output_dirs(tiny_beir, tiny_bert_dir, tmp_path):
    run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", log=lambda m: None)
    from harness.datasets import resolve_dataset
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.registry import resolve_retriever

    retriever = DenseRetriever(resolve_retriever(_hf(tiny_bert_dir)), execution=CPU)
    info = retriever.index(resolve_dataset(str(tiny_beir)))
    assert info.embeddings == "reused"


def test_embeddings_are_shared_by_relative_and_absolute_paths(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch):
    import os

    from harness.datasets import resolve_dataset
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.registry import resolve_retriever

    run([_hf(tiny_bert_dir)], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", log=lambda m: None)
    monkeypatch.chdir(tmp_path)
    relative = "hf:" + os.path.relpath(tiny_bert_dir, tmp_path)
    retriever = DenseRetriever(resolve_retriever(relative), execution=CPU)
    assert retriever.index(resolve_dataset(str(tiny_beir))).embeddings == "reused"


def test_self_hits_are_dropped(tmp_path, tiny_bert_dir):
    from tests.conftest import make_tiny_beir

    folder = make_tiny_beir(tmp_path / "self", n_docs=10, n_queries=3)
    # give the queries ids that are also document ids
    text = (folder / "queries.jsonl").read_text().replace('"q0"', '"d0"')
    (folder / "queries.jsonl").write_text(text)
    qrels = (folder / "qrels" / "test.tsv").read_text().replace("q0\t", "d0\t")
    (folder / "qrels" / "test.tsv").write_text(qrels)
    # a folder gets BEIR's identical-id rule only when asked (issue 35): --drop-self-hits
    (kept,) = run([_hf(tiny_bert_dir)], [str(folder)], ["recall@10"], tmp_path / "r", log=lambda m: None)
    assert "d0" in read_run(tmp_path / "r" / kept.dataset / "test" / kept.run_file)["d0"]
    (rec,) = run([_hf(tiny_bert_dir)], [str(folder)], ["recall@10"], tmp_path / "r", drop_self_hits=True,
                 log=lambda m: None)
    hits = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    assert "d0" in hits and "d0" not in hits["d0"]
    assert len(hits["d0"]) == 9
    assert rec.removed_by_protocol == {"drop_self_hits": {"d0": 1}} and rec.run_file != kept.run_file


def test_unknown_dataset_suggests(capsys):
    assert main(["run", "--retriever", "bm25", "--dataset", "beir/scifactt"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'beir/scifact'" in err and "Traceback" not in err


def test_unknown_retriever_suggests(capsys, tiny_beir):
    assert main(["run", "--retriever", "contriver", "--dataset", str(tiny_beir)]) == 2
    assert "did you mean 'contriever'" in capsys.readouterr().err


def test_contriever_offline_and_uncached_fails_cleanly(capsys, shared_data, tmp_path):
    code = main(["run", "--retriever", "contriever", "--dataset", "beir/scifact", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "facebook/contriever" in err and "hf:/path/to/model" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_missing_dataset_offline_names_layout_and_fix(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "empty"))
    assert main(["run", "--retriever", "bm25", "--dataset", "beir/nfcorpus", "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "corpus.jsonl, queries.jsonl and qrels/test.tsv" in err
    assert "nfcorpus.zip" in err and "a89dba18a62ef92f7d323ec890a0d38d" in err and "HARNESS_DATA" in err


def test_evaluate_command(tmp_path, capsys):
    (tmp_path / "qrels").write_text("q1 0 a 1\nq1 0 b 0\nq2 0 c 2\n")
    (tmp_path / "run").write_text("q1 Q0 a 1 2.0 x\nq1 Q0 b 2 1.0 x\nq2 Q0 d 1 1.0 x\n")
    assert main(["evaluate", "--qrels", str(tmp_path / "qrels"), "--run", str(tmp_path / "run"),
                 "--metric", "ndcg@10", "--metric", "p@1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["metrics"] == {"ndcg@10": 0.5, "p@1": 0.5}


def test_run_requires_a_dataset(capsys):
    with pytest.raises(HarnessError):
        run(["bm25"], [], ["ndcg@10"])
