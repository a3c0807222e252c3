"""Progress bars: TQDM_DISABLE is honoured although the harness passes its own arguments, and a log file
gets a line every 30 s instead of a redraw per batch."""

from __future__ import annotations

import io

from harness.progress import progress_bar


def test_tqdm_disable_turns_every_bar_off(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert progress_bar(10, "x", "text").disable
    monkeypatch.setenv("TQDM_DISABLE", "0")
    assert not progress_bar(10, "x", "text", file=io.StringIO()).disable
    assert progress_bar(10, "x", "text", enabled=False).disable


def test_a_log_file_gets_sparse_lines(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    out = io.StringIO()
    bar = progress_bar(1000, "encode", "text", file=out)  # stderr is not a terminal under pytest
    for _ in range(1000):
        bar.update(1)
    bar.close()
    assert bar.mininterval == 30.0 and out.getvalue().count("\r") <= 3
