"""Evaluate a run against qrels: per-query values for each measure; aggregation is separate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

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
    values = list(per_query.values()) if isinstance(per_query, Mapping) else list(per_query)
    return sum(values) / len(values) if values else 0.0
