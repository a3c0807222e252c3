"""BM25 on SQuAD v1.1 dev over its own 2,561 passages: top-k accuracy in the retriever's own order, equal
to what Pyserini's answer matching gives on the same run file read in its order (issue: hits re-ranked by
their six-decimal scores once moved question 3257's first hit)."""

from __future__ import annotations

import pytest

from harness.odqa.formats import iter_passages, read_questions
from harness.runner import run
from harness.trec import read_run
from tests.conftest import SHARED_DATA

SQUAD = SHARED_DATA / "odqa" / "squad-dev"

pytestmark = [pytest.mark.realdata, pytest.mark.slow, pytest.mark.java,
              pytest.mark.skipif(not (SQUAD / "passages.tsv").is_file(), reason=f"{SQUAD} absent")]


def test_bm25_squad_dev_accuracy_in_the_retrievers_order(tmp_path):
    (rec,) = run(["bm25"], [str(SQUAD)], None, tmp_path / "r", log=lambda m: None)
    got = {m: round(v, 4) for m, v in rec.metrics.items()}
    assert got == {"accuracy@1": 0.7199, "accuracy@5": 0.8941, "accuracy@20": 0.9522, "accuracy@100": 0.9764}
    assert rec.num_queries == 10570 and rec.documents_searched == 2561
    # q3257's 20th and 21st hits print the same six-decimal score (8.2047) but differ in Lucene's float32
    # scores; re-ranked by the rounded score and then by id, its answer passage fell to rank 21
    assert rec.first_hit_rank["3257"] == 20

    # Pyserini's own matching (pyserini.eval.evaluate_dpr_retrieval) on the run file as written
    from pyserini.eval.evaluate_dpr_retrieval import SimpleTokenizer, has_answers

    texts = {d.doc_id: d.text for d in iter_passages(SQUAD / "passages.tsv")}
    questions = {q.qid: q.answers for q in read_questions(SQUAD / "questions.qa.csv")}
    hits = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    tokenizer = SimpleTokenizer()
    top20 = [any(has_answers(texts[d], list(questions[q]), tokenizer, False) for d in list(hits.get(q, {}))[:20])
             for q in questions]
    assert sum(top20) / len(top20) == pytest.approx(rec.metrics["accuracy@20"], abs=1e-12)
