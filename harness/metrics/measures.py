"""The measure language: one parser and typed measures with parameters, compatible with ir_measures' names.

Written as ir_measures writes them (``nDCG@10``, ``R@100``, ``R(rel=2)@1000``, ``AP(rel=2)``, ``RR@10``,
``P@10``, ``Success@5``, ``Judged@10``, ``Accuracy@20``) or as the harness always has (``ndcg@10``, ``recall@100``,
``map@100``, ``mrr@10``, ``p@10``, ``accuracy@20``, ``top-20 accuracy``); case does not matter. Records,
tables and baselines spell a measure one way, :meth:`Measure.__str__` (``ndcg@10``, ``recall(rel=2)@1000``),
so a name written either way finds the same numbers.

Every function takes the judged documents of one query (``rels``: docid -> grade) and the query's ranking
(docids in trec_eval order, see ``harness.trec.ranked``). Definitions (trec_eval 9.0.x, as pytrec_eval
exposes it; ``rel`` is trec_eval's ``-l`` relevance level, 1 unless given):

- nDCG@k (``ndcg_cut.k``): graded gain = the grade, discount log2(rank + 1), over the ideal ranking of all
  documents with grade > 0 (Järvelin & Kekäläinen 2002). trec_eval's relevance level does not change it,
  so it takes no ``rel``.
- R@k (``recall.k``): documents with grade >= rel in the top k / all documents with grade >= rel.
- P@k (``P.k``): documents with grade >= rel in the top k / k, even when fewer than k were retrieved.
- AP, AP@k (``map``, ``map_cut.k``): the sum of precision at each rank (<= k) holding a document with
  grade >= rel, over all documents with grade >= rel.
- RR, RR@k (``recip_rank``; with k, on the ranking cut at k): 1 / the rank of the first document with
  grade >= rel, else 0.
- Success@k (``success.k``): 1 when a document with grade >= rel is in the top k, else 0.
- Judged@k (ir_measures' Judged): documents in the top k that have a judgement (any grade, 0 included) /
  k; "P@k with a relevance level below every judgement".
- Accuracy@k (open-domain QA, DPR's top-k accuracy): 1 when a passage in the top k holds an answer, else 0;
  judged by answers, not by qrels (``harness.odqa.evaluate``).

A query with no relevant document scores 0 on every measure, as trec_eval reports it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import HarnessError

Rels = Mapping[str, int]
Ranking = Sequence[str]


def ndcg(rels: Rels, ranking: Ranking, k: int | None, rel: int = 1) -> float:
    cut = ranking if k is None else ranking[:k]
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(cut) if rels.get(d, 0) > 0)
    ideal_gains = sorted((g for g in rels.values() if g > 0), reverse=True)
    if k is not None:
        ideal_gains = ideal_gains[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    return dcg / idcg if idcg > 0 else 0.0


def _num_rel(rels: Rels, rel: int) -> int:
    return sum(1 for g in rels.values() if g >= rel)


def recall(rels: Rels, ranking: Ranking, k: int | None, rel: int = 1) -> float:
    num_rel = _num_rel(rels, rel)
    if num_rel == 0:
        return 0.0
    cut = ranking if k is None else ranking[:k]
    return sum(1 for d in cut if rels.get(d, 0) >= rel) / num_rel


def precision(rels: Rels, ranking: Ranking, k: int | None, rel: int = 1) -> float:
    cut = ranking if k is None else ranking[:k]
    denom = k if k is not None else len(cut)
    if denom == 0:
        return 0.0
    return sum(1 for d in cut if rels.get(d, 0) >= rel) / denom


def average_precision(rels: Rels, ranking: Ranking, k: int | None, rel: int = 1) -> float:
    num_rel = _num_rel(rels, rel)
    if num_rel == 0:
        return 0.0
    cut = ranking if k is None else ranking[:k]
    found, total = 0, 0.0
    for i, d in enumerate(cut):
        if rels.get(d, 0) >= rel:
            found += 1
            total += found / (i + 1)
    return total / num_rel


def reciprocal_rank(rels: Rels, ranking: Ranking, k: int | None, rel: int = 1) -> float:
    cut = ranking if k is None else ranking[:k]
    for i, d in enumerate(cut):
        if rels.get(d, 0) >= rel:
            return 1.0 / (i + 1)
    return 0.0


def success(rels: Rels, ranking: Ranking, k: int | None, rel: int = 1) -> float:
    cut = ranking if k is None else ranking[:k]
    return 1.0 if any(rels.get(d, 0) >= rel for d in cut) else 0.0


def judged(rels: Rels, ranking: Ranking, k: int | None, rel: int = 1) -> float:
    cut = ranking if k is None else ranking[:k]
    return sum(1 for d in cut if d in rels) / k if k else 0.0


MeasureFn = Callable[[Rels, Ranking, "int | None", int], float]


@dataclass(frozen=True)
class Family:
    """One kind of measure: its names (the harness's and ir_measures'), trec_eval's, its function, which
    parameters it takes, what judges it (``qrels``: graded judgements; ``answers``: open-domain QA), and the
    range its per-query values and means lie in (every family here: [0, 1]; an imported number outside it is
    refused)."""

    name: str
    ir_name: str
    trec_eval: str | None
    fn: MeasureFn | None
    needs_k: bool
    takes_rel: bool
    judgement: str
    aliases: tuple[str, ...]
    bounds: tuple[float, float] = (0.0, 1.0)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("ndcg", "nDCG", "ndcg_cut", ndcg, True, False, "qrels", ("ndcg",)),
    Family("recall", "R", "recall", recall, True, True, "qrels", ("recall", "r")),
    Family("p", "P", "P", precision, True, True, "qrels", ("p", "precision")),
    Family("map", "AP", "map_cut", average_precision, False, True, "qrels", ("map", "ap")),
    Family("mrr", "RR", "recip_rank", reciprocal_rank, False, True, "qrels", ("mrr", "rr", "recip_rank")),
    Family("success", "Success", "success", success, True, True, "qrels", ("success",)),
    Family("judged", "Judged", None, judged, True, False, "qrels", ("judged",)),
    Family("accuracy", "Accuracy", None, None, True, False, "answers",
           ("accuracy", "acc", "top", "top-k accuracy", "topk accuracy", "top-k acc")),
)}
#: kept for callers that want the qrels measures by name (function, trec_eval name, aliases)
MEASURES = {f.name: (f.fn, f.trec_eval, f.aliases) for f in FAMILIES.values() if f.judgement == "qrels"}
_ALIASES = {alias: f.name for f in FAMILIES.values() for alias in f.aliases}
_PATTERN = re.compile(r"^(?P<name>[a-z_][a-z_ -]*?)\s*(?:\((?P<params>[^)]*)\))?\s*(?:@\s*(?P<k>[0-9]+))?$")
_GLUED_ACCURACY = re.compile(r"^(?:top-?(\d+)\s+(?:accuracy|acc)|(?:accuracy|acc|top)-?(\d+))$")


@dataclass(frozen=True)
class Measure:
    """A parsed measure such as ``nDCG@10`` or ``R(rel=2)@1000``; ``k`` None means the whole ranking, ``rel``
    the smallest grade that counts as relevant."""

    name: str
    k: int | None
    rel: int = 1

    @property
    def family(self) -> Family:
        return FAMILIES[self.name]

    @property
    def judgement(self) -> str:
        return self.family.judgement

    def __str__(self) -> str:
        """The harness's spelling, used by records and tables (``ndcg@10``, ``recall(rel=2)@1000``)."""
        params = f"(rel={self.rel})" if self.rel != 1 else ""
        return f"{self.name}{params}" + (f"@{self.k}" if self.k is not None else "")

    @property
    def ir_measures(self) -> str:
        """ir_measures' spelling (``nDCG@10``, ``R(rel=2)@1000``)."""
        params = f"(rel={self.rel})" if self.rel != 1 else ""
        return f"{self.family.ir_name}{params}" + (f"@{self.k}" if self.k is not None else "")

    def out_of_range(self, value: float) -> str | None:
        """Why ``value`` cannot be a value of this measure (outside its family's range), or None."""
        lo, hi = self.family.bounds
        return None if lo <= value <= hi else f"{self} = {value!r} is outside the measure's range [{lo:g}, {hi:g}]"

    def __call__(self, rels: Rels, ranking: Ranking) -> float:
        fn = self.family.fn
        if fn is None:
            raise HarnessError(f"{self} is judged by answers (open-domain QA), not by relevance judgements")
        return fn(rels, ranking, self.k, self.rel)


