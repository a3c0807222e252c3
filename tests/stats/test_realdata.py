"""Acceptance on the real SciFact data in ../shared: the intact BM25 passes its regression rows, a
deliberately degraded copy (documents cut to their first 10 words) fails them with a readable table, and
`leaderboard --against published` shows BM25 beside Pyserini's 0.6789. Skipped when ../shared is absent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO, SHARED, needs_shared

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.java, needs_shared]


def cut_corpus(src: Path, dst: Path, words: int = 10) -> Path:
    """A copy of a BEIR folder whose documents keep only their first ``words`` words (title + text)."""
    (dst / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("queries.jsonl",):
        (dst / name).write_bytes((src / name).read_bytes())
    for q in (src / "qrels").glob("*.tsv"):
        (dst / "qrels" / q.name).write_bytes(q.read_bytes())
    with open(src / "corpus.jsonl", encoding="utf-8") as f, open(dst / "corpus.jsonl", "w", encoding="utf-8") as g:
        for line in f:
            doc = json.loads(line)
            text = " ".join(f"{doc.get('title', '')} {doc.get('text', '')}".split()[:words])
            g.write(json.dumps({"_id": doc["_id"], "title": "", "text": text}) + "\n")
    return dst


def harness_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HARNESS_DATA": str(SHARED / "data")}
    env.setdefault("HARNESS_CACHE", str(Path("/tmp") / "harness-test-cache"))
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=1800)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("results")


def test_intact_bm25_passes(results, tmp_path):
    junit = tmp_path / "junit.xml"
    proc = harness_cli("check", "--retriever", "bm25", "--output-dir", str(results), "--junit", str(junit))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OK: all 2 rows within tolerance" in proc.stdout
    assert 'failures="0"' in junit.read_text()


def test_degraded_bm25_fails_with_a_readable_table(results, tmp_path):
    cut = cut_corpus(SHARED / "data" / "beir" / "scifact", tmp_path / "scifact-cut10")
    proc = harness_cli("check", "--retriever", "bm25", "--output-dir", str(results),
                       "--dataset-override", f"beir/scifact={cut}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    # (the Lucene indexer's log4j lines also go to stdout; the table starts at its header)
    lines = proc.stdout.splitlines()
    lines = lines[next(i for i, ln in enumerate(lines) if ln.startswith("retriever ")):]
    assert lines[0].split() == ["retriever", "dataset", "split", "metric", "expected", "got", "delta", "tolerance",
                                "status", "note"]
    fails = [ln for ln in lines if " FAIL " in ln]
    assert len(fails) == 2 and all("(ran " in ln and "regression" in ln for ln in fails)
    assert lines[-1].startswith("NOT OK: 2 of 2 rows (2 FAIL)")


def test_leaderboard_against_published_shows_pyserini(results):
    proc = harness_cli("run", "--retriever", "bm25", "--dataset", "beir/scifact", "--output-dir", str(results))
    assert proc.returncode == 0, proc.stderr
    proc = harness_cli("leaderboard", "--output-dir", str(results), "--dataset", "beir/scifact",
                       "--against", "published")
    assert proc.returncode == 0, proc.stderr
    row = next(ln for ln in proc.stdout.splitlines() if ln.startswith("bm25 ") and "pyserini" in ln)
    assert row.split()[:7] == ["bm25", "beir/scifact", "test", "0.6789", "0.6789", "+0.0000", "bm25-flat"]
