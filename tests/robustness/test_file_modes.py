"""Files the harness writes through a temporary file (records, run files, the leaderboard, downloads,
unpacked datasets, checkpoints) get the mode a plain open() would give them, not tempfile's private 0600 /
0700: a results folder or cache on a shared cluster is readable by the group the umask allows."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest

from harness.data.fetch import unpack
from harness.io import atomic_write


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    from harness import io

    old = os.umask(0o022)
    io._umask.cache_clear()
    yield
    os.umask(old)
    io._umask.cache_clear()


def test_atomic_write_gives_the_umask_mode_and_keeps_a_replaced_files_mode(tmp_path, umask_022):
    path = tmp_path / "record.json"
    atomic_write(path, "{}")
    assert _mode(path) == 0o644
    os.chmod(path, 0o640)
    atomic_write(path, "{ }")
    assert _mode(path) == 0o640 and path.read_text() == "{ }"


def test_unpacked_folders_and_files_are_readable(tmp_path, umask_022):
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("d/corpus.jsonl", '{"_id": "1", "text": "x"}\n')
    unpack(archive, tmp_path / "out", "unzip")
    assert _mode(tmp_path / "out") == 0o755 and _mode(tmp_path / "out" / "d" / "corpus.jsonl") == 0o644


def test_a_run_writes_readable_records_and_caches(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch, umask_022):
    from harness.cli import main

    out, cache = tmp_path / "r", tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(out),
                 "--device", "cpu"]) == 0
    written = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert written and all(_mode(p) == 0o644 for p in written), [(p.name, oct(_mode(p))) for p in written]
    cached = [p for p in cache.rglob("*") if not p.name.startswith(".")]
    assert cached and all(_mode(p) in (0o644, 0o755) for p in cached), [(p.name, oct(_mode(p))) for p in cached]
