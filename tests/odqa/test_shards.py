"""Sharded encoding + merge into the embedding store, the size plan and early refusal, FAISS index choices."""

from __future__ import annotations

import numpy as np
import pytest

from harness.ann import IndexConfig, build, recall_vs_exact, search
from harness.cli import main
from harness.errors import HarnessError
from harness.odqa.dataset import from_folder
from harness.odqa.shards import GiB, Plan, _store_for, check_fits, encode_shard, merge, parse_shard
from harness.retrievers.registry import resolve_retriever
from harness.runner import run
from harness.settings import EncodeSettings, Execution

from .conftest import write_odqa

CPU = Execution(device="cpu", progress=False)
CPU5 = Execution(device="cpu", shard_size=5, progress=False)


def _many_passages(n):
    return [(str(i), f"passage {i} about the w{i % 40} and cell {i % 7}", f"title {i}") for i in range(1, n + 1)]


def test_parse_shard():
    assert parse_shard("3/8") == (3, 8)
    for bad in ("8/8", "x", "1/0", "-1/2"):
        with pytest.raises(HarnessError):
            parse_shard(bad)


def test_plan_numbers_for_dpr_wikipedia():
    plan = Plan(passages=21_015_324, dim=768, shard_size=50_000, jobs=16)
    assert plan.vectors_bytes == 21_015_324 * 768 * 4             # 60.1 GiB of float32
    assert 60 * GiB < plan.disk_bytes < 61 * GiB
    assert plan.index_memory_bytes("ivfpq") < plan.index_memory_bytes("flat") < plan.index_memory_bytes("hnsw")
    assert "21,015,324 passages x 768 dims" in plan.render()


def test_refuses_early_with_the_fix(tmp_path):
    plan = Plan(passages=21_015_324, dim=768, shard_size=50_000)
    with pytest.raises(HarnessError,
                       match=r"(?s)not enough disk.*Fix: point HARNESS_CACHE at a disk with at least 60.3 GiB"):
        check_fits(plan, tmp_path, memory=64 * GiB, disk=10 * GiB)
    with pytest.raises(HarnessError, match=r"(?s)not enough memory: flat.*Fix: choose --index exact"):
        check_fits(plan, tmp_path, "flat", memory=24 * GiB, disk=200 * GiB)
    check_fits(plan, tmp_path, "ivfpq", memory=24 * GiB, disk=100 * GiB)


def test_encode_refuses_before_encoding(tiny_odqa, tiny_bert_dir, monkeypatch):
    import harness.odqa.shards as shards

    monkeypatch.setattr(shards, "free_disk", lambda p: 10)
    retriever = resolve_retriever(str(tiny_bert_dir)).load(execution=CPU)
    with pytest.raises(HarnessError, match="not enough disk"):
        encode_shard(retriever, from_folder(tiny_odqa, "t"), 0, 1, log=lambda m: None)
    assert retriever.encoders.device_used is None                             # the model was never loaded


def test_sharded_encode_merge_equals_one_pass(tmp_path, tiny_bert_dir):
    folder = write_odqa(tmp_path / "odqa", passages=_many_passages(23))
    ds = from_folder(folder, "t")
    spec = resolve_retriever(str(tiny_bert_dir))
    jobs = spec.load(execution=CPU5)
    for i in (2, 0):                                              # any order; job 1 still missing
        encode_shard(jobs, ds, i, 3, log=lambda m: None)
    with pytest.raises(HarnessError, match="job 1/3 has not finished"):
        merge(jobs, ds, 3, log=lambda m: None)
    info = encode_shard(jobs, ds, 1, 3, log=lambda m: None)
    assert info["chunks"] == 5 and info["encoded"] == 2 and info["count"] == 23
    other = spec.load(EncodeSettings(precision="bf16"), CPU5)  # another store key
    with pytest.raises(HarnessError, match="no store for precision bf16.*pass the same --precision"):
        merge(other, ds, 3, log=lambda m: None)
    assert merge(jobs, ds, 3, log=lambda m: None)["count"] == 23
    # the runner now reuses the merged embeddings, and they equal a single-pass encoding
    (rec,) = run([str(tiny_bert_dir)], [str(folder)], output_dir=tmp_path / "r", execution=CPU5)
    assert rec.index["embeddings"] == "reused"
    vectors = np.concatenate([v for _, v in _store_for(jobs, ds).shards()])
    direct = jobs.encoders.encoder.encode([f"{d.title} {d.text}" for d in ds.corpus()], "doc")
    np.testing.assert_allclose(vectors, direct, rtol=1e-5, atol=1e-6)


