"""Judgements of one split: graded qrels (trec_eval measures) or, for open-domain QA, answers
(``harness.odqa.evaluate.AnswerJudgements``). A dataset's evaluator is its judgements' kind, not its class:
``measure`` reads a measure name and refuses one the judgements cannot score; ``evaluate`` scores a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.errors import HarnessError
from harness.metrics import evaluate, parse_measure
from harness.trec import Qrels, Run, read_qrels

#: per-query values of each metric, and what else the evaluation reports (ODQA: each question's first hit)
Evaluation = tuple[dict[str, dict[str, float]], dict[str, Any]]


class Judgements(Protocol):
    """What judges a split's topics: ``kind`` is "qrels" or "answers" (a measure family's ``judgement``)."""

    @property
    def kind(self) -> str: ...

    def measure(self, name: str) -> tuple[str, int]: ...

    def evaluate(self, run: Run, metrics: Sequence[str]) -> Evaluation: ...

    def judged_documents(self) -> set[str]: ...


@dataclass
class GradedJudgements:
    """Graded relevance judgements of one split (a qrels file: BEIR TSV or TREC), scored with trec_eval's
    semantics (``harness.metrics``)."""

    path: Path
    dataset_id: str = ""
    _qrels: Qrels | None = field(default=None, init=False, repr=False, compare=False)

    kind = "qrels"

    def qrels(self) -> Qrels:
        if self._qrels is None:
            self._qrels = read_qrels(self.path)  # an empty file: DataError naming it
        return self._qrels

    def measure(self, name: str) -> tuple[str, int]:
        """The canonical name of a measure (``nDCG@10`` -> ``ndcg@10``) and its cut-off (0: none)."""
        measure = parse_measure(name)
        if measure.judgement != self.kind:
            raise HarnessError(f"metric {name!r} is judged by answers (open-domain QA); {self.dataset_id or self.path} "
                               f"has relevance judgements: use e.g. R@{measure.k} or nDCG@10")
        return str(measure), measure.k or 0

    def evaluate(self, run: Run, metrics: Sequence[str]) -> Evaluation:
        """Per-query values of ``metrics`` (ranking by score, then id, as trec_eval) and no extras."""
        return evaluate(self.qrels(), run, metrics), {}

    def judged_documents(self) -> set[str]:
        return {d for rels in self.qrels().values() for d in rels}
