"""Model recipes: every encoder run exactly as its authors run it. Differential tests against
sentence-transformers' own ``encode_query`` / ``encode_document`` on tiny models saved by sentence-transformers
itself (one per combination of pooling, prompts, Dense, Normalize and lowercasing), a tiny random decoder with
last-token pooling, DPR's asymmetric encoders against transformers' DPR classes, and refusals of what the
harness does not implement."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.cli import main
from harness.errors import DataError, HarnessError
from harness.retrievers.config import read_encoder_config
from harness.retrievers.encoder import HFEncoder
from harness.retrievers.registry import RETRIEVERS, RetrieverSpec, resolve_retriever
from harness.runner import run
from harness.settings import EncodeSettings, Execution
from tests.conftest import VOCAB_WORDS, make_tiny_beir, make_tiny_bert, word_tokenizer

st = pytest.importorskip("sentence_transformers")
CPU = Execution(device="cpu", progress=False)
QUERIES = ["the protein of the cell", "Cancer", "a study of GENE expression in tumor cells and patients with data"]
DOCS = ["retrieval of dense vector search", "the query document model score rank", "w1 w2 w3 " * 20,
        "Learning Training loss weight relevance pair window crop token"]


def _st_folder(folder: Path, bert: Path, *, pooling="mean", include_prompt=True, dense=None, normalize=False,
               lower=False, prompts=None, default_prompt=None, similarity=None, max_length=24) -> Path:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    torch.manual_seed(7)
    modules = [Transformer(str(bert), max_seq_length=max_length, do_lower_case=lower)]
    modules.append(Pooling(16, pooling_mode=pooling, include_prompt=include_prompt))
    width = 16 * (len(pooling) if isinstance(pooling, tuple) else 1)
    for out, act, bias in dense or ():
        modules.append(Dense(width, out, bias=bias, activation_function=act))
        width = out
    if normalize:
        modules.append(Normalize())
    model = SentenceTransformer(modules=modules, prompts=prompts or {}, default_prompt_name=default_prompt,
                                similarity_fn_name=similarity, device="cpu")
    model.save(str(folder))
    return folder


def _compare(folder: Path, *, atol: float = 1e-5, doc_prompt: str | None = None) -> None:
    """The harness's vectors give sentence-transformers' similarity: its vectors themselves for a dot-product
    model, the normalised ones for a cosine model (sentence-transformers' default similarity)."""
    from sentence_transformers import SentenceTransformer

    ref = SentenceTransformer(str(folder), device="cpu")
    cfg = read_encoder_config(folder)
    enc = HFEncoder(str(folder), cfg, device="cpu", progress=False)

    def scale(x: np.ndarray) -> np.ndarray:
        return x / np.linalg.norm(x, axis=1, keepdims=True) if cfg.similarity == "cos" else x

    assert cfg.similarity == ("cos" if ref.similarity_fn_name == "cosine" or cfg.normalize else "dot")
    np.testing.assert_allclose(enc.encode(QUERIES, "query"), scale(ref.encode_query(QUERIES, batch_size=2)), atol=atol)
    want = ref.encode_document(DOCS, batch_size=3) if doc_prompt is None else ref.encode(DOCS, prompt=doc_prompt)
    np.testing.assert_allclose(enc.encode(DOCS, "doc"), scale(want), atol=atol)


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("st-bert") / "bert", hidden=16, layers=2, seed=5)


@pytest.mark.parametrize("pooling", ["mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken",
                                     ("cls", "mean"), ("max", "mean_sqrt_len_tokens")])
def test_every_pooling_mode_equals_sentence_transformers(tmp_path, bert, pooling):
    _compare(_st_folder(tmp_path / "m", bert, pooling=pooling))


@pytest.mark.parametrize("include_prompt", [True, False])
@pytest.mark.parametrize("pooling", ["mean", "cls", "weightedmean"])
def test_prompts_are_chosen_and_pooled_as_sentence_transformers(tmp_path, bert, include_prompt, pooling):
    folder = _st_folder(tmp_path / "m", bert, pooling=pooling, include_prompt=include_prompt,
                        prompts={"query": "query: ", "document": "passage: "})
    cfg = read_encoder_config(folder)
    assert (cfg.query_prefix, cfg.doc_prefix, cfg.include_prompt) == ("query: ", "passage: ", include_prompt)
    _compare(folder)


