"""Parameters declared once with their type and range (harness.params): composition parameters and the trainer's
options refuse what they cannot represent, from the command line, the composition syntax, YAML and Python
alike, with one line naming the parameter and what it takes (exit 2 on the command line)."""

from __future__ import annotations

import math

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.params import JAVA_INT_MAX, Param
from harness.retrievers.registry import resolve_retriever
from harness.train.config import FinetuneConfig, TrainConfig


@pytest.mark.parametrize("name", [
    "fuse:hybrid(contriever,bm25;alpha=nan)", "fuse:hybrid(contriever,bm25;alpha=inf)",
    "fuse:hybrid(contriever,bm25;alpha=1e308)", "fuse:wsum(bm25,contriever;weights=inf:1)",
    "fuse:wsum(bm25,contriever;weights=1:nan)", "fuse:rrf(bm25,contriever;k=1e20)",
    "fuse:rrf(bm25,contriever;k=100000000000000000000)", "fuse:rrf(bm25,contriever;k=0)",
    f"fuse:rrf(bm25,contriever;hits={JAVA_INT_MAX + 1})", "rerank:contriever(bm25;top=-3)",
    "fuse:wsum(bm25,contriever;norm=l2)", "fuse:hybrid(contriever,bm25;normalization=maybe)",
])
def test_composition_parameters_outside_their_declaration_are_refused(name):
    with pytest.raises(HarnessError, match="is not a valid value; expected"):
        resolve_retriever(name)


def test_deep_nesting_is_one_line_not_a_recursion_error():
    name = "fuse:rrf(" * 500 + "bm25,bm25" + ")" * 500
    with pytest.raises(HarnessError, match="nested more than"):
        resolve_retriever(name)


def test_declared_defaults_still_make_the_canonical_names():
    assert resolve_retriever("fuse:rrf(bm25,contriever)").name == "fuse:rrf(bm25,contriever;k=60)"
    assert resolve_retriever("fuse:wsum(bm25,contriever;weights=1:0.5)").name == \
        "fuse:wsum(bm25,contriever;weights=1.0:0.5;norm=none)"
    assert resolve_retriever("fuse:hybrid(contriever,bm25;alpha=1.2;hits=1000)").params["hits"] == 1000


@pytest.mark.parametrize("values", [
    {"lr": math.nan}, {"lr": math.inf}, {"lr": -1e-5}, {"beta1": 1.5}, {"beta2": 1.0}, {"weight_decay": -0.01},
    {"adam_eps": 0.0}, {"weight_eps": math.nan}, {"weight_temperature": 0.0}, {"temperature": 0.0},
    {"max_length": 0}, {"steps": "abc"}, {"normalize": 3}, {"pairs": 0}, {"chunk_length": 2},
    {"prob_augmentation": 1.5}, {"queue_size": -1}, {"momentum": 2.0}, {"batch_size": True},
    {"objective": "mocco"}, {"augmentation": "drop"},
])
def test_trainer_options_outside_their_declaration_are_refused(values, tmp_path):
    cfg = TrainConfig(init=str(tmp_path), corpus=str(tmp_path), output=str(tmp_path / "out"), **values)
    with pytest.raises(HarnessError, match="is not a valid value; expected"):
        cfg.validate()


@pytest.mark.parametrize("values", [{"shots": -1}, {"batch_size": 1}, {"temperature": 0.0}, {"lr": math.nan},
                                    {"query_max_length": 0}, {"hard_negatives": -2}])
def test_finetune_options_outside_their_declaration_are_refused(values, tmp_path):
    cfg = FinetuneConfig(init=str(tmp_path), dataset=str(tmp_path), output=str(tmp_path / "out"), **values)
    with pytest.raises(HarnessError, match="is not a valid value; expected"):
        cfg.validate()


@pytest.mark.parametrize("argv", [["--lr", "nan"], ["--lr", "inf"], ["--beta1", "1.5"], ["--weight-eps", "nan"]])
def test_the_command_line_exits_2_with_one_line(argv, tmp_path, capsys):
    code = main(["train", "--init", str(tmp_path), "--corpus", str(tmp_path), "--output", str(tmp_path / "o"),
                 *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is not a valid value" in err[0] and argv[0] in err[0]
    assert not (tmp_path / "o").exists()  # nothing started, nothing written


def test_yaml_values_of_the_wrong_type_are_refused(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("steps: abc\n")
    code = main(["train", "--config", str(config), "--init", str(tmp_path), "--corpus", str(tmp_path),
                 "--output", str(tmp_path / "o")])
    assert code == 2 and "--steps='abc' is not a valid value" in capsys.readouterr().err


def test_a_param_parses_and_checks_from_one_declaration():
    p = Param("k", int, 60, low=1, high=10)
    assert p.parse(" 7 ", "x") == 7 and Param("n", int, None, optional=True).check(None, "x") is None
    with pytest.raises(HarnessError):
        p.check(None, "x")  # not optional
    with pytest.raises(HarnessError, match=r"expected an integer in \[1, 10\]"):
        p.parse("11", "x")
    with pytest.raises(HarnessError):
        p.check(True, "x")  # a bool is not an int
    w = Param("w", float, None, many=True, low=0, low_open=True)
    assert w.parse("1:0.5", "x") == [1.0, 0.5]
    with pytest.raises(HarnessError, match="> 0"):
        w.parse("1:0", "x")


def test_a_corpus_shorter_than_one_batch_of_windows_is_refused(tmp_path, capsys):
    from tests.train.conftest import make_tiny_bert, write_tiny_corpus

    init, corpus = make_tiny_bert(tmp_path / "init"), write_tiny_corpus(tmp_path / "corpus", n_docs=2)
    code = main(["train", "--init", str(init), "--corpus", str(corpus), "--output", str(tmp_path / "o"),
                 "--objective", "inbatch", "--steps", "2", "--warmup-steps", "0", "--batch-size", "4",
                 "--chunk-length", "500", "--num-workers", "0", "--no-progress", "--no-plot", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "fewer than one step's batch" in err and "--chunk-length 500" in err
