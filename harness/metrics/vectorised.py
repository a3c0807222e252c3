"""trec_eval's measures over arrays: the rank of every judged document, found once per run, and each measure a
few array operations on those ranks, equal to its per-query function (``harness.metrics.functions``) bit for bit.

What every measure reads of a ranking is where its judged documents are: :class:`Judged` holds, for each
judgement of the qrels, the 0-based rank of its document in trec_eval's order (score descending, equal scores
by document id descending; -1 when the run does not retrieve it) and, for each judged query, how many documents
the run retrieved. A measure never looks at an unjudged hit, so a run of 7M hits is a few hundred thousand
numbers here. :func:`judged` finds the ranks from a run held as arrays (:class:`harness.trec.RunArrays`: a
hash join of (query, document) keys, no Python object per hit) or as today's dict (per query: the judged
documents looked up, their ranks counted on the sorted scores).

Bit for bit: each sum is accumulated in rank order, one term after another (``np.bincount`` adds its weights
in the order given, as the per-query functions' loops do), the discounts are ``math.log2``'s own values and the
gains Python's ``2.0 ** grade - 1.0``, and every division is the same IEEE division of the same two doubles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.metrics import functions
from harness.trec import JoinIndex, RunArrays, _mix, pack_ids, ranked

Ints = NDArray[np.int64]
Floats = NDArray[np.float64]
#: a vectorised measure: ``fn(judged, k, **parameters)`` -> one value per judged query, in the qrels' order
VectorFn = Callable[..., Floats]

#: a query whose judged documents tie with more hits than this is ranked by sorting all of its hits
_SORT_QUERY_AT = 8


class Counted:
    """The retrieved judged documents of every query in rank order: ``query``, ``grade`` and ``rank`` (0-based;
    with ``judged_only``, the rank among the judged documents alone, trec_eval's -J), and ``length``, each
    query's ranking's length (what P divides by without a cut-off)."""

    def __init__(self, judged: Judged, judged_only: bool) -> None:
        sel = np.flatnonzero(judged.rank >= 0)
        order = sel[np.lexsort((judged.rank[sel], judged.query[sel]))]
        self.query, self.grade, self.rank = judged.query[order], judged.grade[order], judged.rank[order]
        if judged_only:
            self.rank = _place(self.query)
            self.length = np.bincount(self.query, minlength=len(judged.qids))
        else:
            self.length = judged.retrieved

    def within(self, k: int | None, rel: int | None = None) -> NDArray[np.bool_]:
        """Which documents count: in the top k, and with a grade of at least ``rel`` (None: any)."""
        keep = self.rank < k if k is not None else np.ones(len(self.rank), dtype=bool)
        return keep if rel is None else keep & (self.grade >= rel)


class Judged:
    """Every judgement of the qrels with the rank of its document in the run (see the module docstring):
    ``qids`` the judged queries in the qrels' order, ``retrieved`` the hits of each, and per judgement (grouped by
    query, in the qrels' order) its ``query`` (an index into ``qids``), ``grade`` and ``rank``."""

    def __init__(self, qids: list[str], retrieved: Ints, query: Ints, grade: Ints, rank: Ints) -> None:
        self.qids, self.retrieved, self.query, self.grade, self.rank = qids, retrieved, query, grade, rank

    @cached_property
    def plain(self) -> Counted:
        return Counted(self, judged_only=False)

    @cached_property
    def judged_only(self) -> Counted:
        return Counted(self, judged_only=True)

    def counted(self, judged_only: bool) -> Counted:
        return self.judged_only if judged_only else self.plain

    def relevant(self, rel: int) -> Ints:
        """The number of judged documents with a grade of at least ``rel``, per query."""
        return np.bincount(self.query[self.grade >= rel], minlength=len(self.qids))


def judged(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]] | RunArrays) -> Judged:
    """The ranks of every judged document in ``run`` (arrays or a dict; see the module docstring)."""
    if isinstance(run, RunArrays):
        return _from_arrays(qrels, run) if run.source is None else _from_dict(qrels, run.source)
    return _from_dict(qrels, run)


