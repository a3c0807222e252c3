"""Exact or refuse, round 4 (issue 35), class 6: a declared model object is checked by its content: a probe
(fixed texts, encoded and hashed at the model's precision) is part of its identity, so another model under
the same name@revision is another row, said in one line, never the first one's record; degenerate outputs
(all-zero or constant vectors, the same vector for every text, non-numbers, wrong shapes) are refused naming
the model's method and the first offending row."""

from __future__ import annotations

import numpy as np
import pytest

import harness
from harness.errors import HarnessError
from harness.settings import Execution
from tests.conftest import make_tiny_bert
from tests.test_declared_model import TinyEncoder


def test_another_model_under_the_same_name_and_revision_is_another_row(tiny_beir, tmp_path, capsys):
    out = tmp_path / "results"
    first, second = make_tiny_bert(tmp_path / "m1", seed=1), make_tiny_bert(tmp_path / "m2", seed=2)
    ref = [harness.run([f"hf:{f}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "ref",
                       execution=Execution(device="cpu", progress=False))[0] for f in (first, second)]
    assert ref[0].metrics != ref[1].metrics
    (m1,) = harness.evaluate(TinyEncoder(first), [str(tiny_beir)], name="m", revision="v1", output_dir=out,
                             metrics=["ndcg@10"])
    capsys.readouterr()
    (m2,) = harness.evaluate(TinyEncoder(second), [str(tiny_beir)], name="m", revision="v1", output_dir=out,
                             metrics=["ndcg@10"])
    err = capsys.readouterr().err
    assert m1.metrics["ndcg@10"] == pytest.approx(ref[0].metrics["ndcg@10"], abs=1e-9)
    assert m2.metrics["ndcg@10"] == pytest.approx(ref[1].metrics["ndcg@10"], abs=1e-9)  # not m1's record
    assert m1.retriever != m2.retriever and m1.retriever.startswith("m@v1") and m2.retriever.startswith("m@v1")
    said = [ln for ln in err.splitlines() if m1.retriever in ln and m2.retriever in ln]
    assert len(said) == 1, err
    board = (out / "leaderboard.csv").read_text()
    assert m1.retriever in board and m2.retriever in board
    assert m2.retriever_provenance["probe"]["sha256"] != m1.retriever_provenance["probe"]["sha256"]
    # the same model again is the same row, reused
    (again,) = harness.evaluate(TinyEncoder(first), [str(tiny_beir)], name="m", revision="v1", output_dir=out,
                                metrics=["ndcg@10"])
    assert again.retriever == m1.retriever and again.metrics == m1.metrics


class Zeros:
    def encode_queries(self, queries, batch_size=16):
        return np.random.default_rng(0).normal(size=(len(queries), 4))

    def encode_corpus(self, corpus, batch_size=16):
        return np.zeros((len(corpus), 4))


class Constant:
    def encode_queries(self, queries, batch_size=16):
        return np.tile(np.array([[0.1, 0.5, -0.2, 0.3]]), (len(queries), 1))

    def encode_corpus(self, corpus, batch_size=16):
        return np.random.default_rng(0).normal(size=(len(corpus), 4))


class Flat:
    def encode(self, texts, batch_size=16, **kwargs):
        return np.full((len(texts), 4), 0.5)


class Strings:
    def encode(self, texts, batch_size=16, **kwargs):
        return [["a", "b"] for _ in texts]


class Ragged:
    def encode_queries(self, queries, batch_size=16):
        return [[0.1, 0.2]] + [[0.1, 0.2, 0.3]] * (len(queries) - 1)

    def encode_corpus(self, corpus, batch_size=16):
        return np.random.default_rng(0).normal(size=(len(corpus), 3))


@pytest.mark.parametrize("model,method,what", [
    (Zeros(), "Zeros.encode_corpus", "all zeros"),
    (Constant(), "Constant.encode_queries", "the same vector"),
    (Flat(), "Flat.encode", "constant"),
    (Strings(), "Strings.encode", "not numbers"),
    (Ragged(), "Ragged.encode_queries", "shape"),
])
def test_degenerate_outputs_are_refused_naming_the_method_and_row(tiny_beir, tmp_path, model, method, what):
    with pytest.raises(HarnessError) as err:
        harness.evaluate(model, [str(tiny_beir)], name="bad", revision="1", output_dir=tmp_path)
    text = str(err.value)
    assert method in text and what in text and "row" in text and "\n" not in text, text
