"""The late-interaction (ColBERT) kind on tiny random models in both folder layouts (tests/pylate/models.py):
settings read from each layout, token ids (markers, [MASK] augmentation, skiplist, truncation), token vectors
against a direct computation, MaxSim against a hand computation, a run and a rerank end to end, the
fingerprint, and one-line refusals of folders that are not ColBERT models."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from harness.errors import HarnessError
from harness.retrievers.colbert_config import read_colbert_config
from harness.retrievers.registry import resolve_retriever
from harness.settings import EncodeSettings, Execution
from tests.pylate.models import DIM, make_pylate_colbert, make_stanford_colbert

CPU = Execution(device="cpu", progress=False)


@pytest.fixture(scope="module")
def stanford(tmp_path_factory):
    return make_stanford_colbert(tmp_path_factory.mktemp("colbert") / "stanford")


@pytest.fixture(scope="module")
def pylate(tmp_path_factory):
    return make_pylate_colbert(tmp_path_factory.mktemp("colbert") / "pylate")


def _encoder(folder, **kw):
    from harness.retrievers.colbert import ColbertRetriever

    return ColbertRetriever(resolve_retriever(f"colbert:{folder}"), **kw, execution=CPU).encoders


def test_both_layouts_are_read_with_their_own_settings(stanford, pylate):
    s, p = read_colbert_config(stanford), read_colbert_config(pylate)
    assert (s.layout, s.query_marker, s.doc_marker, s.query_length, s.doc_length) == \
        ("stanford", "[unused0]", "[unused1]", 12, 20)
    assert (p.layout, p.query_marker, p.doc_marker, p.query_length, p.doc_length) == ("pylate", "[Q] ", "[D] ", 12, 20)
    assert s.dim == p.dim == DIM and s.projection[0].file == "model.safetensors"
    assert p.projection[0].file == "1_Dense/model.safetensors" and not s.attend_to_masks and not p.attend_to_masks
    for folder in (stanford, pylate):
        vectors = _encoder(folder).encoder.encode_queries(["protein cell"])
        assert vectors.shape == (1, 12, DIM)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=2), 1.0, rtol=1e-6)


def test_markers_augmentation_and_skiplist_on_token_ids(stanford, pylate, tmp_path):
    enc = _encoder(stanford).encoder
    vocab = {t: i for i, t in enumerate((stanford / "vocab.txt").read_text().split("\n"))}
    ids, attention = enc.query_ids(["protein cell"])
    head = [vocab["[CLS]"], vocab["[unused0]"], vocab["protein"], vocab["cell"], vocab["[SEP]"]]
    assert ids == [head + [vocab["[MASK]"]] * 7] and attention == [[1] * 5 + [0] * 7]
    long_query = " ".join(["gene"] * 30)
    assert len(enc.query_ids([long_query])[0][0]) == 12  # truncated to the query length, marker counted
    docs = enc.doc_ids(["the protein, cell!", " ".join(["tumor"] * 50)])
    assert docs[0] == [vocab["[CLS]"], vocab["[unused1]"], vocab["the"], vocab["protein"], vocab[","], vocab["cell"],
                       vocab["!"], vocab["[SEP]"]]
    assert len(docs[1]) == 20 and docs[1][-1] == vocab["[SEP]"]  # the document length, marker counted
    vectors = enc.encode_documents(["the protein, cell!"])
    assert vectors.shape == (1, 6, DIM)  # "," and "!" skipped
    # masks attended when the checkpoint says so
    attend = make_stanford_colbert(tmp_path / "attend", attend_to_mask_tokens=True)
    assert _encoder(attend).encoder.query_ids(["protein cell"])[1] == [[1] * 12]
    # PyLate's markers are its added prefix tokens
    penc = _encoder(pylate).encoder
    q_id = penc.tokenizer.convert_tokens_to_ids("[Q] ")
    d_id = penc.tokenizer.convert_tokens_to_ids("[D] ")
    assert q_id == len(vocab) - 1 and d_id == q_id + 1  # appended after the vocab (its last line is empty)
    assert penc.query_ids(["cell"])[0][0][:2] == [vocab["[CLS]"], q_id]
    assert penc.doc_ids(["cell"])[0][:2] == [vocab["[CLS]"], d_id]


def _direct(folder, ids, attention, keep):
    """The token vectors computed directly: transformers' BERT, the projection, per-token L2 norm."""
    from safetensors.torch import load_file
    from transformers import BertModel

    model = BertModel.from_pretrained(folder).eval()
    state = load_file(str(folder / "1_Dense" / "model.safetensors")) if (folder / "1_Dense").is_dir() \
        else load_file(str(folder / "model.safetensors"))
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids]), attention_mask=torch.tensor([attention])).last_hidden_state[0]
        out = torch.nn.functional.normalize(hidden @ state["linear.weight"].T, dim=-1).numpy()
    return out[np.asarray(keep)]


