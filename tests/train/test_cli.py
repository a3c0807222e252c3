"""The train / finetune subcommands end to end on a tiny BEIR folder, and `harness run` on a checkpoint."""

from __future__ import annotations

import json

import pytest

from harness.cli import main
from harness.train.checkpoint import list_checkpoints

from .conftest import write_tiny_corpus

TRAIN = ["--steps", "4", "--warmup-steps", "1", "--batch-size", "2", "--chunk-length", "24", "--queue-size", "8",
         "--num-workers", "0", "--save-every", "2", "--no-progress", "--device", "cpu"]


@pytest.fixture()
def tiny_beir(tmp_path):
    folder = tmp_path / "tinybeir"
    write_tiny_corpus(folder, n_docs=12)
    docs = [json.loads(x) for x in (folder / "corpus.jsonl").read_text().splitlines()]
    with open(folder / "queries.jsonl", "w") as f:
        for i in range(6):
            f.write(json.dumps({"_id": f"q{i}", "text": " ".join(docs[i]["text"].split()[:5])}) + "\n")
    (folder / "qrels").mkdir()
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                               "".join(f"q{i}\td{i}\t1\n" for i in range(3)))
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" +
                                                "".join(f"q{i}\td{i}\t1\n" for i in range(3, 6)))
    return folder


