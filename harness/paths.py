"""Where the harness reads data and writes its caches.

- ``HARNESS_DATA``: the data root holding datasets as ``beir/<name>/`` and ``odqa/<name>/``. It may be
  read-only. Default: ``<cache>/data``.
- ``HARNESS_CACHE``: everything the harness writes besides results (indexes, embeddings, downloads,
  checksums). Default: the user cache dir (``~/.cache/harness`` on Linux).
- ``HARNESS_OFFLINE=1`` (or ``HF_HUB_OFFLINE=1``): never touch the network.

The data root and the cache can also be set once in the harness's configuration file (``harness config set
data PATH``; ``config.json`` in the platform's config folder, or ``HARNESS_CONFIG``), which the quickstart
writes, so a new shell finds what the quickstart used. An environment variable wins over the file;
``harness config`` shows each value and where it came from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import platformdirs

from harness.errors import HarnessError

#: the configuration keys and the environment variable that overrides each
SETTINGS = {"data": "HARNESS_DATA", "cache": "HARNESS_CACHE"}


def config_path() -> Path:
    env = os.environ.get("HARNESS_CONFIG")
    return Path(env).expanduser() if env else Path(platformdirs.user_config_dir("harness")) / "config.json"


_READ: dict[tuple[str, int, int], dict[str, str]] = {}  # (path, mtime, size) -> values: read once, not per call


def read_config() -> dict[str, str]:
    """The configuration file's values ({} when there is none); a broken file is one line naming it."""
    path = config_path()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise HarnessError(f"{path}: unreadable ({e.strerror or e})") from None
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _READ:
        _READ[key] = _parse_config(path)
    return dict(_READ[key])


def _parse_config(path: Path) -> dict[str, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise HarnessError(f"{path}: unreadable ({e.strerror or e})") from None
    try:
        values = json.loads(text)
    except ValueError:
        raise HarnessError(f"{path}: not valid JSON; fix it or delete it (harness config set rewrites it)") from None
    if not isinstance(values, dict) or not all(k in SETTINGS and isinstance(v, str) for k, v in values.items()):
        raise HarnessError(f"{path}: expected an object with string values for {', '.join(SETTINGS)}; fix it or "
                           "delete it")
    return values


def setting(key: str) -> tuple[str | None, str]:
    """(value, where it came from: the environment variable, the config file, or 'default')."""
    env = os.environ.get(SETTINGS[key])
    if env:
        return env, SETTINGS[key]
    value = read_config().get(key)
    return (value, str(config_path())) if value else (None, "default")


def cache_root() -> Path:
    """The writable cache directory (created on demand)."""
    value, _ = setting("cache")
    return Path(value).expanduser() if value else Path(platformdirs.user_cache_dir("harness"))


def data_root() -> Path:
    """The data root, possibly read-only."""
    value, _ = setting("data")
    return Path(value).expanduser() if value else cache_root() / "data"


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