@pytest.mark.parametrize("layout", ["stanford", "pylate"])
def test_token_vectors_equal_a_direct_computation(layout, stanford, pylate):
    folder = stanford if layout == "stanford" else pylate
    enc = _encoder(folder).encoder
    ids, attention = enc.query_ids(["gene expression of the tumor"])
    got = enc.encode_queries(["gene expression of the tumor"])[0]
    np.testing.assert_allclose(got, _direct(folder, ids[0], attention[0], [True] * 12), atol=1e-5)
    text = "a study, of cancer; patients."
    (doc,) = enc.doc_ids([text])
    keep = [t not in enc.ids.skiplist for t in doc]
    got_doc = enc.encode_documents([text, "short"])[0]
    np.testing.assert_allclose(got_doc[:sum(keep)], _direct(folder, doc, [1] * len(doc), keep), atol=1e-5)
    assert not got_doc[sum(keep):].any()


def _maxsim(q, d):
    return float(sum((q[i] @ d.T).max() for i in range(len(q))))


def test_maxsim_equals_a_hand_computation_across_shards_and_blocks():
    from harness.search import topk_maxsim

    rng = np.random.default_rng(0)
    docs = [rng.standard_normal((int(rng.integers(1, 9)), 4)).astype(np.float32) for _ in range(23)]
    queries = rng.standard_normal((5, 3, 4)).astype(np.float32)
    queries[1, 2] = 0  # a padding row adds nothing
    expected = np.array([[_maxsim(q, d) for d in docs] for q in queries])
    shards = []
    for lo, hi in ((0, 10), (10, 23)):
        flat = np.concatenate(docs[lo:hi])
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs[lo:hi]])]).astype(np.int64)
        shards.append(([f"d{i}" for i in range(lo, hi)], flat, offsets))
    for block in (1, 7, 10_000):
        scores, ids, searched = topk_maxsim(queries, shards, 6, "cpu", block_tokens=block)
        assert searched == 23
        for row in range(5):
            order = sorted(range(23), key=lambda j: (-expected[row, j], j))[:6]
            assert ids[row] == [f"d{j}" for j in order]
            np.testing.assert_allclose(scores[row], expected[row, order], rtol=1e-5)