@pytest.mark.slow
def test_train_eval_pipeline_and_harness_run_on_checkpoint(tiny_bert, tiny_beir, tmp_path, capsys):
    out, results = tmp_path / "out", tmp_path / "results"
    rc = main(["train", "--init", str(tiny_bert), "--corpus", str(tiny_beir), "--output", str(out),
               "--objective", "relevance-aware", "--eval", str(tiny_beir), "--eval-output", str(results), *TRAIN])
    assert rc == 0
    evals = [json.loads(x) for x in (out / "eval_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [2, 4] and "ndcg@10" in evals[0]["metrics"]
    assert (out / "training_curve.png").is_file()
    ckpt = list_checkpoints(out)[-1][1]
    rc = main(["run", "--retriever", str(ckpt), "--dataset", str(tiny_beir), "--output-dir", str(results),
               "--metric", "ndcg@10", "--device", "cpu"])
    assert rc == 0
    assert "ndcg@10" in capsys.readouterr().out
    assert (results / "leaderboard.csv").is_file()


def test_config_file_and_command_line_precedence(tiny_bert, tiny_beir, tmp_path):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(f"init: {tiny_bert}\ncorpus: {tiny_beir}\noutput: {tmp_path / 'o'}\nobjective: moco\n"
                   "steps: 3\nwarmup-steps: 1\nbatch_size: 2\nchunk_length: 24\nqueue_size: 4\nnum_workers: 0\n"
                   "save_every: 10\nprogress: false\nplot: false\n")
    assert main(["train", "--config", str(cfg), "--steps", "2"]) == 0
    meta = json.loads((list_checkpoints(tmp_path / "o")[-1][1] / "harness_checkpoint.json").read_text())
    assert meta["objective"] == "moco" and meta["step"] == 2 and meta["hyperparameters"]["steps"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    assert main(["train", "--config", str(bad)]) == 2
    evil = tmp_path / "evil.yaml"
    evil.write_text("init: !!python/object/apply:os.system ['echo hi']\n")
    assert main(["train", "--config", str(evil)]) == 2  # safe loader refuses


def test_a_command_line_value_wins_even_when_it_is_the_default(tmp_path, monkeypatch):
    import harness.train.trainer

    seen = {}

    def fake_train(cfg, resume=False):
        seen["cfg"] = cfg
        return harness.train.trainer.TrainResult(output=tmp_path)

    monkeypatch.setattr(harness.train.trainer, "train", fake_train)
    cfg = tmp_path / "x.yaml"
    corpus = write_tiny_corpus(tmp_path / "c")  # checked before training starts
    cfg.write_text(f"init: m\ncorpus: {corpus}\noutput: {tmp_path / 'o'}\nlr: 1.0e-3\nsteps: 7\nwarmup_steps: 1\n")
    assert main(["train", "--config", str(cfg), "--lr", "5e-5"]) == 0  # 5e-5 is the default of --lr
    assert seen["cfg"].lr == 5e-5 and seen["cfg"].steps == 7
    assert main(["train", "--config", str(cfg)]) == 0
    assert seen["cfg"].lr == 1e-3


def test_user_errors_are_short_messages(tiny_bert, tmp_path, capsys):
    assert main(["train", "--init", str(tiny_bert), "--output", str(tmp_path / "x")]) == 2
    assert "--corpus" in capsys.readouterr().err
    assert main(["train", "--init", str(tiny_bert), "--corpus", str(tmp_path / "none"),
                 "--output", str(tmp_path / "x"), *TRAIN]) == 2
    assert "is neither a dataset id, a file nor a folder" in capsys.readouterr().err
    corpus = write_tiny_corpus(tmp_path / "c")
    assert main(["train", "--init", str(tmp_path / "no-model"), "--corpus", str(corpus),
                 "--output", str(tmp_path / "x"), *TRAIN]) == 2
    assert "cannot load the init model" in capsys.readouterr().err


def test_finetune_few_shot(tiny_bert, tiny_beir, tmp_path):
    out = tmp_path / "ft"
    assert main(["finetune", "--init", str(tiny_bert), "--dataset", str(tiny_beir), "--split", "train",
                 "--shots", "3", "--steps", "3", "--batch-size", "2", "--output", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    (step, folder), = list_checkpoints(out)
    meta = json.loads((folder / "harness_checkpoint.json").read_text())
    assert step == 3 and meta["objective"] == "finetune-inbatch" and meta["n_pairs"] == 3
    assert meta["encoder"]["pooling"] == "mean" and meta["hyperparameters"]["shots"] == 3


def test_a_checkpoint_is_not_evaluated_on_the_judgements_it_was_fine_tuned_on(tiny_bert, tiny_beir, tmp_path,
                                                                              capsys):
    """Fine-tuned on the test split's judgements, a checkpoint evaluated on that split scores the queries it
    was trained on: refused in one line (compared by the judgements' checksum, so a copy of the folder is the
    same judgements), while another split of the same dataset is evaluated."""
    import shutil

    out = tmp_path / "ft"
    assert main(["finetune", "--init", str(tiny_bert), "--dataset", str(tiny_beir), "--split", "test",
                 "--shots", "3", "--steps", "1", "--batch-size", "2", "--output", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    (_, folder), = list_checkpoints(out)
    assert json.loads((folder / "harness_checkpoint.json").read_text())["split"] == "test"
    copy = tmp_path / "copy"
    shutil.copytree(tiny_beir, copy)
    capsys.readouterr()
    for data in (tiny_beir, copy):
        assert main(["run", "-r", f"hf:{folder}", "-d", str(data), "--output-dir", str(tmp_path / "r"),
                     "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "fine-tuned on" in err and "test" in err
    assert main(["run", "-r", f"hf:{folder}", "-d", str(tiny_beir), "--split", "train", "--output-dir",
                 str(tmp_path / "r"), "--device", "cpu"]) == 0
    # fine-tuning with --eval on the split it trains on is refused before any step, not at the first checkpoint
    assert main(["finetune", "--init", str(tiny_bert), "--dataset", str(tiny_beir), "--split", "test",
                 "--shots", "3", "--steps", "1", "--batch-size", "2", "--output", str(tmp_path / "ft2"),
                 "--no-progress", "--device", "cpu", "--eval", str(copy)]) == 2
    assert "fine-tuned on the judgements" in capsys.readouterr().err
    assert not list_checkpoints(tmp_path / "ft2")


@pytest.mark.slow
@pytest.mark.java
def test_finetune_with_bm25_hard_negatives(tiny_bert, tiny_beir, tmp_path):
    out = tmp_path / "ft-hard"
    assert main(["finetune", "--init", str(tiny_bert), "--dataset", str(tiny_beir), "--shots", "3", "--steps", "2",
                 "--batch-size", "2", "--hard-negatives", "1", "--output", str(out), "--no-progress",
                 "--device", "cpu"]) == 0
    assert list_checkpoints(out)


def test_trainer_options_come_from_the_config_dataclasses():
    """One declaration per option: every field is an option with its dataclass default in the help, and the
    run-control set (left out of a checkpoint's hyper-parameters) is what checkpoints have always recorded."""
    import argparse
    from dataclasses import fields

    from harness.cli import build_parser
    from harness.train.config import FinetuneConfig, TrainConfig, run_control
    from harness.train.objectives import all_options

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command, cls in (("train", TrainConfig), ("finetune", FinetuneConfig)):
        dests = {a.dest for a in sub.choices[command]._actions}
        cli = {f.name for f in fields(cls) if f.metadata and f.metadata.get("cli", True)}
        own = set(all_options()) if command == "train" else set()  # the objectives' own options
        assert cli <= dests and dests - cli <= {"help", "config", "resume"} | own, (command, dests ^ cli)
    lr = next(a for a in sub.choices["train"]._actions if a.dest == "lr")
    assert "(default: 5e-05)" in lr.help
    assert run_control(TrainConfig) == {
        "init", "corpus", "output", "device", "num_workers", "log_every", "save_every", "keep_last", "eval",
        "eval_metrics", "eval_output", "eval_baselines", "eval_precision", "stop_at_step", "trust_remote_code",
        "progress", "save_state", "threads", "plot", "overwrite", "dist_timeout", "step_timeout", "dist_backend",
            "prepare"}
    assert run_control(FinetuneConfig) == {
        "init", "dataset", "output", "device", "threads", "save_every", "keep_last", "progress", "eval",
        "eval_metrics", "eval_output", "eval_baselines", "eval_precision", "trust_remote_code", "plot", "overwrite"}


def test_every_option_of_every_command_has_a_help_text():
    import argparse

    from harness.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = [(name, a.option_strings or a.dest) for name, p in sub.choices.items() for a in p._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []


def test_prepare_builds_the_token_cache_once_and_stops(tiny_bert, tiny_corpus, tmp_path, capsys):
    """`harness train --prepare` tokenises the corpus into the cache (run once before torchrun), writes no
    checkpoint, and the training that follows finds the cache instead of tokenising again."""
    from harness.paths import cache_root

    out = tmp_path / "run"
    args = ["train", "--init", str(tiny_bert), "--corpus", str(tiny_corpus), "--output", str(out)]
    before = set((cache_root() / "train-tokens").glob("*")) if (cache_root() / "train-tokens").is_dir() else set()
    assert main([*args, "--prepare"]) == 0
    err = capsys.readouterr().err
    assert "harness train --prepare:" in err and "tokens in" in err
    assert not out.exists()
    built = set((cache_root() / "train-tokens").glob("*")) - before
    assert len(built) <= 1  # one cache folder (or none: an earlier test tokenised this corpus already)


def test_finetune_on_open_domain_qa_is_one_line(tiny_bert, tmp_path, capsys):
    """Few-shot fine-tuning reads labelled pairs from qrels; an open-domain QA dataset (questions judged by
    answers) is refused in one line that says what to use (it used to end in an AttributeError)."""
    from tests.odqa.conftest import write_odqa

    odqa = write_odqa(tmp_path / "odqa")
    assert main(["finetune", "--init", str(tiny_bert), "--dataset", str(odqa), "--output", str(tmp_path / "ft"),
                 "--steps", "2", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "judged by answers" in err and "qrels" in err, err
    assert not (tmp_path / "ft").exists() or not any((tmp_path / "ft").iterdir())


def test_the_training_bar_shows_the_latest_steps_figures(tmp_path):
    """Once the bar kept step 1's figures (loss 0, lr 0: a queue objective's first step) until step
    --log-every: eight minutes of 'loss=0 lr=0' on a loaded machine. Every step's figures reach the bar."""
    from harness.train.loop import log_step

    class Bar:
        def __init__(self) -> None:
            self.postfix: dict[str, str] = {}
            self.refreshed = 0

        def set_postfix(self, values: dict[str, str], refresh: bool = True) -> None:
            self.postfix = values

        def update(self, n: int) -> None:
            pass

        def refresh(self) -> None:
            self.refreshed += 1

    bar = Bar()
    for step in range(1, 4):
        log_step(tmp_path / "log.jsonl", {"step": step, "loss": float(step), "lr": 1e-5 * step}, bar, 10, step)
        assert bar.postfix["loss"] == f"{float(step):.3g}"
    assert bar.refreshed == 0  # redrawn on tqdm's own schedule, and at least every --log-every steps


def test_refusals_come_before_torch_is_imported(tmp_path, tiny_corpus):
    """A held --output, a --resume with nothing to resume, a missing corpus or a bad option: one line before
    torch is imported (once 24-29 s on a loaded machine to say the folder was taken)."""
    import subprocess
    import sys

    held = tmp_path / "held"
    held.mkdir()
    (held / "train_log.jsonl").write_text("{}\n")
    cases = [["--output", str(held)], ["--output", str(tmp_path / "new"), "--resume"],
             ["--output", str(tmp_path / "new"), "--corpus", str(tmp_path / "nope.jsonl")],
             ["--output", str(tmp_path / "new"), "--lr", "nan"]]
    for extra in cases:
        code = ("import sys; from harness.cli import main; c = main(['train', '--init', 'x', '--corpus', "
                f"{str(tiny_corpus)!r}, *{extra!r}]); print(c, 'torch' in sys.modules)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert out.stdout.split() == ["2", "False"], (extra, out.stdout, out.stderr[-500:])
        assert len([x for x in out.stderr.splitlines() if x.strip()]) == 1 and "error" in out.stderr, out.stderr


def test_finetune_into_a_used_folder_names_no_resume_it_does_not_have(tmp_path):
    from harness.errors import HarnessError
    from harness.train.config import LOG_FILE
    from harness.train.folders import claim_output

    (tmp_path / LOG_FILE).write_text("{}\n")
    with pytest.raises(HarnessError) as info:
        claim_output(tmp_path, resume=False, overwrite=False, resumable=False)
    assert "--resume" not in str(info.value) and "--overwrite" in str(info.value)
    with pytest.raises(HarnessError, match="continue it with --resume"):
        claim_output(tmp_path, resume=False, overwrite=False)