def _flat(qrels: Mapping[str, Mapping[str, int]]) -> tuple[list[str], Ints, Ints, list[str]]:
    """The qrels as arrays: the queries, and per judgement its query's index, its grade and its document."""
    qids = list(qrels)
    sizes = [len(rels) for rels in qrels.values()]
    query = np.repeat(np.arange(len(qids), dtype=np.int64), sizes)
    grades = np.fromiter((g for rels in qrels.values() for g in rels.values()), dtype=np.int64, count=sum(sizes))
    return qids, query, grades, [d for rels in qrels.values() for d in rels]


def _from_dict(qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]]) -> Judged:
    qids, query, grade, _ = _flat(qrels)
    rank = np.full(len(query), -1, dtype=np.int64)
    retrieved = np.zeros(len(qids), dtype=np.int64)
    at = 0
    for qi, (qid, rels) in enumerate(qrels.items()):
        docs = run.get(qid) or {}
        retrieved[qi] = len(docs)
        found = [(i, d, docs[d]) for i, d in enumerate(rels, start=at) if d in docs]
        at += len(rels)
        if found:
            rank[[i for i, _, _ in found]] = _ranks_in(docs, [d for _, d, _ in found], [s for _, _, s in found])
    return Judged(qids, retrieved, query, grade, rank)


def _ranks_in(docs: Mapping[str, float], found: list[str], scores: list[float]) -> Ints | list[int]:
    """The ranks (trec_eval's order) of the documents ``found`` among one query's ``docs``."""
    values = np.fromiter(docs.values(), dtype=np.float64, count=len(docs))
    ordered = np.sort(values)
    at = np.array(scores, dtype=np.float64)
    above = len(values) - np.searchsorted(ordered, at, side="right")
    equal = np.searchsorted(ordered, at, side="right") - np.searchsorted(ordered, at, side="left")
    if (equal > 1).any() or np.isnan(values).any():  # ties (broken by id) or NaN: the one order, by sorting
        place = {d: i for i, (d, _) in enumerate(ranked(docs))}
        return [place[d] for d in found]
    return above


def _from_arrays(qrels: Mapping[str, Mapping[str, int]], run: RunArrays) -> Judged:
    qids, query, grade, docs = _flat(qrels)
    index = {q: i for i, q in enumerate(run.qids)}
    in_run = np.array([index.get(q, -1) for q in qids], dtype=np.int64)
    retrieved = np.where(in_run >= 0, np.diff(run.bounds)[in_run], 0)
    rank = np.full(len(query), -1, dtype=np.int64)
    judged_in = np.flatnonzero(in_run[query] >= 0)
    keys, fits = pack_ids([docs[i] for i in judged_in.tolist()], words=run.keys.shape[1])
    judged_in, keys = judged_in[fits], keys[fits]
    wanted_query = in_run[query[judged_in]]
    rows, which = _join(run.join_index, _mix(wanted_query, keys))
    hit_query = np.searchsorted(run.bounds, rows, side="right") - 1
    same = (wanted_query[which] == hit_query) & (keys[which] == run.keys[rows]).all(axis=1)
    rows, which, hit_query = rows[same], which[same], hit_query[same]
    rank[judged_in[which]] = _ranks_of(run, hit_query, rows)
    return Judged(qids, retrieved, query, grade, rank)


def _join(index: JoinIndex, wanted: NDArray[np.uint64]) -> tuple[Ints, Ints]:
    """The pairs (row of the run, index into ``wanted``) whose hashes agree in their high bits: candidates, to be
    checked against the keys."""
    low = np.uint64((1 << index.bits) - 1)
    order = np.argsort(wanted)  # searched in order: each search starts where the last one ended
    needles = wanted[order] & ~low
    first = np.searchsorted(index.lined, needles, side="left")
    count = np.searchsorted(index.lined, needles | low, side="right") - first
    at = np.repeat(first, count) + _place(np.repeat(np.arange(len(wanted)), count))
    return (index.lined[at] & low).astype(np.int64), np.repeat(order, count)


