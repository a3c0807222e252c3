"""Printed names back to what they name.

A run file and a model folder are named by their content, never by their path (``run:<file name>#<8 hex>``,
``<folder name>#<8 hex>``, ``sparse:<folder name>#<8 hex>``), so the name a table prints holds no path. To
take such a name back (``check``, ``compare``, a composition of printed names), the harness looks where it
has seen that name: every path it named so (remembered in ``<cache>/names/``) and, for a results folder
(:func:`look_in`), the paths its records were computed from. A candidate is used only when its content
still has the digest the name carries; otherwise the name is refused in one line saying what was looked at.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from harness.errors import HarnessError

#: ``<name>#<8 hex>``: the content digest a printed name carries
CONTENT_NAME = re.compile(r"^(?P<prefix>[a-z]+:)?(?P<own>[^#()]+)#(?P<digest>[0-9a-f]{8})$")

_SEEN: dict[str, set[str]] = {}
_FOLDERS: list[Path] = []
_READ: set[Path] = set()


def _memo(name: str) -> Path:
    from harness.paths import cache_root

    return cache_root() / "names" / f"{hashlib.sha256(name.encode()).hexdigest()[:24]}.json"


def remember(name: str, path: Path) -> None:
    """Note that ``name`` named the file or folder at ``path`` (in this process and in the cache)."""
    where = str(Path(path).resolve())
    if where in _SEEN.get(name, set()):
        return
    _SEEN.setdefault(name, set()).add(where)
    memo = _memo(name)
    try:
        old = json.loads(memo.read_text(encoding="utf-8")) if memo.is_file() else {}
        paths = sorted({*(old.get("paths") or []), where}) if isinstance(old, dict) else [where]
        from harness.io import atomic_write_json

        atomic_write_json(memo, {"name": name, "paths": paths})
    except (OSError, ValueError):
        pass  # a hint only: a name not remembered is still found through the records, or named by path


def look_in(output_dir: Path) -> None:
    """Also look for printed names in the records of ``output_dir`` (the paths they were computed from)."""
    folder = Path(output_dir)
    if folder not in _FOLDERS:
        _FOLDERS.append(folder)


def _learn(spec: object) -> None:
    if not isinstance(spec, dict):
        return
    name, model = spec.get("name"), spec.get("model")
    if isinstance(name, str) and isinstance(model, str) and CONTENT_NAME.match(name):
        _SEEN.setdefault(name, set()).add(model)
    for stage in spec.get("stages") or []:
        _learn(stage)


def candidates(name: str) -> list[Path]:
    """Where ``name`` has been seen: this process, the cache's memo, the records of :func:`look_in` folders."""
    for folder in _FOLDERS:
        if folder in _READ or not folder.is_dir():
            continue
        _READ.add(folder)
        for path in folder.rglob("*.json"):
            if path.name.startswith(".") or "imported" in path.relative_to(folder).parts[:1]:
                continue
            try:
                _learn(json.loads(path.read_text(encoding="utf-8")).get("retriever_spec"))
            except (OSError, ValueError, AttributeError):
                continue
    paths = set(_SEEN.get(name, set()))
    try:
        memo = json.loads(_memo(name).read_text(encoding="utf-8"))
        paths |= set(memo.get("paths") or []) if isinstance(memo, dict) else set()
    except (OSError, ValueError):
        pass
    return [Path(p) for p in sorted(paths)]


def find(name: str, named: Callable[[Path], str | None]) -> Path:
    """The file or folder that ``name`` (a content name) names: the first candidate whose name is ``name``
    again (``named(path)``: its name now, None when it is gone); otherwise one line saying what was looked at
    and how to name it instead."""
    tried = candidates(name)
    for path in tried:
        try:
            if named(path) == name:
                return path
        except (OSError, HarnessError):
            continue
    seen = f" (seen at {', '.join(str(p) for p in tried)}: gone, or other content now)" if tried else ""
    raise HarnessError(f"{name!r} names a file or folder by its content; none with that content is known here"
                       f"{seen}: name it by its path instead (run:PATH, hf:PATH), or give the --output-dir whose "
                       "records computed it")
