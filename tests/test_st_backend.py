"""--backend sentence-transformers (issue 30): the same folder encoded by sentence-transformers itself, as a
cross-check of the harness's reading of it: the same vectors, a record labelled and cached apart."""

from __future__ import annotations

import numpy as np
import pytest

from harness.cli import main
from harness.retrievers.registry import resolve_retriever
from harness.runner import run
from harness.settings import EncodeSettings, Execution

pytest.importorskip("sentence_transformers")
CPU = Execution(device="cpu", progress=False)
ST = EncodeSettings(backend="sentence-transformers")


@pytest.fixture(scope="module")
def st_folder(tmp_path_factory):
    from tests.conftest import make_tiny_bert

    return make_tiny_bert(tmp_path_factory.mktemp("tiny-st"), st_files=True)


def test_both_backends_give_the_same_vectors_and_numbers(st_folder, tiny_beir, tmp_path):
    spec = resolve_retriever(f"hf:{st_folder}")
    ours, theirs = spec.load(EncodeSettings(), CPU), spec.load(ST, CPU)
    texts = ["a short query", "a much longer document about retrieval, vectors and their exact computation"] * 3
    for kind in ("query", "doc"):
        np.testing.assert_allclose(theirs.encoders.encoder.encode(texts, kind),
                                   ours.encoders.encoder.encode(texts, kind), rtol=1e-5, atol=1e-6)
    (a,) = run([f"hf:{st_folder}"], [str(tiny_beir)], ["ndcg@10"], tmp_path, execution=CPU, log=lambda m: None)
    (b,) = run([f"hf:{st_folder}"], [str(tiny_beir)], ["ndcg@10"], tmp_path, execution=CPU, settings=ST,
               log=lambda m: None)
    assert b.settings == {"backend": "sentence-transformers"} and a.settings == {}
    assert b.label.endswith("[backend=sentence-transformers]") and b.fingerprint != a.fingerprint
    assert b.metrics["ndcg@10"] == pytest.approx(a.metrics["ndcg@10"], abs=1e-6)


def test_what_sentence_transformers_cannot_run_as_the_harness_would_is_refused(tiny_bert_dir, st_folder, tiny_beir,
                                                                                 capsys):
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--backend", "sentence-transformers"]) == 2
    assert "has none" in capsys.readouterr().err  # no modules.json: the recipe is the harness's own
    assert main(["run", "-r", f"hf:{st_folder}", "-d", str(tiny_beir), "--backend", "sentence-transformers",
                 "--pooling", "mean"]) == 2
    assert "--pooling does not apply" in capsys.readouterr().err


@pytest.mark.parametrize("prefix", ["cancer tumor gene ", ""])
def test_a_query_prefix_reaches_sentence_transformers(st_folder, tiny_beir, tmp_path, prefix):
    """--query-prefix (and --query-prefix "" that turns off the folder's own query prompt) is what
    sentence-transformers encodes the queries with, as the harness's backend does: before, the backend
    compared the prefix with itself and dropped it, under a record naming it."""
    import json
    import shutil

    from harness.datasets import resolve_dataset
    from harness.retrievers.base import SearchContext

    folder = tmp_path / "prompted"
    shutil.copytree(st_folder, folder)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": ""}, "default_prompt_name": None}))
    spec = resolve_retriever(f"hf:{folder}")
    context = SearchContext(resolve_dataset(str(tiny_beir), split="test", allow_fetch=False))
    texts = ["a short query about retrieval", "another question"]
    ours = spec.load(EncodeSettings(query_prefix=prefix), CPU).encoders.encode_queries(texts, context)
    theirs = spec.load(EncodeSettings(query_prefix=prefix, backend="sentence-transformers"), CPU)
    np.testing.assert_allclose(theirs.encoders.encode_queries(texts, context), ours, rtol=1e-5, atol=1e-6)
    own = spec.load(EncodeSettings(), CPU).encoders.encode_queries(texts, context)
    assert not np.allclose(ours, own, atol=1e-4)  # the prefix changes the vectors, so the check can fail
    # records made while the prefix was dropped are not reused: the backend's query rule is in its fingerprint
    assert theirs.fingerprint()["query_prompt"] == 2 and "query_prompt" not in spec.load(
        EncodeSettings(query_prefix=prefix), CPU).fingerprint()
