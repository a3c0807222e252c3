"""Untrusted artifacts: archives, downloads, model folders from strangers, caches, configuration files."""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from harness.cli import main
from harness.data import fetch
from harness.errors import HarnessError
from harness.settings import Execution

REPO = Path(__file__).resolve().parents[2]


def make_zip(path: Path, members: list[tuple[str, bytes]], *, symlink: tuple[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
        if symlink is not None:
            name, target = symlink
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


def refused(tmp_path: Path, archive: Path, words: str) -> None:
    target = tmp_path / "out" / "unpacked"
    with pytest.raises(HarnessError, match=words):
        fetch.safe_unzip(archive, target)
    assert not target.exists()
    leftovers = [p for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
    assert leftovers == []  # no staging folder left behind either


# ---- archives ---------------------------------------------------------------------------------------

def test_archive_with_parent_entry_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("data/ok.txt", b"fine"), ("data/../../evil.txt", b"x")])
    refused(tmp_path, archive, "leaves the target folder")
    assert not (tmp_path / "evil.txt").exists()


def test_archive_with_absolute_path_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("data/ok.txt", b"fine"), (str(tmp_path / "abs.txt"), b"x")])
    refused(tmp_path, archive, "absolute path")
    assert not (tmp_path / "abs.txt").exists()
    archive = make_zip(tmp_path / "b.zip", [("C:/windows.txt", b"x")])
    refused(tmp_path, archive, "absolute path")


def test_archive_with_outside_symlink_is_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("data/ok.txt", b"fine")], symlink=("data/link", "../../../etc"))
    refused(tmp_path, archive, "symbolic link")


def test_archive_size_bomb_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_MAX_UNPACKED_BYTES", str(1 << 20))
    archive = make_zip(tmp_path / "a.zip", [("data/zeros.bin", bytes(8 << 20))])
    assert archive.stat().st_size < 64 << 10  # it compresses 100x or more
    refused(tmp_path, archive, "would unpack to 8388608 bytes")


def test_a_zip_bomb_is_refused_by_the_default_limit(tmp_path):
    # 1000:1: the default limit is 12x the archive's own size (at least 64 MiB), not a global 64 GiB
    archive = make_zip(tmp_path / "a.zip", [("data/zeros.bin", bytes(200 << 20))])
    assert archive.stat().st_size < 1 << 20
    refused(tmp_path, archive, "would unpack to 209715200 bytes")


def test_a_gzip_bomb_is_refused_and_leaves_nothing(tmp_path):
    import gzip

    bomb = tmp_path / "q.qa.csv.gz"
    with gzip.open(bomb, "wb") as f:
        for _ in range(200):
            f.write(bytes(1 << 20))
    assert bomb.stat().st_size < 1 << 20
    target = tmp_path / "out" / "q.qa.csv"
    with pytest.raises(HarnessError, match="would unpack to more than"):
        fetch.safe_gunzip(bomb, target)
    assert list((tmp_path / "out").iterdir()) == []


def test_a_zip_with_a_bad_crc_is_one_error(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("data/ok.txt", b"0123456789" * 100)
    data = bytearray(archive.read_bytes())
    data[data.find(b"0123456789") + 5] ^= 0xFF  # one payload byte: the CRC no longer matches
    archive.write_bytes(bytes(data))
    refused(tmp_path, archive, "the archive is damaged")


def test_a_file_and_a_folder_of_one_name_are_refused(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("data/x", b"a file"), ("data/x/y.txt", b"inside")])
    refused(tmp_path, archive, "'data/x' is both a file and a folder")


def test_a_download_without_checksum_is_reused_only_as_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    src = tmp_path / "questions.csv"
    src.write_bytes(b"q\t['a']\n")
    dest = tmp_path / "dl" / "questions.csv"
    fetch.download(src.as_uri(), dest, None, progress=False)
    assert dest.read_bytes() == src.read_bytes()
    dest.write_bytes(b"planted\t['x']\n")  # a file put at the cached path by someone else
    fetch.download(src.as_uri(), dest, None, progress=False)
    assert dest.read_bytes() == src.read_bytes()  # downloaded again, not used as found


def test_good_archive_unpacks_atomically(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("data/ok.txt", b"fine"), ("data/sub/x.txt", b"x")])
    target = tmp_path / "out" / "unpacked"
    fetch.safe_unzip(archive, target)
    assert (target / "data" / "ok.txt").read_bytes() == b"fine"
    assert sorted(p.name for p in target.parent.iterdir()) == ["unpacked"]


# ---- downloads: checksums verified before use ------------------------------------------------------------

@pytest.fixture()
def online(monkeypatch):
    """file:// URLs stand in for the network."""
    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")


def test_download_with_wrong_checksum_keeps_nothing(tmp_path, online):
    src = make_zip(tmp_path / "src.zip", [("data/ok.txt", b"fine")])
    dest = tmp_path / "downloads" / "src.zip"
    with pytest.raises(HarnessError, match="checksum mismatch.*nothing was kept"):
        fetch.download(src.as_uri(), dest, "0" * 32, progress=False)
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []


def test_corrupt_cached_download_is_fetched_again(tmp_path, online):
    src = make_zip(tmp_path / "src.zip", [("data/ok.txt", b"fine")])
    good = fetch.md5_file(src)
    dest = tmp_path / "downloads" / "src.zip"
    dest.parent.mkdir()
    dest.write_bytes(src.read_bytes()[:-10])  # a download cut short by an earlier crash
    fetch.download(src.as_uri(), dest, good, progress=False)
    assert fetch.md5_file(dest) == good


