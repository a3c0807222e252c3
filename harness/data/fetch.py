"""Downloads: checksummed, written atomically, unpacked safely by one bounded unpacker.

The archive is streamed to a temporary file next to its destination, its checksum is checked, and only
then is it unpacked into a temporary name and renamed into place. Every format (zip, gzip) goes through
:func:`unpack`, which refuses absolute paths, ``..`` components, links, a file and a folder of one name,
damaged archives (a bad CRC, a truncated stream), and archives that would unpack to more than their limit:
``HARNESS_MAX_UNPACKED_BYTES`` when set, otherwise ``UNPACK_RATIO`` times the archive's own size (the size
its pinned checksum fixes; text compresses 3-5x, so 12x is a wide margin and a zip bomb's 1000:1 is not).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from harness.errors import HarnessError, OfflineError
from harness.io import shareable
from harness.paths import offline

if TYPE_CHECKING:
    from _typeshed import SupportsRead

UNPACK_RATIO = 12
MIN_UNPACK_LIMIT = 64 * 2**20
TIMEOUT_S = 30


def unpack_limit(archive: Path) -> int:
    """The most bytes ``archive`` may unpack to (see the module docstring)."""
    env = os.environ.get("HARNESS_MAX_UNPACKED_BYTES", "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            raise HarnessError(f"HARNESS_MAX_UNPACKED_BYTES={env!r} is not a number of bytes") from None
    return max(MIN_UNPACK_LIMIT, UNPACK_RATIO * Path(archive).stat().st_size)


def _too_big(archive: Path, size: int | str, limit: int) -> HarnessError:
    return HarnessError(f"refusing {archive.name}: it would unpack to {size} bytes (limit {limit}, "
                        f"{UNPACK_RATIO}x its size; set HARNESS_MAX_UNPACKED_BYTES if this is expected)")


#: retries of one address: failed connections and 429/5xx answers (urllib3's Retry, with back-off), and a
#: stream broken mid-file (resumed from the bytes already on disk with an HTTP Range request)
ATTEMPTS = 5
BACKOFF_S = 1.0
MIRROR_ENV = "HARNESS_MIRROR"


def download(url: str | Sequence[str], dest: Path, md5: str | None, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (atomically), verifying ``md5`` when given. Reuses a verified file.

    ``url`` may be several addresses of one file (mirrors), tried in order, after ``HARNESS_MIRROR/<file
    name>`` when that is set (a site's own copy; the checksum decides). Each address is fetched with
    ``requests``: connection failures and 429/5xx answers are retried with exponential back-off, and a
    transfer that breaks mid-file resumes from the bytes already on disk (``.<name>.part`` beside ``dest``,
    kept when every address fails, so the next call resumes it too). A file without a published checksum is
    reused only when it is the very file this harness downloaded (its sha256 is kept beside it,
    ``<dest>.sha256``, written after the download completed); any other file at that path is downloaded
    again, never unpacked unverified."""
    import requests
    from filelock import FileLock

    sidecar = dest.with_name(dest.name + ".sha256")
    if _reusable(dest, md5, sidecar):
        return dest
    urls = [url] if isinstance(url, str) else list(url)
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    if mirror:
        urls.insert(0, f"{mirror.rstrip('/')}/{dest.name}")
    if offline():
        raise OfflineError(f"offline (HARNESS_OFFLINE=1): not downloading {urls[-1]}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(f".{dest.name}.part")
    locks = Path(tempfile.gettempdir()) / "harness-locks"  # not beside dest: its folder holds only downloads
    locks.mkdir(exist_ok=True)
    key = hashlib.sha256(str(dest.resolve()).encode()).hexdigest()[:24]
    with FileLock(str(locks / f"{key}.lock")):  # one process of this machine downloads; the others reuse
        if _reusable(dest, md5, sidecar):
            return dest
        failures = []
        for address in urls:
            unreachable = _unresolvable(address)
            if unreachable:  # no network or DNS: one look-up, not retries with back-off
                failures.append(f"{address}: {unreachable}")
                continue
            try:
                _fetch(address, part, progress)
            except (requests.exceptions.RequestException, OSError) as e:
                failures.append(f"{address}: {_reason(e)}")
                continue
            got = md5_file(part) if md5 is not None else None
            if md5 is not None and got != md5:
                part.unlink(missing_ok=True)
                failures.append(f"{address}: checksum mismatch (md5 {got}, expected {md5})")
                if len(urls) == 1:
                    raise HarnessError(f"checksum mismatch for {address}: expected md5 {md5}; the download is "
                                       "corrupt or the file changed upstream (nothing was kept)")
                continue
            shareable(part)
            os.replace(part, dest)
            if md5 is None:
                from harness.io import atomic_write

                atomic_write(sidecar, _sha256(dest) + "\n")
            return dest
    kept = f"; {part.stat().st_size:,} bytes are kept in {part} and the next call resumes them" \
        if part.is_file() else ""
    hint = ("; without a network, set HARNESS_OFFLINE=1 to work from local data only (HARNESS_DATA), or "
            f"{MIRROR_ENV} to a local copy") if any("cannot resolve" in f for f in failures) else ""
    raise OfflineError(f"could not download {dest.name}: {'; '.join(failures)}{kept}{hint}")


def _reusable(dest: Path, md5: str | None, sidecar: Path) -> bool:
    if not dest.is_file():
        return False
    if md5 is not None:
        return md5_file(dest) == md5
    return sidecar.is_file() and sidecar.read_text().strip() == _sha256(dest)


def _session() -> Any:
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(total=ATTEMPTS, connect=ATTEMPTS, read=ATTEMPTS, backoff_factor=BACKOFF_S,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET", "HEAD"),
                  respect_retry_after_header=True)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def _fetch(url: str, part: Path, progress: bool) -> None:
    """``url`` into ``part``, resuming what ``part`` already holds; a stream broken mid-file is resumed up to
    :data:`ATTEMPTS` times with back-off."""
    import time
    import urllib.parse
    import urllib.request

    import requests

    if url.startswith("file://"):  # a copy on a shared file system (a site's mirror, a test's file)
        shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlparse(url).path), part)
        return
    session = _session()
    for attempt in range(ATTEMPTS):
        have = part.stat().st_size if part.is_file() else 0
        try:
            with session.get(url, stream=True, timeout=TIMEOUT_S,
                             headers={"Range": f"bytes={have}-"} if have else {}) as resp:
                if resp.status_code == 416 and have:  # the part is already whole: the checksum decides
                    return
                resp.raise_for_status()
                if have and resp.status_code != 206:  # the server ignored the range: start again
                    have = 0
                total = have + int(resp.headers.get("Content-Length") or 0)
                bar = _bar(total, part.name.strip(".").removesuffix(".part")) if progress else None
                if bar is not None and have:
                    bar.update(have)
                with open(part, "ab" if have else "wb") as out:
                    for block in resp.iter_content(1 << 16):  # a broken stream loses at most this much
                        out.write(block)
                        if bar is not None:
                            bar.update(len(block))
                if bar is not None:
                    bar.close()
                if total and part.stat().st_size < total:  # the server closed early
                    raise requests.exceptions.ChunkedEncodingError(f"{part.stat().st_size} of {total} bytes")
                return
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
                requests.exceptions.Timeout) as e:
            if attempt == ATTEMPTS - 1:
                raise
            time.sleep(BACKOFF_S * 2 ** attempt * (0.01 if "PYTEST_CURRENT_TEST" in os.environ else 1))
            del e


