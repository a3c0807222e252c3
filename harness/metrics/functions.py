"""The per-query measure functions: pure, one query at a time, ties already broken.

Each takes the judged documents of one query (``rels``: docid -> grade), the query's ranking (docids in
trec_eval order, see ``harness.trec.ranked``), the cut-off ``k`` (None: the whole ranking) and its declared
parameters as keywords (``harness.metrics.measures`` declares them and reads them from a measure's name).
Definitions (trec_eval 9.0.x, as pytrec_eval exposes it):

- ``rel`` is trec_eval's ``-l`` relevance level: a document counts as relevant when its grade is >= rel.
- ``judged_only`` is trec_eval's ``-J`` (pytrec_eval's ``judged_docs_only_flag``): unjudged documents are
  taken out of the ranking before anything is counted, so the judged ones move up.

A query with no relevant document scores 0 on every measure, as trec_eval reports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from harness.errors import HarnessError

Rels = Mapping[str, int]
Ranking = Sequence[str]


def _cut(rels: Rels, ranking: Ranking, k: int | None, judged_only: bool = False) -> Ranking:
    """The ranking a measure counts over: unjudged documents out first when ``judged_only``, then cut at k."""
    if judged_only:
        ranking = [d for d in ranking if d in rels]
    return ranking if k is None else ranking[:k]


def exp_gain(grade: int) -> float:
    """2^grade - 1 (``dcg="exp-log2"``); a grade whose gain a double cannot hold (over 1023) is refused."""
    try:
        return 2.0 ** grade - 1.0
    except OverflowError:
        raise HarnessError(f"relevance grade {grade}: its gain 2^{grade} - 1 under dcg=exp-log2 is beyond a double; "
                           "use the linear gain (nDCG@k) or grades up to 1023") from None


def _num_rel(rels: Rels, rel: int) -> int:
    return sum(1 for g in rels.values() if g >= rel)


def ndcg(rels: Rels, ranking: Ranking, k: int | None, *, dcg: str = "log2", judged_only: bool = False) -> float:
    """nDCG@k (``ndcg_cut.k``; Järvelin & Kekäläinen 2002): the sum over the top k of gain(grade) / log2(rank +
    1), over the same sum for the ideal ranking of every document with grade > 0. The gain is the grade itself
    (``dcg="log2"``, trec_eval's) or 2^grade - 1 (``dcg="exp-log2"``, Burges et al. 2005). trec_eval's
    relevance level does not change nDCG, so it takes no ``rel``."""
    def gain(grade: int) -> float:
        return float(grade) if dcg == "log2" else exp_gain(grade)

    found = 0.0  # sums added term by term in rank order (as harness.metrics.vectorised adds them)
    for i, d in enumerate(_cut(rels, ranking, k, judged_only)):
        if rels.get(d, 0) > 0:
            found += gain(rels[d]) / math.log2(i + 2)
    ideal_grades = sorted((g for g in rels.values() if g > 0), reverse=True)
    ideal = 0.0
    for i, g in enumerate(ideal_grades if k is None else ideal_grades[:k]):
        ideal += gain(g) / math.log2(i + 2)
    return found / ideal if ideal > 0 else 0.0


def recall(rels: Rels, ranking: Ranking, k: int | None, *, rel: int = 1, judged_only: bool = False) -> float:
    """R@k (``recall.k``): documents with grade >= rel in the top k / all documents with grade >= rel."""
    num_rel = _num_rel(rels, rel)
    if num_rel == 0:
        return 0.0
    return sum(1 for d in _cut(rels, ranking, k, judged_only) if rels.get(d, 0) >= rel) / num_rel


def precision(rels: Rels, ranking: Ranking, k: int | None, *, rel: int = 1, judged_only: bool = False) -> float:
    """P@k (``P.k``): documents with grade >= rel in the top k / k, even when fewer than k were retrieved."""
    cut = _cut(rels, ranking, k, judged_only)
    denom = k if k is not None else len(cut)
    if denom == 0:
        return 0.0
    return sum(1 for d in cut if rels.get(d, 0) >= rel) / denom


def average_precision(rels: Rels, ranking: Ranking, k: int | None, *, rel: int = 1,
                      judged_only: bool = False) -> float:
    """AP, AP@k (``map``, ``map_cut.k``): the sum of the precision at each rank (<= k) holding a document with
    grade >= rel, over all documents with grade >= rel."""
    num_rel = _num_rel(rels, rel)
    if num_rel == 0:
        return 0.0
    found, total = 0, 0.0
    for i, d in enumerate(_cut(rels, ranking, k, judged_only)):
        if rels.get(d, 0) >= rel:
            found += 1
            total += found / (i + 1)
    return total / num_rel


def reciprocal_rank(rels: Rels, ranking: Ranking, k: int | None, *, rel: int = 1,
                    judged_only: bool = False) -> float:
    """RR, RR@k (``recip_rank``; with k, on the ranking cut at k): 1 / the rank of the first document with
    grade >= rel, else 0."""
    for i, d in enumerate(_cut(rels, ranking, k, judged_only)):
        if rels.get(d, 0) >= rel:
            return 1.0 / (i + 1)
    return 0.0


def success(rels: Rels, ranking: Ranking, k: int | None, *, rel: int = 1, judged_only: bool = False) -> float:
    """Success@k (``success.k``): 1 when a document with grade >= rel is in the top k, else 0."""
    return 1.0 if any(rels.get(d, 0) >= rel for d in _cut(rels, ranking, k, judged_only)) else 0.0


def judged(rels: Rels, ranking: Ranking, k: int | None) -> float:
    """Judged@k (ir_measures' Judged): documents in the top k that have a judgement (any grade, 0 included) /
    k; "P@k with a relevance level below every judgement"."""
    cut = _cut(rels, ranking, k)
    return sum(1 for d in cut if d in rels) / k if k else 0.0
