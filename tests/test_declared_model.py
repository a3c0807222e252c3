"""A user's own model object through the Python API (issue 30): the same batching, caching, search, records
and leaderboard as a model the harness reads itself; its identity is the declared name and revision."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.errors import HarnessError
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_run

CPU = Execution(device="cpu", progress=False)


class TinyEncoder:
    """A tiny BERT with mean pooling, written the way a user writes one (BEIR's convention), with no harness
    code: transformers' tokenizer and model, padded batches of ``batch_size``."""

    def __init__(self, folder):
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).eval()
        self.calls = {"queries": 0, "corpus": 0}
        self.texts = {"queries": 0, "corpus": 0}  # how many texts each method encoded

    def _encode(self, texts, batch_size):
        out = []
        with self.torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                enc = self.tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                                     max_length=min(512, self.model.config.max_position_embeddings),
                                     return_tensors="pt")
                hidden = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)

    def encode_queries(self, queries, batch_size=16, **kwargs):
        self.calls["queries"] += 1
        self.texts["queries"] += len(queries)
        return self._encode(list(queries), batch_size)

    def encode_corpus(self, corpus, batch_size=16, **kwargs):
        self.calls["corpus"] += 1
        self.texts["corpus"] += len(corpus)
        return self._encode([f"{d['title']} {d['text']}".strip() for d in corpus], batch_size)


class TinyMtebEncoder(TinyEncoder):
    """The same model behind sentence-transformers' / MTEB's ``encode``."""

    def encode(self, sentences, *, prompt_type=None, batch_size=32, **kwargs):
        self.calls["queries" if prompt_type == "query" else "corpus"] += 1
        return self._encode(list(sentences), batch_size)

    encode_queries = encode_corpus = None  # type: ignore[assignment]