def _prompts(folder: Path, prompts: dict, default: str | None = None) -> Path:
    path = folder / "config_sentence_transformers.json"
    cfg = json.loads(path.read_text())
    cfg.update(prompts=prompts, default_prompt_name=default)
    path.write_text(json.dumps(cfg))
    return folder


def test_passage_prompt_and_default_prompt_name(tmp_path, bert):
    # as e5's files name them: "passage", which MTEB uses for documents
    folder = _prompts(_st_folder(tmp_path / "a", bert), {"query": "q: ", "passage": "p: "})
    assert read_encoder_config(folder).doc_prefix == "p: "
    _compare(folder, doc_prompt="p: ")
    folder = _prompts(_st_folder(tmp_path / "b", bert), {"instruct": "Represent: ", "query": "q: "}, "instruct")
    cfg = read_encoder_config(folder)
    assert (cfg.query_prefix, cfg.doc_prefix) == ("q: ", "Represent: ")  # documents fall back to the default
    _compare(folder, doc_prompt="Represent: ")


@pytest.mark.parametrize("dense", [[(8, torch.nn.Tanh(), True)], [(12, torch.nn.Identity(), False)],
                                   [(12, torch.nn.ReLU(), True), (6, torch.nn.Tanh(), True)]])
@pytest.mark.parametrize("normalize", [False, True])
def test_dense_and_normalize_modules_equal_sentence_transformers(tmp_path, bert, dense, normalize):
    folder = _st_folder(tmp_path / "m", bert, dense=dense, normalize=normalize, similarity="dot")
    cfg = read_encoder_config(folder)
    assert len(cfg.dense) == len(dense) and cfg.normalize == normalize
    _compare(folder)


def test_lowercasing_equals_sentence_transformers(tmp_path):
    from tokenizers.implementations import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    # a cased tokenizer, so that do_lower_case changes the ids
    cased = make_tiny_bert(tmp_path / "cased", hidden=16, seed=2)
    wordpiece = BertWordPieceTokenizer(str(cased / "vocab.txt"), lowercase=False)
    BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                      sep_token="[SEP]", mask_token="[MASK]", do_lower_case=False).save_pretrained(cased)
    plain = HFEncoder(str(cased), read_encoder_config(cased), device="cpu", progress=False)
    assert plain.tokenize(["Cancer"]) != plain.tokenize(["cancer"])
    folder = _st_folder(tmp_path / "m", cased, lower=True, prompts={"query": "Query: "})
    _compare(folder)


def test_cosine_similarity_without_a_normalize_module_normalises(tmp_path, bert):
    folder = _st_folder(tmp_path / "m", bert, similarity="cosine")
    cfg = read_encoder_config(folder)
    assert cfg.normalize and cfg.similarity == "cos"


def test_legacy_pooling_files_are_read(tmp_path, bert):
    folder = make_tiny_bert(tmp_path / "legacy", st_files=True)  # pooling_mode_cls_token, the 2.x layout
    cfg = read_encoder_config(folder)
    assert (cfg.pooling, cfg.normalize, cfg.max_length) == ("cls", True, 32)


# ---- refusals: never a silent fallback ------------------------------------------------------------------

def _modules(folder: Path, modules: list[dict]) -> Path:
    (folder / "modules.json").write_text(json.dumps(modules))
    return folder


