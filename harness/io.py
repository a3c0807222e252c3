"""Small file helpers: atomic writes and content checksums.

A checksum is remembered in the cache under the file's full identity as the kernel reports it: resolved
path, device, inode, size, modification time and change time, all in nanoseconds. The change time cannot
be set back from user space (``touch -d`` or ``os.utime`` restoring the mtime still moves it), so an edit
that keeps the size and restores the mtime is still seen. Whether the memo is trusted is a value passed to
where files are hashed: a :class:`Checksums` that trusts none (``--force``) hashes each file again once and
mends the memo; nothing switches it for the rest of the process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO


@functools.cache
def _umask() -> int:
    """This process's umask (read from /proc where it can be, so that no other thread sees it changed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def shareable(path: Path | str, *, like: Path | str | None = None) -> None:
    """Give a file or folder made by ``tempfile`` (mode 0600 / 0700) the mode a plain ``open`` or ``mkdir``
    would have given it (0666 / 0777 less the umask), or the mode of ``like`` when that exists (the file it
    replaces): results, caches and checkpoints are readable by whoever the umask lets read them."""
    try:
        mode = stat.S_IMODE(os.stat(like).st_mode) if like is not None else None
    except FileNotFoundError:
        mode = None
    if mode is None:
        mode = (0o777 if os.path.isdir(path) else 0o666) & ~_umask()
    os.chmod(path, mode)


