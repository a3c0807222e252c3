"""Nothing differs silently: every setting that changes a number decides reuse, and nothing is re-derived
from a lossy form. Each test reproduces a case that once reported a wrong or vanished number with exit 0."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from harness.cli import build_parser, main
from harness.datasets import resolve_dataset
from harness.errors import HarnessError
from harness.io import Checksums, cached_sha256
from harness.results.leaderboard import rebuild, table
from harness.results.records import load_records
from harness.retrievers.dense import DenseRetriever
from harness.retrievers.registry import folder_name, resolve_retriever
from harness.runner import corpus_stats, run
from harness.settings import REFERENCE, EncodeSettings, Execution
from harness.trec import quantize, read_run, write_run
from tests.conftest import make_tiny_beir, make_tiny_bert

CPU = Execution(device="cpu", progress=False)
QUIET = {"log": lambda m: None, "execution": CPU}


def _records(out):
    records, problems = load_records(out)
    assert problems == []
    return [r for _, r in records]


# 1. adding a metric keeps the metrics a record already had


def test_a_new_metric_on_a_finished_run_keeps_the_old_ones(tiny_beir, tiny_bert_dir, tmp_path):
    out = tmp_path / "r"
    (first,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], None, out, **QUIET)
    assert list(first.metrics) == ["ndcg@10", "recall@100", "recall@1000"]
    (again,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["mrr@10"], out, **QUIET)
    assert list(again.metrics) == ["ndcg@10", "recall@100", "recall@1000", "mrr@10"]
    assert {m: again.metrics[m] for m in first.metrics} == first.metrics
    assert set(again.per_query) == set(again.metrics)
    (on_disk,) = _records(out)
    assert on_disk.metrics == again.metrics
    header = (out / "leaderboard.csv").read_text().splitlines()[0]
    assert header == "retriever,settings,dataset,split,ndcg@10,recall@100,recall@1000,mrr@10"


def test_cli_mrr_on_a_finished_run_keeps_ndcg_and_recall(tiny_beir, tiny_bert_dir, tmp_path):
    out = tmp_path / "r"
    common = ["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(out), "--device", "cpu"]
    assert main(common) == 0
    assert main([*common, "--metric", "mrr@10"]) == 0
    (rec,) = _records(out)
    assert {"ndcg@10", "recall@100", "recall@1000", "mrr@10"} <= set(rec.metrics)


# 2. stale reuse of embeddings and runs


def test_a_changed_model_config_is_not_served_old_embeddings(tiny_beir, tmp_path):
    model = make_tiny_bert(tmp_path / "bert", layers=2, seed=3)
    (two,) = run([f"hf:{model}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", **QUIET)
    config = json.loads((model / "config.json").read_text())
    config["num_hidden_layers"] = 1  # same weights file, another model
    (model / "config.json").write_text(json.dumps(config))
    logs: list[str] = []
    (one,) = run([f"hf:{model}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", log=logs.append, execution=CPU)
    assert not any("reused" in m for m in logs)
    assert one.fingerprint != two.fingerprint
    assert one.retriever_provenance["model_files_sha256"] != two.retriever_provenance["model_files_sha256"]
    # what a fresh cache computes for the one-layer model, to the last digit
    fresh_model = tmp_path / "fresh-bert"
    shutil.copytree(model, fresh_model)
    os.environ["HARNESS_CACHE"], old_cache = str(tmp_path / "fresh-cache"), os.environ["HARNESS_CACHE"]
    try:
        (fresh,) = run([f"hf:{fresh_model}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "b", **QUIET)
    finally:
        os.environ["HARNESS_CACHE"] = old_cache
    assert one.per_query == fresh.per_query


def test_a_changed_tokenizer_or_pooling_file_changes_the_model_digest(tmp_path):
    from harness.retrievers.hub import model_digest

    model = make_tiny_bert(tmp_path / "bert", st_files=True)
    before = model_digest(model)
    pooling = model / "1_Pooling" / "config.json"
    pooling.write_text(pooling.read_text().replace('"pooling_mode_cls_token": true', '"pooling_mode_cls_token": false'))
    after_pooling = model_digest(model)
    (model / "tokenizer_config.json").write_text((model / "tokenizer_config.json").read_text() + " ")
    assert len({before, after_pooling, model_digest(model)}) == 3
    (model / "README.md").write_text("notes")  # documentation changes nothing
    (model / "training_state.pt").write_bytes(b"state")
    assert model_digest(model) == model_digest(model)


def test_an_edit_with_the_same_size_and_mtime_is_seen(tiny_beir, tmp_path):
    corpus = tiny_beir / "corpus.jsonl"
    before = cached_sha256(corpus)
    st = os.stat(corpus)
    text = corpus.read_text()
    corpus.write_text(text.replace('"d0"', '"dX"', 1))  # same size
    os.utime(corpus, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored
    assert os.stat(corpus).st_size == st.st_size and os.stat(corpus).st_mtime_ns == st.st_mtime_ns
    assert cached_sha256(corpus) != before


def test_force_rehashes_instead_of_trusting_the_memo(tiny_beir, tmp_path, monkeypatch):
    import hashlib

    from harness import io
    from harness.paths import cache_root

    monkeypatch.setattr(io, "RACY_NS", 0)  # the fixture's files are seconds old: remembered as older ones are

    corpus = tiny_beir / "corpus.jsonl"
    true = cached_sha256(corpus)
    memo = cache_root() / "checksums" / f"{hashlib.sha256(io.file_identity(corpus).encode()).hexdigest()[:32]}.sha256"
    memo.write_text("0" * 64 + "\n")  # a stale or tampered memo
    io._HASHED.clear()
    assert cached_sha256(corpus) == "0" * 64  # trusted without --force
    forced = Checksums(trust_memo=False)  # what Runner(force=True) holds and passes to where files are hashed
    assert cached_sha256(corpus, forced) == true
    assert memo.read_text().strip() == true  # and mended
    assert cached_sha256(corpus) == true  # so that what is hashed after it reads the true value


def test_force_is_a_value_of_its_runner_not_a_switch_of_the_process(tiny_beir, tmp_path, monkeypatch):
    """Once, Runner(force=True) turned re-hashing on for the rest of the process: every later run, forced or
    not, hashed every file again. Now a runner's checksums are its own: it hashes each file again once."""
    from harness import io
    from harness.runner import Runner

    monkeypatch.setattr(io, "RACY_NS", 0)  # the fixture's files are seconds old: remembered as older ones are
    forced = Runner(output_dir=tmp_path / "a", force=True, log=lambda m: None)
    assert forced.checksums.trust_memo is False and forced.options.checksums is forced.checksums
    corpus = tiny_beir / "corpus.jsonl"
    hashed: list[Path] = []
    real = io.sha256_file
    monkeypatch.setattr(io, "sha256_file", lambda path, chunk=1 << 20: hashed.append(path) or real(path, chunk))
    io.cached_sha256(corpus)
    forced.checksums.sha256(corpus)
    forced.checksums.sha256(corpus)
    assert hashed == [corpus, corpus]  # once to fill the memo, once again for the forced runner, not twice
    later = Runner(output_dir=tmp_path / "b", log=lambda m: None)
    assert later.checksums.trust_memo is True
    later.checksums.sha256(corpus)
    io.cached_sha256(corpus)
    assert hashed == [corpus, corpus]  # a runner made after the forced one trusts the (mended) memo


