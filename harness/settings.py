"""Typed settings, built once at the edge (CLI or Python API) and passed down unchanged.

Two objects, split by one question: can it change a number?

- :class:`EncodeSettings`: everything that can change a dense retriever's vectors or scores (numeric
  precision, forward implementation, batch policy, max length, pooling, normalisation, query and document
  prefixes, stored embedding dtype, and the searcher: exact or an approximate index). Every field is part
  of the retriever's fingerprint and the result record; those that decide the vectors key the embedding
  cache (the searcher does not: an index is built over the same vectors). A field left at ``None`` means
  "as the model's own files say".
- :class:`Execution`: how the work is carried out, never what it computes (device, shard size, threads,
  progress bars, whether model code may run). None of it is in a fingerprint; what was used is recorded
  in the provenance.

The reference computation is ``EncodeSettings()``: fp32 (TF32 off), the model's own recipe. A record of
any other computation is stored under its own file name and labelled in the leaderboard.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.errors import HarnessError

#: fp32 is the reference (TF32 off on CUDA); the others are speed modes: bf16x3 (CPUs with AMX), tf32 (fp32 weights
#: and activations with TensorFloat-32 matmuls on CUDA, Ampere and later), bf16 and fp16 autocast
PRECISIONS = ("fp32", "bf16x3", "tf32", "bf16", "fp16")
FORWARDS = ("auto", "transformers")
POOLINGS = ("mean", "cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
EMBED_DTYPES = ("float32", "float16")
INDEXES = ("exact", "hnsw", "ivfpq")  # harness.searchers: exact search, or an approximate FAISS index
#: who encodes: the harness's own recipe reader, or sentence-transformers itself (a cross-check, recorded)
BACKENDS = ("harness", "sentence-transformers")


@dataclass(frozen=True)
class EncodeSettings:
    """What a dense retriever computes beyond its model files. Defaults are the reference computation."""

    precision: str = "fp32"
    forward: str = "auto"
    batch_tokens: int | None = None  # None: the device's default policy
    max_length: int | None = None  # None: the model's own
    pooling: str | None = None
    normalize: bool | None = None
    query_prefix: str | None = None
    doc_prefix: str | None = None
    embed_dtype: str = "float32"
    index: str = "exact"  # the searcher: exact inner product, or an approximate index (harness.searchers)
    backend: str = "harness"  # who encodes: the harness's recipe reader, or sentence-transformers itself

    def __post_init__(self) -> None:
        _choice("--backend", self.backend, BACKENDS)
        _choice("--precision", self.precision, PRECISIONS)
        _choice("--forward", self.forward, FORWARDS)
        _choice("--embed-dtype", self.embed_dtype, EMBED_DTYPES)
        _choice("--index", self.index, INDEXES)
        if self.pooling is not None:
            _choice("--pooling", self.pooling, POOLINGS)
        for name in ("batch_tokens", "max_length"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise HarnessError(f"--{name.replace('_', '-')} must be a positive integer, not {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def changed(self) -> dict[str, Any]:
        """The fields that differ from the reference defaults, in declaration order."""
        ref = EncodeSettings()
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(ref, f.name)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EncodeSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise HarnessError(f"unknown encode settings {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass(frozen=True)
class Execution:
    """How a run is carried out. Nothing here changes a number."""

    device: str = "auto"
    shard_size: int = 50_000
    threads: int | None = None
    trust_remote_code: bool = False
    progress: bool = True
    #: time this many queries one at a time after the batch search (a dense retriever: encode + search each),
    #: for the record's latency p50 and p95; None: the batch only (the run's results are the same either way)
    latency: int | None = None

    def __post_init__(self) -> None:
        if self.latency is not None and (not isinstance(self.latency, int) or isinstance(self.latency, bool)
                                         or self.latency < 1):
            raise HarnessError(f"--latency must be a positive number of queries, not {self.latency!r}")
        if not isinstance(self.shard_size, int) or self.shard_size < 1:
            raise HarnessError(f"--shard-size must be at least 1, not {self.shard_size!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or isinstance(self.threads, bool)
                                         or self.threads < 1):
            raise HarnessError(f"--threads must be a whole number at least 1, not {self.threads!r}")


def settings_label(changed: dict[str, Any]) -> str:
    """``precision=bf16,max_length=256`` for the settings that differ from the reference ('' if none)."""
    return ",".join(f"{k}={_short(v)}" for k, v in changed.items())


def settings_digest(changed: dict[str, Any]) -> str:
    """A short, stable digest of non-reference settings (the suffix of record and run-file names)."""
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]


def _short(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 24 else text[:21] + "..."


def _choice(flag: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise HarnessError(f"{flag} must be one of {', '.join(allowed)}, not {value!r}")


#: the paired statistics' defaults (randomization test and percentile bootstrap), in compare, report and check alike
RESAMPLES = 10_000
SEED = 0

REFERENCE = EncodeSettings()
DEFAULT_EXECUTION = Execution()