def test_an_unknown_module_is_refused_naming_it(tmp_path, capsys):
    folder = make_tiny_bert(tmp_path / "m", st_files=True)
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "x", "path": "2_Custom", "type": "my_package.layers.WhiteningLayer"})
    _modules(folder, [dict(m, idx=i) for i, m in enumerate(modules)])
    with pytest.raises(DataError, match="module 'my_package.layers.WhiteningLayer' .folder '2_Custom'. is not one"):
        read_encoder_config(folder)
    beir = make_tiny_beir(tmp_path / "beir")
    rc = main(["run", "-r", f"hf:{folder}", "-d", str(beir), "--output-dir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "modules.json" in err[0] and "WhiteningLayer" in err[0]


def test_an_unknown_pooling_mode_or_similarity_is_refused(tmp_path):
    folder = make_tiny_bert(tmp_path / "m", st_files=True)
    pooling = folder / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({"embedding_dimension": 16, "pooling_mode": "attention"}))
    with pytest.raises(DataError, match="pooling mode 'attention'"):
        read_encoder_config(folder)
    pooling.write_text(json.dumps({"pooling_mode_cls_token": True}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"similarity_fn_name": "euclidean"}))
    with pytest.raises(DataError, match="similarity 'euclidean'"):
        read_encoder_config(folder)


def test_an_unknown_dense_activation_is_refused(tmp_path, bert):
    folder = _st_folder(tmp_path / "m", bert, dense=[(8, torch.nn.Tanh(), True)])
    cfg_path = folder / "2_Dense" / "config.json"
    cfg_path.write_text(cfg_path.read_text().replace("torch.nn.modules.activation.Tanh", "my.Swish"))
    with pytest.raises(DataError, match="activation 'my.Swish'"):
        read_encoder_config(folder)


# ---- prefixes on the command line ----------------------------------------------------------------------

def test_prefix_flags_are_in_help_change_the_fingerprint_and_are_recorded(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "--query-prefix" in text and "--doc-prefix" in text
    (plain,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", log=lambda m: None,
                   execution=CPU)
    (pre,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", log=lambda m: None,
                 execution=CPU, settings=EncodeSettings(query_prefix="query: ", doc_prefix="passage: "))
    assert pre.fingerprint != plain.fingerprint
    assert pre.settings == {"query_prefix": "query: ", "doc_prefix": "passage: "}
    assert pre.retriever_provenance["encoder"]["query_prefix"] == "query: "


# ---- a model folder with prompts gives what sentence-transformers with those prompts gives ----------------

@pytest.mark.realdata
def test_minilm_with_prompts_equals_sentence_transformers_on_a_scifact_subset(shared_data, tmp_path):
    import shutil

    from sentence_transformers import SentenceTransformer

    from harness.data.beir import doc_text, iter_corpus, read_queries
    from harness.metrics import evaluate, mean
    from harness.trec import read_qrels
    from tests.conftest import MINILM

    model = tmp_path / "minilm-prompts"
    shutil.copytree(MINILM, model)
    cfg = json.loads((model / "config_sentence_transformers.json").read_text())
    cfg["prompts"] = {"query": "Represent this question for retrieval: ", "document": "Represent the document: "}
    (model / "config_sentence_transformers.json").write_text(json.dumps(cfg))
    scifact = shared_data / "beir" / "scifact"
    subset = tmp_path / "scifact-subset"
    (subset / "qrels").mkdir(parents=True)
    qrels = read_qrels(scifact / "qrels" / "test.tsv")
    qids = sorted(qrels)[:60]
    judged = {d for q in qids for d in qrels[q]}
    docs = [d for i, d in enumerate(iter_corpus(scifact / "corpus.jsonl")) if d.doc_id in judged or i < 600]
    with open(subset / "corpus.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": d.doc_id, "title": d.title, "text": d.text}) + "\n" for d in docs)
    queries = read_queries(scifact / "queries.jsonl")
    with open(subset / "queries.jsonl", "w") as f:
        f.writelines(json.dumps({"_id": q, "text": queries[q]}) + "\n" for q in qids)
    with open(subset / "qrels" / "test.tsv", "w") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{r}\n" for q in qids for d, r in qrels[q].items())
    (rec,) = run([f"hf:{model}"], [str(subset)], ["ndcg@10"], tmp_path / "r", log=lambda m: None, execution=CPU)
    ref = SentenceTransformer(str(model), device="cpu")
    q = ref.encode_query([queries[x] for x in qids], batch_size=32)
    d = ref.encode_document([doc_text(x) for x in docs], batch_size=32)
    scores = q @ d.T
    run_ref = {qid: {docs[j].doc_id: float(scores[i, j]) for j in np.argsort(-scores[i])[:100]}
               for i, qid in enumerate(qids)}
    ndcg = mean(evaluate({x: qrels[x] for x in qids}, run_ref, ["ndcg@10"])["ndcg@10"])
    assert rec.metrics["ndcg@10"] == pytest.approx(ndcg, abs=1e-4)
    assert rec.retriever_provenance["encoder"]["query_prefix"] == "Represent this question for retrieval: "