def _unresolvable(url: str) -> str | None:
    """Why ``url``'s host cannot be looked up (no network, no DNS), or None: checked once before the
    download, whose retries with back-off are for a server that answers badly, not for a missing network."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host = parts.hostname
    if not host or _proxied(parts.scheme, host):  # a proxy looks the host up, not this machine
        return None
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as e:
        return f"cannot resolve {host} ({e.strerror or e})"
    except OSError:
        return None
    return None


def _proxied(scheme: str, host: str) -> bool:
    """Whether a request to ``host`` goes through a proxy (HTTPS_PROXY, ALL_PROXY, ... not bypassed by
    NO_PROXY), as requests decides from the environment."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return bool(proxies.get(scheme) or proxies.get("all")) and not urllib.request.proxy_bypass(host)


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if len(text) > 300:  # cut at a word, and say so
        text = text[:300].rsplit(" ", 1)[0] + " ..."
    return text or type(e).__name__


def _bar(total: int, name: str) -> Any:
    from harness.progress import progress_bar

    return progress_bar(total or None, f"download {name}", "B", unit_scale=True)


def _sha256(path: Path) -> str:
    from harness.io import sha256_file

    return sha256_file(path)


def md5_file(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def check_member(name: str, info: zipfile.ZipInfo | None = None) -> PurePosixPath:
    """The member's safe relative path, or an error for absolute paths, ``..`` and links."""
    p = PurePosixPath(name.replace("\\", "/"))
    if p.is_absolute() or name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise HarnessError(f"refusing archive member with an absolute path: {name!r}")
    if ".." in p.parts:
        raise HarnessError(f"refusing archive member that leaves the target folder: {name!r}")
    if info is not None:
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise HarnessError(f"refusing archive member that is a symbolic link: {name!r}")
    return p


def safe_unzip(archive: Path, target: Path, limit: int | None = None) -> None:
    """Unpack a zip into ``target`` (which must not exist yet), atomically and safely."""
    unpack(archive, target, "unzip", limit)


def safe_gunzip(archive: Path, target: Path, limit: int | None = None) -> None:
    """Decompress a gzip file into the file ``target``, atomically and bounded."""
    unpack(archive, target, "gunzip", limit)


def unpack(archive: Path, target: Path, kind: str, limit: int | None = None) -> None:
    """The one unpacker: ``kind`` "unzip" (a folder at ``target``) or "gunzip" (a file at ``target``)."""
    import gzip
    import zlib

    limit = unpack_limit(archive) if limit is None else limit
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "unzip":
            _unzip(archive, target, limit)
        elif kind == "gunzip":
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out, gzip.open(archive, "rb") as src:
                    _copy_bounded(src, out, archive, limit)
                shareable(tmp)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        else:
            raise ValueError(f"unknown archive kind {kind!r}")
    except (zipfile.BadZipFile, gzip.BadGzipFile, zlib.error, EOFError) as e:
        raise HarnessError(f"refusing {archive}: the archive is damaged ({e}); delete it and fetch again") from None


def _copy_bounded(src: SupportsRead[bytes], dst: IO[bytes], archive: Path, limit: int, written: int = 0) -> int:
    while block := src.read(1 << 20):
        written += len(block)
        if written > limit:
            raise _too_big(archive, f"more than {limit}", limit)
        dst.write(block)
    return written


def _unzip(archive: Path, target: Path, limit: int) -> None:
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        total = sum(m.file_size for m in members)
        if total > limit:
            raise _too_big(archive, total, limit)
        files: set[str] = set()
        folders: set[str] = set()
        for m in members:
            rel = check_member(m.filename, m)
            parts = rel.parts
            folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
            if m.is_dir():
                folders.add("/".join(parts))
            elif "/".join(parts) in files:
                raise HarnessError(f"refusing {archive.name}: {m.filename!r} appears twice")
            else:
                files.add("/".join(parts))
        clash = sorted(files & folders)
        if clash:
            raise HarnessError(f"refusing {archive.name}: {clash[0]!r} is both a file and a folder in the archive")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent))
        try:
            written = 0
            for m in members:
                rel = check_member(m.filename, m)
                out = tmp.joinpath(*rel.parts)
                if m.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(m) as src, open(out, "wb") as dst:
                    written = _copy_bounded(src, dst, archive, limit, written)
            shareable(tmp)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
