"""BM25 through pyserini on a tiny BEIR folder."""

from __future__ import annotations

import pytest

from harness.runner import run
from harness.trec import read_run

pytestmark = pytest.mark.java


def test_bm25_tiny_folder_ranks_the_source_document_first(tmp_path):
    from tests.conftest import make_tiny_beir

    tiny_beir = make_tiny_beir(tmp_path / "own", seed=101)  # a corpus of its own: the cache may be shared
    (rec,) = run(["bm25"], [str(tiny_beir)], ["ndcg@10", "recall@10"], tmp_path / "r", log=lambda m: None)
    assert rec.index["index"] == "built"
    hits = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    assert set(hits) == {f"q{i}" for i in range(8)}
    assert rec.metrics["recall@10"] > 0.5
    # scores are written as Pyserini writes them
    line = (tmp_path / "r" / rec.dataset / "test" / rec.run_file).read_text().splitlines()[0]
    assert len(line.split()[4].split(".")[1]) == 6
    (again,) = run(["bm25-multifield"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", log=lambda m: None)
    assert again.index["index"] == "built"


def test_the_jvm_never_starts_in_the_calling_process(tiny_beir, tmp_path):
    import subprocess
    import sys

    code = (f"import sys\nfrom harness.runner import run\n"
            f"run(['bm25'], [{str(tiny_beir)!r}], ['ndcg@10'], {str(tmp_path / 'r')!r}, log=lambda m: None)\n"
            "assert 'jnius' not in sys.modules, 'the JVM was loaded beside torch'\nprint('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
