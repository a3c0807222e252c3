"""Downloads: checksummed, written atomically, unpacked safely.

The archive is streamed to a temporary file next to its destination, its md5 is checked, and only then
is it unpacked into a temporary folder and renamed into place. Extraction refuses absolute paths,
``..`` components, links, and archives that would unpack to more than ``MAX_UNPACKED_BYTES``.
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

from harness.errors import HarnessError, OfflineError
from harness.paths import offline

MAX_UNPACKED_BYTES = int(os.environ.get("HARNESS_MAX_UNPACKED_BYTES", 64 * 1024**3))
TIMEOUT_S = 30


def download(url: str, dest: Path, md5: str | None, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` (atomically), verifying ``md5`` when given. Reuses a verified file."""
    if dest.is_file() and (md5 is None or md5_file(dest) == md5):
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
        os.replace(tmp, dest)
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


def _bar(total: int, name: str):
    from tqdm import tqdm

    return tqdm(total=total or None, unit="B", unit_scale=True, desc=f"download {name}", leave=False)


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


def safe_unzip(archive: Path, target: Path) -> None:
    """Unpack a zip into ``target`` (which must not exist yet), atomically and safely."""
    with zipfile.ZipFile(archive) as zf:
        members = zf.infolist()
        total = sum(m.file_size for m in members)
        if total > MAX_UNPACKED_BYTES:
            raise HarnessError(f"refusing {archive.name}: it would unpack to {total} bytes "
                               f"(limit {MAX_UNPACKED_BYTES}; raise HARNESS_MAX_UNPACKED_BYTES if expected)")
        for m in members:
            check_member(m.filename, m)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
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
                    while block := src.read(1 << 20):
                        written += len(block)
                        if written > MAX_UNPACKED_BYTES:
                            raise HarnessError(f"refusing {archive.name}: unpacked size exceeds the limit")
                        dst.write(block)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