def test_colbert_run_end_to_end_and_rerank(stanford, tiny_beir, tmp_path, monkeypatch):
    from harness.data.corpus import doc_text
    from harness.datasets import resolve_dataset
    from harness.runner import run
    from harness.trec import read_run

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    name = f"colbert:{stanford}"
    (rec,) = run([name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", execution=CPU, depth=100,
                 log=lambda m: None)
    assert rec.retriever.startswith("colbert:stanford#") and 0 <= rec.metrics["ndcg@10"] <= 1
    assert rec.index["embeddings"] == "encoded"
    ours = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    # the run's scores are MaxSim of the token vectors, computed here by hand
    enc = _encoder(stanford).encoder
    corpus = {d.doc_id: doc_text(d) for d in resolve_dataset(str(tiny_beir)).corpus()}
    queries = {json.loads(line)["_id"]: json.loads(line)["text"]
               for line in (tiny_beir / "queries.jsonl").read_text().splitlines()}
    ids = list(corpus)
    dvec = enc.encode_documents([corpus[d] for d in ids])
    for qid in ("q0", "q3"):
        q = enc.encode_queries([queries[qid]])[0]
        hand = {d: _maxsim(q, dvec[j][np.abs(dvec[j]).max(axis=1) > 0]) for j, d in enumerate(ids)}
        assert set(ours[qid]) == set(hand)
        for d, s in ours[qid].items():
            assert s == pytest.approx(hand[d], rel=1e-5)
    # a second run reuses the token store
    (again,) = run([name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r2", execution=CPU, depth=100,
                   log=lambda m: None)
    assert again.index["embeddings"] == "reused" and again.metrics == rec.metrics
    # reranking a first stage (a run file) by the same MaxSim
    first = tmp_path / "first.trec"
    first.write_text("".join(f"{q} Q0 {d} {r + 1} {10 - r} x\n" for q in queries for r, d in enumerate(ids[:8])))
    (rr,) = run([f"rerank:{name}(run:{first};top=8)"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r3",
                execution=CPU, log=lambda m: None)
    reranked = read_run(tmp_path / "r3" / rr.dataset / "test" / rr.run_file)
    for q in queries:
        assert set(reranked[q]) == set(ids[:8])
        for d, s in reranked[q].items():
            assert s == pytest.approx(ours[q][d], rel=1e-5)


def test_the_cli_runs_a_colbert_folder_offline(pylate, tiny_beir, tmp_path, monkeypatch, capsys):
    from harness.cli import main

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    assert main(["run", "-r", f"colbert:{pylate}", "-d", str(tiny_beir), "--device", "cpu", "--metric", "ndcg@10",
                 "--output-dir", str(tmp_path / "r")]) == 0
    assert "colbert:pylate#" in capsys.readouterr().out


def test_every_setting_that_changes_a_result_changes_the_fingerprint(stanford, tmp_path):
    from harness.retrievers.colbert import ColbertRetriever
    from harness.retrievers.spec import RetrieverSpec

    spec = resolve_retriever(f"colbert:{stanford}")
    base = ColbertRetriever(spec, execution=CPU).fingerprint()
    assert base == ColbertRetriever(spec, execution=CPU).fingerprint()
    # a recipe's settings (on a checkpoint whose files leave them unstated: a recipe fills only those)
    bare = make_stanford_colbert(tmp_path / "bare", metadata=False)
    lengths = {"doc_length": 20, "query_length": 12}  # within the fixture BERT's 64 positions

    def recipe(params):
        return RetrieverSpec("recipe", "colbert", model=str(bare), params={**lengths, **params})

    filled = ColbertRetriever(recipe({}), execution=CPU).fingerprint()
    for params in ({"doc_length": 16}, {"query_length": 8}, {"query_marker": "[unused1]"}, {"skiplist": ["."]},
                   {"attend_to_masks": True}):
        assert ColbertRetriever(recipe(params), execution=CPU).fingerprint() != filled, params
    assert ColbertRetriever(spec, EncodeSettings(embed_dtype="float16"), CPU).fingerprint() != base
    assert ColbertRetriever(spec, EncodeSettings(precision="bf16"), CPU).fingerprint() != base
    edited = shutil.copytree(stanford, tmp_path / "edited")
    meta = json.loads((edited / "artifact.metadata").read_text())
    (edited / "artifact.metadata").write_text(json.dumps({**meta, "doc_maxlen": 18}))
    changed = ColbertRetriever(resolve_retriever(f"colbert:{edited}"), execution=CPU)
    assert changed.encoders.config.doc_length == 18 and changed.fingerprint() != base
    # the store key: document settings only (a query setting keeps the corpus's token vectors)
    from harness.datasets import resolve_dataset

    query_only, doc_only = recipe({"query_length": 8}), recipe({"doc_length": 16})
    key = ColbertRetriever(recipe({}), execution=CPU).encoders.store_key

    def store_key(s):
        return ColbertRetriever(s, execution=CPU).encoders.store_key

    dataset = resolve_dataset(str(make_beir_for_key(tmp_path)))
    assert store_key(query_only)(dataset) == key(dataset) != store_key(doc_only)(dataset)


def make_beir_for_key(tmp_path):
    from tests.conftest import make_tiny_beir

    return make_tiny_beir(tmp_path / "beir", n_docs=3, n_queries=1)


def test_folders_that_are_not_colbert_models_are_one_line(stanford, pylate, tiny_bert_dir, tmp_path):
    def refused(folder) -> str:
        with pytest.raises(HarnessError) as e:
            _encoder(folder).encoder  # noqa: B018
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "neither a PyLate ColBERT folder" in refused(tiny_bert_dir)
    no_dense = shutil.copytree(pylate, tmp_path / "no-dense")
    (no_dense / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                        "type": "sentence_transformers.models.Transformer"}]))
    assert "no Dense module" in refused(no_dense) and "modules.json" in refused(no_dense)
    no_linear = make_stanford_colbert(tmp_path / "no-linear")
    from safetensors.torch import load_file, save_file

    state = load_file(str(no_linear / "model.safetensors"))
    del state["linear.weight"]
    save_file(state, str(no_linear / "model.safetensors"))
    message = refused(no_linear)
    assert "model.safetensors" in message and "no linear.weight" in message
    no_marker = shutil.copytree(stanford, tmp_path / "no-marker")
    meta = json.loads((no_marker / "artifact.metadata").read_text())
    (no_marker / "artifact.metadata").write_text(json.dumps({**meta, "query_token_id": "[Q] "}))
    assert "no token '[Q] '" in refused(no_marker)


def test_names_and_listing(stanford):
    spec = resolve_retriever(f"colbert:{stanford}")
    assert spec.kind == "colbert" and spec.name.startswith("colbert:stanford#")
    assert resolve_retriever(spec.name) == spec  # the printed name finds the folder
    rr = resolve_retriever(f"rerank:colbert:{stanford}(bm25;top=50)")
    assert rr.stages[1] == spec and rr.params["top"] == 50
    with pytest.raises(HarnessError, match="needs a ColBERT model"):
        resolve_retriever("colbert:")