def _ranks_of(run: RunArrays, hit_query: Ints, rows: Ints) -> Ints:
    """The ranks (trec_eval's order) of the hits at ``rows`` (of queries ``hit_query``): their place in the run
    (score descending), moved within a run of equal scores by document id descending."""
    scores, bounds = run.scores, run.bounds
    lo, hi = bounds[hit_query], bounds[hit_query + 1]
    ranks = rows - lo
    left = (rows > lo) & (scores[np.maximum(rows - 1, 0)] == scores[rows])
    right = (rows < hi - 1) & (scores[np.minimum(rows + 1, len(scores) - 1)] == scores[rows])
    tied = np.flatnonzero(left | right)
    if not len(tied):
        return ranks
    per_query = np.bincount(hit_query[tied], minlength=len(run.qids))
    sorted_queries: dict[int, Ints] = {}
    for i in tied.tolist():
        row, q, start, end = int(rows[i]), int(hit_query[i]), int(lo[i]), int(hi[i])
        if per_query[q] > _SORT_QUERY_AT:
            if q not in sorted_queries:
                sorted_queries[q] = _sorted_places(run, start, end)
            ranks[i] = sorted_queries[q][row - start]
            continue
        query_scores = -scores[start:end]
        first = start + int(np.searchsorted(query_scores, -scores[row], side="left"))
        last = start + int(np.searchsorted(query_scores, -scores[row], side="right"))
        ranks[i] = first - start + _greater(run.keys[first:last], run.keys[row])
    return ranks


def _greater(keys: NDArray[np.uint64], key: NDArray[np.uint64]) -> int:
    """How many of ``keys`` are greater than ``key`` (word by word: the ids' byte order)."""
    greater = np.zeros(len(keys), dtype=bool)
    equal = np.ones(len(keys), dtype=bool)
    for j in range(keys.shape[1]):
        greater |= equal & (keys[:, j] > key[j])
        equal &= keys[:, j] == key[j]
    return int(greater.sum())


def _sorted_places(run: RunArrays, lo: int, hi: int) -> Ints:
    """The ranks of the hits ``lo:hi`` (one query's) by sorting them all: score, then id, descending."""
    keys = run.keys[lo:hi]
    order = np.lexsort((*(~keys[:, j] for j in reversed(range(keys.shape[1]))), -run.scores[lo:hi]))
    places = np.empty(hi - lo, dtype=np.int64)
    places[order] = np.arange(hi - lo)
    return places


def _place(groups: Ints) -> Ints:
    """Each element's index within its run of equal ``groups`` values (groups sorted)."""
    if not len(groups):
        return groups.copy()
    starts = np.flatnonzero(np.concatenate([[True], groups[1:] != groups[:-1]]))
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.append(starts, len(groups))))


_DISCOUNTS: list[float] = []


def _discount(ranks: Ints) -> Floats:
    """``math.log2(rank + 2)`` for each 0-based rank: the per-query functions' own values."""
    need = int(ranks.max()) + 1 if len(ranks) else 0
    if need > len(_DISCOUNTS):
        _DISCOUNTS.extend(math.log2(i + 2) for i in range(len(_DISCOUNTS), need))
    return np.array(_DISCOUNTS[:need], dtype=np.float64)[ranks]


def _gains(grades: Ints, dcg: str) -> Floats:
    """Each grade's gain as ``functions.ndcg`` computes it: the grade, or ``2.0 ** grade - 1.0``."""
    if dcg == "log2":
        return grades.astype(np.float64)
    levels, which = np.unique(grades, return_inverse=True)
    return np.array([functions.exp_gain(int(g)) for g in levels.tolist()], dtype=np.float64)[which]


