"""Where the harness reads data and writes its caches.

- ``HARNESS_DATA``: the data root holding datasets as ``beir/<name>/`` and ``odqa/<name>/``. It may be
  read-only. Default: ``<cache>/data``.
- ``HARNESS_CACHE``: everything the harness writes besides results (indexes, embeddings, downloads,
  checksums). Default: the user cache dir (``~/.cache/harness`` on Linux).
- ``HARNESS_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``): never touch the network.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_root() -> Path:
    """The writable cache directory (created on demand)."""
    env = os.environ.get("HARNESS_CACHE")
    root = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir("harness"))
    return root


def data_root() -> Path:
    """The data root (``HARNESS_DATA``), possibly read-only."""
    env = os.environ.get("HARNESS_DATA")
    return Path(env).expanduser() if env else cache_root() / "data"


def download_root() -> Path:
    """Where fetched datasets go: the data root if writable, else ``<cache>/data``."""
    root = data_root()
    probe = root if root.exists() else root.parent
    if probe.exists() and os.access(probe, os.W_OK):
        return root
    return cache_root() / "data"


def data_roots() -> list[Path]:
    """Every folder searched for datasets, in order (the data root, then the cache's copy)."""
    roots = [data_root()]
    fallback = cache_root() / "data"
    if fallback.resolve() != roots[0].resolve():
        roots.append(fallback)
    return roots


def offline() -> bool:
    """True when the user asked for no network access."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HARNESS_OFFLINE", "HF_HUB_OFFLINE"))
