"""Whole input or a clear refusal: BM25 reads what the harness reads, ids are safe, every I/O failure is one
line, records that do not validate are skipped, the JVM is bounded and dies with its parent. Each test
reproduces a case that once broke that promise (several with exit 0 and a wrong number)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.data.beir import iter_corpus, read_queries
from harness.errors import DataError, HarnessError
from harness.results.records import load_records
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_qrels
from tests.conftest import make_tiny_beir

from . import _proc

QUIET = {"log": lambda m: None, "execution": Execution(device="cpu", progress=False)}


def _docs(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]


def _rewrite(src: Path, dst: Path, docs: list[dict] | None = None, *, bom: bool = False, crlf: bool = False,
             blank: bool = False, reverse_keys: bool = False, spacing: str = "", nan_meta: bool = False) -> Path:
    """A copy of a BEIR folder whose corpus file is written differently but holds the same documents."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "qrels").mkdir(exist_ok=True)
    (dst / "queries.jsonl").write_bytes((src / "queries.jsonl").read_bytes())
    (dst / "qrels" / "test.tsv").write_bytes((src / "qrels" / "test.tsv").read_bytes())
    end = "\r\n" if crlf else "\n"
    seps = {"": (", ", ": "), "tight": (",", ":"), "wide": (" ,  ", " :  ")}[spacing]
    lines = []
    for i, doc in enumerate(docs if docs is not None else _docs(src)):
        obj = dict(reversed(list(doc.items()))) if reverse_keys else dict(doc)
        if nan_meta and i % 7 == 3:
            obj["metadata"] = {"score": float("nan"), "tags": [float("inf")]}
        lines.append(json.dumps(obj, separators=seps, ensure_ascii=bool(i % 2)) + end)
        if blank and i % 5 == 0:
            lines.append(end)
    data = "".join(lines).encode("utf-8")
    (dst / "corpus.jsonl").write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return dst


def _run_file(retriever: str, folder: Path, out: Path) -> bytes:
    (rec,) = run([retriever], [str(folder)], ["ndcg@10", "recall@100"], out, **QUIET)
    assert rec.documents_searched == rec.corpus["documents"]
    return (out / rec.dataset / "test" / rec.run_file).read_bytes()


# ---- BM25 indexes what the harness reader parsed -------------------------------------------------------

@pytest.fixture(scope="module")
def clean_beir(tmp_path_factory) -> Path:
    folder = make_tiny_beir(tmp_path_factory.mktemp("clean") / "beir", n_docs=60, n_queries=10, seed=11)
    docs = _docs(folder)
    docs[5].update(title="", text="")  # the clean form of a document whose fields are null
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    with open(folder / "queries.jsonl", "a", encoding="utf-8") as f:  # would match a document indexed as "null"
        f.write(json.dumps({"_id": "qnull", "text": "null"}) + "\n")
    with open(folder / "qrels" / "test.tsv", "a", encoding="utf-8") as f:
        f.write("qnull\td0\t1\n")
    return folder


@pytest.fixture(scope="module")
def clean_bm25_run(clean_beir, tmp_path_factory) -> bytes:
    return _run_file("bm25", clean_beir, tmp_path_factory.mktemp("clean-out"))


@pytest.mark.java
@pytest.mark.slow
def test_bm25_bom_nan_metadata_and_null_fields_give_the_clean_numbers(clean_beir, clean_bm25_run, tmp_path):
    docs = _docs(clean_beir)
    docs[5].update(title=None, text=None)  # Jackson's asText() used to index these as the word "null"
    dirty = _rewrite(clean_beir, tmp_path / "dirty", docs, bom=True, nan_meta=True)
    assert (dirty / "corpus.jsonl").read_bytes().startswith(b"\xef\xbb\xbf")  # BOM: once 0 documents indexed
    assert _run_file("bm25", dirty, tmp_path / "out") == clean_bm25_run