def _divide(top: NDArray[Any], bottom: NDArray[Any]) -> Floats:
    """top / bottom where bottom > 0, else 0.0 (what every measure scores a query with nothing to divide by)."""
    out: Floats = np.zeros(len(top), dtype=np.float64)
    np.divide(top, bottom, out=out, where=bottom > 0)
    return out


def ndcg(j: Judged, k: int | None, *, dcg: str = "log2", judged_only: bool = False) -> Floats:
    """:func:`harness.metrics.functions.ndcg` for every query."""
    c = j.counted(judged_only)
    n = len(j.qids)
    hit = c.within(k) & (c.grade > 0)
    found = np.bincount(c.query[hit], weights=_gains(c.grade[hit], dcg) / _discount(c.rank[hit]), minlength=n)
    positive = np.flatnonzero(j.grade > 0)
    best = positive[np.lexsort((-j.grade[positive], j.query[positive]))]
    place = _place(j.query[best])
    keep = place < k if k is not None else np.ones(len(best), dtype=bool)
    ideal = np.bincount(j.query[best][keep], weights=_gains(j.grade[best][keep], dcg) / _discount(place[keep]),
                        minlength=n)
    return _divide(found, ideal)


def recall(j: Judged, k: int | None, *, rel: int = 1, judged_only: bool = False) -> Floats:
    """:func:`harness.metrics.functions.recall` for every query."""
    c = j.counted(judged_only)
    return _divide(np.bincount(c.query[c.within(k, rel)], minlength=len(j.qids)), j.relevant(rel))


def precision(j: Judged, k: int | None, *, rel: int = 1, judged_only: bool = False) -> Floats:
    """:func:`harness.metrics.functions.precision` for every query."""
    c = j.counted(judged_only)
    found = np.bincount(c.query[c.within(k, rel)], minlength=len(j.qids))
    return _divide(found, np.full(len(j.qids), k, dtype=np.int64) if k is not None else c.length)


def average_precision(j: Judged, k: int | None, *, rel: int = 1, judged_only: bool = False) -> Floats:
    """:func:`harness.metrics.functions.average_precision` for every query."""
    c = j.counted(judged_only)
    hit = c.within(k, rel)
    query, rank = c.query[hit], c.rank[hit]
    total = np.bincount(query, weights=(_place(query) + 1) / (rank + 1), minlength=len(j.qids))
    return _divide(total, j.relevant(rel))


def reciprocal_rank(j: Judged, k: int | None, *, rel: int = 1, judged_only: bool = False) -> Floats:
    """:func:`harness.metrics.functions.reciprocal_rank` for every query."""
    c = j.counted(judged_only)
    hit = c.within(k, rel)
    queries, first = np.unique(c.query[hit], return_index=True)
    out = np.zeros(len(j.qids), dtype=np.float64)
    out[queries] = 1.0 / (c.rank[hit][first] + 1)
    return out


def success(j: Judged, k: int | None, *, rel: int = 1, judged_only: bool = False) -> Floats:
    """:func:`harness.metrics.functions.success` for every query."""
    c = j.counted(judged_only)
    out = np.zeros(len(j.qids), dtype=np.float64)
    out[c.query[c.within(k, rel)]] = 1.0
    return out


def judged_share(j: Judged, k: int | None) -> Floats:
    """:func:`harness.metrics.functions.judged` for every query."""
    c = j.plain
    if not k:
        return np.zeros(len(j.qids), dtype=np.float64)
    share: Floats = np.bincount(c.query[c.within(k)], minlength=len(j.qids)) / k
    return share


#: the vectorised form of each built-in per-query function; a family registered without one is computed query by
#: query (``harness.metrics.evaluate``)
VECTORISED: dict[Callable[..., float], VectorFn] = {
    functions.ndcg: ndcg, functions.recall: recall, functions.precision: precision,
    functions.average_precision: average_precision, functions.reciprocal_rank: reciprocal_rank,
    functions.success: success, functions.judged: judged_share,
}
