"""Evaluate a run against qrels: per-query values for each measure; aggregation is separate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.metrics.measures import Measure, expand_measures
from harness.trec import AnyRun, answered, as_dict, ranked, read_qrels, read_run_arrays

PerQuery = dict[str, float]


def evaluate(qrels: Mapping[str, Mapping[str, int]], run: AnyRun, measures: Iterable[str | Measure], *,
             rel: int | None = None) -> dict[str, PerQuery]:
    """Per-query values, ``{name: {qid: value}}``, for every query in ``qrels``, keyed by the names as given
    (``P@1``, ``P.1`` and ``p@1`` are one measure, each returned under its own name; a set such as ``beir`` or
    trec_eval's ``P.5,10`` under its members' names, :func:`~harness.metrics.measures.expand_measures`). ``rel``
    is trec_eval's ``-l``: the relevance level of every measure that takes one and does not give its own.

    A judged query that the run does not answer scores 0 (trec_eval ``-c``). Queries the run answers
    but the qrels do not judge are ignored, as trec_eval ignores them. Inputs are not modified.

    ``run`` is a dict or a :class:`~harness.trec.RunArrays`. The built-in measures are computed over arrays
    (``harness.metrics.vectorised``: the rank of each judged document, found once), equal bit for bit to their
    per-query functions; a measure registered without a vectorised form is computed query by query.
    """
    named = expand_measures(measures, rel)
    parsed = list(dict.fromkeys(m for _, m in named))
    by_query = [m for m in parsed if not _vectorised(m)]
    values: dict[Measure, PerQuery] = {m: {} for m in parsed}
    if len(by_query) < len(parsed):
        from harness.metrics.vectorised import VECTORISED, judged

        ranks = judged(qrels, run)
        for m in parsed:
            if m not in by_query and m.family.fn is not None:
                values[m] = dict(zip(ranks.qids, VECTORISED[m.family.fn](ranks, m.k, **m.arguments).tolist(),
                                     strict=True))
    if by_query:
        hits = as_dict(run)
        for qid, rels in qrels.items():
            ranking = [d for d, _ in ranked(hits.get(qid, {}))]
            for m in by_query:
                values[m][qid] = m(rels, ranking)
    out: dict[str, PerQuery] = {}
    for key, m in named:  # a measure asked for under two names: one dict each
        out[key] = values[m] if not any(values[m] is v for v in out.values()) else dict(values[m])
    return out


def evaluate_inputs(qrels: Mapping[str, Mapping[str, int]] | str | Path, run: AnyRun | str | Path,
                    measures: Iterable[str | Measure], *, rel: int | None = None) -> dict[str, PerQuery]:
    """:func:`evaluate` of qrels and a run given as objects or as files (``harness evaluate``'s and
    ``harness.evaluate``'s one reading): a qrels file read by :func:`~harness.trec.read_qrels`, a run file as
    arrays (:func:`~harness.trec.read_run_arrays`), refused as trec_eval refuses them (:func:`check_scorable`,
    naming the files)."""
    q = read_qrels(Path(qrels)) if isinstance(qrels, str | Path) else qrels
    r = read_run_arrays(Path(run)) if isinstance(run, str | Path) else run
    check_scorable(q, r, qrels_source=str(qrels) if isinstance(qrels, str | Path) else "qrels",
                   run_source=str(run) if isinstance(run, str | Path) else "run")
    return evaluate(q, r, measures, rel=rel)


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
    hits = answered(run)
    if not hits:
        raise HarnessError(f"{run_source}: the run is empty (no retrieved document for any query)")
    if not any(q in hits for q in qrels):
        first = next(iter(hits))
        raise HarnessError(f"{run_source}: the run answers none of the {len(qrels)} judged queries of "
                           f"{qrels_source} (first judged: {next(iter(qrels))!r}, first in the run: {first!r}); "
                           "give the run and qrels of the same topics")
