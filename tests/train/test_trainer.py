"""The trainer on a tiny random BERT: it runs, checkpoints carry the contract, resume is exact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from harness.errors import HarnessError
from harness.retrievers.config import CHECKPOINT_FORMAT, CHECKPOINT_METADATA, read_encoder_config
from harness.train.checkpoint import STATE_FILE, list_checkpoints
from harness.train.config import TrainConfig
from harness.train.trainer import LOG_FILE, train


def _cfg(tiny_bert, corpus, out, **kw) -> TrainConfig:
    base = dict(init=str(tiny_bert), corpus=str(corpus), output=str(out), steps=20, warmup_steps=3,
                batch_size=3, chunk_length=24, queue_size=16, momentum=0.9, lr=1e-3, num_workers=0,
                save_every=10, keep_last=5, progress=False, plot=False, seed=7)
    base.update(kw)
    if base.get("objective") == "inbatch":  # no queue: not its options
        base.pop("queue_size"), base.pop("momentum")
    return TrainConfig(**base)


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("objective", ["relevance-aware", "moco", "inbatch"])
def test_each_objective_trains_and_writes_checkpoints(tiny_bert, tiny_corpus, tmp_path, objective):
    out = tmp_path / objective
    res = train(_cfg(tiny_bert, tiny_corpus, out, objective=objective, steps=4, save_every=2, keep_last=1,
                     plot=True))
    ckpts = list_checkpoints(out)
    assert [s for s, _ in ckpts] == [4]  # keep_last=1
    folder = ckpts[0][1]
    meta = json.loads((folder / CHECKPOINT_METADATA).read_text())
    assert meta["format"] == CHECKPOINT_FORMAT and meta["objective"] == objective and meta["step"] == 4
    assert meta["encoder"] == {"pooling": "mean", "normalize": False, "similarity": "dot", "max_length": 512}
    assert meta["hyperparameters"]["temperature"] == 0.05 and len(meta["data_checksum"]) == 64
    assert read_encoder_config(folder).source == CHECKPOINT_METADATA
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
    torch.load(folder / STATE_FILE, weights_only=True)
    rows = [json.loads(x) for x in (out / LOG_FILE).read_text().splitlines()]
    assert len(rows) == 4 and all(r["loss"] == r["loss"] for r in rows)
    assert {"loss", "accuracy", "lr", "tokens_per_s"} <= set(rows[0])
    if objective == "relevance-aware":
        assert {"w_mean", "w_min", "w_max", "w_entropy"} <= set(rows[0])
        assert rows[0]["w_mean"] == pytest.approx(0.25)
    assert (out / "training_curve.png").is_file()
    assert res.last_step == 4


def test_resume_continues_exactly(tiny_bert, tiny_corpus, tmp_path):
    straight = tmp_path / "straight"
    train(_cfg(tiny_bert, tiny_corpus, straight))
    split = tmp_path / "split"
    train(_cfg(tiny_bert, tiny_corpus, split, stop_at_step=10))
    assert [s for s, _ in list_checkpoints(split)] == [10]
    train(_cfg(tiny_bert, tiny_corpus, split), resume=True)
    a, b = _weights(straight / "checkpoint-0000020"), _weights(split / "checkpoint-0000020")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa = torch.load(straight / "checkpoint-0000020" / STATE_FILE, weights_only=True)
    sb = torch.load(split / "checkpoint-0000020" / STATE_FILE, weights_only=True)
    assert torch.equal(sa["queue"]["buffer"], sb["queue"]["buffer"])
    for k in sa["key_encoder"]:
        assert torch.equal(sa["key_encoder"][k], sb["key_encoder"][k]), k


def test_a_resumed_run_keeps_the_autocast_dtype_it_started_in(tiny_bert, tiny_corpus, tmp_path, monkeypatch):
    """--precision auto resolves by device (bf16 on Ampere and later, fp16 before): a run resumed on another
    GPU, or after the rule changed, continues in the dtype its checkpoint names, not the one auto picks now."""
    from harness.train import trainer

    out = tmp_path / "run"
    train(_cfg(tiny_bert, tiny_corpus, out, steps=4, warmup_steps=1, save_every=2, stop_at_step=2))
    path = out / "checkpoint-0000002" / STATE_FILE
    state = torch.load(path, weights_only=True)
    assert state["autocast"] == "fp32"  # a CPU run: no autocast
    state["autocast"] = "bf16"  # as a run started where auto chose bf16
    torch.save(state, path)
    seen: list[object] = []
    real = trainer._step_on_ranks
    monkeypatch.setattr(trainer, "_step_on_ranks", lambda cfg, run, step, world: (seen.append(run.amp),
                                                                                   real(cfg, run, step, world))[1])
    train(_cfg(tiny_bert, tiny_corpus, out, steps=4, warmup_steps=1, save_every=2), resume=True)
    assert seen == [torch.bfloat16, torch.bfloat16]
    last = out / "checkpoint-0000004" / STATE_FILE
    state = torch.load(last, weights_only=True)
    assert state["autocast"] == "bf16"
    state["autocast"] = "fp8"
    torch.save(state, last)
    with pytest.raises(HarnessError, match="names autocast 'fp8'"):
        trainer._setup(_cfg(tiny_bert, tiny_corpus, out, steps=4, warmup_steps=1, save_every=2), True, 0, 1)


def test_resume_refuses_changed_hyperparameters(tiny_bert, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    train(_cfg(tiny_bert, tiny_corpus, out, steps=2, warmup_steps=1, save_every=1))
    with pytest.raises(HarnessError, match="temperature"):
        train(_cfg(tiny_bert, tiny_corpus, out, steps=2, warmup_steps=1, save_every=1, temperature=0.1), resume=True)
    with pytest.raises(HarnessError, match="no checkpoint"):
        train(_cfg(tiny_bert, tiny_corpus, tmp_path / "empty", steps=2, warmup_steps=1), resume=True)


def test_gradient_accumulation_and_workers_run(tiny_bert, tiny_corpus, tmp_path):
    out = tmp_path / "accum"
    res = train(_cfg(tiny_bert, tiny_corpus, out, steps=2, warmup_steps=1, save_every=2, grad_accum=2, num_workers=1))
    assert res.last_step == 2 and list_checkpoints(out)


def test_stopping_early_saves_a_resumable_checkpoint(tiny_bert, tiny_corpus, tmp_path):
    out = tmp_path / "stop"
    train(_cfg(tiny_bert, tiny_corpus, out, steps=6, warmup_steps=1, save_every=5, stop_at_step=3))
    assert [s for s, _ in list_checkpoints(out)] == [3]
    res = train(_cfg(tiny_bert, tiny_corpus, out, steps=6, warmup_steps=1, save_every=5), resume=True)
    assert res.last_step == 6 and [s for s, _ in list_checkpoints(out)] == [3, 5, 6]


def test_a_resume_keeps_the_recipe_and_the_init_it_was_trained_with(tiny_corpus, tmp_path):
    """Issue 40: a run from an encoder whose recipe is mean pooling without normalisation, stopped, then
    resumed with --init pointing at a copy whose recipe is CLS with normalisation (same weights): once, it
    exited 0 and the resumed checkpoints claimed CLS / normalised while their weights were trained under
    mean / unnormalised. Now it is refused naming the fields; a copy with an edited tokenizer (same recipe)
    is refused too; an identical copy at another path resumes, and the checkpoints keep the run's recipe."""
    import shutil

    from tests.conftest import make_tiny_bert as make_bert

    plain = make_bert(tmp_path / "plain")
    out = tmp_path / "run"
    train(_cfg(plain, tiny_corpus, out, steps=6, save_every=2, stop_at_step=2))
    other_recipe = make_bert(tmp_path / "cls", st_files=True)  # the same seed: the same weights, another recipe
    with pytest.raises(HarnessError, match=r"pooling: 'mean' \(the checkpoint\) -> 'cls' \(now\), normalize: False "
                                           r"\(the checkpoint\) -> True \(now\).*--pooling mean --normalize false"):
        train(_cfg(other_recipe, tiny_corpus, out, steps=6, save_every=2), resume=True)
    edited = Path(shutil.copytree(plain, tmp_path / "edited"))
    config = json.loads((edited / "tokenizer_config.json").read_text())
    (edited / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": False}))
    with pytest.raises(HarnessError, match="is not the model the run started from"):
        train(_cfg(edited, tiny_corpus, out, steps=6, save_every=2), resume=True)
    same = shutil.copytree(plain, tmp_path / "elsewhere" / "plain")
    train(_cfg(same, tiny_corpus, out, steps=6, save_every=2), resume=True)
    (step, folder), = list_checkpoints(out)[-1:]
    meta = json.loads((folder / CHECKPOINT_METADATA).read_text())
    assert step == 6 and meta["encoder"] == {"pooling": "mean", "normalize": False, "similarity": "dot",
                                             "max_length": 512}
    assert meta["init_digest"].startswith("sha256:")
