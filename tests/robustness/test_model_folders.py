"""Model folders and training folders, refused in one line instead of computing something else: custom code
without --trust-remote-code, weights that lack a tensor or cannot be read, tampered checkpoints on --resume,
and a second run trained into the folder of a first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from harness.cli import main
from harness.errors import HarnessError
from harness.runner import run
from harness.settings import Execution
from tests.conftest import make_tiny_beir, make_tiny_bert
from tests.train.conftest import make_tiny_bert as make_train_bert
from tests.train.conftest import write_tiny_corpus

CPU = Execution(device="cpu", progress=False)


def with_auto_map(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_custom.CustomModel"}
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def without_a_tensor(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    del weights[next(k for k in weights if "encoder.layer.0.output.dense.weight" in k)]
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def _mlm(root: Path) -> Path:
    from transformers import BertConfig, BertForMaskedLM

    from tests.conftest import word_tokenizer

    base = make_tiny_bert(root / "base")
    folder = root / "mlm"
    folder.mkdir()
    shutil.copy(base / "vocab.txt", folder / "vocab.txt")
    tok = word_tokenizer(folder / "vocab.txt")
    BertForMaskedLM(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=32, max_position_embeddings=128)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def _train_args(init: Path, corpus: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--init", str(init), "--corpus", str(corpus), "--output", str(out), "--objective", "moco",
            "--steps", "2", "--warmup-steps", "0", "--batch-size", "3", "--chunk-length", "24", "--queue-size", "12",
            "--save-every", "1", "--num-workers", "0", "--no-progress", "--no-plot", "--device", "cpu", *extra]


# --- custom code ------------------------------------------------------------------------------------------------

def test_custom_code_without_trust_is_refused_by_run_fusion_sparse_and_rerank(tmp_path):
    folder = make_tiny_beir(tmp_path / "tiny")
    custom = with_auto_map(make_tiny_bert(tmp_path / "m"), tmp_path / "custom")
    mlm = with_auto_map(_mlm(tmp_path / "mlm"), tmp_path / "custom-mlm")
    for name in (f"hf:{custom}", f"fuse:rrf(hf:{make_tiny_bert(tmp_path / 'ok')},hf:{custom})", f"sparse:{mlm}"):
        with pytest.raises(HarnessError, match="auto_map.*--trust-remote-code"):
            run([name], [str(folder)], None, tmp_path / "out", execution=CPU, log=lambda m: None)


def test_custom_code_without_trust_is_refused_by_encode_and_train(tmp_path, capsys):
    custom = with_auto_map(make_train_bert(tmp_path / "m"), tmp_path / "custom")
    folder = make_tiny_beir(tmp_path / "tiny")
    assert main(["encode", "-r", f"hf:{custom}", "-d", str(folder), "--device", "cpu"]) == 2
    corpus = write_tiny_corpus(tmp_path / "corpus")
    assert main(_train_args(custom, corpus, tmp_path / "run")) == 2
    err = capsys.readouterr().err
    assert err.count("auto_map") == 2 and "Traceback" not in err


# --- weights --------------------------------------------------------------------------------------------------

def test_an_init_missing_a_tensor_is_refused_not_initialised_at_random(tmp_path, capsys):
    broken = without_a_tensor(make_train_bert(tmp_path / "m"), tmp_path / "broken")
    corpus = write_tiny_corpus(tmp_path / "corpus")
    assert main(_train_args(broken, corpus, tmp_path / "run")) == 2
    assert "the weights lack 1 tensor(s)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists() or not list((tmp_path / "run").glob("checkpoint-*"))


@pytest.mark.parametrize("content", [b"not a pickle at all", b"\x80\x04\x95"])  # garbage, a truncated pickle
def test_unreadable_bin_weights_are_one_line(tmp_path, content):
    folder = tmp_path / "bin"
    shutil.copytree(make_tiny_bert(tmp_path / "m"), folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(content)
    with pytest.raises(HarnessError, match="the model's weights cannot be loaded|refusing the weights"):
        run([f"hf:{folder}"], [str(make_tiny_beir(tmp_path / "tiny"))], None, tmp_path / "out", execution=CPU,
            log=lambda m: None)


# --- resume -----------------------------------------------------------------------------------------------------

@pytest.fixture()
def trained(tmp_path):
    init, corpus, out = make_train_bert(tmp_path / "init"), write_tiny_corpus(tmp_path / "corpus"), tmp_path / "run"
    assert main(_train_args(init, corpus, out)) == 0
    return init, corpus, out


def _resume(init, corpus, out, *extra):
    return main(_train_args(init, corpus, out, "--resume", *extra))


def test_tampered_checkpoints_are_refused_on_resume(trained, capsys):
    init, corpus, out = trained
    last = sorted(out.glob("checkpoint-*"))[-1]
    (last / "harness_checkpoint.json").write_text("{not json")
    assert _resume(init, corpus, out) == 2
    assert "harness_checkpoint.json" in capsys.readouterr().err


def test_a_truncated_training_state_is_refused_on_resume(trained, capsys):
    init, corpus, out = trained
    last = sorted(out.glob("checkpoint-*"))[-1]
    meta = json.loads((last / "harness_checkpoint.json").read_text())
    meta["step"] = 1  # pretend it is not finished, so resume reads its state
    (last / "harness_checkpoint.json").write_text(json.dumps(meta))
    state = last / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    assert _resume(init, corpus, out) == 2
    err = capsys.readouterr().err
    assert "training_state.pt: the training state cannot be read" in err and "Traceback" not in err


def test_a_checkpoint_config_with_other_layers_is_refused_on_resume(trained, capsys):
    init, corpus, out = trained
    last = sorted(out.glob("checkpoint-*"))[-1]
    meta = json.loads((last / "harness_checkpoint.json").read_text())
    meta["step"] = 1
    (last / "harness_checkpoint.json").write_text(json.dumps(meta))
    config = json.loads((last / "config.json").read_text())
    config["num_hidden_layers"] = 2
    (last / "config.json").write_text(json.dumps(config))
    assert _resume(init, corpus, out) == 2
    assert "the weights lack" in capsys.readouterr().err


# --- one run per folder -----------------------------------------------------------------------------------------

def test_a_second_run_into_the_same_output_is_refused_without_resume_or_overwrite(trained, capsys):
    init, corpus, out = trained
    before = sorted(p.name for p in out.iterdir())
    assert main(_train_args(init, corpus, out)) == 2
    assert "already holds a training run" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    args = _train_args(init, corpus, out, "--overwrite", "--objective", "inbatch")
    del args[args.index("--queue-size"): args.index("--queue-size") + 2]  # inbatch has no queue: not its option
    assert main(args) == 0
    log = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 2  # the first run's log is gone with it, not appended to
    meta = json.loads((sorted(out.glob("checkpoint-*"))[-1] / "harness_checkpoint.json").read_text())
    assert meta["objective"] == "inbatch"


def test_resume_of_a_finished_run_says_so_and_extending_steps_is_refused_with_why(trained, capsys):
    init, corpus, out = trained
    assert _resume(init, corpus, out) == 0
    assert "already finished at step 2" in capsys.readouterr().err
    args = _train_args(init, corpus, out, "--resume")
    args[args.index("--steps") + 1] = "4"
    assert main(args) == 2
    assert "the learning rate decays to 0 at --steps" in capsys.readouterr().err


def test_overwrite_clears_the_earlier_run_and_nothing_else(trained):
    init, corpus, out = trained
    (out / "notes.txt").write_text("mine")
    assert main(_train_args(init, corpus, out, "--overwrite")) == 0
    assert (out / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("value", ["0", "-5", "99999999999999999999"])
def test_dist_timeout_outside_its_range_is_one_line(trained, capsys, value):
    init, corpus, out = trained
    assert main(_train_args(init, corpus, out, "--resume", "--dist-timeout", value)) == 2
    assert "--dist-timeout" in capsys.readouterr().err