def test_a_resumed_run_with_another_shard_size_searches_the_whole_corpus(tiny_bert_dir, tmp_path, monkeypatch):
    data = make_tiny_beir(tmp_path / "data", n_docs=40, n_queries=8, seed=4)
    (ref,) = run([f"hf:{tiny_bert_dir}"], [str(data)], ["ndcg@10", "recall@100"], tmp_path / "ref", **QUIET)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    spec, ds = resolve_retriever(f"hf:{tiny_bert_dir}"), resolve_dataset(str(data))
    killed = DenseRetriever(spec, execution=Execution(device="cpu", shard_size=10, progress=False))
    killed.index(ds)
    store = killed.corpus_store(ds)
    store.manifest_path.unlink()  # as if killed after shards 0 and 1 of 4
    for i in (2, 3):
        for p in store.dir.glob(f"shard-{i:05d}*"):
            p.unlink()
    (rec,) = run([f"hf:{tiny_bert_dir}"], [str(data)], ["ndcg@10", "recall@100"], tmp_path / "out",
                 log=lambda m: None, execution=Execution(device="cpu", shard_size=15, progress=False))
    assert rec.documents_searched == 40 and rec.corpus["documents"] == 40
    assert rec.per_query == ref.per_query
    run_a = read_run(tmp_path / "ref" / ref.dataset / "test" / ref.run_file)
    run_b = read_run(tmp_path / "out" / rec.dataset / "test" / rec.run_file)
    # the same documents, every one scored: shards group texts into other batches, which moves float32
    # rounding only (measured: 1e-7 relative), as the thread count or the device does
    assert {q: set(d) for q, d in run_a.items()} == {q: set(d) for q, d in run_b.items()}
    for q in run_a:
        for d, score in run_a[q].items():
            assert run_b[q][d] == pytest.approx(score, rel=1e-6)