@pytest.mark.java
@pytest.mark.slow
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bom=st.booleans(), crlf=st.booleans(), blank=st.booleans(), reverse_keys=st.booleans(),
       spacing=st.sampled_from(["", "tight", "wide"]))
def test_property_rewrites_that_keep_the_documents_keep_bm25_run_files(clean_beir, clean_bm25_run, tmp_path_factory,
                                                                         bom, crlf, blank, reverse_keys, spacing):
    folder = _rewrite(clean_beir, tmp_path_factory.mktemp("v") / "beir", bom=bom, crlf=crlf, blank=blank,
                      reverse_keys=reverse_keys, spacing=spacing)
    assert _run_file("bm25", folder, tmp_path_factory.mktemp("out")) == clean_bm25_run


@pytest.fixture(scope="module")
def clean_dense_run(clean_beir, tmp_path_factory, tiny_bert_dir) -> bytes:
    return _run_file(f"hf:{tiny_bert_dir}", clean_beir, tmp_path_factory.mktemp("clean-dense"))


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bom=st.booleans(), crlf=st.booleans(), blank=st.booleans(), reverse_keys=st.booleans(),
       spacing=st.sampled_from(["", "tight", "wide"]), nan_meta=st.booleans())
def test_property_rewrites_that_keep_the_documents_keep_dense_run_files(clean_beir, clean_dense_run, tiny_bert_dir,
                                                                          tmp_path_factory, bom, crlf, blank,
                                                                          reverse_keys, spacing, nan_meta):
    folder = _rewrite(clean_beir, tmp_path_factory.mktemp("v") / "beir", bom=bom, crlf=crlf, blank=blank,
                      reverse_keys=reverse_keys, spacing=spacing, nan_meta=nan_meta)
    assert _run_file(f"hf:{tiny_bert_dir}", folder, tmp_path_factory.mktemp("out")) == clean_dense_run


@pytest.mark.java
@pytest.mark.slow
def test_bm25_indexes_a_document_longer_than_jacksons_string_limit(tmp_path):
    folder = make_tiny_beir(tmp_path / "long", n_docs=20, n_queries=2)
    docs = _docs(folder)
    docs[7]["text"] = "needle " + "word " * 4_200_000  # 21 MB: over Jackson's 20M-character default
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    with open(folder / "queries.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "qn", "text": "needle"}) + "\n")
    with open(folder / "qrels" / "test.tsv", "a", encoding="utf-8") as f:
        f.write("qn\td7\t1\n")
    (rec,) = run(["bm25"], [str(folder)], ["recall@1"], tmp_path / "r", **QUIET)
    assert rec.index["documents"] == rec.documents_searched == 20
    assert rec.per_query["recall@1"]["qn"] == 1.0


# ---- ids are checked where they are read ----------------------------------------------------------------

BAD_IDS = ["d1\nx", "d1\u2028x", "d1\u2029x", "d1\u0085x", "d1 x", "d1\tx", "d1\x00x", "d1\x1fx"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_document_id_with_whitespace_or_a_line_separator_is_refused(tmp_path, bad):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"_id": "d0", "text": "a"}) + "\n" + json.dumps({"_id": bad, "text": "b"}) + "\n",
                      encoding="utf-8")
    with pytest.raises(DataError) as info:
        list(iter_corpus(corpus))
    assert info.value.line == 2 and repr(bad) in str(info.value) and "\n" not in str(info.value)
    assert "ids may not contain whitespace" in str(info.value)


