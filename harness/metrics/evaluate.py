"""Evaluate a run against qrels: per-query values for each measure; aggregation is separate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from harness.errors import HarnessError
from harness.metrics.measures import Measure, parse_measure
from harness.trec import RunArrays, ranked

PerQuery = dict[str, float]
#: a run: today's dict (``harness.trec.Run``), or the same run as arrays (``harness.trec.read_run_arrays``)
AnyRun = Mapping[str, Mapping[str, float]] | RunArrays


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: AnyRun,
             measures: Iterable[str | Measure]) -> dict[str, PerQuery]:
    """Per-query values, ``{measure: {qid: value}}``, for every query in ``qrels``.

    A judged query that the run does not answer scores 0 (trec_eval ``-c``). Queries the run answers
    but the qrels do not judge are ignored, as trec_eval ignores them. Inputs are not modified.

    ``run`` is a dict or a :class:`~harness.trec.RunArrays`. The built-in measures are computed over arrays
    (``harness.metrics.vectorised``: the rank of each judged document, found once), equal bit for bit to their
    per-query functions; a measure registered without a vectorised form is computed query by query.
    """
    parsed = [m if isinstance(m, Measure) else parse_measure(m) for m in measures]
    out: dict[str, PerQuery] = {str(m): {} for m in parsed}
    by_query = [m for m in parsed if not _vectorised(m)]
    if len(by_query) < len(parsed):
        from harness.metrics.vectorised import VECTORISED, judged

        ranks = judged(qrels, run)
        for m in parsed:
            if m not in by_query and m.family.fn is not None:
                values = VECTORISED[m.family.fn](ranks, m.k, **m.arguments)
                out[str(m)] = dict(zip(ranks.qids, values.tolist(), strict=True))
    if by_query:
        hits = run.to_dict() if isinstance(run, RunArrays) else run
        for qid, rels in qrels.items():
            ranking = [d for d, _ in ranked(hits.get(qid, {}))]
            for m in by_query:
                out[str(m)][qid] = m(rels, ranking)
    return out


def _vectorised(m: Measure) -> bool:
    """Whether ``m`` has a vectorised form (every built-in measure judged by qrels)."""
    if m.family.fn is None:
        return False
    from harness.metrics.vectorised import VECTORISED

    return m.family.fn in VECTORISED


def mean(per_query: Mapping[str, float] | Sequence[float]) -> float:
    """The mean over queries; over no queries there is no number, and that is an error, not 0."""
    values = list(per_query.values()) if isinstance(per_query, Mapping) else list(per_query)
    if not values:
        raise HarnessError("a mean over no queries is not a number: nothing was judged (give qrels that judge "
                           "the run's queries)")
    return sum(values) / len(values)


def check_scorable(qrels: Mapping[str, Mapping[str, int]], run: AnyRun, *, qrels_source: str = "qrels",
                   run_source: str = "run") -> None:
    """Refuse what trec_eval refuses before a number is printed: no judgements, an empty run, or a run that
    answers none of the judged queries (a run of another collection or split). The sources name the files."""
    if not any(qrels.values()):
        raise HarnessError(f"{qrels_source}: no relevance judgements (a mean over no queries is not a number)")
    answered = _answered(run)
    if not answered:
        raise HarnessError(f"{run_source}: the run is empty (no retrieved document for any query)")
    if not any(q in answered for q in qrels):
        first = next(iter(answered))
        raise HarnessError(f"{run_source}: the run answers none of the {len(qrels)} judged queries of "
                           f"{qrels_source} (first judged: {next(iter(qrels))!r}, first in the run: {first!r}); "
                           "give the run and qrels of the same topics")


def _answered(run: AnyRun) -> dict[str, None]:
    """The queries ``run`` retrieves a document for, in its order."""
    if isinstance(run, RunArrays):
        hits = run.bounds[1:] - run.bounds[:-1]
        return dict.fromkeys(q for q, n in zip(run.qids, hits.tolist(), strict=True) if n)
    return dict.fromkeys(q for q, docs in run.items() if docs)
