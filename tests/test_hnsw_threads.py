"""HNSW built on every thread the process may use. FAISS's lock-based parallel insertion makes the graph depend
on thread scheduling; its deterministic build (the only one in faiss-cpu 1.15.1, an option before) does not. The
record names the build's threads and says whether the build is deterministic (beside the recall@100 against
exact search that vouches for the index); ``IndexConfig(build_threads=1)`` builds the same graph every time with
any FAISS. Exact search is untouched."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import faiss
import numpy as np
import pytest

from harness import ann
from harness.ann import IndexConfig, build, build_provenance, build_threads, deterministic_hnsw, omp_threads, search
from harness.distributed import cpu_threads
from harness.errors import HarnessError
from harness.runner import run
from harness.searchers import IndexSearcher
from harness.settings import EncodeSettings, Execution
from tests.conftest import make_tiny_beir, make_tiny_bert

CPU = Execution(device="cpu", progress=False)


def _shards(n: int = 3000, dim: int = 16, seed: int = 0) -> tuple[list[tuple[list[str], np.ndarray]], np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return [([str(i) for i in range(s, s + 1000)], vectors[s:s + 1000]) for s in range(0, n, 1000)], vectors


def _graph(index) -> tuple:
    """An HNSW index's graph: each node's level and neighbours, the entry point (not the search breadth, which a
    search sets)."""
    hnsw = index.hnsw
    return (faiss.vector_to_array(hnsw.levels).tobytes(), faiss.vector_to_array(hnsw.neighbors).tobytes(),
            hnsw.entry_point, hnsw.max_level)


def test_build_threads_and_what_the_record_says_of_them():
    assert build_threads(IndexConfig(kind="hnsw")) == cpu_threads()  # 0: every thread this process may use
    one = build_provenance(IndexConfig(kind="hnsw", build_threads=1))
    assert one == {"build_threads": 1, "deterministic": True, "faiss": faiss.__version__}
    four = build_provenance(IndexConfig(kind="hnsw", build_threads=4))
    assert four["build_threads"] == 4 and four["deterministic"] is deterministic_hnsw(faiss)
    assert build_provenance(IndexConfig(kind="flat", build_threads=4))["deterministic"] is True  # vectors copied
    assert build_provenance(IndexConfig(kind="ivfpq", build_threads=4))["deterministic"] is False  # not vouched for
    with pytest.raises(HarnessError, match="build_threads must be 0"):
        IndexConfig(build_threads=-1)
    # the configuration keys the index: a one-thread build is stored apart from an all-threads one
    assert IndexSearcher(IndexConfig(build_threads=1)).fingerprint() != IndexSearcher(IndexConfig()).fingerprint()


def test_a_faiss_without_the_deterministic_build_records_a_parallel_build_as_not_deterministic(monkeypatch):
    old = SimpleNamespace(__version__="1.8.0", cvar=SimpleNamespace())  # no deterministic build, no option
    monkeypatch.setattr(ann, "_faiss", lambda: old)
    assert build_provenance(IndexConfig(kind="hnsw", build_threads=2)) == \
        {"build_threads": 2, "deterministic": False, "faiss": "1.8.0"}
    assert build_provenance(IndexConfig(kind="hnsw", build_threads=1))["deterministic"] is True
    # a FAISS where the deterministic build is an option: the build turns it on, and restores it after
    threads = [3]
    optional = SimpleNamespace(__version__="1.14.0", cvar=SimpleNamespace(hnsw_deterministic_build=False),
                               omp_get_max_threads=lambda: threads[-1], omp_set_num_threads=threads.append)
    assert deterministic_hnsw(optional) is True
    with omp_threads(optional, 2):
        assert optional.cvar.hnsw_deterministic_build is True and threads[-1] == 2
    assert optional.cvar.hnsw_deterministic_build is False and threads[-1] == 3


def test_one_thread_builds_the_same_graph_every_time_and_faiss_threads_are_restored():
    shards, _ = _shards()
    queries = np.random.default_rng(1).standard_normal((50, 16)).astype(np.float32)
    config = IndexConfig(kind="hnsw", hnsw_m=16, ef_construction=40, ef_search=16, build_threads=1)
    before = faiss.omp_get_max_threads()
    found = []
    for _ in range(2):
        index, ids, _ = build(shards, 16, 3000, config)
        assert faiss.omp_get_max_threads() == before
        found.append(search(index, ids, queries, 10, config))
    (s1, d1), (s2, d2) = found
    assert d1 == d2 and np.array_equal(s1, s2)
    assert _graph(build(shards, 16, 3000, config)[0]) == _graph(index)  # the graph itself


def test_a_parallel_build_keeps_its_recall():
    shards, vectors = _shards()
    queries = np.random.default_rng(1).standard_normal((20, 16)).astype(np.float32)
    config = IndexConfig(kind="hnsw", hnsw_m=16, build_threads=max(2, cpu_threads()))
    index, ids, _ = build(shards, 16, 3000, config)
    exact = [[str(j) for j in row] for row in np.argsort(-(queries @ vectors.T), axis=1)[:, :10]]
    _, approx = search(index, ids, queries, 10, config)
    assert np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)]) > 0.9
    if build_provenance(config)["deterministic"]:  # what the record then says: another build, the same graph
        again, _, _ = build(shards, 16, 3000, config)
        assert _graph(again) == _graph(index)


def test_the_search_provenance_names_the_build_threads_and_whether_it_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    model = make_tiny_bert(tmp_path / "bert", hidden=16)
    folder = make_tiny_beir(tmp_path / "tiny")
    hnsw = EncodeSettings(index="hnsw")
    (first,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "a", settings=hnsw, execution=CPU,
                   log=lambda m: None)
    search_ = first.retriever_provenance["search"]
    threads = cpu_threads()
    assert search_["built"] is True and search_["build_threads"] == threads
    assert search_["deterministic"] is (threads == 1 or deterministic_hnsw(faiss))
    assert search_["faiss"] == faiss.__version__
    assert search_["recall@100_vs_exact"] == 1.0  # what vouches for a graph of any build
    assert search_["index"]["build_threads"] == 0  # the setting: every thread; the record: how many that was
    # a run that reuses the index reports the build it reuses (its build record beside the index file)
    (again,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "b", settings=hnsw, execution=CPU,
                   log=lambda m: None)
    reused = again.retriever_provenance["search"]
    assert reused["built"] is False and reused["build_threads"] == threads
    assert reused["deterministic"] is search_["deterministic"]
    # without its build record an index is built again (the record is what its runs say of it)
    index_file = Path(search_["index_file"])
    index_file.with_name(index_file.name + ".json").unlink()
    (third,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "c", settings=hnsw, execution=CPU,
                   log=lambda m: None)
    rebuilt = third.retriever_provenance["search"]
    assert rebuilt["built"] is True and "build record" in rebuilt["rebuilt"]
    assert third.metrics == first.metrics
    # exact search says nothing of threads: its path is unchanged
    (exact,) = run([f"hf:{model}"], [str(folder)], None, tmp_path / "d", execution=CPU, log=lambda m: None)
    assert exact.retriever_provenance["search"] == "exact inner product (faiss)"