def test_a_model_object_equals_the_same_weights_through_hf(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # which revisions are cached: this test's own
    out = tmp_path / "results"
    (ref,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10", "recall@5"], out, execution=CPU,
                 log=lambda m: None)
    model = TinyEncoder(tiny_bert_dir)
    (mine,) = harness.evaluate(model, [str(tiny_beir)], name="tiny-mine", revision="v1", output_dir=out,
                               metrics=["ndcg@10", "recall@5"], batch_size=3)
    assert mine.retriever == f"tiny-mine@v1#{mine.retriever_provenance['probe']['sha256'][:8]}"  # issue 35: probe
    assert mine.retriever_provenance["declared_by_user"] is True
    assert mine.retriever_provenance["content_checked"] is False
    for metric in ("ndcg@10", "recall@5"):
        assert mine.metrics[metric] == pytest.approx(ref.metrics[metric], abs=1e-9)
    ours = read_run(out / mine.dataset / "test" / mine.run_file)
    theirs = read_run(out / ref.dataset / "test" / ref.run_file)
    assert {q: list(d)[:10] for q, d in ours.items()} == {q: list(d)[:10] for q, d in theirs.items()}
    for q in ours:
        np.testing.assert_allclose(list(ours[q].values())[:10], list(theirs[q].values())[:10], rtol=1e-5)
    board = (out / "leaderboard.csv").read_text()
    assert mine.retriever in board
    # the embedding cache is keyed by the declared revision and the probe: the same one encodes nothing again
    # but the probe's few texts ...
    from harness.retrievers.probe import PROBE_DOCS

    texts = dict(model.texts)
    again = harness.evaluate(model, str(tiny_beir), name="tiny-mine", revision="v1", output_dir=tmp_path / "other",
                             metrics=["ndcg@10"], batch_size=3)[0]
    assert model.texts["corpus"] == texts["corpus"] + len(PROBE_DOCS)
    assert again.metrics["ndcg@10"] == mine.metrics["ndcg@10"]
    # ... and a new revision is a new computation and a new row
    harness.evaluate(model, [str(tiny_beir)], name="tiny-mine", revision="v2", output_dir=out, metrics=["ndcg@10"])
    assert model.texts["corpus"] > texts["corpus"] + 2 * len(PROBE_DOCS)
    assert "tiny-mine@v2#" in (out / "leaderboard.csv").read_text()


def test_mteb_style_encode_gives_the_same_numbers(tiny_beir, tiny_bert_dir, tmp_path):
    a = harness.evaluate(TinyEncoder(tiny_bert_dir), [str(tiny_beir)], name="tiny-beir", revision="1",
                         output_dir=tmp_path, metrics=["ndcg@10"])[0]
    model = TinyMtebEncoder(tiny_bert_dir)
    b = harness.evaluate(model, [str(tiny_beir)], name="tiny-mteb", revision="1", output_dir=tmp_path,
                         metrics=["ndcg@10"])[0]
    assert b.retriever_provenance["interface"] == "encode" and model.calls["queries"] >= 1
    assert b.metrics["ndcg@10"] == pytest.approx(a.metrics["ndcg@10"], abs=1e-9)


@pytest.mark.parametrize("kwargs,message", [({"name": "x", "revision": ""}, "give a revision"),
                                            ({"name": "a b", "revision": "1"}, "plain name")])
def test_a_model_needs_a_name_and_a_revision(tiny_beir, tiny_bert_dir, tmp_path, kwargs, message):
    with pytest.raises(HarnessError, match=message):
        harness.evaluate(TinyEncoder(tiny_bert_dir), [str(tiny_beir)], output_dir=tmp_path, **kwargs)


def test_a_model_that_returns_the_wrong_shape_is_refused(tiny_beir, tmp_path):
    class Broken:
        def encode_queries(self, queries, batch_size=16):
            return np.random.default_rng(0).normal(size=(len(queries), 4))

        def encode_corpus(self, corpus, batch_size=16):
            return np.random.default_rng(0).normal(size=(len(corpus) - 1, 4))

    with pytest.raises(HarnessError, match="returned an array of shape"):
        harness.evaluate(Broken(), [str(tiny_beir)], name="broken", revision="1", output_dir=tmp_path)
    with pytest.raises(HarnessError, match="neither encode_queries"):
        harness.api.evaluate_model(object(), [str(tiny_beir)], name="nothing", revision="1", output_dir=tmp_path)


def test_mteb_encoder_protocols_are_told_their_task(tmp_path, monkeypatch):
    """MTEB's encoder protocol (2.x: a DataLoader with the task's metadata; 1.x: sentences and the task's
    name) runs on a dataset MTEB has a task for: the same numbers as the same folder through hf:."""
    mteb = pytest.importorskip("mteb")
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    from tests.conftest import make_tiny_beir, make_tiny_bert

    data = tmp_path / "data"
    make_tiny_beir(data / "beir" / "scifact")  # stands in for SciFact: an id MTEB has a task for
    monkeypatch.setenv("HARNESS_DATA", str(data))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # every model below encodes, none is reused
    folder = make_tiny_bert(tmp_path / "st", st_files=True)
    out = tmp_path / "results"
    (ref,) = run([f"hf:{folder}"], ["beir/scifact"], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    wrapped = SentenceTransformerEncoderWrapper(str(folder))
    (v2,) = harness.evaluate(wrapped, ["beir/scifact"], name="tiny-mteb2", revision="1", output_dir=out,
                             metrics=["ndcg@10"])
    assert v2.retriever_provenance["interface"] == "mteb"
    assert v2.metrics["ndcg@10"] == pytest.approx(ref.metrics["ndcg@10"], abs=1e-6)

    seen = []

    class OldStyle:  # MTEB 1.x: encode(sentences, *, task_name, prompt_type=None, **kwargs)
        def __init__(self):
            self.inner = wrapped.model

        def encode(self, sentences, *, task_name, prompt_type=None, **kwargs):
            seen.append((task_name, str(prompt_type.value)))
            return self.inner.encode(sentences, batch_size=kwargs.get("batch_size", 32))

    (v1,) = harness.evaluate(OldStyle(), ["beir/scifact"], name="tiny-mteb1", revision="1", output_dir=out,
                             metrics=["ndcg@10"])
    assert ("SciFact", "query") in seen and ("SciFact", "document") in seen
    assert v1.metrics["ndcg@10"] == pytest.approx(ref.metrics["ndcg@10"], abs=1e-6)
    assert mteb is not None


def test_a_declared_model_belongs_to_the_call_that_declared_it(tiny_beir, tiny_bert_dir, tmp_path):
    """Once, the declared models were a table of the process: a name declared by one call resolved anywhere
    after it. Now the DeclaredModels object the call holds is the only place its name resolves."""
    from harness.retrievers.declared import DeclaredModels
    from harness.retrievers.registry import resolve_retriever
    from harness.retrievers.spec import LoadOptions

    (rec,) = harness.evaluate(TinyEncoder(tiny_bert_dir), [str(tiny_beir)], name="tiny-held", revision="1",
                              output_dir=tmp_path, metrics=["ndcg@10"])
    with pytest.raises(HarnessError, match="declared in a Python process"):
        resolve_retriever(rec.retriever)  # not left behind by the call
    held = DeclaredModels()
    spec = held.declare(TinyEncoder(tiny_bert_dir), "tiny-held", "1")
    assert spec.name == rec.retriever and resolve_retriever(spec.name, held) is spec
    assert resolve_retriever(f"fuse:rrf(bm25,{spec.name})", held).stages[1] is spec  # stages resolve through it
    with pytest.raises(HarnessError, match="declared in a Python process"):
        run([spec.name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "b", execution=CPU, log=lambda m: None,
            declared=DeclaredModels())  # another caller's models: not this one
    with pytest.raises(HarnessError, match="no model object of that name was declared"):
        spec.load_under(LoadOptions(execution=CPU, declared=DeclaredModels()))
    (again,) = run([spec.name], [str(tiny_beir)], ["ndcg@10"], tmp_path / "c", execution=CPU, log=lambda m: None,
                   declared=held)
    assert again.metrics == rec.metrics


class Words:
    """A bag-of-words model object (hashed words, the first ``max_words`` of each text), with ``weights``
    to change what it computes for chosen words."""

    def __init__(self, max_words: int = 2000, weights: dict[str, float] | None = None):
        self.max_words, self.weights = max_words, weights or {}

    def _encode(self, texts):
        import zlib

        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split()[:self.max_words]:
                out[i, zlib.crc32(word.encode()) % 64] += self.weights.get(word, 1.0)
            out[i, 0] += 0.5  # never a zero vector (an empty text)
        return out

    def encode_queries(self, queries, batch_size=16, **kwargs):
        return self._encode(list(queries))

    def encode_corpus(self, corpus, batch_size=16, **kwargs):
        return self._encode([f"{d['title']} {d['text']}".strip() for d in corpus])


def test_the_probe_sees_a_changed_truncation_past_512_tokens():
    """The probe's texts include a long document whose second half is on another subject, so a model whose
    truncation changed (the most common change under one revision) gets another probe digest, past 512 tokens
    as well (before, every probe text fit in 16 words)."""
    from harness.retrievers.declared import DeclaredModels

    names = {DeclaredModels().declare(Words(n), "words", "1").name for n in (2000, 600, 20)}
    assert len(names) == 3


def test_force_encodes_a_declared_models_corpus_again(tiny_beir, tmp_path):
    """A change the probe cannot see (a word none of its texts holds) keeps the row's name; --force does not
    trust the store keyed by that name, since the harness cannot read the object's content: it encodes the
    corpus again and the record holds the changed model's numbers."""
    from harness.data.formats import iter_corpus
    from harness.retrievers.probe import PROBE_DOCS, PROBE_QUERIES

    probed = {w for t in [*PROBE_QUERIES, *(f"{a} {b}" for a, b in PROBE_DOCS)] for w in t.lower().split()}
    import zlib

    words = {w for d in iter_corpus(tiny_beir / "corpus.jsonl") for w in d.text.lower().split()} - probed
    out = tmp_path / "out"
    args = {"name": "words", "revision": "1", "output_dir": out, "metrics": ["ndcg@10"], "execution": CPU}
    (first,) = harness.evaluate(Words(), [str(tiny_beir)], **args)
    changed = Words(weights={w: float(zlib.crc32(w.encode()) % 7) for w in words})
    (stale,) = harness.evaluate(changed, [str(tiny_beir)], **args)
    assert stale.retriever == first.retriever and stale.metrics == first.metrics  # the probe cannot tell
    (forced,) = harness.evaluate(changed, [str(tiny_beir)], force=True, **args)
    (fresh,) = harness.evaluate(changed, [str(tiny_beir)], **{**args, "output_dir": tmp_path / "fresh"})
    assert forced.index["embeddings"] == "encoded"
    assert forced.metrics == fresh.metrics != first.metrics


def test_a_model_that_fails_on_the_probes_long_document_is_one_line():
    """A model that does not truncate fails on the probe's 758-token document: one line naming the probe and
    what to do, not the model's raw error."""
    from harness.retrievers.declared import DeclaredModels

    class Short(Words):
        def _encode(self, texts):
            if any(len(t.split()) > 100 for t in texts):
                raise RuntimeError("The size of tensor a (722) must match\\nthe size of tensor b (128)")
            return super()._encode(texts)

    with pytest.raises(HarnessError) as info:
        DeclaredModels().declare(Short(), "short", "1")
    message = str(info.value)
    assert "\n" not in message and "identity probe" in message and "truncation=True" in message
