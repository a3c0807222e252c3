"""Non-finite numbers stop the work with one line naming the document, query, pair or step; no path writes a
non-finite embedding, run file, record or checkpoint (a test per path)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from harness.cli import main
from harness.errors import DataError, HarnessError
from harness.results.records import ResultRecord, write_record
from harness.retrievers.base import SearchContext
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_run, write_run
from tests.conftest import make_tiny_beir, make_tiny_bert, word_tokenizer

CPU = Execution(device="cpu", progress=False)


def poisoned(src: Path, dst: Path, part: str) -> Path:
    """A copy of a model folder with the first weight tensor whose name contains ``part`` set to NaN."""
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    name = next(k for k in weights if part in k)
    weights[name] = torch.full_like(weights[name], math.nan)
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _head_model(root: Path, cls_name: str, **kw) -> Path:
    import transformers

    base = make_tiny_bert(root / "base")
    folder = root / cls_name
    folder.mkdir()
    shutil.copy(base / "vocab.txt", folder / "vocab.txt")
    tok = word_tokenizer(folder / "vocab.txt")
    config = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, max_position_embeddings=128, **kw)
    getattr(transformers, cls_name)(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _records(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.json") if not p.name.startswith(".")] if out.exists() else []


def test_nan_document_vectors_stop_the_run_and_write_nothing(tmp_path, capsys):
    model = poisoned(make_tiny_bert(tmp_path / "m"), tmp_path / "nan", "word_embeddings")
    folder = make_tiny_beir(tmp_path / "tiny")
    code = main(["run", "-r", f"hf:{model}", "-d", str(folder), "--output-dir", str(tmp_path / "out"),
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "non-finite values (NaN or infinity) for 40 document(s), first 'd0'" in err[-1]
    assert _records(tmp_path / "out") == [] and not list((tmp_path / "out").rglob("*.trec"))


def test_a_nan_stage_stops_the_fusion_too(tmp_path):
    good = make_tiny_bert(tmp_path / "good", seed=3)
    bad = poisoned(make_tiny_bert(tmp_path / "m", seed=4), tmp_path / "nan", "word_embeddings")
    folder = make_tiny_beir(tmp_path / "tiny")
    with pytest.raises(HarnessError, match="non-finite"):
        run([f"fuse:rrf(hf:{good},hf:{bad})"], [str(folder)], None, tmp_path / "out", execution=CPU,
            log=lambda m: None)
    assert not any("fuse" in p.name for p in _records(tmp_path / "out"))


def test_nan_query_vectors_are_named(tmp_path):
    """Documents fine, queries NaN: a DPR-style query model of its own that is broken."""
    from harness.retrievers.config import CONTRIEVER
    from harness.retrievers.spec import RetrieverSpec

    doc_model = make_tiny_bert(tmp_path / "doc", seed=1)
    query_model = poisoned(make_tiny_bert(tmp_path / "q", seed=2), tmp_path / "qnan", "word_embeddings")
    spec = RetrieverSpec("two-towers", "dense", model=str(doc_model), query_model=str(query_model),
                         encoder=CONTRIEVER)
    retriever = spec.load(execution=CPU)
    from harness.datasets import resolve_dataset

    ds = resolve_dataset(str(make_tiny_beir(tmp_path / "tiny")))
    retriever.index(ds)
    with pytest.raises(HarnessError, match="for 8 query"):
        retriever.search(ds.queries(), 10, SearchContext(ds))


def test_nan_splade_weights_are_refused(tmp_path):
    mlm = poisoned(_head_model(tmp_path / "mlm", "BertForMaskedLM"), tmp_path / "nan", "word_embeddings")
    folder = make_tiny_beir(tmp_path / "tiny")
    from harness.retrievers.registry import resolve_retriever

    retriever = resolve_retriever(f"sparse:{mlm}").load(execution=CPU)
    with pytest.raises(HarnessError, match="non-finite"):
        retriever.encode(["the protein of the cell"], 32)
    assert folder.is_dir()


def test_nan_cross_encoder_logits_are_refused(tmp_path):
    from harness.retrievers.cross_encoder import CrossEncoderScorer
    from harness.retrievers.registry import resolve_retriever

    ce = poisoned(_head_model(tmp_path / "ce", "BertForSequenceClassification", num_labels=1), tmp_path / "nan",
                  "classifier")
    spec = resolve_retriever(f"rerank:{ce}(bm25;top=5)")
    scorer = CrossEncoderScorer(spec, CPU)
    from harness.datasets import resolve_dataset

    ds = resolve_dataset(str(make_tiny_beir(tmp_path / "tiny")))
    with pytest.raises(HarnessError, match="non-finite"):
        scorer.scores({"q0": "protein cell"}, {"q0": ["d0", "d1"]}, SearchContext(ds))


def test_no_run_file_with_a_non_finite_score_is_written_or_read(tmp_path):
    with pytest.raises(HarnessError, match="non-finite scores is not written"):
        write_run(tmp_path / "r.trec", {"q": {"d1": 1.0, "d2": math.inf}}, tag="t")
    assert not (tmp_path / "r.trec").exists()
    (tmp_path / "x.trec").write_text("q Q0 d1 1 1.5 t\nq Q0 d2 2 -inf t\n")
    with pytest.raises(DataError, match="x.trec:2: score '-inf' is not a finite number \\(NaN or infinity\\)"):
        read_run(tmp_path / "x.trec")


def test_no_record_with_a_non_finite_metric_is_written(tmp_path):
    record = ResultRecord(retriever="r", dataset="d", split="test", metrics={"ndcg@10": math.nan},
                          per_query={"ndcg@10": {"q": math.nan}}, fingerprint="f", run_file="r.trec")
    with pytest.raises(HarnessError, match="non-finite metrics is not written"):
        write_record(tmp_path / "r.json", record)
    assert not (tmp_path / "r.json").exists()


def test_training_a_nan_model_stops_at_step_one_and_writes_no_checkpoint(tmp_path, capsys):
    from tests.train.conftest import make_tiny_bert as make_train_bert
    from tests.train.conftest import write_tiny_corpus

    init = poisoned(make_train_bert(tmp_path / "init"), tmp_path / "nan", "word_embeddings")
    corpus = write_tiny_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    code = main(["train", "--init", str(init), "--corpus", str(corpus), "--output", str(out), "--objective", "moco",
                 "--steps", "2", "--warmup-steps", "0", "--batch-size", "3", "--chunk-length", "24",
                 "--queue-size", "12", "--save-every", "1", "--num-workers", "0", "--no-progress", "--no-plot",
                 "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("harness: error: step 1: loss = nan")
    assert not list(out.glob("checkpoint-*"))


def test_a_checkpoint_with_nan_weights_is_never_written(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from harness.train.checkpoint import save_checkpoint

    folder = poisoned(make_tiny_bert(tmp_path / "m"), tmp_path / "nan", "word_embeddings")
    model, tok = AutoModel.from_pretrained(str(folder)), AutoTokenizer.from_pretrained(str(folder))
    with pytest.raises(HarnessError, match="no checkpoint was written"):
        save_checkpoint(tmp_path / "out", 3, model, tok, {"step": 3}, None, keep_last=2)
    assert not list((tmp_path / "out").glob("checkpoint-*"))