def atomic_write(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    _atomic(path, lambda f: f.write(data.encode("utf-8") if isinstance(data, str) else data))


def atomic_stream(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """``write(f)`` into a temporary file beside ``path``, renamed over it once whole (a plot, a Parquet table):
    a failed write leaves the old file and no temporary, and names ``path``."""
    _atomic(path, write)


def atomic_copy(source: Path, path: Path) -> None:
    """Copy ``source`` to ``path`` (streamed, any size) so that readers see the old file or the new one."""
    import shutil

    with open(source, "rb") as src:
        _atomic(path, lambda f: shutil.copyfileobj(src, f, 1 << 20))


def _atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    path = Path(path)
    tmp = ""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        shareable(tmp, like=path)
        os.replace(tmp, path)
    except OSError as e:  # disk full, quota, a read-only disk, a folder in the way: named by the file written
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise type(e)(e.errno, e.strerror or str(e), str(path)) from None
    except BaseException:
        if tmp:
            Path(tmp).unlink(missing_ok=True)
        raise


def check_output_file(path: Path, flag: str, *, inputs: Iterable[Path] = (), suffixes: tuple[str, ...] = ()
                      ) -> None:
    """Refuse, before any work, an output file that would replace what the harness reads: one of ``inputs``
    (a dataset's own files), a result record or a record's run file, a folder or a device; or, given
    ``suffixes``, a name without one of them (``report -o corpus.jsonl``)."""
    from harness.errors import HarnessError

    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise HarnessError(f"{flag} {path}: name a FILE{suffixes[0]} (it is written, and replaces what is there)")
    if path.exists() and not path.is_file():
        raise HarnessError(f"{flag} {path} is not a regular file (a folder or a device); name a file to write")
    target = path.resolve()
    for given in inputs:
        if Path(given).resolve() == target:
            raise HarnessError(f"{flag} {path} is an input of this run ({given}); name another file")
    for candidate in (path, path.with_suffix(".json")):
        if candidate.is_file() and _is_record(candidate):
            what = "a result record" if candidate == path else f"the run file of the result record {candidate.name}"
            raise HarnessError(f"{flag} {path} is {what}; name another file")


def _is_record(path: Path) -> bool:
    """Whether ``path`` is a harness result record (a JSON object whose opening or end names the schema)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            tail = f.read()
    except OSError:
        return False
    return head.lstrip().startswith(b"{") and any(b'"schema"' in x and b"harness-result/" in x for x in (head, tail))


def with_filename(e: OSError, path: Path | str) -> OSError:
    """``e`` with the file it concerns (a failed ``write`` names none), so the message can say which."""
    if e.filename is not None:
        return e
    return type(e)(e.errno, e.strerror or str(e), str(path))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path, suffix: str = ".tmp") -> int:
    """Delete the hidden temporary files (``.<name>.<pid>.<...><suffix>``, as :func:`atomic_write` and the
    embedding store name them) whose writing process is gone: what a killed run leaves behind. Returns how
    many were removed."""
    removed = 0
    for p in Path(folder).glob(f".*{suffix}"):
        pid = next((int(x) for x in p.name.split(".") if x.isdigit()), None)
        if pid is not None and pid != os.getpid() and not pid_alive(pid):
            try:
                if p.is_dir():
                    import shutil

                    shutil.rmtree(p)
                else:
                    p.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def atomic_write_json(path: Path, obj: object) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def read_json(path: Path, *, fix: str, problem: str = "invalid JSON") -> object:
    """A JSON file, or a DataError naming the file, the line and ``fix`` (BOM tolerated)."""
    from harness.errors import DataError

    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(path, f"{problem} ({e.msg})", line=e.lineno, fix=fix) from None
    except UnicodeDecodeError:
        raise DataError(path, "invalid UTF-8", fix=fix) from None


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


_HASHED: dict[str, str] = {}  # file identity -> sha256, for files hashed in this process (a cache of content)


def file_identity(path: Path) -> str:
    """What the checksum memo is keyed by (see the module docstring)."""
    path = Path(path).resolve()
    st = path.stat()
    return f"{path}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"


#: a file changed this recently is hashed but not remembered: a file system whose clock ticks coarsely (a few
#: milliseconds) could give a rewrite within the same tick the same identity (git's "racily clean" entries)
RACY_NS = 2_000_000_000


class Checksums:
    """sha256 of files, remembered under each file's identity in this process and in the cache's memo.

    ``trust_memo=False`` (``--force``) trusts nothing remembered before it: each file is hashed again once by
    this object, and the memo mended (later readers then see the true value). The caller that holds it
    passes it to where files are hashed (``Runner(force=True)``); :data:`TRUSTED` is everyone else's."""

    def __init__(self, *, trust_memo: bool = True) -> None:
        self.trust_memo = trust_memo
        self._hashed: set[str] = set()  # identities this object hashed itself

    def sha256(self, path: Path) -> str:
        from harness.paths import cache_root

        identity = file_identity(path)
        if (self.trust_memo or identity in self._hashed) and identity in _HASHED:
            return _HASHED[identity]
        memo = cache_root() / "checksums" / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.sha256"
        value = ""
        if self.trust_memo:
            try:
                value = memo.read_text().strip()
            except OSError:
                pass
        if len(value) != 64:
            value = sha256_file(path)
            if time.time_ns() - int(identity.rsplit("|", 1)[1]) < RACY_NS:
                return value  # changed too recently to be told apart from a rewrite in the same tick
            try:
                atomic_write(memo, value + "\n")
            except OSError:
                pass  # a read-only cache only costs the re-hash next time
        _HASHED[identity] = value
        self._hashed.add(identity)
        return value

    def digests(self, paths: list[Path]) -> dict[str, str]:
        """sha256 of each file, keyed so that no file hides another: by its name where the names differ (a
        BEIR folder's corpus.jsonl, queries.jsonl, test.tsv), by its whole path where two share one (a
        corpus and topics both named data.tsv in different folders)."""
        names = [p.name for p in paths]
        keys = names if len(set(names)) == len(names) else [str(p) for p in paths]
        return {key: self.sha256(p) for key, p in zip(keys, paths, strict=True)}


#: the checksums of every caller that has not asked for files to be hashed again
TRUSTED = Checksums()


def cached_sha256(path: Path, checksums: Checksums = TRUSTED) -> str:
    """sha256 of a file, remembered under its identity (path, inode, size, mtime and ctime)."""
    return checksums.sha256(path)


def inside(root: Path, path: Path, what: str) -> Path:
    """``path``, refused unless it lies within ``root`` (a name with ``..`` or a leading ``/`` in it would
    write elsewhere)."""
    base = Path(os.path.abspath(root))
    target = Path(os.path.abspath(path))
    if target != base and base not in target.parents:
        from harness.errors import HarnessError

        raise HarnessError(f"{what}: {path} lies outside {root}; names may not contain '..' or start with '/'")
    return path