def test_a_store_whose_shards_do_not_tile_the_corpus_is_refused(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    spec, ds = resolve_retriever(f"hf:{tiny_bert_dir}"), resolve_dataset(str(tiny_beir))
    retriever = DenseRetriever(spec, execution=Execution(device="cpu", shard_size=10, progress=False))
    retriever.index(ds)
    store = retriever.corpus_store(ds)
    seal = store.dir / "shard-00002.json"
    meta = json.loads(seal.read_text())
    seal.write_text(json.dumps({**meta, "start": 25}))  # a seal from another layout
    assert not store.complete
    with pytest.raises(HarnessError, match="shard 2 starts at row 25, expected 20"):
        store.finish(4, 40, 16)


def test_the_search_count_must_equal_the_corpus(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(DenseRetriever, "search", _search_one_shard_less)
    with pytest.raises(HarnessError, match="documents were searched"):
        run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r",
            log=lambda m: None, execution=Execution(device="cpu", shard_size=10, progress=False))
    assert not list((tmp_path / "r").rglob("*.json")) and not list((tmp_path / "r").rglob("*.trec"))


def _search_one_shard_less(self, queries, k, context):
    from harness.retrievers.base import Searched
    from harness.search import topk_exact

    vectors = self.encoders.encode_queries(list(queries.values()), context)
    shards = list(self.corpus_store(context.dataset).shards())[:-1]
    scores, docs, searched = topk_exact(vectors, shards, k)
    return Searched({q: dict(zip(docs[i], map(float, scores[i]), strict=False)) for i, q in enumerate(queries)},
                    searched)


def test_corpus_statistics_depend_on_the_qrels_not_only_the_queries(tmp_path):
    good = make_tiny_beir(tmp_path / "good", n_docs=20, n_queries=4)
    bad = tmp_path / "bad"
    shutil.copytree(good, bad)
    qrels = (bad / "qrels" / "test.tsv").read_text().replace("\td1\t", "\tmissing-doc\t")
    (bad / "qrels" / "test.tsv").write_text(qrels)
    assert corpus_stats(resolve_dataset(str(good)))["judged_documents_not_in_corpus"] == 0
    assert corpus_stats(resolve_dataset(str(bad)))["judged_documents_not_in_corpus"] >= 1


# 3. records of different computations never overwrite one another


def test_runs_in_two_precisions_keep_both_records(tiny_beir, tiny_bert_dir, tmp_path):
    out = tmp_path / "r"
    (fp32,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], out, **QUIET)
    (bf16,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], out,
                  settings=EncodeSettings(precision="bf16"), **QUIET)
    assert fp32.settings == {} and bf16.settings == {"precision": "bf16"}
    assert fp32.run_file != bf16.run_file
    labels = sorted(r.label for r in _records(out))
    name = folder_name(tiny_bert_dir)
    assert labels == [name, f"{name} [precision=bf16]"]
    df, _ = rebuild(out)
    pivot, _, _ = table(df, "ndcg@10")
    assert sorted(pivot.index) == labels
    # the reference run is still reused as it was
    logs: list[str] = []
    run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], out, log=logs.append, execution=CPU)
    assert any("reused record" in m for m in logs)


def test_a_setting_equal_to_the_models_own_is_the_reference(tiny_beir, tiny_bert_dir, tmp_path):
    (default,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", **QUIET)
    logs: list[str] = []
    (same,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r",
                  settings=EncodeSettings(max_length=128, pooling="mean"), log=logs.append, execution=CPU)
    assert same.settings == {} and same.fingerprint == default.fingerprint
    assert any("reused record" in m for m in logs)
    (short,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r",
                   settings=EncodeSettings(max_length=8, query_prefix="query: "), **QUIET)
    assert short.settings == {"max_length": 8, "query_prefix": "query: "}
    assert short.retriever_provenance["encoder"]["max_length"] == 8
    # the tiny BERT has 128 positions: its default of 512 was cut to 128, and more is refused
    with pytest.raises(HarnessError, match="more than .* can take .128 positions"):
        run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r",
            settings=EncodeSettings(max_length=512), **QUIET)


