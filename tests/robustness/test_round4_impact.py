"""Exact or refuse, round 4 (issue 35), class 9: impact search takes a query of any length the model produces
(Lucene's clause limit is raised, as Pyserini raises it for impact search), and an engine failure is one line
naming the stage and the cause in the harness's words, not the engine's."""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.retrievers.sparse import SparseRetriever
from harness.runner import run
from harness.trec import read_run
from tests.test_sparse import tiny_mlm  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.java, pytest.mark.slow]


def test_a_query_with_more_terms_than_lucenes_clause_limit_is_searched(tiny_mlm, tiny_beir, tmp_path, monkeypatch):  # noqa: F811
    (plain,) = run([f"sparse:{tiny_mlm}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "a", log=lambda m: None)
    encode = SparseRetriever.encode

    def long_queries(self, texts, max_length, *, batched=True):
        vectors = encode(self, texts, max_length, batched=batched)
        if batched:  # documents: as they are
            return vectors
        # queries: 3000 more terms than the index holds (weight 1 each), over Lucene's default 1024 clauses;
        # terms no document has add nothing to any score
        return [{**v, **{f"unseen{i}": 1 for i in range(3000)}} for v in vectors]

    monkeypatch.setattr(SparseRetriever, "encode", long_queries)
    (long,) = run([f"sparse:{tiny_mlm}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "b", log=lambda m: None)
    assert read_run(tmp_path / "b" / long.dataset / "test" / long.run_file) == \
        read_run(tmp_path / "a" / plain.dataset / "test" / plain.run_file)
    assert long.metrics == plain.metrics


def test_an_engine_failure_names_the_stage_and_the_cause(tiny_mlm, tiny_beir, tmp_path, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # the index broken below is this test's own
    index = SparseRetriever.index

    def index_then_break(self, dataset):
        info = index(self, dataset)
        for f in self.index_dir(dataset).glob("segments*"):  # the index's commit point, gone before the search
            f.unlink()
        return info

    monkeypatch.setattr(SparseRetriever, "index", index_then_break)
    assert main(["run", "-r", f"sparse:{tiny_mlm}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("harness: error:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    (line,) = errors
    assert line.startswith("harness: error: impact search failed: the index at"), line
    assert "BM25" not in line and "JavaException" not in line and "fix: delete that folder" in line, line
