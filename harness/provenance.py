"""What a result was computed with: harness version and commit, packages, machine, command."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from harness.version import __version__

PACKAGES = ("torch", "transformers", "faiss-cpu", "pyserini", "numpy", "tokenizers", "sentence-transformers")


@functools.cache
def git_commit() -> str | None:
    """The commit of the harness source tree (with ``-dirty`` when it has uncommitted changes)."""
    src = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.TimeoutExpired):
        return None


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


#: one value of the environment a record keeps: a text (or None when unknown), or the package versions
EnvironmentValue = str | None | dict[str, str | None]


def environment() -> dict[str, EnvironmentValue]:
    """Harness version and commit, Python, platform, machine, package versions, the command and the time."""
    return {"harness_version": __version__, "git_commit": git_commit(), "python": sys.version.split()[0],
            "platform": platform.platform(), "machine": platform.machine(), "packages": package_versions(),
            "command": " ".join(sys.argv), "created": datetime.now(UTC).isoformat(timespec="seconds")}
