"""Hints that tell the truth: the bf16x3 speed mode is offered (never chosen) before an fp32 encoding on a
CPU where it would run, and only there."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.retrievers.compute import amx
from tests.conftest import make_tiny_bert


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """A cache of each test's own: the hint is said only when a corpus is encoded, so no other test's cached
    vectors of the same tiny model may be found."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def bert32(tmp_path):
    return make_tiny_bert(tmp_path / "bert32", hidden=32)


def _run(model, data, out, *extra):
    return main(["run", "-r", f"hf:{model}", "-d", str(data), "--output-dir", str(out), "--device", "cpu",
                 "--metric", "ndcg@10", *extra])


def test_bf16x3_is_offered_before_an_fp32_encoding_where_it_would_run(bert32, tiny_beir, tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(amx, "unavailable_reason", lambda: None)  # as on a CPU with AMX
    assert _run(bert32, tiny_beir, tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert err.count("harness: note: this CPU has AMX: --precision bf16x3 encodes this model") == 1
    assert _run(bert32, tiny_beir, tmp_path / "out") == 0  # reused: nothing is encoded, nothing to offer
    assert "--precision bf16x3" not in capsys.readouterr().err


@pytest.mark.parametrize("why", ["lacks", "transformers"])
def test_no_hint_where_bf16x3_would_not_run(bert32, tiny_beir, tmp_path, capsys, monkeypatch, why):
    monkeypatch.setattr(amx, "unavailable_reason", lambda: None if why != "lacks" else "this CPU lacks amx_tile")
    extra = ["--forward", "transformers"] if why == "transformers" else []
    assert _run(bert32, tiny_beir, tmp_path / "out", *extra) == 0
    assert "--precision bf16x3" not in capsys.readouterr().err


def test_faiss_k_means_warnings_become_one_line_of_ours(capfd):
    """FAISS prints its k-means warning from C++ once per sub-quantiser (16 lines for pq_m=16): one note."""
    import faiss
    import numpy as np

    from harness.ann import IndexConfig, IvfPqIndex

    vectors = np.random.default_rng(0).standard_normal((1000, 32)).astype("float32")
    capfd.readouterr()
    index = IvfPqIndex().make(faiss, 32, 1000, IndexConfig(kind="ivfpq", pq_m=16), [([str(i) for i in range(1000)],
                                                                                     vectors)])
    assert index.is_trained
    err = capfd.readouterr().err
    assert "WARNING clustering" not in err
    notes = [line for line in err.splitlines() if line.startswith("harness: note: ivfpq: FAISS trained")]
    assert notes and len(set(notes)) == len(notes) <= 2  # one per kind of k-means (coarse cells, codebooks)
    assert any("256 centroids on 1,000 vectors (it advises at least 9,984" in n for n in notes)


def test_a_missing_model_path_is_a_missing_folder_and_the_offline_hint_keeps_the_kind(monkeypatch):
    """colbert:path/to/model (no such folder) was looked up on the hub as an id; the offline hint told every
    kind to pass hf:/path, which turns a ColBERT or SPLADE model into a dense one."""
    from harness.errors import HarnessError
    from harness.retrievers.hub import resolve_model

    with pytest.raises(HarnessError, match="model folder path/to/colbertv2.0 does not exist"):
        resolve_model("path/to/colbertv2.0")
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    with pytest.raises(HarnessError) as info:
        resolve_model("nobody/no-such-model")
    assert "under the same prefix" in str(info.value) and "colbert:/path/to/model" in str(info.value)
