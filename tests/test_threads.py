"""The thread count of a CPU encoding is a speed setting only: the vectors are the same bits on 1, 2 and 3
threads (both forwards, a random BERT and all-MiniLM-L6-v2), and the tuner that picks the count between
batches (harness.retrievers.compute.threads) tries fewer threads while the process waits for cores, keeps a
count only where it measured faster, and leaves the count alone where the kernel says nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.retrievers.compute import threads as th
from harness.retrievers.config import read_encoder_config
from harness.retrievers.encoder import HFEncoder
from tests.conftest import make_tiny_bert
from tests.test_fused_bert import CONTRIEVER, MINILM

WORDS = "the protein of the cell cancer study gene expression tumor patients retrieval dense vector".split()


def _texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(n)]


def _on_threads(encoder: HFEncoder, texts: list[str], counts: tuple[int, ...]) -> list[np.ndarray]:
    before = torch.get_num_threads()
    out = []
    try:
        for n in counts:
            encoder.threads = None  # the count set here, not by the tuner
            torch.set_num_threads(n)
            out.append(encoder.encode(texts))
    finally:
        torch.set_num_threads(before)
    return out


@pytest.mark.parametrize("forward", ["auto", "transformers"])
def test_vectors_are_the_same_bits_on_any_thread_count(tmp_path, forward):
    folder = make_tiny_bert(tmp_path / "bert", hidden=128, layers=2)
    encoder = HFEncoder(str(folder), CONTRIEVER, device="cpu", forward=forward, progress=False)
    first, *others = _on_threads(encoder, _texts(200), (2, 1, 3))
    for other in others:
        assert np.array_equal(first, other)


def test_minilm_vectors_are_the_same_bits_on_any_thread_count(shared_data):
    from harness.data.beir import doc_text, iter_corpus

    if not MINILM.is_dir():
        pytest.skip("../shared/models/all-MiniLM-L6-v2 is not present")
    docs = [doc_text(d) for _, d in zip(range(96), iter_corpus(shared_data / "beir" / "scifact" / "corpus.jsonl"),
                                        strict=False)]
    encoder = HFEncoder(str(MINILM), read_encoder_config(MINILM), device="cpu", progress=False)
    assert encoder.compute.forward.startswith("fused-bert")
    first, *others = _on_threads(encoder, docs, (2, 1, 3))
    for other in others:
        assert np.array_equal(first, other)


class Host:
    """A fake host: each thread count's work rate, and a share of thread time spent waiting for a core."""

    def __init__(self, rates: dict[int, float], waiting: dict[int, float], schedstat: bool = True):
        self.rates, self.waiting, self.schedstat = rates, waiting, schedstat
        self.threads = 0
        self.wait = 0
        self.set_calls: list[int] = []

    def set(self, n: int) -> None:
        self.threads = n
        self.set_calls.append(n)

    def wait_ns(self) -> int | None:
        return self.wait if self.schedstat else None

    def batches(self, tuner: th.ThreadTuner, n: int) -> None:
        for _ in range(n):
            seconds = 100.0 / self.rates[self.threads]
            self.wait += int(self.waiting[self.threads] * seconds * 1e9 * self.threads)
            tuner.batch_done(100.0, seconds)


def test_a_contended_host_gets_fewer_threads_where_they_are_faster():
    host = Host(rates={1: 20.0, 2: 15.0}, waiting={1: 0.0, 2: 0.35})  # one co-runner on two cores
    tuner = th.ThreadTuner(2, set_threads=host.set, wait_ns=host.wait_ns)
    assert host.threads == 2
    host.batches(tuner, th.WINDOW)  # contended: one thread fewer is tried
    assert host.threads == 1
    host.batches(tuner, th.WINDOW)  # faster: kept
    assert tuner.current == 1
    host.batches(tuner, th.WINDOW * (th.PROBE + 1))  # after PROBE windows two are tried again, and given up
    assert tuner.current == 1 and 2 in host.set_calls[2:]
    used = tuner.used()
    assert used["most"] == 2 and used["batches"]["1"] > 8 * used["batches"]["2"]


def test_a_slower_trial_is_given_up_and_waits_before_the_next():
    host = Host(rates={1: 10.0, 2: 15.0}, waiting={1: 0.0, 2: 0.3})  # waiting, yet two are still faster
    tuner = th.ThreadTuner(2, set_threads=host.set, wait_ns=host.wait_ns)
    host.batches(tuner, 2 * th.WINDOW)
    assert tuner.current == 2 and host.set_calls == [2, 1, 2]
    host.batches(tuner, th.WINDOW * (th.PROBE - 1))  # no trial before PROBE windows have passed
    assert host.set_calls == [2, 1, 2]
    host.batches(tuner, th.WINDOW * 2)
    assert host.set_calls == [2, 1, 2, 1, 2]


def test_the_other_work_ending_brings_the_threads_back():
    host = Host(rates={1: 20.0, 2: 15.0}, waiting={1: 0.0, 2: 0.35})
    tuner = th.ThreadTuner(2, set_threads=host.set, wait_ns=host.wait_ns)
    host.batches(tuner, 2 * th.WINDOW)
    assert tuner.current == 1
    host.rates, host.waiting = {1: 20.0, 2: 38.0}, {1: 0.0, 2: 0.0}  # the co-runner ended
    host.batches(tuner, th.WINDOW * (th.PROBE + 2))
    assert tuner.current == 2


