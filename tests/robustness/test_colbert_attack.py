"""Hostile inputs to the late-interaction kind (``colbert:``) on tiny fixture models (tests/pylate/models.py):
almost-ColBERT folders, odd artifact.metadata values, a recipe disagreeing with a checkpoint's own file, a token
store edited in place, rerank edge cases, MaxSim over shards. Confirmed defects are ``xfail(strict=True)``: each
passes once the defect is fixed (and then the marker must go)."""

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
    return make_stanford_colbert(tmp_path_factory.mktemp("attack") / "stanford")


@pytest.fixture(scope="module")
def pylate(tmp_path_factory):
    return make_pylate_colbert(tmp_path_factory.mktemp("attack") / "pylate")


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


# ---- confirmed defects ------------------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="token_shards() reads a shard's offsets with seal(verify=False): an offsets "
                   "file edited in place (same size) is reused and MaxSim runs over other document boundaries, exit 0")
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
    try:
        again = _run(f"colbert:{pylate}", beir, tmp_path / "b", execution=small)
    except HarnessError:
        return  # refused: fine
    assert again.index["embeddings"] != "reused" or _run_file(again, tmp_path / "b") == _run_file(first, tmp_path / "a")


@pytest.mark.xfail(strict=True, reason="ColbertConfig.with_overrides: a recipe's settings silently replace what the "
                   "checkpoint's own artifact.metadata states (doc_maxlen 20 -> 180, attend True -> False)")
def test_a_recipe_disagreeing_with_the_checkpoints_own_metadata_is_refused(tmp_path):
    from harness.retrievers.colbert import ColbertRetriever

    own = make_stanford_colbert(tmp_path / "own", doc_maxlen=20, query_maxlen=12, attend_to_mask_tokens=True)
    spec = replace(resolve_retriever("colbertv2"), model=str(own))  # the recipe, the checkpoint stored locally
    with pytest.raises(HarnessError):
        ColbertRetriever(spec, execution=CPU)


@pytest.mark.xfail(strict=True, reason="colbert_config._stanford: bool('false') is True; a string boolean in "
                   "artifact.metadata silently turns the setting on")
@pytest.mark.parametrize("key", ["attend_to_mask_tokens", "mask_punctuation"])
def test_a_string_boolean_in_artifact_metadata_is_not_read_as_true(stanford, tmp_path, key):
    folder = _edit_json(stanford, tmp_path / "m", "artifact.metadata", **{key: "false"})
    try:
        config = read_colbert_config(folder)
    except HarnessError:
        return
    assert (config.attend_to_masks if key == "attend_to_mask_tokens" else bool(config.skiplist)) is False


@pytest.mark.xfail(strict=True, reason="colbert_config._pylate: bool('false') is True for do_query_expansion and "
                   "attend_to_expansion_tokens of config_sentence_transformers.json")
def test_a_string_boolean_in_the_pylate_config_is_not_read_as_true(pylate, tmp_path):
    folder = _edit_json(pylate, tmp_path / "p", "config_sentence_transformers.json", do_query_expansion="false")
    try:
        config = read_colbert_config(folder)
    except HarnessError:
        return
    assert config.query_expansion is False


@pytest.mark.xfail(strict=True, reason="colbert_config._stanford: int(meta.get('dim')) raises ValueError (a "
                   "traceback, exit 1) for a non-numeric dim; hidden_size likewise")
def test_a_non_numeric_dim_is_one_line(stanford, tmp_path):
    folder = _edit_json(stanford, tmp_path / "d", "artifact.metadata", dim="x")
    with pytest.raises(HarnessError, match="artifact.metadata"):
        read_colbert_config(folder)


@pytest.mark.xfail(strict=True, reason="colbert_config._int accepts a length of 2, which cannot hold [CLS], the "
                   "marker and [SEP]: the tokenizer ignores max_length=1 and the query is longer than query_length")
def test_a_query_length_too_short_to_honour_is_refused(stanford, tmp_path):
    folder = _edit_json(stanford, tmp_path / "q", "artifact.metadata", query_maxlen=2)
    try:
        enc = _retriever(folder).encoders.encoder
    except HarnessError:
        return
    ids, _ = enc.query_ids(["gene gene gene gene"])
    assert len(ids[0]) <= 2


@pytest.mark.xfail(strict=True, reason="a doc_maxlen beyond the transformer's max_position_embeddings is not "
                   "checked: a long document crashes the forward with a RuntimeError traceback")
def test_a_document_length_beyond_the_models_positions_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    folder = make_stanford_colbert(tmp_path / "long", doc_maxlen=300)  # the fixture BERT has 64 positions
    beir = make_tiny_beir(tmp_path / "beir", n_docs=5, n_queries=2)
    lines = (beir / "corpus.jsonl").read_text().splitlines()
    lines[1] = json.dumps({"_id": "d1", "title": "", "text": " ".join(["gene"] * 200)})
    (beir / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(HarnessError):
        _run(f"colbert:{folder}", beir, tmp_path / "r")


@pytest.mark.xfail(strict=True, reason="search.maxsim_block: a block whose documents have no token vector (a zero "
                   "projection: every row taken for padding) raises IndexError from amax (traceback)")
def test_documents_without_token_vectors_are_one_line(pylate, tmp_path, monkeypatch):
    import torch
    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    folder = shutil.copytree(pylate, tmp_path / "zero")
    state = load_file(str(folder / "1_Dense" / "model.safetensors"))
    state["linear.weight"] = torch.zeros(DIM, HIDDEN)
    save_file(state, str(folder / "1_Dense" / "model.safetensors"))
    beir = make_tiny_beir(tmp_path / "beir", n_docs=5, n_queries=2)
    with pytest.raises(HarnessError):
        _run(f"colbert:{folder}", beir, tmp_path / "r")


@pytest.mark.xfail(strict=True, reason="colbert_model._bias: a Dense module whose weights hold linear.bias while "
                   "its config says bias false is run without the bias (PyLate's strict load refuses it)")
def test_a_dense_bias_the_config_does_not_declare_is_refused(pylate, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(pylate, tmp_path / "bias")
    state = load_file(str(folder / "1_Dense" / "model.safetensors"))
    state["linear.bias"] = torch.ones(DIM)
    save_file(state, str(folder / "1_Dense" / "model.safetensors"))
    with pytest.raises(HarnessError):
        _retriever(folder).encoders.encoder  # noqa: B018


@pytest.mark.xfail(strict=True, reason="colbert_model.ColbertEncoder checks only the first Dense layer against the "
                   "transformer: chained Dense modules whose shapes do not meet fail in the forward (RuntimeError)")
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
    with pytest.raises(HarnessError):
        _retriever(folder).encoders.encoder.encode_queries(["cell"])


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
