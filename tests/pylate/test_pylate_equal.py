"""The harness's ColBERT token vectors and MaxSim scores equal PyLate's (to 1e-5), on tiny random models in both
folder layouts (tests/pylate/models.py). PyLate pins transformers and sentence-transformers versions of its own,
so it is not a dependency: ``nox -s pylate`` installs it into a virtual environment of its own and runs this file;
elsewhere these tests are skipped."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.pylate.models import make_pylate_colbert, make_stanford_colbert

pylate_models = pytest.importorskip("pylate.models", reason="PyLate is not installed (run `nox -s pylate`)")
pylate_scores = pytest.importorskip("pylate.scores")

QUERIES = ["protein of the cell", "gene expression in tumor cells", "a", "cancer patients, study; results!",
           " ".join(["retrieval"] * 40)]
DOCS = ["the protein, cell!", "a study of gene expression in tumor cells and patients with data.",
        " ".join(["dense query document vector search"] * 20), "w1 w2 w3 ; ; ;", "cancer"]


@pytest.fixture(scope="module", params=["stanford", "pylate", "stanford-attend"])
def folder(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("colbert")
    if request.param == "pylate":
        return make_pylate_colbert(root / "pylate")
    return make_stanford_colbert(root / "stanford", attend_to_mask_tokens=request.param.endswith("attend"))


def _theirs(folder):
    return pylate_models.ColBERT(model_name_or_path=str(folder), device="cpu")


def _ours(folder):
    from harness.retrievers.colbert import ColbertRetriever
    from harness.retrievers.registry import resolve_retriever
    from harness.settings import Execution

    spec = resolve_retriever(f"colbert:{folder}")
    return ColbertRetriever(spec, execution=Execution(device="cpu", progress=False)).encoders.encoder


def test_token_vectors_and_maxsim_equal_pylate(folder):
    import torch

    from harness.search import maxsim_block

    theirs, ours = _theirs(folder), _ours(folder)
    assert (theirs.query_length, theirs.document_length) == (ours.config.query_length, ours.config.doc_length)
    q_theirs = [np.asarray(x) for x in theirs.encode(QUERIES, is_query=True, show_progress_bar=False)]
    d_theirs = [np.asarray(x) for x in theirs.encode(DOCS, is_query=False, show_progress_bar=False)]
    q_ours = ours.encode_queries(QUERIES)
    d_ours = ours.encode_documents(DOCS)
    for mine, their in zip(q_ours, q_theirs, strict=True):
        np.testing.assert_allclose(mine, their, atol=1e-5, rtol=0)
    for mine, their in zip(d_ours, d_theirs, strict=True):
        kept = mine[np.abs(mine).max(axis=1) > 0]
        assert kept.shape == their.shape
        np.testing.assert_allclose(kept, their, atol=1e-5, rtol=0)
    expected = pylate_scores.colbert_scores(torch.as_tensor(np.stack(q_theirs)),
                                            torch.nn.utils.rnn.pad_sequence([torch.as_tensor(d) for d in d_theirs],
                                                                            batch_first=True),
                                            torch.nn.utils.rnn.pad_sequence(
                                                [torch.ones(len(d)) for d in d_theirs], batch_first=True)).numpy()
    flat = np.concatenate([d[np.abs(d).max(axis=1) > 0] for d in d_ours])
    offsets = np.concatenate([[0], np.cumsum([int((np.abs(d).max(axis=1) > 0).sum()) for d in d_ours])])
    got = maxsim_block(torch.as_tensor(q_ours), torch.as_tensor(flat), torch.as_tensor(offsets)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)


def test_a_harness_run_scores_as_pylate(folder, tiny_beir, tmp_path, monkeypatch):
    import torch

    from harness.data.corpus import doc_text
    from harness.datasets import resolve_dataset
    from harness.runner import run
    from harness.settings import Execution
    from harness.trec import read_run

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    (rec,) = run([f"colbert:{folder}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", depth=100,
                 execution=Execution(device="cpu", progress=False), log=lambda m: None)
    ours = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    corpus = {d.doc_id: doc_text(d) for d in resolve_dataset(str(tiny_beir)).corpus()}
    queries = {json.loads(line)["_id"]: json.loads(line)["text"]
               for line in (tiny_beir / "queries.jsonl").read_text().splitlines()}
    theirs = _theirs(folder)
    ids, qids = list(corpus), list(queries)
    q = theirs.encode([queries[x] for x in qids], is_query=True, show_progress_bar=False)
    d = theirs.encode([corpus[x] for x in ids], is_query=False, show_progress_bar=False)
    d_t = [torch.as_tensor(np.asarray(x)) for x in d]
    scores = pylate_scores.colbert_scores(torch.as_tensor(np.stack([np.asarray(x) for x in q])),
                                          torch.nn.utils.rnn.pad_sequence(d_t, batch_first=True),
                                          torch.nn.utils.rnn.pad_sequence([torch.ones(len(x)) for x in d_t],
                                                                          batch_first=True)).numpy()
    for row, qid in enumerate(qids):
        assert set(ours[qid]) == set(ids)
        for j, doc in enumerate(ids):
            assert ours[qid][doc] == pytest.approx(float(scores[row, j]), abs=1e-5)