def test_an_idle_host_or_a_silent_kernel_keeps_every_core():
    for host in (Host(rates={1: 10.0, 2: 19.0}, waiting={1: 0.0, 2: 0.01}),
                 Host(rates={1: 20.0, 2: 15.0}, waiting={1: 0.0, 2: 0.5}, schedstat=False)):
        tuner = th.ThreadTuner(2, set_threads=host.set, wait_ns=host.wait_ns)
        host.batches(tuner, th.WINDOW * 3 * th.PROBE)
        assert host.set_calls == [2] and tuner.used() == {"most": 2, "batches": {"2": th.WINDOW * 3 * th.PROBE},
                                                             "fixed": False}


def test_one_core_is_never_tuned():
    host = Host(rates={1: 10.0}, waiting={1: 0.9})
    tuner = th.ThreadTuner(1, set_threads=host.set, wait_ns=host.wait_ns)
    host.batches(tuner, th.WINDOW * 3 * th.PROBE)
    assert host.set_calls == [1]


def test_the_kernel_signal_reads_this_process():
    wait = th.runqueue_wait_ns()
    assert wait is None or wait >= 0  # a Linux kernel with schedstat says; elsewhere None and no tuning


def test_the_encoder_tunes_on_cpu_unless_omp_num_threads_fixes_it(tmp_path, monkeypatch):
    folder = make_tiny_bert(tmp_path / "bert")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    encoder = HFEncoder(str(folder), CONTRIEVER, device="cpu", batch_tokens=8, progress=False)
    assert encoder.threads is not None
    encoder.encode(_texts(40))
    assert sum(encoder.threads.used()["batches"].values()) >= 20  # every batch counted
    assert encoder.threads.used()["fixed"] is False
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # as OMP_NUM_THREADS=1 makes it at start
        fixed = HFEncoder(str(folder), CONTRIEVER, device="cpu", progress=False).threads
    finally:
        torch.set_num_threads(before)
    assert fixed is not None and fixed.fixed and fixed.most == 1


def test_a_given_thread_count_is_fixed_set_before_every_encode_and_recorded(tmp_path, monkeypatch):
    """Execution(threads=N) (``--threads N``) fixes the dense encoder's count: every batch runs on N threads
    whatever the host's contention, torch's global count is set to N before each encode (another encoder
    may have changed it), and the record says N, fixed."""
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.registry import resolve_retriever
    from harness.settings import Execution

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    folder = make_tiny_bert(tmp_path / "bert")
    before = torch.get_num_threads()
    try:
        retriever = DenseRetriever(resolve_retriever(f"hf:{folder}"),
                                   execution=Execution(device="cpu", threads=3, progress=False))
        encoder = retriever.encoders.encoder
        assert isinstance(encoder, HFEncoder)
        torch.set_num_threads(1)
        seen: list[int] = []
        forward = encoder.forward
        encoder.forward = lambda ids, mask: (seen.append(torch.get_num_threads()), forward(ids, mask))[1]
        encoder.encode(_texts(200))
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {3}
    used = retriever.encoders.encoding_report()["cpu_threads"]
    assert used == {"most": 3, "batches": {"3": len(seen)}, "fixed": True}


def test_a_fixed_count_never_changes_however_contended_the_host():
    host = Host(rates={1: 2.0, 2: 1.0}, waiting={1: 0.5, 2: 0.9})  # one thread would be twice as fast
    tuner = th.ThreadTuner(2, fixed=True, set_threads=host.set, wait_ns=host.wait_ns)
    host.batches(tuner, th.WINDOW * 3 * th.PROBE)
    assert host.set_calls == [2] and tuner.current == 2
    assert tuner.used() == {"most": 2, "batches": {"2": th.WINDOW * 3 * th.PROBE}, "fixed": True}
    host2 = Host(rates={1: 2.0, 2: 1.0}, waiting={1: 0.5, 2: 0.9})
    tuned = th.ThreadTuner(2, set_threads=host2.set, wait_ns=host2.wait_ns)
    host2.batches(tuned, th.WINDOW * 3)
    assert tuned.current == 1  # the same host without fixed: one thread kept (the test can tell the two apart)


def test_a_window_of_zero_seconds_or_a_thread_that_ended_decides_nothing_wrongly():
    calls: list[int] = []
    waits = iter([0, 5, 2])  # a thread ended between two reads: the sum went down
    tuner = th.ThreadTuner(2, set_threads=calls.append, wait_ns=lambda: next(waits, 2))
    for _ in range(th.WINDOW):
        tuner.batch_done(0.0, 0.0)  # no time measured: no division by zero
    for _ in range(th.WINDOW):
        tuner.batch_done(1.0, 1.0)
    assert tuner.current in (1, 2) and calls[0] == 2


def test_the_cli_threads_flag_reaches_execution_and_a_bad_count_is_refused(capsys):
    from harness.cli import build_parser, main
    from harness.cli.common import execution_from_args

    args = build_parser().parse_args(["run", "-r", "bm25", "-d", "scifact", "--threads", "3"])
    assert execution_from_args(args).threads == 3
    assert main(["run", "-r", "bm25", "-d", "scifact", "--threads", "0"]) == 2
    assert "--threads must be a whole number at least 1" in capsys.readouterr().err
    from harness.errors import HarnessError
    from harness.settings import Execution

    for bad in (-1, 2.5, "2", True, float("nan")):
        with pytest.raises(HarnessError, match="--threads must be a whole number at least 1"):
            Execution(threads=bad)
