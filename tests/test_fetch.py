"""Downloads over a loopback HTTP server: checksum, atomic write, unpacking, read-only data roots."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from harness.data import load
from harness.data.registry import BeirSpec
from harness.errors import HarnessError
from tests.conftest import make_tiny_beir


@pytest.fixture()
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _zip_dataset(tmp_path: Path, name: str) -> bytes:
    folder = make_tiny_beir(tmp_path / "src" / name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in sorted(folder.rglob("*")):
            zf.write(p, f"{name}/{p.relative_to(folder)}")
    return buf.getvalue()


def _spec(url: str, md5: str) -> BeirSpec:
    return BeirSpec(id="beir/tinyset", url=url, md5=md5, archive_root="tinyset")


def test_fetch_downloads_verifies_and_unpacks_into_a_read_only_root(tmp_path, server, monkeypatch):
    www, base = server
    data = _zip_dataset(tmp_path, "tinyset")
    (www / "tinyset.zip").write_bytes(data)
    readonly = tmp_path / "readonly"
    readonly.mkdir()
    monkeypatch.setenv("HARNESS_DATA", str(readonly))
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(load, "download_root", lambda: tmp_path / "cache" / "data")  # as for an unwritable root
    folder = load.fetch(_spec(f"{base}/tinyset.zip", hashlib.md5(data).hexdigest()))
    assert folder == tmp_path / "cache" / "data" / "beir" / "tinyset"
    assert (folder / "corpus.jsonl").is_file() and (folder / "qrels" / "test.tsv").is_file()
    assert list(readonly.iterdir()) == []
    assert not list((tmp_path / "cache" / "data" / "beir").glob(".*"))  # no staging left behind


def test_fetch_refuses_a_checksum_mismatch_and_keeps_nothing(tmp_path, server, monkeypatch):
    www, base = server
    (www / "tinyset.zip").write_bytes(_zip_dataset(tmp_path, "tinyset"))
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(HarnessError, match="checksum mismatch"):
        load.fetch(_spec(f"{base}/tinyset.zip", "0" * 32))
    assert not (tmp_path / "data" / "beir" / "tinyset").exists()
    downloads = Path(__import__("os").environ["HARNESS_CACHE"]) / "downloads"
    assert not list(downloads.glob("tinyset.zip*"))


def test_fetch_offline_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "data"))
    with pytest.raises(HarnessError) as e:
        load.fetch(_spec("http://127.0.0.1:9/tinyset.zip", "0" * 32))
    message = str(e.value)
    assert "HARNESS_OFFLINE" in message and "corpus.jsonl, queries.jsonl and qrels/test.tsv" in message
