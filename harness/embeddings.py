"""A content-keyed, sharded, resumable embedding cache that verifies what it holds.

A store lives in ``<cache>/embeddings/<key hash>/``. The key names everything that determines the
vectors (the model files' content digest, the effective encoder recipe, precision and forward, batch
policy, dtype, text rule, corpus checksum). Shard ``i`` is ``shard-NNNNN.npy`` (float32 or float16) plus
``shard-NNNNN.ids.json`` (its document ids as a JSON list: no separator an id could contain), sealed by
``shard-NNNNN.json``, which states the shard's row range (``start``, ``n``), the digest of its ids and
both files' sha256. A shard is reused only when its seal matches the rows the corpus puts there now
(same start, same ids), so a rerun with another ``--shard-size`` re-encodes instead of mixing layouts. The
manifest is written only after the seals are checked to tile the corpus exactly (rows 0..count, no gap,
no overlap), and every read checks again that the rows it returns are the rows the manifest promises.
A killed run loses at most the shard in progress. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np
from filelock import FileLock

from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums, atomic_write, atomic_write_json, remove_stale_temporaries, with_filename

FORMAT = "harness-embeddings/2"


class Seal(TypedDict):
    """A shard's seal (``shard-NNNNN.json``): its rows, the digest of its ids, both files' sizes and checksums,
    and how its vectors were computed."""

    start: int
    n: int
    ids_digest: str
    npy_bytes: int
    ids_bytes: int
    npy_sha256: str
    ids_sha256: str
    computed_with: NotRequired[dict[str, Any]]


class Manifest(TypedDict):
    """A finished store's manifest, written once the seals tile the corpus."""

    format: str
    key: dict[str, Any]
    shards: int
    count: int
    dim: int


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps({"format": FORMAT, **key}, sort_keys=True).encode()).hexdigest()[:24]


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of a list of ids, as the ids file stores them (JSON, so no id can be split or merged)."""
    return hashlib.sha256(_ids_bytes(ids)).hexdigest()


def _ids_bytes(ids: Sequence[str]) -> bytes:
    return json.dumps(list(ids), ensure_ascii=False).encode("utf-8")


def refuse_nonfinite(vectors: np.ndarray, ids: Sequence[str], what: str) -> None:
    """Stop, naming the first ``what`` (document, query) whose vector holds NaN or infinity: a search over
    it would rank by nothing and still print a number. Nothing of the batch is stored."""
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=tuple(range(1, vectors.ndim))))
    if bad.size:
        raise HarnessError(f"the encoder gave non-finite values (NaN or infinity) for {bad.size} {what}(s), first "
                           f"{ids[int(bad[0])]!r}; nothing was stored or scored. Check the model's weights, or run "
                           "in --precision fp32")


class EmbeddingStore:
    """A corpus's vectors under one key, in sealed shards. Checksums go through ``checksums``: remembered
    under each file's identity (path, inode, size, mtime, ctime), so a store is hashed once after it is
    written and again only when a file of it changed; ``--force`` passes one that remembers nothing."""

    def __init__(self, root: Path, key: dict[str, Any], checksums: Checksums = TRUSTED):
        self.key = json.loads(json.dumps(key))  # as the manifest stores it (tuples become lists)
        self.dir = Path(root) / key_hash(key)
        self.checksums = checksums

    def _paths(self, i: int) -> tuple[Path, Path, Path]:
        stem = self.dir / f"shard-{i:05d}"
        return stem.with_suffix(".npy"), stem.with_suffix(".ids.json"), stem.with_suffix(".json")

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def manifest(self) -> Manifest | None:
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                m: Manifest = json.load(f)
        except (OSError, json.JSONDecodeError):
            return None
        return m if isinstance(m, dict) and m.get("format") == FORMAT and m.get("key") == self.key else None

    @property
    def complete(self) -> bool:
        """A manifest whose shards are all sealed, match their seals (sizes and checksums) and tile its rows."""
        m = self.manifest()
        if m is None:
            return False
        seals = [self.seal(i) for i in range(m["shards"])]
        sealed = [s for s in seals if s is not None]
        return len(sealed) == len(seals) and _tiling_error(sealed, m["count"]) is None

    def seal(self, i: int, *, verify: bool = True) -> Seal | None:
        """Shard ``i``'s seal when its files match it (sizes; with ``verify`` also checksums), else None."""
        npy, ids, seal = self._paths(i)
        try:
            with open(seal, encoding="utf-8") as f:
                meta: Seal = json.load(f)
            if not (npy.stat().st_size == meta["npy_bytes"] and ids.stat().st_size == meta["ids_bytes"]):
                return None
            if verify and not (self.checksums.sha256(npy) == meta["npy_sha256"]
                               and self.checksums.sha256(ids) == meta["ids_sha256"]):
                return None
            int(meta["start"]), int(meta["n"]), str(meta["ids_digest"])
        except (OSError, KeyError, TypeError, ValueError, json.JSONDecodeError):
            return None
        return meta

    def shard_ok(self, i: int, start: int | None = None, ids: Sequence[str] | None = None, *,
                 verify: bool = True) -> bool:
        """Whether shard ``i`` is sealed, intact and, when given, holds exactly rows ``start`` onwards with
        these ``ids`` (so it can be reused for them)."""
        meta = self.seal(i, verify=verify)
        if meta is None:
            return False
        if start is not None and meta["start"] != start:
            return False
        return ids is None or (meta["n"] == len(ids) and meta["ids_digest"] == ids_digest(ids))

    def discard(self) -> None:
        """Unseal the whole store (manifest and every shard's seal), so that each shard is encoded again: for an
        encoder whose content the harness cannot read (a declared model object), whose store ``--force`` must
        not trust. A run killed after it resumes from the shards sealed since."""
        if not self.dir.is_dir():
            return
        with self._lock():
            self.manifest_path.unlink(missing_ok=True)
            for seal in self.dir.glob("shard-*.json"):
                if ".ids" not in seal.suffixes:
                    seal.unlink(missing_ok=True)

    def _lock(self) -> FileLock:
        """Writers of one store take turns (two runs may encode the same corpus at once); readers need no
        lock, since a sealed shard is never rewritten."""
        self.dir.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.dir / ".write.lock"))

    def write_shard(self, i: int, start: int, ids: Sequence[str], vectors: np.ndarray,
                    computed_with: dict[str, Any] | None = None) -> None:
        """Write shard ``i`` (rows ``start`` .. ``start + len(ids)``); ``computed_with`` goes in its seal.
        A shard that another process sealed for the same rows meanwhile is kept as it is."""
        if vectors.shape[0] != len(ids):
            raise HarnessError(f"shard {i}: {vectors.shape[0]} vectors for {len(ids)} ids (an encoder bug)")
        refuse_nonfinite(vectors, ids, "document")
        with self._lock():
            if self.shard_ok(i, start, ids):
                return
            self._write_shard(i, start, ids, vectors, computed_with)

    def _write_shard(self, i: int, start: int, ids: Sequence[str], vectors: np.ndarray,
                     computed_with: dict[str, Any] | None) -> None:
        npy, ids_path, seal = self._paths(i)
        seal.unlink(missing_ok=True)  # a torn write must never pass for the old seal's shard
        tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp")  # named by process: a killed one's is found
        try:
            with open(tmp, "wb") as f:
                np.save(f, np.ascontiguousarray(vectors), allow_pickle=False)
            _check_written(tmp, vectors)
            tmp.replace(npy)
        except OSError as e:
            raise with_filename(e, npy) from None
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write(ids_path, _ids_bytes(ids))
        atomic_write_json(seal, {"start": start, "n": len(ids), "ids_digest": ids_digest(ids),
                                 "npy_bytes": npy.stat().st_size, "ids_bytes": ids_path.stat().st_size,
                                 "npy_sha256": self.checksums.sha256(npy),
                                 "ids_sha256": self.checksums.sha256(ids_path),
                                 **({"computed_with": computed_with} if computed_with else {})})

    def content_digest(self) -> str:
        """sha256 over the sealed shards' vector and id checksums, in order: what an index built from this store
        is tied to (a store encoded again with other vectors, of the same count or not, has another)."""
        m = self.manifest()
        if m is None:
            raise HarnessError(f"embedding store {self.dir} is incomplete; rerun to finish encoding")
        h = hashlib.sha256()
        for i in range(m["shards"]):
            meta = self.seal(i, verify=False)
            if meta is None:
                raise HarnessError(f"embedding store {self.dir}: shard {i} does not match its seal; rerun with --force")
            h.update(f"{meta['npy_sha256']} {meta['ids_sha256']}\n".encode())
        return h.hexdigest()

    def computed_with(self) -> list[dict[str, Any]]:
        """The distinct ``computed_with`` entries of the sealed shards (a resumed store may hold several)."""
        m = self.manifest()
        found: list[dict[str, Any]] = []
        for i in range(m["shards"] if m else 0):
            try:
                with open(self._paths(i)[2], encoding="utf-8") as f:
                    entry = json.load(f).get("computed_with")
            except (OSError, json.JSONDecodeError):
                continue
            if entry and entry not in found:
                found.append(entry)
        return found

    def finish(self, shards: int, count: int, dim: int, *, verify: bool = False) -> None:
        """Write the manifest after checking that shards ``0 .. shards-1`` are sealed and tile rows
        ``0 .. count`` exactly; shard files beyond them (an older layout) are removed."""
        with self._lock():
            self._finish(shards, count, dim, verify)

    def _finish(self, shards: int, count: int, dim: int, verify: bool) -> None:
        seals = [self.seal(i, verify=verify) for i in range(shards)]
        missing = [i for i, s in enumerate(seals) if s is None]
        if missing:
            raise HarnessError(f"embedding store {self.dir}: shard {missing[0]} is missing or corrupt "
                               f"({len(missing)} of {shards}); rerun to encode it again")
        problem = _tiling_error([s for s in seals if s is not None], count)
        if problem:
            raise HarnessError(f"embedding store {self.dir}: {problem}; rerun with --force to encode it again")
        remove_stale_temporaries(self.dir)
        for stale in self.dir.glob("shard-*"):
            stem = stale.name.split(".")[0]
            if stem[6:].isdigit() and int(stem[6:]) >= shards:
                stale.unlink(missing_ok=True)
        atomic_write_json(self.manifest_path, {"format": FORMAT, "key": self.key, "shards": shards,
                                               "count": count, "dim": dim})

    def shards(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, vectors as a read-only memory map) per shard, in corpus order; every shard is checked
        against its seal's row count, and together they must give the manifest's count."""
        for i, meta, ids, vectors, rows in self._opened_shards():
            if meta is None or meta["start"] != rows or not (len(ids) == meta["n"] == vectors.shape[0]):
                raise self._unsealed(i)
            yield ids, vectors

    def _opened_shards(self) -> Iterator[tuple[int, Seal | None, list[str], np.ndarray, int]]:
        """(shard number, its seal, its ids, its array as a read-only memory map, the rows before it) per shard,
        in corpus order: what every reader of the store starts from. After the last shard, the rows must be
        the manifest's count."""
        m = self.manifest()
        if m is None:
            raise HarnessError(f"embedding store {self.dir} is incomplete; rerun to finish encoding")
        rows = 0
        for i in range(m["shards"]):
            npy, ids_path, _ = self._paths(i)
            meta = self.seal(i, verify=False)
            try:
                ids = json.loads(ids_path.read_text(encoding="utf-8"))
                array = np.load(npy, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise self._unreadable(i, e) from None
            yield i, meta, ids, array, rows
            rows += len(ids)
        if rows != m["count"]:
            raise HarnessError(f"embedding store {self.dir}: its shards hold {rows} rows, the manifest {m['count']}")

    def _unreadable(self, i: int, e: Exception) -> HarnessError:
        return HarnessError(f"embedding store {self.dir}: shard {i} is unreadable ({e}); rerun with --force")

    def _unsealed(self, i: int) -> HarnessError:
        return HarnessError(f"embedding store {self.dir}: shard {i} does not hold the rows its seal states; "
                            "rerun with --force")


def _check_written(path: Path, vectors: np.ndarray) -> None:
    """numpy's writer can stop short without an error (a full disk, a file size limit): check that the file
    holds the whole array before it is sealed."""
    import errno

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(f)
            expected = f.tell() + vectors.nbytes
    except ValueError:
        shape, expected = (), -1
    if tuple(shape) != vectors.shape or size != expected:
        raise OSError(errno.ENOSPC, f"wrote {size} bytes of {max(expected, vectors.nbytes)} (disk full?)")


def _tiling_error(seals: list[Seal], count: int) -> str | None:
    """Why the seals do not cover rows 0..count exactly, in order; None when they do."""
    row = 0
    for i, meta in enumerate(seals):
        if meta["start"] != row:
            return f"shard {i} starts at row {meta['start']}, expected {row} (shards of another layout)"
        row += meta["n"]
    if row != count:
        return f"the shards hold {row} rows, the corpus has {count}"
    return None


class TokenSeal(Seal):
    """A token store's seal: a shard's seal and its offsets file's size and checksum."""

    offsets_bytes: int
    offsets_sha256: str


class TokenStore(EmbeddingStore):
    """The token vectors of a late-interaction (ColBERT) model in the embedding store's shards: shard ``i``'s
    vector file holds its documents' token vectors one after another (a flat tokens x dim matrix), and
    ``shard-NNNNN.offsets.npy`` the int64 row where each document starts (``n + 1`` values, the last the token
    count), sealed with the shard. A shard is written from a padded (documents x width x dim) array whose
    all-zero rows are padding (an L2-normalised token vector is never zero). Resuming, tiling and checking are
    the embedding store's; the manifest's ``dim`` is the token vectors' width."""

    def __init__(self, root: Path, key: dict[str, Any], dim: int, checksums: Checksums = TRUSTED):
        super().__init__(root, key, checksums)
        self.dim = dim

    def _offsets_path(self, i: int) -> Path:
        return self.dir / f"shard-{i:05d}.offsets.npy"

    def seal(self, i: int, *, verify: bool = True) -> Seal | None:
        """The shard's seal when its files match it; the offsets file's checksum is checked always, ``verify``
        or not (``n + 1`` int64 values: cheap, and an offsets file edited in place, same size and still
        increasing, would move every document boundary). A mismatch is a damaged shard: not complete, so it
        is encoded again, and refused where it is read."""
        meta = super().seal(i, verify=verify)
        path = self._offsets_path(i)
        try:
            if meta is None or path.stat().st_size != meta.get("offsets_bytes"):
                return None
            if self.checksums.sha256(path) != meta.get("offsets_sha256"):
                return None
        except OSError:
            return None
        return meta

    def _write_shard(self, i: int, start: int, ids: Sequence[str], vectors: np.ndarray,
                     computed_with: dict[str, Any] | None) -> None:
        if vectors.ndim != 3 or vectors.shape[2] != self.dim:
            raise HarnessError(f"shard {i}: token vectors of shape {vectors.shape}, expected (documents, width, "
                               f"{self.dim}) (an encoder bug)")
        kept = np.abs(vectors).max(axis=2) > 0 if vectors.size else np.zeros(vectors.shape[:2], dtype=bool)
        counts = kept.sum(axis=1)
        if counts.size and int(counts.min()) == 0:
            raise HarnessError(f"shard {i}: document {ids[int(np.argmin(counts))]!r} has no token vector (every "
                               "token skipped by the model's skiplist, or projected to zero); nothing of the shard "
                               "was stored")
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        path = self._offsets_path(i)
        self._paths(i)[2].unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.save(f, offsets, allow_pickle=False)
            tmp.replace(path)
        except OSError as e:
            raise with_filename(e, path) from None
        finally:
            tmp.unlink(missing_ok=True)
        super()._write_shard(i, start, ids, vectors[kept], computed_with)
        seal = self._paths(i)[2]
        meta = json.loads(seal.read_text(encoding="utf-8"))
        atomic_write_json(seal, {**meta, "offsets_bytes": path.stat().st_size,
                                 "offsets_sha256": self.checksums.sha256(path)})

    def finish(self, shards: int, count: int, dim: int, *, verify: bool = False) -> None:
        super().finish(shards, count, self.dim, verify=verify)  # the token width, not the padded one

    def shards(self) -> Iterator[tuple[list[str], np.ndarray]]:
        raise HarnessError(f"embedding store {self.dir} holds token vectors (ColBERT); read it with token_shards()")

    def token_shards(self) -> Iterator[tuple[list[str], np.ndarray, np.ndarray]]:
        """(ids, token vectors as a read-only memory map, offsets) per shard, in corpus order, each checked
        against its seal and the offsets against the token rows."""
        for i, meta, ids, tokens, rows in self._opened_shards():
            try:
                offsets = np.load(self._offsets_path(i), allow_pickle=False)
            except (OSError, ValueError) as e:
                raise self._unreadable(i, e) from None
            if meta is None or meta["start"] != rows or len(ids) != meta["n"] or offsets.shape != (len(ids) + 1,) \
                    or offsets[0] != 0 or offsets[-1] != tokens.shape[0] or bool((np.diff(offsets) <= 0).any()):
                raise self._unsealed(i)
            yield ids, tokens, offsets