# ---- a decoder embedder: last-token pooling, an instruction, EOS ---------------------------------------------

def _tiny_decoder(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "<eos>", *VOCAB_WORDS, ":", "instruct", "query", *[f"w{i}" for i in range(40)]]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=len(words), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    LlamaModel(config).save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_a_decoder_embedder_with_last_token_pooling_equals_sentence_transformers(tmp_path):
    decoder = _tiny_decoder(tmp_path / "decoder")
    folder = _st_folder(tmp_path / "m", decoder, pooling="lasttoken", normalize=True,
                        prompts={"query": "instruct : query : "}, max_length=40)
    cfg = read_encoder_config(folder)
    assert cfg.pooling == "lasttoken" and cfg.query_prefix == "instruct : query : "
    _compare(folder, atol=2e-5)


def test_append_eos_ends_every_text_with_eos_after_truncation(tmp_path):
    decoder = _tiny_decoder(tmp_path / "decoder")
    (decoder / "tokenizer.json").write_text((decoder / "tokenizer.json").read_text())
    from harness.retrievers.config import CONTRIEVER

    enc = HFEncoder(str(decoder), replace(CONTRIEVER, pooling="lasttoken", append_eos=True, max_length=6),
                    device="cpu", progress=False)
    ids = enc.tokenize(["the protein of the cell and data model", "cell"])
    eos = enc.tokenizer.eos_token_id
    assert [x[-1] for x in ids] == [eos, eos] and len(ids[0]) == 6 and ids[0].count(eos) == 1
    full = enc.tokenizer(["the protein of the cell and data model"], add_special_tokens=False)["input_ids"][0]
    assert ids[0] == [*full[:5], eos]  # the first max_length - 1 tokens, then EOS


# ---- DPR: separate question and context encoders, (title, text) pairs -------------------------------------------

def _tiny_dpr(folder: Path) -> tuple[Path, Path]:
    from transformers import DPRConfig, DPRContextEncoder, DPRQuestionEncoder

    cfg = dict(vocab_size=len(VOCAB_WORDS) + 45, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32, max_position_embeddings=300)
    out = []
    for name, cls, seed in (("q", DPRQuestionEncoder, 1), ("ctx", DPRContextEncoder, 2)):
        torch.manual_seed(seed)
        path = folder / name
        cls(DPRConfig(**cfg)).save_pretrained(path)
        make_tiny_bert(tmp := folder / f"{name}-tok")  # only for its vocabulary and tokenizer files
        for f in tmp.iterdir():
            if f.name.startswith(("vocab", "tokenizer", "special")):
                (path / f.name).write_bytes(f.read_bytes())
        out.append(path)
    return out[0], out[1]


def test_dpr_stand_in_equals_transformers_dpr_classes(tmp_path):
    from transformers import DPRContextEncoder, DPRQuestionEncoder

    q_dir, ctx_dir = _tiny_dpr(tmp_path)
    spec = replace(RETRIEVERS.get("dpr-nq"), name="dpr-standin", model=str(ctx_dir), query_model=str(q_dir))
    retriever = spec.load(execution=CPU)
    tok = word_tokenizer(q_dir / "vocab.txt")
    docs = [("Super Bowl", "the broncos won the game"), ("Cell", "protein of the cell " * 10)]
    got = retriever.encoders.encoder.encode(docs, "doc")
    ctx = DPRContextEncoder.from_pretrained(ctx_dir).eval()
    inputs = tok([t for t, _ in docs], [x for _, x in docs], truncation=True, max_length=256, padding=True,
                 return_tensors="pt")
    with torch.no_grad():  # DPR's generate_dense_embeddings: token types all zero, attention mask on
        want = ctx(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                   token_type_ids=torch.zeros_like(inputs["input_ids"])).pooler_output.numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    question = DPRQuestionEncoder.from_pretrained(q_dir).eval()
    with torch.no_grad():
        want_q = question(**tok(["who won the game"], return_tensors="pt")).pooler_output.numpy()
    got_q = retriever.encoders.query_encoder.encode(["who won the game"], "query")
    np.testing.assert_allclose(got_q, want_q, atol=1e-5)
    fp = retriever.fingerprint()
    assert fp["query_model_files"] and fp["query_model_files"] != fp["model_files"]
    assert fp["text_rule"] == "(title, text) as a pair"


