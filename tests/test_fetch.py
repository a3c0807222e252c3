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


class _Flaky(http.server.BaseHTTPRequestHandler):
    """One file, served with HTTP ranges, misbehaving as a flaky link does: the plan lists what each request
    gets ("503", "half": the headers of the whole then half the bytes and a closed connection, "ok")."""

    body = b""
    plan: list[str] = []
    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        step = self.plan.pop(0) if self.plan else "ok"
        rng = self.headers.get("Range", "")
        self.seen.append(f"{step} {rng}".strip())
        if step == "503":
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0
        data = self.body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if step == "half":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.close()
            return
        self.wfile.write(data)


@pytest.fixture()
def flaky():
    body = bytes(range(256)) * 4096  # 1 MiB
    handler = type("Handler", (_Flaky,), {"body": body, "plan": [], "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}/file.bin", hashlib.md5(body).hexdigest()
    httpd.shutdown()


def test_a_flaky_link_is_retried_and_resumed_from_the_bytes_already_here(flaky, tmp_path, monkeypatch):
    """Issue 36: downloads were one urllib request (no retry, no resume), while multi-GB archives over a flaky
    link are the common case. A 503 is retried with back-off, and a transfer cut mid-file resumes with a
    Range request from the bytes on disk; the checksum decides."""
    from harness.data.fetch import download

    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    handler, url, md5 = flaky
    handler.plan = ["503", "half", "ok"]
    dest = download(url, tmp_path / "file.bin", md5, progress=False)
    assert hashlib.md5(dest.read_bytes()).hexdigest() == md5
    assert handler.seen[0] == "503" and handler.seen[1] == "half" and handler.seen[2].startswith("ok bytes=")
    assert not list(tmp_path.glob(".file.bin.part"))


def test_a_failed_download_keeps_its_bytes_and_the_next_call_resumes_them(flaky, tmp_path, monkeypatch):
    from harness.data import fetch
    from harness.errors import OfflineError

    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(fetch, "ATTEMPTS", 2)
    handler, url, md5 = flaky
    handler.plan = ["half", "half", "half", "half"]
    with pytest.raises(OfflineError, match="bytes are kept in .*next call resumes them"):
        fetch.download(url, tmp_path / "file.bin", md5, progress=False)
    kept = (tmp_path / ".file.bin.part").stat().st_size
    assert 0 < kept < len(handler.body)
    handler.plan, handler.seen = [], []
    fetch.download(url, tmp_path / "file.bin", md5, progress=False)
    assert handler.seen == [f"ok bytes={kept}-"]  # only the rest was asked for
    assert hashlib.md5((tmp_path / "file.bin").read_bytes()).hexdigest() == md5


def test_a_mirror_is_tried_first_and_the_checksum_decides(flaky, tmp_path, monkeypatch):
    from harness.data.fetch import download

    monkeypatch.setenv("HARNESS_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    handler, url, md5 = flaky
    monkeypatch.setenv("HARNESS_MIRROR", url.rsplit("/", 1)[0])  # the site's copy, named by the file
    dest = download("http://127.0.0.1:9/unreachable/file.bin", tmp_path / "file.bin", md5, progress=False)
    assert hashlib.md5(dest.read_bytes()).hexdigest() == md5 and handler.seen == ["ok"]


def test_a_host_that_does_not_resolve_fails_at_once_without_retries(tmp_path, monkeypatch):
    """No network (DNS fails): each address is tried once, not retried with back-off (2 min 45 s a dataset
    before), and the message says so in full and names HARNESS_OFFLINE."""
    import socket

    from harness.data import fetch

    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetched = []
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    monkeypatch.setattr(fetch, "_fetch", lambda url, part, progress: (fetched.append(url), part.write_bytes(b"x")))
    monkeypatch.delenv("HARNESS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HarnessError) as e:
        fetch.download(["https://one.invalid/x.zip", "https://two.invalid/x.zip"], tmp_path / "x.zip", None)
    message = str(e.value)
    assert fetched == [] and "one.invalid" in message and "two.invalid" in message
    assert "cannot resolve" in message and "HARNESS_OFFLINE=1" in message
    # behind a proxy the proxy looks the host up: the download is tried as before
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    assert fetch.download(["https://one.invalid/x.zip"], tmp_path / "y.zip", None).read_bytes() == b"x"
    assert fetched == ["https://one.invalid/x.zip"]

