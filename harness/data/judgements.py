"""Judgements of one split: graded qrels (trec_eval measures) or, for open-domain QA, answers
(``harness.odqa.evaluate.AnswerJudgements``). A dataset's evaluator is its judgements' kind, not its class:
``measure`` reads a measure name and refuses one the judgements cannot score; ``evaluate`` scores a run;
``judged_topics`` says which topics of the split are evaluated."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypedDict

from harness.errors import DataError, HarnessError
from harness.metrics import evaluate, parse_measure
from harness.metrics.measures import QRELS
from harness.trec import AnyRun, Qrels, read_qrels

if TYPE_CHECKING:
    from harness.data.readers import TopicsReader

#: per-query values of each measure: {measure: {qid: value}}
PerQuery = dict[str, dict[str, float]]


class EvaluationExtras(TypedDict, total=False):
    """What an evaluation reports besides the per-query values (the record keeps it)."""

    first_hit_rank: dict[str, int | None]  # open-domain QA: each question's first answer-holding rank


#: per-query values of each metric, and what else the evaluation reports
Evaluation = tuple[PerQuery, EvaluationExtras]


class Judgements(Protocol):
    """What judges a split's topics: ``kind`` is "qrels" or "answers" (a measure family's ``judgement``)."""

    @property
    def kind(self) -> str: ...

    def measure(self, name: str) -> tuple[str, int]: ...

    def evaluate(self, run: AnyRun, metrics: Sequence[str]) -> Evaluation: ...

    def judged_documents(self) -> set[str]: ...

    def judged_topics(self, topics: TopicsReader) -> dict[str, str]:
        """The topics of the split that these judgements judge (the ones a run is evaluated on)."""
        ...


@dataclass
class GradedJudgements:
    """Graded relevance judgements of one split (a qrels file: BEIR TSV or TREC; ``columns`` 3 or 4 holds it
    to one of them), scored with trec_eval's semantics (``harness.metrics``). ``given`` holds qrels made in
    Python (``harness.data.memory``): then ``path`` is only named, never read."""

    path: Path
    dataset_id: str = ""
    columns: int | None = None
    given: Qrels | None = field(default=None, repr=False, compare=False)
    _qrels: Qrels | None = field(default=None, init=False, repr=False, compare=False)

    kind = QRELS

    def qrels(self) -> Qrels:
        if self.given is not None:
            return self.given
        if self._qrels is None:
            self._qrels = read_qrels(self.path, self.columns)  # an empty file: DataError naming it
        return self._qrels

    def measure(self, name: str) -> tuple[str, int]:
        """The canonical name of a measure (``nDCG@10`` -> ``ndcg@10``) and its cut-off (0: none)."""
        measure = parse_measure(name)
        if measure.judgement != self.kind:
            raise HarnessError(f"metric {name!r} is judged by {measure.judgement}; {self.dataset_id or self.path} "
                               f"has relevance judgements: use e.g. R@{measure.k} or nDCG@10")
        return str(measure), measure.k or 0

    def evaluate(self, run: AnyRun, metrics: Sequence[str]) -> Evaluation:
        """Per-query values of ``metrics`` (ranking by score, then id, as trec_eval), keyed by their canonical
        names (as records keep them, however they were written), and no extras."""
        return evaluate(self.qrels(), run, [parse_measure(m) for m in metrics]), {}

    def judged_documents(self) -> set[str]:
        return {d for rels in self.qrels().values() for d in rels}

    def judged_topics(self, topics: TopicsReader) -> dict[str, str]:
        """The queries judged in these qrels, in the qrels' order (as BEIR's loader keeps them); a judged
        query missing from the topics is an error naming both files."""
        qrels = self.qrels()
        every = topics.topics()
        unknown = sorted(set(qrels) - set(every))
        if unknown:
            raise DataError(self.path, f"{len(unknown)} judged queries are missing from {topics.path.name} "
                            f"(first: {unknown[0]!r})", fix="use the queries file that belongs to these qrels")
        queries = {q: every[q] for q in qrels}
        if not queries:
            raise DataError(topics.path, "no queries to evaluate")
        return queries