def test_recipes_carry_their_own_settings(tmp_path):
    from dataclasses import replace

    from harness.retrievers.colbert import ColbertRetriever

    spec = resolve_retriever("colbertv2")
    assert (spec.kind, spec.model, spec.params["doc_length"], spec.params["query_length"]) == \
        ("colbert", "colbert-ir/colbertv2.0", 180, 32)
    assert resolve_retriever("answerai-colbert-small-v1").params["doc_length"] == 300
    assert resolve_retriever("rerank:colbertv2(bm25;top=100)").stages[1] == spec
    # a checkpoint without artifact.metadata: PyLate's defaults; a recipe's settings over them
    bare = make_stanford_colbert(tmp_path / "bare", metadata=False)
    own = read_colbert_config(bare)
    assert (own.query_marker, own.doc_marker, own.query_length, own.doc_length) == ("[unused0]", "[unused1]", 32, 180)
    standin = replace(spec, model=str(bare), params={**spec.params, "doc_length": 24, "query_length": 16})
    config = ColbertRetriever(standin, execution=CPU).encoders.config
    assert (config.doc_length, config.query_length) == (24, 16) and "set by the recipe colbertv2" in config.source
    # the checkpoint's own artifact.metadata decides: a recipe that disagrees with it is refused
    stated = make_stanford_colbert(tmp_path / "stated", doc_maxlen=24, query_maxlen=16)
    with pytest.raises(HarnessError, match="query_maxlen is 16, the recipe colbertv2 says 32"):
        ColbertRetriever(replace(spec, model=str(stated)), execution=CPU)
    agreeing = replace(spec, model=str(stated), params={**spec.params, "doc_length": 24, "query_length": 16})
    assert ColbertRetriever(agreeing, execution=CPU).encoders.config == read_colbert_config(stated)
    # a Stanford checkpoint with sentence-transformers files but no Dense module is read as Stanford's (as PyLate)
    with_st = make_stanford_colbert(tmp_path / "with-st")
    (with_st / "modules.json").write_text(json.dumps([{"idx": 0, "name": "0", "path": "",
                                                       "type": "sentence_transformers.models.Transformer"}]))
    assert read_colbert_config(with_st).layout == "stanford"


def test_token_store_is_sharded_resumable_and_checked(stanford, tiny_beir, tmp_path, monkeypatch):
    from dataclasses import replace

    from harness.runner import run
    from harness.trec import read_run

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    small = replace(CPU, shard_size=16)  # 40 documents: 3 shards
    name = f"colbert:{stanford}"
    (rec,) = run([name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", execution=small, depth=100,
                 log=lambda m: None)
    store = tmp_path / "cache" / "embeddings"
    (folder,) = [p for p in store.iterdir() if p.is_dir()]
    assert json.loads((folder / "manifest.json").read_text())["dim"] == DIM
    offsets = sorted(p.name for p in folder.glob("shard-*.offsets.npy"))
    assert offsets == [f"shard-0000{i}.offsets.npy" for i in range(3)]
    # a shard whose offsets were lost (a killed run) is encoded again, the others reused
    (folder / "manifest.json").unlink()
    (folder / "shard-00001.offsets.npy").unlink()
    (again,) = run([name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "b", execution=small, depth=100,
                   log=lambda m: None)
    assert again.index["embeddings"] == "encoded 1 shards, reused 2 (resumed)" and again.metrics == rec.metrics
    # float16 storage: another store, scores to float16 rounding
    (half,) = run([name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "c", execution=small, depth=100,
                  settings=EncodeSettings(embed_dtype="float16"), log=lambda m: None)
    assert half.index["embeddings"] == "encoded" and half.retriever_fingerprint != rec.retriever_fingerprint
    full = read_run(tmp_path / "a" / rec.dataset / "test" / rec.run_file)
    rounded = read_run(tmp_path / "c" / half.dataset / "test" / half.run_file)
    for q in full:
        for d, s in rounded[q].items():
            assert s == pytest.approx(full[q][d], abs=2e-2)


def test_a_hub_checkpoint_gets_its_artifact_metadata(tmp_path, monkeypatch):
    import huggingface_hub

    from harness.retrievers.colbert import fetch_metadata
    from harness.retrievers.hub import ModelFiles

    folder = make_stanford_colbert(tmp_path / "snapshot", metadata=False, doc_maxlen=300)
    asked = []

    def download(repo_id, filename, revision=None, **kw):
        asked.append((repo_id, filename, revision))
        (folder / filename).write_text(json.dumps({"doc_maxlen": 300, "query_maxlen": 32}))
        return str(folder / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    files = ModelFiles(folder, "hub", "org/colbert", "0" * 40)
    fetch_metadata(files)
    assert asked == [] and not (folder / "artifact.metadata").exists()  # offline: nothing asked
    monkeypatch.delenv("HARNESS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    fetch_metadata(files)
    assert asked == [("org/colbert", "artifact.metadata", "0" * 40)] and read_colbert_config(folder).doc_length == 300