def parse_measure(text: str) -> Measure:
    """The measure ``text`` names, in either spelling (see the module docstring); one line naming the
    problem otherwise."""
    clean = " ".join(str(text).strip().lower().split())
    glued = _GLUED_ACCURACY.match(clean)
    if glued:
        clean = f"accuracy@{glued.group(1) or glued.group(2)}"
    m = _PATTERN.match(clean)
    name = _ALIASES.get(m.group("name").strip()) if m else None
    if not m or name is None:
        known = ", ".join(f"{f.ir_name}@k" for f in FAMILIES.values())
        raise HarnessError(f"unknown metric {text!r}; known: {known}, with (rel=N) where it applies "
                           "(e.g. nDCG@10, R@100, R(rel=2)@1000, AP(rel=2)); the names ndcg@10, recall@100, "
                           "map, mrr@10, p@10, accuracy@20 work too")
    family = FAMILIES[name]
    k = int(m.group("k")) if m.group("k") else None
    if k is not None and k < 1:
        raise HarnessError(f"metric {text!r}: the cut-off must be at least 1")
    if family.needs_k and k is None:
        raise HarnessError(f"metric {text!r} needs a cut-off, e.g. {family.ir_name}@10")
    rel = 1
    for param in filter(None, (p.strip() for p in (m.group("params") or "").split(","))):
        key, _, value = (s.strip() for s in param.partition("="))
        if key != "rel" or not re.fullmatch(r"-?[0-9]+", value):
            raise HarnessError(f"metric {text!r}: unknown parameter {param!r} (the one parameter is rel=N, the "
                               "smallest grade that counts as relevant)")
        if not family.takes_rel:
            why = ("nDCG uses the grades themselves as gains; trec_eval's relevance level does not change it"
                   if name == "ndcg" else f"{family.ir_name} takes no relevance level")
            raise HarnessError(f"metric {text!r}: {why}; write {family.ir_name}@{k or 10}")
        rel = int(value)
        if rel < 1:
            raise HarnessError(f"metric {text!r}: rel must be at least 1 (grades below it are not relevant)")
    return Measure(name, k, rel)
