"""A content-keyed, sharded, resumable embedding cache.

A store lives in ``<cache>/embeddings/<key hash>/``. The key names everything that determines the
vectors (model revision or weights hash, tokenizer, encoder config, precision, dtype, text rule, corpus
checksum). Each shard is written as ``shard-NNNNN.npy`` (float32 or float16) + ``shard-NNNNN.ids`` and
sealed by ``shard-NNNNN.json`` holding both files' sha256 (and how the vectors were computed); a shard
without its seal, or whose files do not match it, is encoded again. A killed run therefore loses at most
the shard in progress. No pickle anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from harness.io import atomic_write, atomic_write_json, sha256_file

FORMAT = "harness-embeddings/1"


def key_hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


class EmbeddingStore:
    def __init__(self, root: Path, key: dict):
        self.key = key
        self.dir = Path(root) / key_hash(key)

    def _paths(self, i: int) -> tuple[Path, Path, Path]:
        stem = self.dir / f"shard-{i:05d}"
        return stem.with_suffix(".npy"), stem.with_suffix(".ids"), stem.with_suffix(".json")

    @property
    def manifest_path(self) -> Path:
        return self.dir / "manifest.json"

    def manifest(self) -> dict | None:
        try:
            with open(self.manifest_path, encoding="utf-8") as f:
                m = json.load(f)
        except (OSError, json.JSONDecodeError):
            return None
        return m if m.get("format") == FORMAT and m.get("key") == self.key else None

    @property
    def complete(self) -> bool:
        m = self.manifest()
        return m is not None and all(self.shard_ok(i, verify=False) for i in range(m["shards"]))

    def shard_ok(self, i: int, *, verify: bool = True) -> bool:
        npy, ids, seal = self._paths(i)
        try:
            with open(seal, encoding="utf-8") as f:
                meta = json.load(f)
            if not (npy.stat().st_size == meta["npy_bytes"] and ids.stat().st_size == meta["ids_bytes"]):
                return False
            return not verify or (sha256_file(npy) == meta["npy_sha256"] and sha256_file(ids) == meta["ids_sha256"])
        except (OSError, KeyError, json.JSONDecodeError):
            return False

    def write_shard(self, i: int, ids: list[str], vectors: np.ndarray, computed_with: dict | None = None) -> None:
        """Write shard ``i``; ``computed_with`` (how the vectors were computed) is kept in its seal."""
        npy, ids_path, seal = self._paths(i)
        self.dir.mkdir(parents=True, exist_ok=True)
        seal.unlink(missing_ok=True)
        tmp = npy.with_name(f".{npy.name}.{os.getpid()}.tmp")  # per process: two runs may write one shard
        with open(tmp, "wb") as f:
            np.save(f, np.ascontiguousarray(vectors), allow_pickle=False)
        tmp.replace(npy)
        atomic_write(ids_path, "\n".join(ids) + "\n")
        atomic_write_json(seal, {"n": len(ids), "npy_bytes": npy.stat().st_size, "ids_bytes": ids_path.stat().st_size,
                                 "npy_sha256": sha256_file(npy), "ids_sha256": sha256_file(ids_path),
                                 **({"computed_with": computed_with} if computed_with else {})})

    def computed_with(self) -> list[dict]:
        """The distinct ``computed_with`` entries of the sealed shards (a resumed store may hold several)."""
        m = self.manifest()
        found: list[dict] = []
        for i in range(m["shards"] if m else 0):
            try:
                with open(self._paths(i)[2], encoding="utf-8") as f:
                    entry = json.load(f).get("computed_with")
            except (OSError, json.JSONDecodeError):
                continue
            if entry and entry not in found:
                found.append(entry)
        return found

    def finish(self, shards: int, count: int, dim: int) -> None:
        atomic_write_json(self.manifest_path, {"format": FORMAT, "key": self.key, "shards": shards,
                                               "count": count, "dim": dim})

    def shards(self) -> Iterator[tuple[list[str], np.ndarray]]:
        """(ids, vectors as a read-only memory map) per shard, in corpus order."""
        m = self.manifest()
        if m is None:
            raise RuntimeError(f"embedding store {self.dir} is incomplete")
        for i in range(m["shards"]):
            npy, ids, _ = self._paths(i)
            yield ids.read_text(encoding="utf-8").splitlines(), np.load(npy, mmap_mode="r", allow_pickle=False)