# ---- model folders -------------------------------------------------------------------------------------

def _model_with_custom_code(tiny_bert_dir: Path, folder: Path, marker: Path) -> Path:
    import json

    shutil.copytree(tiny_bert_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="strangebert",
               auto_map={"AutoConfig": "modeling_strange.C", "AutoModel": "modeling_strange.M"})
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modeling_strange.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import BertConfig as C, BertModel as M\n")
    return folder


def test_remote_code_is_not_run_without_the_flag(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    marker = tmp_path / "ran"
    model = _model_with_custom_code(tiny_bert_dir, tmp_path / "m", marker)
    rc = main(["run", "-r", f"hf:{model}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "r"),
               "--metric", "ndcg@10", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert "ships its own Python code" in err and "--trust-remote-code" in err
    assert not marker.exists()


def test_pickled_weights_are_never_unpickled(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    import os

    import torch

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    model = Path(shutil.copytree(tiny_bert_dir, tmp_path / "m"))
    (model / "model.safetensors").unlink()
    torch.save({"embeddings.word_embeddings.weight": Payload()}, model / "pytorch_model.bin")
    rc = main(["run", "-r", f"hf:{model}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "r"),
               "--metric", "ndcg@10", "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "weights_only=True" in err
    assert not marker.exists()


def test_safetensors_are_preferred_over_pickle(tiny_beir, tiny_bert_dir, tmp_path):
    """With both files present the pickle is never opened (here it would fail to load at all)."""
    from harness.runner import run

    model = Path(shutil.copytree(tiny_bert_dir, tmp_path / "m"))
    (model / "pytorch_model.bin").write_bytes(b"not a pickle")
    (rec,) = run([f"hf:{model}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", execution=Execution(device="cpu"),
                 log=lambda m: None)
    assert 0.0 <= rec.metrics["ndcg@10"] <= 1.0


def test_dense_retriever_does_not_trust_remote_code_by_default(tiny_bert_dir):
    from harness.retrievers.dense import DenseRetriever
    from harness.retrievers.registry import resolve_retriever

    assert DenseRetriever(resolve_retriever(f"hf:{tiny_bert_dir}")).execution.trust_remote_code is False


# ---- caches hold no pickle --------------------------------------------------------------------------

def test_caches_hold_no_pickle(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch):
    from harness.runner import run

    cache = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    run([f"hf:{tiny_bert_dir}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", execution=Execution(device="cpu"),
        log=lambda m: None)
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert any(p.suffix == ".npy" for p in files)
    for p in files:
        data = p.read_bytes()
        if p.suffix == ".npy":
            np.load(p, allow_pickle=False)  # raises on object arrays
        elif p.suffix != ".lock":
            data.decode("utf-8")  # JSON, ids and checksums: text only
        assert not data.startswith(b"\x80"), p  # a pickle protocol header


# ---- the source never opens an unsafe door ------------------------------------------------------------

UNSAFE = [
    (r"torch\.load\((?![^)]*weights_only=True)", "torch.load without weights_only=True"),
    (r"pickle\.(loads?|dumps?|Unpickler|Pickler)\b|cloudpickle|joblib\.(load|dump)|\bdill\.", "pickle"),
    (r"allow_pickle=True", "numpy pickle"),
    (r"yaml\.(load|unsafe_load|full_load)\(|yaml\.Loader|UnsafeLoader", "an unsafe YAML loader"),
    (r"trust_remote_code\s*=\s*True", "trust_remote_code hard-coded on"),
    (r"(?<![\w.])(eval|exec)\(", "eval/exec"),
    (r"\.extractall\(", "unchecked archive extraction"),
    (r"os\.system\(|shell=True", "a shell"),
]


def test_source_has_no_unsafe_loaders():
    problems = []
    for path in sorted((REPO / "harness").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern, what in UNSAFE:
            for m in re.finditer(pattern, text, flags=re.MULTILINE):
                line = text.count("\n", 0, m.start()) + 1
                source = text.splitlines()[line - 1]
                problems.append(f"{path.relative_to(REPO)}:{line}: {what}: {source.strip()}")
    assert problems == []


def test_a_file_rewritten_within_one_clock_tick_is_hashed_again(tmp_path, monkeypatch):
    """On a file system whose timestamps tick coarsely, a same-size rewrite right after a hash keeps the file's
    identity: such a recent file is hashed but not remembered (git's racily clean entries), so the rewrite is
    seen; an older one is remembered as before."""
    import time

    import harness.io as hio

    path = tmp_path / "shard.npy"
    path.write_bytes(b"a" * 64)
    tick = time.time_ns()  # every identity the same "tick", as a coarse clock gives
    monkeypatch.setattr(hio, "file_identity", lambda p: f"{p}|{Path(p).stat().st_size}|{tick}")
    checksums = hio.Checksums()
    first = checksums.sha256(path)
    path.write_bytes(b"b" * 64)
    assert checksums.sha256(path) != first
    old = tick - 10 * hio.RACY_NS
    monkeypatch.setattr(hio, "file_identity", lambda p: f"{p}|{Path(p).stat().st_size}|{old}")
    remembered = checksums.sha256(path)
    path.write_bytes(b"c" * 64)
    assert checksums.sha256(path) == remembered  # what the memo is for: an unchanged identity is not read again
