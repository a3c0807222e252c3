"""Hostile inputs to the late-interaction kind (``colbert:``) on tiny fixture models (tests/pylate/models.py):
almost-ColBERT folders, odd artifact.metadata values, a recipe disagreeing with a checkpoint's own file, a token
store edited in place, rerank edge cases, MaxSim over shards. The defects this attack confirmed (first strict
xfails) are fixed; their tests now assert the refusal (one line naming the file and key) or the right result."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.retrievers.colbert_config import read_colbert_config
from harness.retrievers.registry import resolve_retriever
from harness.settings import EncodeSettings, Execution
from tests.conftest import make_tiny_beir
from tests.pylate.models import DIM, HIDDEN, make_pylate_colbert, make_stanford_colbert

CPU = Execution(device="cpu", progress=False)


@pytest.fixture(scope="module")
def stanford(tmp_path_factory):
    return make_stanford_colbert(tmp_path_factory.mktemp("attack") / "stanford", seed=7)  # not test_colbert's


@pytest.fixture(scope="module")
def pylate(tmp_path_factory):
    return make_pylate_colbert(tmp_path_factory.mktemp("attack") / "pylate", seed=8)


def _retriever(folder, **kw):
    from harness.retrievers.colbert import ColbertRetriever

    return ColbertRetriever(resolve_retriever(f"colbert:{folder}"), execution=CPU, **kw)


def _edit_json(src, dst, name, **changes):
    folder = shutil.copytree(src, dst)
    data = json.loads((folder / name).read_text())
    data.update(changes)
    (folder / name).write_text(json.dumps(data))
    return folder


def _run(name, beir, out, **kw):
    from harness.runner import run

    (rec,) = run([name], [str(beir)], ["ndcg@10"], out, execution=kw.pop("execution", CPU), depth=100,
                 log=lambda m: None, **kw)
    return rec


def _run_file(rec, out):
    from harness.trec import read_run

    return read_run(out / rec.dataset / "test" / rec.run_file)


# ---- defects found by the attack, fixed -------------------------------------------------------------------


def _one_line(call, *words):
    """The HarnessError ``call`` raises: one line, naming each of ``words``."""
    with pytest.raises(HarnessError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


def test_an_offsets_file_edited_in_place_is_not_reused(pylate, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    beir = make_tiny_beir(tmp_path / "beir", n_docs=10, n_queries=3)
    small = replace(CPU, shard_size=4)
    first = _run(f"colbert:{pylate}", beir, tmp_path / "a", execution=small)
    (store,) = [p for p in (tmp_path / "cache" / "embeddings").iterdir() if p.is_dir()]
    path = store / "shard-00000.offsets.npy"
    offsets = np.load(path)
    offsets[2] -= 3  # still increasing, same file size: documents 1 and 2 trade three tokens
    np.save(path, offsets)
    # the store is no longer complete: the edited shard is encoded again (as a damaged one), the others reused
    again = _run(f"colbert:{pylate}", beir, tmp_path / "b", execution=small)
    assert again.index["embeddings"] == "encoded 1 shards, reused 2 (resumed)"
    assert _run_file(again, tmp_path / "b") == _run_file(first, tmp_path / "a")
    assert np.load(path)[2] == offsets[2] + 3
    # edited between the build and the search: refused where it is read, in one line
    from harness.embeddings import TokenStore

    np.save(path, offsets)
    (token_store,) = [TokenStore(store.parent, json.loads((store / "manifest.json").read_text())["key"], DIM)]
    assert token_store.dir == store
    _one_line(lambda: list(token_store.token_shards()), "shard 0", "--force")


def test_a_recipe_disagreeing_with_the_checkpoints_own_metadata_is_refused(tmp_path):
    from harness.retrievers.colbert import ColbertRetriever

    own = make_stanford_colbert(tmp_path / "own", doc_maxlen=20, query_maxlen=12, attend_to_mask_tokens=True)
    spec = replace(resolve_retriever("colbertv2"), model=str(own))  # the recipe, the checkpoint stored locally
    _one_line(lambda: ColbertRetriever(spec, execution=CPU), "artifact.metadata", "colbertv2", "without the recipe")
    message = _one_line(lambda: ColbertRetriever(spec, execution=CPU))
    assert any(f"{key} is {value}" in message for key, value in (("query_maxlen", 12), ("doc_maxlen", 20),
                                                                  ("attend_to_mask_tokens", True)))
    # a file that agrees with the recipe, or leaves a setting unstated: the recipe fills it, recorded
    agree = make_stanford_colbert(tmp_path / "agree", doc_maxlen=20, query_maxlen=12)
    meta = json.loads((agree / "artifact.metadata").read_text())
    del meta["attend_to_mask_tokens"]
    (agree / "artifact.metadata").write_text(json.dumps(meta))
    fills = replace(spec, model=str(agree), params={"doc_length": 20, "query_length": 12, "attend_to_masks": True})
    config = ColbertRetriever(fills, execution=CPU).encoders.config
    assert (config.doc_length, config.query_length, config.attend_to_masks) == (20, 12, True)
    assert "colbertv2" in config.source and "attend_to_masks" in config.source
    # a setting the kind does not know is refused, not ignored
    odd = replace(spec, model=str(agree), params={"doc_maxlen": 20})
    _one_line(lambda: ColbertRetriever(odd, execution=CPU), "doc_maxlen", "unknown")


@pytest.mark.parametrize("key", ["attend_to_mask_tokens", "mask_punctuation"])
@pytest.mark.parametrize("value", ["false", "true", 0, 1])
def test_a_string_boolean_in_artifact_metadata_is_not_read_as_true(stanford, tmp_path, key, value):
    folder = _edit_json(stanford, tmp_path / "m", "artifact.metadata", **{key: value})
    _one_line(lambda: read_colbert_config(folder), "artifact.metadata", key, repr(value))
    # JSON booleans and null (the default) are read as they are
    for given, expected in ((False, False), (True, True), (None, key == "mask_punctuation")):
        ok = _edit_json(stanford, tmp_path / f"ok-{given}", "artifact.metadata", **{key: given})
        config = read_colbert_config(ok)
        assert (config.attend_to_masks if key == "attend_to_mask_tokens" else bool(config.skiplist)) is expected


@pytest.mark.parametrize("key", ["do_query_expansion", "attend_to_expansion_tokens"])
def test_a_string_boolean_in_the_pylate_config_is_not_read_as_true(pylate, tmp_path, key):
    folder = _edit_json(pylate, tmp_path / "p", "config_sentence_transformers.json", **{key: "false"})
    _one_line(lambda: read_colbert_config(folder), "config_sentence_transformers.json", key)
    off = _edit_json(pylate, tmp_path / "off", "config_sentence_transformers.json", do_query_expansion=False)
    assert read_colbert_config(off).query_expansion is False
    bias = _edit_json(pylate, tmp_path / "bias", "1_Dense/config.json", bias="false")
    _one_line(lambda: read_colbert_config(bias), "1_Dense", "bias")


@pytest.mark.parametrize("words", ["!?", [".", 1], {"a": 1}, 5])
def test_a_skiplist_that_is_not_a_list_of_strings_is_refused(pylate, tmp_path, words):
    folder = _edit_json(pylate, tmp_path / "s", "config_sentence_transformers.json", skiplist_words=words)
    _one_line(lambda: read_colbert_config(folder), "config_sentence_transformers.json", "skiplist_words")
    empty = _edit_json(pylate, tmp_path / "e", "config_sentence_transformers.json", skiplist_words=[])
    assert read_colbert_config(empty).skiplist == ()


@pytest.mark.parametrize(("name", "key", "value"), [("artifact.metadata", "dim", "x"),
                                                    ("artifact.metadata", "dim", True),
                                                    ("artifact.metadata", "dim", 8.5),
                                                    ("artifact.metadata", "dim", 0),
                                                    ("config.json", "hidden_size", "x"),
                                                    ("config.json", "hidden_size", True)])
def test_a_non_numeric_dim_is_one_line(stanford, tmp_path, name, key, value):
    folder = _edit_json(stanford, tmp_path / "d", name, **{key: value})
    _one_line(lambda: read_colbert_config(folder), name, key)


@pytest.mark.parametrize(("name", "key"), [("artifact.metadata", "query_maxlen"),
                                           ("artifact.metadata", "doc_maxlen")])
def test_a_query_length_too_short_to_honour_is_refused(stanford, tmp_path, name, key):
    folder = _edit_json(stanford, tmp_path / "q", name, **{key: 2})
    _one_line(lambda: _retriever(folder), name, key, "at least 3")
    three = _edit_json(stanford, tmp_path / "three", name, query_maxlen=3)
    ids, _ = _retriever(three).encoders.encoder.query_ids(["gene gene gene gene"])
    assert len(ids[0]) == 3  # [CLS], the marker, [SEP]


def test_a_document_length_beyond_the_models_positions_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    folder = make_stanford_colbert(tmp_path / "long", doc_maxlen=300)  # the fixture BERT has 64 positions
    beir = make_tiny_beir(tmp_path / "beir", n_docs=5, n_queries=2)
    lines = (beir / "corpus.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"_id": "d1", "title": "", "text": " ".join(["gene"] * 200)})
    (beir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    _one_line(lambda: _run(f"colbert:{folder}", beir, tmp_path / "r"), "artifact.metadata", "doc_maxlen",
              "max_position_embeddings 64", "config.json")
    _one_line(lambda: _retriever(make_stanford_colbert(tmp_path / "q", query_maxlen=65)), "query_maxlen")
    assert _retriever(make_stanford_colbert(tmp_path / "edge", doc_maxlen=64)).encoders.config.doc_length == 64
    # a recipe's length is checked the same way
    from harness.retrievers.colbert import ColbertRetriever

    bare = make_stanford_colbert(tmp_path / "bare", metadata=False)  # PyLate's default 180 > 64
    _one_line(lambda: ColbertRetriever(replace(resolve_retriever("colbertv2"), model=str(bare)), execution=CPU),
              "the recipe colbertv2: doc_length is 180", "max_position_embeddings 64")


def test_documents_without_token_vectors_are_one_line(pylate, stanford, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    folder = shutil.copytree(pylate, tmp_path / "zero")
    state = load_file(str(folder / "1_Dense" / "model.safetensors"))
    state["linear.weight"] = torch.zeros(DIM, HIDDEN)
    save_file(state, str(folder / "1_Dense" / "model.safetensors"))
    beir = make_tiny_beir(tmp_path / "beir", n_docs=5, n_queries=2)
    _one_line(lambda: _run(f"colbert:{folder}", beir, tmp_path / "r"), "'d0'", "projection", "1_Dense")
    # every token in the skiplist: the document is named with that cause, before its shard is stored
    skip = _edit_json(pylate, tmp_path / "skip", "config_sentence_transformers.json",
                      skiplist_words=["[CLS]", "[SEP]", "[D] ", *[f"w{i}" for i in range(40)]])
    lines = (beir / "corpus.jsonl").read_text().splitlines()
    lines[3] = json.dumps({"_id": "d3", "title": "", "text": "w1 w2 w3"})
    (beir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    _one_line(lambda: _run(f"colbert:{skip}", beir, tmp_path / "s", execution=replace(CPU, shard_size=2)),
              "'d3'", "skiplist")
    assert not list((tmp_path / "cache" / "embeddings").glob("*/shard-00001.json"))
    # the store and MaxSim refuse such a document too, should one reach them
    from harness.embeddings import TokenStore
    from harness.search import maxsim_block

    store = TokenStore(tmp_path / "store", {"k": 1}, 2)
    padded = np.zeros((2, 2, 2), dtype=np.float32)
    padded[0, 0] = 1
    _one_line(lambda: store.write_shard(0, 0, ["a", "b"], padded), "'b'", "no token vector")
    _one_line(lambda: maxsim_block(torch.ones(1, 1, 2), torch.ones(1, 2), torch.tensor([0, 1, 1])),
              "without token vectors")


def test_a_dense_bias_the_config_does_not_declare_is_refused(pylate, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(pylate, tmp_path / "bias")
    state = load_file(str(folder / "1_Dense" / "model.safetensors"))
    state["linear.bias"] = torch.ones(DIM)
    save_file(state, str(folder / "1_Dense" / "model.safetensors"))
    _one_line(lambda: _retriever(folder).encoders.encoder, "linear.bias", "does not declare")
    # declared: it runs, with the bias
    declared = _edit_json(folder, tmp_path / "declared", "1_Dense/config.json", bias=True)
    assert _retriever(declared).encoders.encoder.projection[0].bias is not None
    # any other tensor in the Dense module's own file
    extra = shutil.copytree(pylate, tmp_path / "extra")
    state = load_file(str(extra / "1_Dense" / "model.safetensors"))
    state["scale"] = torch.ones(1)
    save_file(state, str(extra / "1_Dense" / "model.safetensors"))
    _one_line(lambda: _retriever(extra).encoders.encoder, "scale", "does not declare")


def test_chained_dense_modules_that_do_not_meet_are_one_line(pylate, tmp_path):
    import torch
    from safetensors.torch import save_file

    folder = shutil.copytree(pylate, tmp_path / "two")
    modules = json.loads((folder / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "pylate.models.Dense.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text(json.dumps({
        "in_features": 4, "out_features": 3, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}))  # the first Dense gives DIM (8), not 4
    save_file({"linear.weight": torch.randn(3, 4)}, str(folder / "2_Dense" / "model.safetensors"))
    _one_line(lambda: read_colbert_config(folder), "1_Dense", "8", "takes 4")
    # chained shapes that meet: the projections run one after the other
    (folder / "2_Dense" / "config.json").write_text(json.dumps({
        "in_features": DIM, "out_features": 3, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}))
    save_file({"linear.weight": torch.randn(3, DIM)}, str(folder / "2_Dense" / "model.safetensors"))
    assert _retriever(folder).encoders.encoder.encode_queries(["cell"]).shape == (1, 12, 3)


@pytest.mark.parametrize("similarity", ["l2", "dot", "Cosine", 1])
def test_a_similarity_other_than_cosine_is_refused(stanford, tmp_path, similarity):
    folder = _edit_json(stanford, tmp_path / "sim", "artifact.metadata", similarity=similarity)
    _one_line(lambda: read_colbert_config(folder), "artifact.metadata", "similarity", repr(similarity), "cosine")
    absent = shutil.copytree(stanford, tmp_path / "absent")
    meta = json.loads((absent / "artifact.metadata").read_text())
    del meta["similarity"]
    (absent / "artifact.metadata").write_text(json.dumps(meta))
    assert read_colbert_config(absent).layout == "stanford"


# ---- what held ---------------------------------------------------------------------------------------------


def test_almost_colbert_folders_are_one_line(stanford, pylate, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    def refused(folder):
        with pytest.raises(HarnessError) as e:
            _retriever(folder).encoders.encoder  # noqa: B018
        assert "\n" not in str(e.value)

    refused(_edit_json(stanford, tmp_path / "dim4", "artifact.metadata", dim=4))
    refused(_edit_json(stanford, tmp_path / "qid", "artifact.metadata", query_token_id=1))
    refused(_edit_json(pylate, tmp_path / "bias", "1_Dense/config.json", bias=True))  # no linear.bias saved
    shape = shutil.copytree(pylate, tmp_path / "shape")
    state = load_file(str(shape / "1_Dense" / "model.safetensors"))
    state["linear.weight"] = torch.randn(4, HIDDEN)
    save_file(state, str(shape / "1_Dense" / "model.safetensors"))
    refused(shape)
    notok = shutil.copytree(stanford, tmp_path / "notok")
    for p in [notok / "vocab.txt", *notok.glob("tokenizer*")]:
        p.unlink()
    refused(notok)


def test_model_file_edits_and_settings_change_the_fingerprint(pylate, tmp_path):
    from safetensors.torch import load_file, save_file

    base = _retriever(pylate).fingerprint()
    dense = shutil.copytree(pylate, tmp_path / "dense")
    state = load_file(str(dense / "1_Dense" / "model.safetensors"))
    state["linear.weight"] = state["linear.weight"] * 2
    save_file(state, str(dense / "1_Dense" / "model.safetensors"))
    assert _retriever(dense).fingerprint() != base
    tok = shutil.copytree(pylate, tmp_path / "tok")
    (tok / "tokenizer_config.json").write_text((tok / "tokenizer_config.json").read_text() + " ")
    assert _retriever(tok).fingerprint() != base
    assert _retriever(pylate, settings=EncodeSettings(embed_dtype="float16")).fingerprint() != base
    assert _retriever(pylate, settings=EncodeSettings(precision="bf16")).fingerprint() != base


def test_a_damaged_store_is_encoded_again_and_k_beyond_the_corpus_over_shards(stanford, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    beir = make_tiny_beir(tmp_path / "beir", n_docs=10, n_queries=3)
    small = replace(CPU, shard_size=3)  # 4 shards
    first = _run(f"colbert:{stanford}", beir, tmp_path / "a", execution=small)
    ran = _run_file(first, tmp_path / "a")
    assert all(len(docs) == 10 for docs in ran.values())  # depth 100 > 10 documents: every document, once
    (store,) = [p for p in (tmp_path / "cache" / "embeddings").iterdir() if p.is_dir()]
    (store / "shard-00001.offsets.npy").unlink()
    npy = store / "shard-00002.npy"
    npy.write_bytes(npy.read_bytes()[:-64])
    again = _run(f"colbert:{stanford}", beir, tmp_path / "b", execution=small)
    assert again.index["embeddings"] != "reused" and _run_file(again, tmp_path / "b") == ran


def test_rerank_edge_cases(stanford, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    beir = make_tiny_beir(tmp_path / "beir", n_docs=10, n_queries=3)
    short = tmp_path / "short.trec"
    short.write_text("".join(f"q{q} Q0 d{r} {r + 1} {10 - r} x\n" for q in range(3) for r in range(3)))
    rec = _run(f"rerank:colbert:{stanford}(run:{short};top=50)", beir, tmp_path / "r")
    assert all(set(docs) == {"d0", "d1", "d2"} for docs in _run_file(rec, tmp_path / "r").values())
    missing = tmp_path / "missing.trec"
    missing.write_text("".join(f"q{q} Q0 {d} {r + 1} {10 - r} x\n" for q in range(3)
                               for r, d in enumerate(["d0", "nosuchdoc"])))
    with pytest.raises(HarnessError, match="not in the corpus"):
        _run(f"rerank:colbert:{stanford}(run:{missing};top=2)", beir, tmp_path / "m")