def test_prefixes_change_the_fingerprint_and_are_recorded(tiny_beir, tiny_bert_dir):
    spec = resolve_retriever(f"hf:{tiny_bert_dir}")
    plain = spec.load(REFERENCE, CPU)
    prefixed = spec.load(EncodeSettings(query_prefix="query: ", doc_prefix="passage: "), CPU)
    assert plain.fingerprint() != prefixed.fingerprint()
    ds = resolve_dataset(str(tiny_beir))
    assert plain.corpus_store(ds).dir != prefixed.corpus_store(ds).dir  # the document prefix changes vectors
    query_only = spec.load(EncodeSettings(query_prefix="query: "), CPU)
    assert query_only.corpus_store(ds).dir == plain.corpus_store(ds).dir  # the query prefix does not
    assert query_only.fingerprint() != plain.fingerprint()


@pytest.mark.parametrize("command", ["run", "check", "compare", "encode", "ann"])
def test_every_command_that_computes_takes_the_same_settings_flags(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    flags = {o for a in sub._actions for o in a.option_strings}
    assert {"--precision", "--forward", "--batch-tokens", "--max-length", "--pooling", "--normalize",
            "--query-prefix", "--doc-prefix", "--embed-dtype", "--device"} <= flags


def test_check_and_compare_pass_settings_through(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    model = f"hf:{tiny_bert_dir}"
    assert main(["compare", "-r", "bm25", "-r", model, "-d", str(tiny_beir), "--output-dir", str(tmp_path / "c"),
                 "--precision", "bf16", "--device", "cpu", "--resamples", "200"]) == 0
    assert "[precision=bf16]" in capsys.readouterr().out
    labels = {r.label for r in _records(tmp_path / "c")}
    assert f"{folder_name(tiny_bert_dir)} [precision=bf16]" in labels and "bm25" in labels  # BM25: no speed modes


def test_no_options_bags_between_runner_and_retrievers():
    import inspect

    from harness import runner
    from harness.retrievers import dense, lucene, registry

    for module in (runner, registry, dense, lucene):
        for _, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__:
                assert inspect.getfullargspec(fn).varkw is None, fn
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__:
                for _, fn in inspect.getmembers(cls, inspect.isfunction):
                    assert inspect.getfullargspec(fn).varkw is None, fn


# 4. ranking order is the retriever's, never re-derived from rounded scores


def test_run_files_keep_the_retrievers_order_through_rounding(tmp_path):
    # two hits one float32 step apart print the same at six decimals; the file keeps the retriever's order
    retrieved = {"q": {"p2": 10.0000004, "p1": 10.0000003, "p3": 9.5}}
    rounded = quantize(retrieved, "%.6f")
    assert rounded["q"]["p2"] == rounded["q"]["p1"]
    write_run(tmp_path / "r.trec", rounded, tag="t", score_format="%.6f")
    assert list(read_run(tmp_path / "r.trec")["q"]) == ["p2", "p1", "p3"]
    lines = (tmp_path / "r.trec").read_text().splitlines()
    assert [ln.split()[2] for ln in lines] == ["p2", "p1", "p3"]


def test_read_run_orders_by_score_equal_scores_in_line_order(tmp_path):
    # the rank column is ignored, as trec_eval ignores it (issue 35): one reading for every stage
    (tmp_path / "r.trec").write_text("q Q0 b 2 1.0 t\nq Q0 c 3 0.5 t\nq Q0 a 1 1.0 t\n")
    assert list(read_run(tmp_path / "r.trec")["q"]) == ["b", "a", "c"]


# 5. the default computation is the reference one


def test_the_default_compute_is_fp32_everywhere(tiny_bert_dir, monkeypatch):
    from harness.retrievers.compute import amx, plan_compute

    monkeypatch.setattr(amx, "unavailable_reason", lambda: None)  # even where bf16x3 would run
    assert REFERENCE.precision == "fp32"
    assert plan_compute(tiny_bert_dir, "cpu").precision == "fp32"
    args = build_parser().parse_args(["run", "-r", "bm25", "-d", "x"])
    assert args.precision == "fp32"
    with pytest.raises(HarnessError, match="must be one of"):
        EncodeSettings(precision="auto")


def test_device_is_checked_before_any_work(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    rc = main(["run", "-r", "bm25", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir",
               str(tmp_path / "r"), "--device", "cuda"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "no such CUDA device" in err and "available: cpu" in err
    assert not list((tmp_path / "r").rglob("*.json"))  # not even BM25 ran first


# 4. a model folder is named by what it is, not by the path as typed


def test_one_model_by_two_paths_is_one_row_and_two_models_by_one_path_are_two(tiny_beir, tiny_bert_dir, tmp_path,
                                                                             monkeypatch):
    import os
    import shutil

    out = tmp_path / "r"
    monkeypatch.chdir(tiny_bert_dir.parent)
    (rel,) = run([f"hf:./{tiny_bert_dir.name}"], [str(tiny_beir)], ["ndcg@10"], out, **QUIET)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    (abs_,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], out, **QUIET)
    copy = elsewhere / tiny_bert_dir.name  # the same relative path from here, another model
    shutil.copytree(tiny_bert_dir, copy)
    config = copy / "config.json"
    config.write_text(config.read_text().replace('"hidden_act": "gelu"', '"hidden_act": "relu"'))
    (other,) = run([f"hf:./{tiny_bert_dir.name}"], [str(tiny_beir)], ["ndcg@10"], out, **QUIET)
    assert rel.retriever == abs_.retriever == folder_name(tiny_bert_dir)
    assert rel.retriever.startswith(f"{tiny_bert_dir.name}#") and other.retriever != rel.retriever
    df, _ = rebuild(out)
    assert sorted(table(df, "ndcg@10")[0].index) == sorted([rel.retriever, other.retriever])
    assert os.path.isabs(resolve_retriever(f"hf:./{tiny_bert_dir.name}").model)
    with pytest.raises(HarnessError, match="no revision"):
        resolve_retriever(f"hf:{tiny_bert_dir}@main")
    # the printed name is taken back: the folder with that content (issue 35), not the copy of another one
    again = resolve_retriever(rel.retriever)
    assert again.name == rel.retriever and again.model == str(tiny_bert_dir.resolve())


def test_local_dataset_ids_are_folder_names_unless_two_folders_collide(tiny_beir, tiny_bert_dir, tmp_path):
    import shutil

    from harness.datasets import local_dataset_id

    out = tmp_path / "r"
    other = tmp_path / "elsewhere" / tiny_beir.name
    shutil.copytree(tiny_beir, other)
    first = local_dataset_id(tiny_beir, out)
    second = local_dataset_id(other, out)
    assert first == f"local/{tiny_beir.name}" and second.startswith(f"{first}-") and len(second) == len(first) + 9
    assert local_dataset_id(tiny_beir, out) == first and local_dataset_id(other, out) == second  # stable
    assert local_dataset_id(other, tmp_path / "another-results") == first  # each results folder on its own
    (rec,) = run([f"hf:{tiny_bert_dir}"], [str(other)], ["ndcg@10"], out, **QUIET)
    assert rec.dataset == second


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("score_bytes", [1 << 30, 7 * 6 * 17 // 3])  # all queries in one block; 2-3 rows a block
def test_torch_exact_search_ranks_as_the_faiss_path_ties_included(seed, score_bytes, monkeypatch):
    """The GPU path (torch: chunked matmul, top k per chunk settled by position where the k-th score is tied,
    the merge on the device; run here on the CPU) equals FAISS's exact search, ties broken the same way
    (score, then corpus position), across shards, chunks and query blocks."""
    from harness import search
    from harness.search import topk_exact, topk_exact_torch

    monkeypatch.setattr(search, "SCORE_BYTES", score_bytes)

    rng = np.random.default_rng(seed)
    docs = rng.integers(-2, 3, size=(230, 8)).astype(np.float32)  # small integers: many exact ties
    queries = rng.integers(-2, 3, size=(7, 8)).astype(np.float32)
    shards = [([f"d{i}" for i in range(s, min(s + 50, 230))], docs[s:s + 50]) for s in range(0, 230, 50)]
    a_scores, a_docs, a_n = topk_exact(queries, shards, 40)
    b_scores, b_docs, b_n = topk_exact_torch(queries, shards, 40, "cpu", chunk=17)
    assert a_docs == b_docs and a_n == b_n == 230
    np.testing.assert_array_equal(a_scores, b_scores)


def test_block_topk_settles_ties_at_the_kth_place_by_position():
    """torch.topk picks any of the scores tied with the k-th; the block's top k takes the earliest columns."""
    import torch

    from harness.search import block_topk

    scores = torch.tensor([[1.0, 3.0, 2.0, 2.0, 2.0, 0.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0]])
    vals, idx = block_topk(scores, 3)
    assert idx.tolist() == [[1, 2, 3], [0, 1, 2]] and vals.tolist() == [[3.0, 2.0, 2.0], [5.0, 5.0, 5.0]]
