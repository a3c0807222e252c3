"""``irds:<id>`` (issue 29): any ir_datasets collection with documents, queries and qrels, offline here on tiny
collections registered in ir_datasets' registry from local files (as a user registers their own)."""

from __future__ import annotations

import json
import uuid

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.metrics import evaluate, mean
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_qrels, read_run

ir_datasets = pytest.importorskip("ir_datasets")
CPU = Execution(device="cpu", progress=False)
WORDS = ["apple", "river", "stone", "cloud", "forest", "engine", "violin", "harbor", "pepper", "saddle"]


@pytest.fixture(scope="module")
def tiny_irds(tmp_path_factory):
    """``<name>`` (documents only), ``<name>/dev`` and ``<name>/test`` (queries and graded TREC qrels over the
    same documents), and ``<name>-broken/test``, whose files are not there (ir_datasets cannot provide them)."""
    import random

    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    folder = tmp_path_factory.mktemp("irds-files")
    rng = random.Random(0)
    docs = {f"D{i}": " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for i in range(30)}
    (folder / "docs.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in docs.items()))
    for split, first in (("dev", 0), ("test", 10)):
        lines, qrels = [], []
        for j in range(6):
            target = f"D{first + j}"
            lines.append(f"{split}{j}\t{' '.join(docs[target].split()[:3])}\n")
            qrels.append(f"{split}{j} 0 {target} {rng.choice([1, 2, 3])}\n{split}{j} 0 D{first + j + 1} 0\n")
        (folder / f"queries-{split}.tsv").write_text("".join(lines))
        (folder / f"qrels-{split}.txt").write_text("".join(qrels))
    name = f"harness-test-{uuid.uuid4().hex[:8]}"
    corpus = TsvDocs(LocalDownload(folder / "docs.tsv"))
    defs = {0: "not relevant", 1: "related", 2: "relevant", 3: "perfect"}
    ir_datasets.registry.register(name, Dataset(corpus))
    for split in ("dev", "test"):
        ir_datasets.registry.register(f"{name}/{split}", Dataset(
            corpus, TsvQueries(LocalDownload(folder / f"queries-{split}.tsv")),
            TrecQrels(LocalDownload(folder / f"qrels-{split}.txt"), defs)))
    missing = folder / "not-here"
    ir_datasets.registry.register(f"{name}-broken/test", Dataset(
        TsvDocs(LocalDownload(missing / "docs.tsv", mkdir=False)),
        TsvQueries(LocalDownload(missing / "q.tsv", mkdir=False)), TrecQrels(LocalDownload(missing / "qrels.txt",
                                                                                          mkdir=False), defs)))
    return name


def test_an_irds_id_runs_like_a_folder_and_its_splits_are_two_records(tiny_irds, tiny_bert_dir, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    out, model = tmp_path / "results", f"hf:{tiny_bert_dir}"
    (dev,) = run([model], [f"irds:{tiny_irds}/dev"], ["nDCG@10", "R(rel=2)@10", "Judged@10"], out, execution=CPU,
                 log=lambda m: None)
    (test,) = run([model], [f"irds:{tiny_irds}"], ["nDCG@10"], out, execution=CPU, log=lambda m: None, split="test")
    assert (dev.dataset, dev.split, dev.num_queries) == (f"irds:{tiny_irds}/dev", "dev", 6)
    assert (test.dataset, test.split, test.num_queries) == (f"irds:{tiny_irds}", "test", 6)
    assert dev.dataset_provenance["sha256"]["corpus.jsonl"] == test.dataset_provenance["sha256"]["corpus.jsonl"]
    # the numbers are those of the run file against ir_datasets' own qrels
    qrels = {}
    for q in ir_datasets.load(f"{tiny_irds}/dev").qrels_iter():
        qrels.setdefault(q.query_id, {})[q.doc_id] = q.relevance
    per_query = evaluate(qrels, read_run(out / dev.dataset / "dev" / dev.run_file), ["ndcg@10", "recall(rel=2)@10"])
    assert dev.metrics["ndcg@10"] == pytest.approx(mean(per_query["ndcg@10"]), abs=1e-12)
    assert dev.metrics["recall(rel=2)@10"] == pytest.approx(mean(per_query["recall(rel=2)@10"]), abs=1e-12)
    assert dev.metrics["judged@10"] > 0
    # one corpus export for the collection, one topics export per id; a second run exports nothing again
    exports = list((tmp_path / "cache" / "irds").iterdir())
    assert len([p for p in exports if p.is_dir()]) == 1
    corpus_dir = next(p for p in exports if p.is_dir())
    assert len([p for p in (corpus_dir / "topics").iterdir() if p.is_dir()]) == 2
    sealed = (corpus_dir / ".irds-export.json").stat().st_mtime_ns
    assert json.loads((corpus_dir / ".irds-export.json").read_text())["documents"] == 30
    run([model], [f"irds:{tiny_irds}/dev"], ["nDCG@10"], out, execution=CPU, log=lambda m: None)
    assert (corpus_dir / ".irds-export.json").stat().st_mtime_ns == sealed
    assert read_qrels(next(corpus_dir.glob("topics/*/qrels/dev.tsv")))["dev0"]


@pytest.mark.java
def test_bm25_on_an_irds_id(tiny_irds, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "results"
    assert main(["run", "--retriever", "bm25", "--dataset", f"irds:{tiny_irds}", "--split", "dev", "--metric",
                 "RR@10", "--output-dir", str(out)]) == 0
    record = json.loads(next((out / f"irds:{tiny_irds}" / "dev").glob("bm25*.json")).read_text())
    assert record["split"] == "dev" and record["num_queries"] == 6 and record["metrics"]["mrr@10"] > 0.5


@pytest.mark.parametrize("suffix,message", [
    ("", "has no queries and no relevance judgements (qrels)"),
    ("/nope", "ir_datasets has no dataset"),
    ("-broken/test", "could not provide its documents"),
])
def test_what_cannot_be_run_is_one_line(tiny_irds, tmp_path, monkeypatch, capsys, suffix, message):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(["run", "--retriever", "bm25", "--dataset", f"irds:{tiny_irds}{suffix}", "--output-dir",
                 str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    if suffix == "-broken/test":
        assert "IR_DATASETS_HOME" in err
    assert not (tmp_path / "cache" / "irds").exists() or not any((tmp_path / "cache" / "irds").rglob(
        ".irds-export.json"))


def test_a_split_the_collection_lacks_is_refused(tiny_irds):
    from harness.datasets import resolve_dataset

    with pytest.raises(HarnessError, match=f"ir_datasets has no {tiny_irds}/train"):
        resolve_dataset(f"irds:{tiny_irds}", split="train")


def test_registered_ids_carry_their_official_measures():
    from harness.data.registry import DATASETS

    dl19 = DATASETS.get("msmarco-passage/trec-dl-2019/judged")
    assert dl19.kind == "irds" and dl19.metrics == ("map(rel=2)", "ndcg@10", "recall(rel=2)@1000")
    assert DATASETS.get("msmarco-passage/dev/small").metrics == ("mrr@10", "recall@1000")
    assert not DATASETS.get("msmarco-passage/dev/small").protocol.drop_self_hits  # qids and doc ids overlap
    assert DATASETS.get("lotte/science/test/forum").metrics[0] == "success@5"


def test_offline_ir_datasets_opens_no_connection(tmp_path, monkeypatch, capsys):
    """Under HARNESS_OFFLINE=1 ir_datasets' downloaders refuse before any connection; the one line names the
    address it would have fetched and where ir_datasets looks for its files."""
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import Download, RequestsDownload

    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds-home"))
    url = "https://example.invalid/harness-test/docs.tsv"
    name = f"harness-test-remote-{uuid.uuid4().hex[:8]}"
    remote = Download([RequestsDownload(url)], cache_path=str(tmp_path / "irds-home" / "docs.tsv"))
    ir_datasets.registry.register(name, Dataset(TsvDocs(remote), TsvQueries(remote), TrecQrels(remote, {1: "r"})))
    assert main(["run", "-r", "bm25", "-d", f"irds:{name}", "--output-dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "HARNESS_OFFLINE=1: not downloading" in err and url in err and "IR_DATASETS_HOME" in err