def test_dpr_and_bge_rows_run_offline_end_to_end_on_stand_ins(tmp_path):
    from tests.odqa.conftest import write_odqa

    q_dir, ctx_dir = _tiny_dpr(tmp_path / "dpr")
    odqa = write_odqa(tmp_path / "odqa")
    for name in ("dpr-nq", "dpr-multi"):
        RETRIEVERS._entries[f"{name}-standin"] = replace(RETRIEVERS.get(name), name=f"{name}-standin",
                                                          model=str(ctx_dir), query_model=str(q_dir))
    bge = make_tiny_bert(tmp_path / "bge", st_files=True)
    RETRIEVERS._entries["bge-standin"] = replace(RETRIEVERS.get("bge-base-en-v1.5"), name="bge-standin",
                                                 model=str(bge))
    try:
        records = run(["dpr-nq-standin", "dpr-multi-standin"], [str(odqa)], None, tmp_path / "r",
                      log=lambda m: None, execution=CPU)
        assert [sorted(r.metrics) for r in records] == [["accuracy@1", "accuracy@100", "accuracy@20",
                                                         "accuracy@5"]] * 2
        assert records[0].retriever_provenance["query_model"]["path"] == str(q_dir.resolve())
        (rec,) = run(["bge-standin"], [str(make_tiny_beir(tmp_path / "beir"))], None, tmp_path / "r",
                     log=lambda m: None, execution=CPU)
        assert rec.retriever_provenance["encoder"]["query_prefix"].startswith("Represent this sentence")
        assert rec.retriever_provenance["encoder"]["pooling"] == "cls"
    finally:
        for name in ("dpr-nq-standin", "dpr-multi-standin", "bge-standin"):
            RETRIEVERS._entries.pop(name, None)


def test_list_retrievers_shows_each_recipe(capsys):
    assert main(["list", "retrievers"]) == 0
    out = capsys.readouterr().out
    for name in ("bge-base-en-v1.5", "e5-base-v2", "dpr-nq", "dpr-multi"):
        assert name in out
    assert "cls pooling" in out and "query prefix 'query: '" in out and "(title, text) pairs" in out


def test_published_rows_of_the_new_recipes_are_mapped():
    from harness.results.baselines import load_published

    published, systems = load_published()
    assert "bge-base-en-v1.5" in systems.get("bge-base-en-v1.5.faiss", [])
    assert any(p.system == "DPR" and p.dataset == "odqa/nq" for p in published)


def test_resolve_retriever_spec_round_trips_the_query_model():
    spec = resolve_retriever("dpr-multi")
    assert isinstance(spec, RetrieverSpec) and spec.query_model and spec.to_dict()["query_model"] == spec.query_model


def test_a_dpr_with_a_projection_is_refused(tmp_path):
    from transformers import DPRConfig, DPRQuestionEncoder

    q = tmp_path / "q"
    DPRQuestionEncoder(DPRConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, projection_dim=8)).save_pretrained(q)
    make_tiny_bert(tmp_path / "tok")
    for f in (tmp_path / "tok").iterdir():
        if f.name.startswith(("vocab", "tokenizer", "special")):
            (q / f.name).write_bytes(f.read_bytes())
    from harness.retrievers.registry import DPR

    with pytest.raises(HarnessError, match="projection"):
        HFEncoder(str(q), DPR, device="cpu", progress=False)
