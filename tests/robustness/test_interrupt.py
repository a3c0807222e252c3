"""Interruption: SIGKILL or SIGINT in the middle of work, then rerun. Final numbers are identical to an
uninterrupted run, finished work is kept, and nothing half-written is ever read back."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.io import atomic_write
from harness.results.records import read_record
from harness.settings import Execution
from tests.conftest import make_tiny_beir

from . import _proc


def _sealed(cache: Path) -> list[Path]:
    return sorted(p for p in cache.glob("embeddings/*/shard-*.json") if ".ids" not in p.suffixes)


@pytest.fixture(scope="module")
def big_beir(tmp_path_factory) -> Path:
    """3,000 documents: 30 shards of 100, so a kill lands between shards."""
    return make_tiny_beir(tmp_path_factory.mktemp("big") / "beir", n_docs=3000, n_queries=20, seed=1)


def _run_args(model: Path, data: Path, out: Path) -> list[str]:
    return ["run", "-r", f"hf:{model}", "-d", str(data), "--output-dir", str(out), "--metric", "ndcg@10",
            "--metric", "recall@1000", "--device", "cpu", "--shard-size", "100", "--batch-tokens", "2048"]


def _record(out: Path) -> tuple[dict, bytes]:
    (path,) = [p for p in out.rglob("*.json")]
    rec = read_record(path)
    return rec, (path.parent / rec.run_file).read_bytes()


@pytest.mark.slow
def test_encoding_killed_at_a_random_shard_resumes_to_identical_numbers(big_beir, tiny_bert_dir, tmp_path):
    seed = int.from_bytes(os.urandom(4), "little")
    stop_after = random.Random(seed).randint(1, 10)
    why = f"seed {seed}: killed after {stop_after} sealed shards"

    # the reference: one uninterrupted run with its own cache
    ref_out = tmp_path / "ref"
    assert _proc.run(_run_args(tiny_bert_dir, big_beir, ref_out), tmp_path / "cache-ref", tmp_path / "ref.log") == 0
    ref, ref_run = _record(ref_out)

    cache, out = tmp_path / "cache", tmp_path / "out"
    proc = _proc.start(_run_args(tiny_bert_dir, big_beir, out), cache, tmp_path / "killed.log")
    _proc.wait_for(proc, lambda: len(_sealed(cache)) >= stop_after, what=f"{stop_after} sealed shards")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    (store,) = list(cache.glob("embeddings/*/"))
    assert not (store / "manifest.json").exists(), f"the run finished before the kill ({why})"
    assert not list(out.rglob("*.json")) and not list(out.rglob("*.trec")), why
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for s in _sealed(cache)
              for p in (s.with_suffix(".npy"), s.with_suffix(".ids.json"), s)}
    n_sealed = len(_sealed(cache))

    assert _proc.run(_run_args(tiny_bert_dir, big_beir, out), cache, tmp_path / "rerun.log") == 0, why
    rec, run_bytes = _record(out)
    # only the unfinished shards were encoded again; the sealed ones were not touched
    assert rec.index["embeddings"] == f"encoded {30 - n_sealed} shards, reused {n_sealed} (resumed)", why
    after = {name: (p.stat().st_ino, p.stat().st_mtime_ns) for name in before for p in [store / name]}
    assert after == before, why
    # identical final numbers, to the last bit of the run file
    assert run_bytes == ref_run, why
    assert rec.metrics == ref.metrics and rec.per_query == ref.per_query, why


def test_corrupt_or_torn_shards_are_encoded_again(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch):
    """A sealed shard whose bytes no longer match its checksum is never read on resume."""
    from harness.datasets import resolve_dataset
    from harness.embeddings import EmbeddingStore
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.registry import resolve_retriever

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    spec, ds = resolve_retriever(f"hf:{tiny_bert_dir}"), resolve_dataset(str(tiny_beir))
    first = DenseRetriever(spec, execution=Execution(device="cpu", shard_size=10, progress=False))
    first.index(ds)
    store: EmbeddingStore = first.corpus_store(ds)
    good = [np.load(store.dir / f"shard-{i:05d}.npy") for i in range(4)]
    # as after a crash: no manifest, one shard flipped in place (same size), one cut short, one unsealed
    store.manifest_path.unlink()
    npy = store.dir / "shard-00001.npy"
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF
    npy.write_bytes(bytes(data))
    with open(store.dir / "shard-00002.npy", "r+b") as f:
        f.truncate(100)
    (store.dir / "shard-00003.json").unlink()
    again = DenseRetriever(spec, execution=Execution(device="cpu", shard_size=10, progress=False))
    info = again.index(ds)
    assert info.embeddings == "encoded 3 shards, reused 1 (resumed)"
    for i in range(4):
        assert np.array_equal(np.load(store.dir / f"shard-{i:05d}.npy"), good[i])


@pytest.mark.parametrize("force", [False, True])
def test_a_finished_store_altered_in_place_is_encoded_again(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch, force):
    """A complete store (manifest written) whose shard was rewritten in place, same size, rows shuffled, is not
    reused: its checksum is checked against its seal (remembered under the file's identity, so an untouched
    store is not hashed again; --force remembers nothing). Before, a finished store was checked by size."""
    from harness.datasets import resolve_dataset
    from harness.io import Checksums
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.registry import resolve_retriever

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    spec, ds = resolve_retriever(f"hf:{tiny_bert_dir}"), resolve_dataset(str(tiny_beir))
    execution = Execution(device="cpu", shard_size=10, progress=False)
    first = DenseRetriever(spec, execution=execution)
    first.index(ds)
    store = first.corpus_store(ds)
    assert store.complete
    npy = store.dir / "shard-00001.npy"
    good = np.load(npy)
    np.save(npy, good[::-1].copy())
    assert npy.stat().st_size == (store.dir / "shard-00000.npy").stat().st_size
    again = DenseRetriever(spec, execution=execution, checksums=Checksums(trust_memo=not force))
    info = again.index(ds)
    assert info.embeddings == "encoded 1 shards, reused 3 (resumed)"
    assert np.array_equal(np.load(npy), good)
    assert DenseRetriever(spec, execution=execution).index(ds).embeddings == "reused"


@pytest.mark.slow
def test_ctrl_c_exits_with_one_line(big_beir, tiny_bert_dir, tmp_path):
    cache = tmp_path / "cache"
    log = tmp_path / "log"
    proc = _proc.start(_run_args(tiny_bert_dir, big_beir, tmp_path / "out"), cache, log)
    _proc.wait_for(proc, lambda: len(_sealed(cache)) >= 1, what="the first sealed shard")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    text = log.read_text(errors="replace")
    assert "Traceback" not in text
    last = text.replace("\r", "\n").strip().splitlines()[-1]
    assert last == "harness: interrupted; finished results are kept, rerun to continue"


def test_interrupt_message_starts_its_own_line_after_an_open_progress_bar(monkeypatch, capsys):
    """The race the test above can hit: Ctrl-C just after a progress bar was drawn (no newline yet)."""
    from tqdm import tqdm

    import harness.cli as cli

    def interrupted(args):
        bar = tqdm(total=100, desc="encode corpus shard 2", leave=False)
        bar.update(1)
        bar.refresh()
        raise KeyboardInterrupt

    class Args:
        func = staticmethod(interrupted)

    parser = type("P", (), {"parse_known_args": lambda self, argv: (Args(), [])})
    monkeypatch.setattr(cli, "build_parser", lambda: parser())
    assert cli.main([]) == 130
    err = capsys.readouterr().err
    assert "encode corpus shard 2" in err  # the bar was drawn
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1] == "harness: interrupted; finished results are kept, rerun to continue"
    assert not any("shard 2" in line and "interrupted" in line for line in lines)


def test_an_interrupt_swallowed_on_its_way_up_still_exits_130(monkeypatch, capsys):
    """A KeyboardInterrupt raised where Python only prints it (a generator's finaliser) must not let the
    command end with status 0 as if it had not been interrupted."""
    import time

    import harness.cli as cli

    def swallowed(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs here
        except KeyboardInterrupt:
            pass  # what a finaliser does with it
        return 0

    class Args:
        func = staticmethod(swallowed)

    parser = type("P", (), {"parse_known_args": lambda self, argv: (Args(), [])})
    monkeypatch.setattr(cli, "build_parser", lambda: parser())
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal (see _proc)
    try:
        assert cli.main([]) == 130
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err.strip().splitlines()[-1] == \
        "harness: interrupted; finished results are kept, rerun to continue"


@pytest.mark.slow
def test_training_killed_at_a_random_checkpoint_resumes_exactly(tiny_bert_dir, tmp_path):
    from safetensors.torch import load_file

    from tests.train.conftest import write_tiny_corpus

    corpus = write_tiny_corpus(tmp_path / "corpus", n_docs=30)
    steps = 12

    def args(out: Path, *extra: str) -> list[str]:
        return ["train", "--init", str(tiny_bert_dir), "--corpus", str(corpus), "--output", str(out),
                "--objective", "relevance-aware", "--steps", str(steps), "--warmup-steps", "2", "--batch-size", "3",
                "--chunk-length", "24", "--queue-size", "16", "--lr", "1e-3", "--num-workers", "0",
                "--save-every", "2", "--keep-last", "10", "--seed", "7", "--threads", "1", "--no-progress",
                "--no-plot", "--device", "cpu", *extra]

    def checkpoints(out: Path) -> list[int]:
        return sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")
                      if (p / "harness_checkpoint.json").is_file())

    seed = int.from_bytes(os.urandom(4), "little")
    stop_after = random.Random(seed).randint(1, 4)
    why = f"seed {seed}: killed after {stop_after} checkpoints"
    assert _proc.run(args(tmp_path / "straight"), tmp_path / "cache", tmp_path / "straight.log") == 0
    out = tmp_path / "killed"
    proc = _proc.start(args(out), tmp_path / "cache", tmp_path / "killed.log")
    _proc.wait_for(proc, lambda: len(checkpoints(out)) >= stop_after, what=f"{stop_after} checkpoints")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert steps not in checkpoints(out), f"training finished before the kill ({why})"
    assert _proc.run(args(out, "--resume"), tmp_path / "cache", tmp_path / "resume.log") == 0, \
        (why, (tmp_path / "resume.log").read_text()[-2000:])
    final = f"checkpoint-{steps:07d}"
    a = load_file(str(tmp_path / "straight" / final / "model.safetensors"))
    b = load_file(str(out / final / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] == b[k]).all(), (k, why)


# ---- results: written atomically, a damaged one is never trusted ---------------------------------------

def test_interrupted_atomic_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "leaderboard.csv"
    path.write_text("old\n")

    def interrupted(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, "new\n" * 1000)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["leaderboard.csv"]  # no temporary file left


def test_damaged_record_is_recomputed_and_left_out_of_the_leaderboard(tiny_beir, tiny_bert_dir, tmp_path):
    from harness.results.leaderboard import rebuild
    from harness.runner import run

    out = tmp_path / "results"
    (rec,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], out, execution=Execution(device="cpu"),
                 log=lambda m: None)
    (path,) = list(out.rglob("*.json"))
    whole = path.read_text()
    path.write_text(whole[: len(whole) // 2])  # as if written by a tool that is not atomic, then killed
    df, problems = rebuild(out)
    assert df.empty and len(problems) == 1 and str(path) in problems[0] and "not valid JSON" in problems[0]
    logs: list[str] = []
    (again,) = run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], out, execution=Execution(device="cpu"),
                   log=logs.append)
    assert not any("reused record" in m for m in logs)
    assert again.metrics == rec.metrics and json.loads(path.read_text())["metrics"] == rec.metrics
    assert len(rebuild(out)[0]) == 1


def test_a_killed_lock_holder_does_not_block_the_next_run(tmp_path):
    """filelock uses flock(2): the kernel drops the lock when its holder dies, however it dies."""
    from harness.results.leaderboard import rebuild

    out = tmp_path / "results"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         f"l = FileLock({str(out / '.leaderboard.lock')!r}); l.acquire(); print('held', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"held"
    from filelock import FileLock, Timeout

    with pytest.raises(Timeout):
        FileLock(str(out / ".leaderboard.lock"), timeout=0.2).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (out / ".leaderboard.lock").exists()  # the file stays; the lock does not
    with FileLock(str(out / ".leaderboard.lock"), timeout=5):
        pass
    rebuild(out)
    assert (out / "leaderboard.csv").is_file()