def test_encode_and_merge_commands(tmp_path, tiny_bert_dir, capsys):
    folder = write_odqa(tmp_path / "odqa", passages=_many_passages(12))
    base = ["-r", str(tiny_bert_dir), "-d", str(folder), "--shard-size", "4"]
    assert main(["encode", *base, "--plan"]) == 0
    assert "12 passages x 16 dims" in capsys.readouterr().out
    for i in range(2):
        assert main(["encode", *base, "--shard", f"{i}/2", "--device", "cpu"]) == 0
    assert main(["merge", *base, "--shards", "2"]) == 0
    assert "merged 2 jobs: 3 chunks, 12 passages" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivfpq"])
def test_index_choices_recall(kind):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 16)).astype(np.float32)
    shards = [([str(i) for i in range(s, s + 1000)], vectors[s:s + 1000]) for s in range(0, 3000, 1000)]
    config = IndexConfig(kind=kind, hnsw_m=16, nlist=16, pq_m=8, nprobe=16, train_size=3000)
    index, ids, _ = build(shards, 16, 3000, config)
    queries = rng.standard_normal((20, 16)).astype(np.float32)
    exact = [[str(j) for j in row] for row in np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    _, approx = search(index, ids, queries, 10, config)
    recall = recall_vs_exact(approx, exact, 10)
    assert recall == 1.0 if kind == "flat" else recall > {"hnsw": 0.9, "ivfpq": 0.3}[kind]


@pytest.mark.parametrize("recipe", [
    {},                                                          # mean pooling, title + " " + text
    {"pooling": "cls", "normalize": True, "similarity": "cos"},
    {"query_prefix": "query: ", "doc_prefix": "passage: "},      # prefixes (prompts are prefixes here)
    {"pooling": "cls", "text_pair": True, "max_length": 32},     # DPR: (title, text) as a pair
])
def test_sharded_store_equals_the_run_store_byte_for_byte(tmp_path, tiny_bert_dir, monkeypatch, recipe):
    """`encode --shard 0/2`, `--shard 1/2` and `merge` write the store `harness run` writes, for every recipe:
    one corpus-encoding function serves both (a DPR pair encoded as a joined text would differ)."""
    from dataclasses import replace

    from harness.retrievers.config import CONTRIEVER
    from harness.retrievers.spec import RetrieverSpec

    folder = write_odqa(tmp_path / "odqa", passages=_many_passages(13))
    ds = from_folder(folder, "t")
    spec = RetrieverSpec("tiny-recipe", "dense", model=str(tiny_bert_dir), encoder=replace(CONTRIEVER, **recipe))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-run"))
    ran = spec.load(execution=CPU5)
    ran.index(ds)
    a = ran.corpus_store(ds).dir  # under this cache
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache-jobs"))
    jobs = spec.load(execution=CPU5)
    for i in (1, 0):
        encode_shard(jobs, ds, i, 2, check=False, log=lambda m: None)
    merge(jobs, ds, 2, log=lambda m: None)
    b = _store_for(jobs, ds).dir
    assert a.name == b.name and a != b  # one key, two caches
    written = sorted(p.name for p in a.glob("shard-*"))
    assert len([n for n in written if n.endswith(".npy")]) == 3
    assert written == sorted(p.name for p in b.glob("shard-*"))
    for name in written:
        if name.endswith((".npy", ".ids.json")):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
