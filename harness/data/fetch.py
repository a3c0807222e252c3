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
import urllib.error
import urllib.request
import zipfile
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


def download(url: str, dest: Path, md5: str | None, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (atomically), verifying ``md5`` when given. Reuses a verified file.

    A file without a published checksum is reused only when it is the very file this harness downloaded
    (its sha256 is kept beside it, ``<dest>.sha256``, written after the download completed); any other file
    at that path is downloaded again, never unpacked unverified."""
    sidecar = dest.with_name(dest.name + ".sha256")
    if dest.is_file():
        if md5 is not None and md5_file(dest) == md5:
            return dest
        if md5 is None and sidecar.is_file() and sidecar.read_text().strip() == _sha256(dest):
            return dest
    if offline():
        raise OfflineError(f"offline (HARNESS_OFFLINE=1): not downloading {url}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.md5()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            bar = _bar(total, dest.name) if progress else None
            while block := resp.read(1 << 20):
                out.write(block)
                h.update(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        if md5 is not None and h.hexdigest() != md5:
            raise HarnessError(f"checksum mismatch for {url}: md5 {h.hexdigest()}, expected {md5}; "
                               "the download is corrupt or the file changed upstream (nothing was kept)")
        shareable(tmp)
        os.replace(tmp, dest)
        if md5 is None:
            from harness.io import atomic_write

            atomic_write(sidecar, _sha256(dest) + "\n")
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, HarnessError):
            raise
        reason = getattr(e, "reason", e)
        raise OfflineError(f"could not download {url}: {reason}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


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
