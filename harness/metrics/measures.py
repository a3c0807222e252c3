"""Per-query measures with trec_eval semantics.

Every function takes the judged documents of one query (``rels``: docid -> grade) and the query's
ranking (docids in trec_eval order, see ``harness.trec.ranked``) and returns one float.

Conventions (trec_eval 9.0.x, as pytrec_eval exposes it):
- a document is *relevant* when its grade >= 1 (``relevance_level`` 1); unjudged documents count as 0;
- nDCG uses the grade itself as gain (graded, linear), discount log2(rank + 1), and the ideal ranking of
  all judged documents with grade > 0 (``ndcg_cut.k``; Järvelin & Kekäläinen 2002);
- Recall@k = relevant in top k / all relevant (``recall.k``);
- P@k = relevant in top k / k, even when fewer than k were retrieved (``P.k``);
- MAP@k = sum of precision at each relevant rank <= k, over all relevant (``map_cut.k``);
- MRR@k = 1 / rank of the first relevant document within the top k, else 0 (``recip_rank`` on the run
  cut at k; without k, the whole ranking).
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


def ndcg(rels: Rels, ranking: Ranking, k: int | None) -> float:
    cut = ranking if k is None else ranking[:k]
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(cut) if rels.get(d, 0) > 0)
    ideal_gains = sorted((g for g in rels.values() if g > 0), reverse=True)
    if k is not None:
        ideal_gains = ideal_gains[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal_gains))
    return dcg / idcg if idcg > 0 else 0.0


def _num_rel(rels: Rels) -> int:
    return sum(1 for g in rels.values() if g >= 1)


def recall(rels: Rels, ranking: Ranking, k: int | None) -> float:
    num_rel = _num_rel(rels)
    if num_rel == 0:
        return 0.0
    cut = ranking if k is None else ranking[:k]
    return sum(1 for d in cut if rels.get(d, 0) >= 1) / num_rel


def precision(rels: Rels, ranking: Ranking, k: int | None) -> float:
    cut = ranking if k is None else ranking[:k]
    denom = k if k is not None else len(cut)
    if denom == 0:
        return 0.0
    return sum(1 for d in cut if rels.get(d, 0) >= 1) / denom


def average_precision(rels: Rels, ranking: Ranking, k: int | None) -> float:
    num_rel = _num_rel(rels)
    if num_rel == 0:
        return 0.0
    cut = ranking if k is None else ranking[:k]
    found, total = 0, 0.0
    for i, d in enumerate(cut):
        if rels.get(d, 0) >= 1:
            found += 1
            total += found / (i + 1)
    return total / num_rel


def reciprocal_rank(rels: Rels, ranking: Ranking, k: int | None) -> float:
    cut = ranking if k is None else ranking[:k]
    for i, d in enumerate(cut):
        if rels.get(d, 0) >= 1:
            return 1.0 / (i + 1)
    return 0.0


MeasureFn = Callable[[Rels, Ranking, "int | None"], float]

#: canonical name -> (function, trec_eval name, aliases accepted on the command line)
MEASURES: dict[str, tuple[MeasureFn, str, tuple[str, ...]]] = {
    "ndcg": (ndcg, "ndcg_cut", ("ndcg",)),
    "recall": (recall, "recall", ("recall", "r")),
    "p": (precision, "P", ("p", "precision")),
    "map": (average_precision, "map_cut", ("map", "ap")),
    "mrr": (reciprocal_rank, "recip_rank", ("mrr", "rr", "recip_rank")),
}
_ALIASES = {alias: name for name, (_, _, aliases) in MEASURES.items() for alias in aliases}
_PATTERN = re.compile(r"^([a-z_]+)(?:@(\d+))?$")


@dataclass(frozen=True)
class Measure:
    """A parsed measure such as ``ndcg@10``; ``k`` None means the whole ranking."""

    name: str
    k: int | None

    def __str__(self) -> str:
        return self.name if self.k is None else f"{self.name}@{self.k}"

    def __call__(self, rels: Rels, ranking: Ranking) -> float:
        return MEASURES[self.name][0](rels, ranking, self.k)


def parse_measure(text: str) -> Measure:
    """Parse ``nDCG@10``, ``R@100``, ``P@5``, ``MAP@100``, ``MRR@10``, ``map`` (case-insensitive)."""
    m = _PATTERN.match(text.strip().lower())
    name = _ALIASES.get(m.group(1)) if m else None
    if not m or name is None:
        known = ", ".join(f"{n}@k" for n in MEASURES)
        raise HarnessError(f"unknown metric {text!r}; known: {known} (e.g. ndcg@10, recall@100)")
    k = int(m.group(2)) if m.group(2) else None
    if k is not None and k < 1:
        raise HarnessError(f"metric {text!r}: the cut-off must be at least 1")
    if name in {"ndcg", "p", "recall"} and k is None:
        raise HarnessError(f"metric {text!r} needs a cut-off, e.g. {name}@10")
    return Measure(name, k)
