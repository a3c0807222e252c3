"""Evaluate a run against qrels: per-query values for each measure; aggregation is separate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from harness.errors import HarnessError
from harness.metrics.measures import Measure, parse_measure
from harness.trec import ranked

PerQuery = dict[str, float]


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]],
             measures: Iterable[str | Measure]) -> dict[str, PerQuery]:
    """Per-query values, ``{measure: {qid: value}}``, for every query in ``qrels``.

    A judged query that the run does not answer scores 0 (trec_eval ``-c``). Queries the run answers
    but the qrels do not judge are ignored, as trec_eval ignores them. Inputs are not modified.
    """
    parsed = [m if isinstance(m, Measure) else parse_measure(m) for m in measures]
    out: dict[str, PerQuery] = {str(m): {} for m in parsed}
    for qid, rels in qrels.items():
        ranking = [d for d, _ in ranked(run.get(qid, {}))]
        for m in parsed:
            out[str(m)][qid] = m(rels, ranking)
    return out


def mean(per_query: Mapping[str, float] | Sequence[float]) -> float:
    """The mean over queries; over no queries there is no number, and that is an error, not 0."""
    values = list(per_query.values()) if isinstance(per_query, Mapping) else list(per_query)
    if not values:
        raise HarnessError("a mean over no queries is not a number: nothing was judged (give qrels that judge "
                           "the run's queries)")
    return sum(values) / len(values)


def check_scorable(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], *,
                   qrels_source: str = "qrels", run_source: str = "run") -> None:
    """Refuse what trec_eval refuses before a number is printed: no judgements, an empty run, or a run that
    answers none of the judged queries (a run of another collection or split). The sources name the files."""
    if not any(qrels.values()):
        raise HarnessError(f"{qrels_source}: no relevance judgements (a mean over no queries is not a number)")
    if not any(run.values()):
        raise HarnessError(f"{run_source}: the run is empty (no retrieved document for any query)")
    if not any(run.get(q) for q in qrels):
        first = next(q for q in run if run[q])
        raise HarnessError(f"{run_source}: the run answers none of the {len(qrels)} judged queries of "
                           f"{qrels_source} (first judged: {next(iter(qrels))!r}, first in the run: {first!r}); "
                           "give the run and qrels of the same topics")
