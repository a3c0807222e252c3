"""Top-k accuracy for open-domain QA: per-question values from answer matching, aggregation separate.

accuracy@k of a question is 1 when one of its first k retrieved passages holds an answer (DPR's
``has_answer`` on the passage text, see ``harness.odqa.match``), else 0; the mean over questions is DPR's
"top-k retrieval accuracy" (Karpukhin et al. 2020, Table 2). Rankings are the run's own order, as every
stage reads a run file (``harness.trec.read_run``: by score, equal scores in the file's line order, which is
the retriever's). Equal scores are not re-sorted by id: DPR and Pyserini score a retriever's ranking as it
came, and breaking the ties of rounded scores by id would reorder hits whose scores differ below the printed
precision. The first-hit rank (1-based, None when no retrieved
passage matches) is kept per question so any k up to the depth can be computed later without rematching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Protocol

from harness.data.judgements import Evaluation, PerQuery
from harness.data.registry import EvalProtocol, OdqaProtocol
from harness.errors import HarnessError
from harness.metrics.measures import ANSWERS, parse_measure
from harness.odqa.match import _answer_tokens, _contains, has_answer, tokens
from harness.trec import AnyRun, as_dict

if TYPE_CHECKING:
    from harness.data.corpus import Doc
    from harness.data.readers import TopicsReader


class AnsweredDataset(Protocol):
    """What evaluation reads of an open-domain QA dataset (``harness.odqa.dataset.OdqaDataset``)."""

    @property
    def protocol(self) -> EvalProtocol: ...

    def answers(self) -> dict[str, tuple[str, ...]]: ...

    def corpus(self) -> Iterator[Doc]: ...


DEFAULT_METRICS = ["accuracy@1", "accuracy@5", "accuracy@20", "accuracy@100"]


def parse_accuracy(name: str) -> int:
    """The k of ``Accuracy@k`` (also ``accuracy@k``, ``acc@k``, ``top@k``, ``top-20 accuracy``), read by the
    one measure parser; a measure judged by relevance judgements is refused."""
    measure = parse_measure(name)
    if measure.judgement != ANSWERS or measure.k is None:
        raise HarnessError(f"metric {name!r} does not apply to open-domain QA datasets; they are scored with "
                           "accuracy@k (e.g. accuracy@20)")
    return measure.k


def canonical(name: str) -> str:
    return f"accuracy@{parse_accuracy(name)}"


def passage_texts(passages: Iterable[Doc], wanted: set[str]) -> dict[str, str]:
    """Texts of the ``wanted`` passage ids, from one pass over the streamed corpus."""
    out: dict[str, str] = {}
    with _bar(None, "read retrieved passages", "passage") as bar:
        for doc in passages:
            bar.update(1)
            if doc.doc_id in wanted:
                out[doc.doc_id] = doc.text
                if len(out) == len(wanted):
                    break
    return out


def _bar(total: int | None, desc: str, unit: str) -> Any:
    """A progress bar on stderr (harness.progress: off with TQDM_DISABLE=1)."""
    from harness.progress import progress_bar

    return progress_bar(total, desc, unit)


@lru_cache(maxsize=200_000)
def _text_tokens(text: str) -> tuple[str, ...]:
    return tuple(tokens(text))


def first_hits(answers: Mapping[str, Sequence[str]], run: Mapping[str, Mapping[str, float]],
               texts: Mapping[str, str], mode: str = "string") -> dict[str, int | None]:
    """Per question, the 1-based rank of the first retrieved passage holding an answer (None: none does)."""
    out: dict[str, int | None] = {}
    with _bar(len(answers), "match answers", "question") as bar:
        for qid, answer_list in answers.items():
            bar.update(1)
            out[qid] = _first_hit(answer_list, list(run.get(qid, {})), texts, mode)  # rank order
    return out


def _first_hit(answer_list: Sequence[str], ranking: list[str], texts: Mapping[str, str], mode: str) -> int | None:
    wanted = [_answer_tokens(a) for a in answer_list] if mode == "string" else []
    for rank, doc in enumerate(ranking, start=1):
        text = texts.get(doc)
        if text is None:
            raise HarnessError(f"run retrieves passage {doc!r}, which is not in the corpus")
        hit = (any(_contains(_text_tokens(text), w) for w in wanted) if mode == "string"
               else has_answer(answer_list, text, mode))
        if hit:
            return rank
    return None


def accuracy(first_hit: Mapping[str, int | None], k: int) -> dict[str, float]:
    """Per-question accuracy@k from first-hit ranks."""
    return {q: 1.0 if r is not None and r <= k else 0.0 for q, r in first_hit.items()}


def evaluate_answers(answers: Mapping[str, Sequence[str]], run: Mapping[str, Mapping[str, float]],
                     texts: Mapping[str, str], metrics: Sequence[str], mode: str = "string"
                     ) -> tuple[PerQuery, dict[str, int | None]]:
    """({metric: {qid: value}}, {qid: first-hit rank}) for every question in ``answers``."""
    hits = first_hits(answers, run, texts, mode)
    return {canonical(m): accuracy(hits, parse_accuracy(m)) for m in metrics}, hits


def evaluate_dataset(dataset: AnsweredDataset, run: Mapping[str, Mapping[str, float]], metrics: Sequence[str]
                     ) -> tuple[PerQuery, dict[str, int | None]]:
    """Score ``run`` on an open-domain QA dataset: stream its passages once for the retrieved ones' texts."""
    match = dataset.protocol.match if isinstance(dataset.protocol, OdqaProtocol) else "string"
    return AnswerJudgements(dataset.answers(), dataset.corpus, match).score(run, metrics)


class AnswerJudgements:
    """The judgements of an open-domain QA split: each question's answers, matched against the text of the
    passages a run retrieves (DPR's has_answer; ``match`` "string", or "regex" for CuratedTREC), the passages
    streamed from ``passages`` when a run is scored; Accuracy@k, each question's first-hit rank recorded."""

    kind = ANSWERS

    def __init__(self, answers: Mapping[str, Sequence[str]], passages: Callable[[], Iterable[Doc]],
                 match: str = "string"):
        self.answers = answers
        self.passages = passages
        self.match = match

    def measure(self, name: str) -> tuple[str, int]:
        """``accuracy@k`` (also ``Accuracy@k``, ``acc@k``, ``top@k``) and its cut-off k."""
        return canonical(name), parse_accuracy(name)

    def score(self, run: Mapping[str, Mapping[str, float]], metrics: Sequence[str]
              ) -> tuple[PerQuery, dict[str, int | None]]:
        """({metric: {qid: value}}, {qid: first-hit rank}): one pass over the passages for the retrieved ones."""
        wanted = {d for q in self.answers for d in run.get(q, {})}
        texts = passage_texts(self.passages(), wanted)
        return evaluate_answers(self.answers, run, texts, metrics, self.match)

    def evaluate(self, run: AnyRun, metrics: Sequence[str]) -> Evaluation:
        per_query, first_hit = self.score(as_dict(run), metrics)
        return per_query, {"first_hit_rank": first_hit}

    def judged_documents(self) -> set[str]:
        return set()  # answers are matched against passage text, no passage is judged by id

    def judged_topics(self, topics: TopicsReader) -> dict[str, str]:
        """Every question: each has its answers."""
        return topics.topics()