@pytest.mark.parametrize("bad", BAD_IDS[1:])  # a newline cannot be inside a TSV field
def test_a_query_id_or_qrels_id_with_a_separator_is_refused(tmp_path, bad):
    queries = tmp_path / "queries.jsonl"
    queries.write_text(json.dumps({"_id": bad, "text": "q"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="query id"):
        read_queries(queries)
    qrels = tmp_path / "test.tsv"
    if "\t" not in bad:
        qrels.write_text(f"query-id\tcorpus-id\tscore\nq1\t{bad}\t1\n", encoding="utf-8")
        with pytest.raises(DataError, match="document id") as info:
            read_qrels(qrels)
        assert info.value.line == 2


def test_an_id_with_a_line_separator_stops_the_run_with_one_line(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    docs = _docs(tiny_beir)
    docs[3]["_id"] = "d3\u2028shifted"  # once: every later id in the store shifted by one, nDCG 0.84 -> 0.26
    with open(tiny_beir / "corpus.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
    rc = main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "r"),
               "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "corpus.jsonl:4:" in err[0] and "U+2028" in err[0]
    assert not list((tmp_path / "r").rglob("*.json"))


# ---- I/O failures are one line, and leave nothing half-written -------------------------------------------

def _limited(limit: int):
    def setup() -> None:
        import resource

        os.setsid()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return setup


def test_disk_full_while_writing_embeddings_is_one_line_and_leaves_no_temporary(tiny_beir, tiny_bert_dir, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "out"
    args = [sys.executable, "-m", "harness", "run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir),
            "--output-dir", str(out), "--device", "cpu"]
    proc = subprocess.run(args, cwd=_proc.REPO, env=_proc.harness_env(cache), capture_output=True, text=True,
                          timeout=300, preexec_fn=_limited(2000))  # a shard of 40 x 16 floats is 2688 bytes
    err = [ln for ln in proc.stderr.splitlines() if ln.strip() and "\r" not in ln]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and err[-1].startswith("harness: error: ")
    assert "shard-00000.npy: wrote 2000 bytes of 2688 (disk full?)" in err[-1]
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith((".tmp", ".part"))]
    assert leftovers == []
    assert not list(out.rglob("*.json"))


def test_an_output_folder_that_cannot_be_made_is_refused_before_any_work(tiny_beir, tiny_bert_dir, tmp_path,
                                                                          capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    rc = main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(blocker / "results"),
               "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(blocker / "results") in err[0] and "not writable" in err[0]
    assert not (tmp_path / "cache" / "embeddings").exists()  # nothing was encoded first


def test_an_unreadable_corpus_is_one_line(tiny_beir, tmp_path, capsys, monkeypatch):
    import builtins

    corpus = str(tiny_beir / "corpus.jsonl")
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file) == corpus or str(Path(str(file)).resolve()) == str(Path(corpus).resolve()):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    rc = main(["run", "-r", "bm25", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "corpus.jsonl: Permission denied" in err[0]


def test_the_leaderboard_rebuild_never_hides_the_error_that_ended_a_run(tiny_beir, tmp_path, capsys, monkeypatch):
    import harness.runner

    def broken_rebuild(output_dir):
        raise OSError(28, "No space left on device", str(Path(output_dir) / "leaderboard.csv"))

    def failing_stats(ds):
        raise HarnessError(f"{ds.corpus_path}: the error that ended the run")

    monkeypatch.setattr(harness.runner, "rebuild", broken_rebuild)
    monkeypatch.setattr(harness.runner, "corpus_stats", failing_stats)
    rc = main(["run", "-r", "bm25", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "Traceback" not in "\n".join(err)
    assert err[-1].endswith("the error that ended the run")
    assert any("leaderboard was not rebuilt" in line and "No space left" in line for line in err)


# ---- records that parse but do not validate ---------------------------------------------------------------

@pytest.mark.parametrize("damage", [lambda r: r.pop("metrics"), lambda r: r["metrics"].update({"ndcg@10": "high"}),
                                    lambda r: r.update(per_query=[1, 2]), lambda r: r.update(retriever=None)])
def test_a_record_that_does_not_validate_is_listed_and_skipped(tiny_beir, tmp_path, capsys, damage):
    out = tmp_path / "r"
    (rec,) = run(["bm25"], [str(tiny_beir)], ["ndcg@10"], out, **QUIET)
    good = json.loads((out / rec.dataset / "test" / "bm25.json").read_text())
    bad = dict(good, metrics=dict(good["metrics"]))
    damage(bad)
    (out / rec.dataset / "test" / "other.json").write_text(json.dumps(bad))
    assert main(["leaderboard", "--output-dir", str(out)]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.err and "other.json" in captured.err
    assert "bm25" in captured.out
    records, problems = load_records(out)
    assert len(records) == 1 and len(problems) == 1
    # a later run into the same folder still works
    assert main(["run", "-r", "bm25", "-d", str(tiny_beir), "--output-dir", str(out), "--metric", "mrr@10"]) == 0


def test_leaderboard_of_a_folder_that_does_not_exist_is_an_error(tmp_path, capsys):
    assert main(["leaderboard", "--output-dir", str(tmp_path / "nope")]) == 2
    assert "no such results folder" in capsys.readouterr().err


# ---- smaller readers --------------------------------------------------------------------------------------

def test_a_blank_line_before_the_qrels_header_is_not_a_bad_grade(tmp_path):
    path = tmp_path / "test.tsv"
    path.write_text("\n\nquery-id\tcorpus-id\tscore\nq1\td1\t1\n")
    assert read_qrels(path) == {"q1": {"d1": 1}}


def test_a_suite_lists_every_missing_dataset_with_one_fetch_command(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "empty"))
    rc = main(["run", "-r", "bm25", "--suite", "beir", "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "datasets are not available locally" in err
    for name in ("beir/msmarco", "beir/scifact", "beir/cqadupstack/android", "beir/cqadupstack/wordpress"):
        assert f"  {name}:" in err
    assert "harness fetch beir/msmarco beir/trec-covid" in err


# ---- the JVM: bounded, and never outlives its parent --------------------------------------------------------

def test_jvm_heap_is_bounded_and_overridable(tmp_path, monkeypatch):
    from harness.retrievers.lucene_index import jvm_heap_bytes

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("x" * 1000 + "\n")
    heap = jvm_heap_bytes(corpus)
    assert 512 * 2**20 <= heap <= 2**30 + 8 * 1001
    monkeypatch.setenv("HARNESS_JVM_HEAP", "3g")
    assert jvm_heap_bytes(corpus) == 3 * 2**30
    monkeypatch.setenv("HARNESS_JVM_HEAP", "lots")
    with pytest.raises(HarnessError, match="HARNESS_JVM_HEAP"):
        jvm_heap_bytes(corpus)


def _workers(marker: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "harness.retrievers.lucene_worker" in cmd and marker in cmd:
                found.append(int(proc.name))
    return found


@pytest.mark.java
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs /proc")
def test_sigkill_of_a_bm25_run_leaves_no_process_and_the_next_run_cleans_up(tmp_path):
    rng = random.Random(5)
    data = make_tiny_beir(tmp_path / "big", n_docs=40_000, n_queries=20, seed=rng.randint(0, 99))
    cache = tmp_path / "cache"
    proc = _proc.start(["run", "-r", "bm25", "-d", str(data), "--output-dir", str(tmp_path / "r")], cache,
                       tmp_path / "log")
    _proc.wait_for(proc, lambda: bool(_workers(str(cache))), timeout=120, what="the Lucene worker")
    proc.send_signal(signal.SIGKILL)  # the harness process only: nobody tells the worker
    proc.wait()
    deadline = time.monotonic() + 10
    while _workers(str(cache)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _workers(str(cache)) == []
    staging = list((cache / "indexes" / "lucene").glob(".*.staging"))
    assert staging  # the killed run's staging folder is still there ...
    assert _proc.run(["run", "-r", "bm25", "-d", str(data), "--output-dir", str(tmp_path / "r")], cache,
                     tmp_path / "log2") == 0
    assert not list((cache / "indexes" / "lucene").glob(".*.staging"))  # ... and the next run removed it
