"""Fusion of runs as a retriever: reciprocal rank fusion, Pyserini's dense-sparse hybrid, weighted sums.

A fused retriever computes nothing but the fusion: the runner first runs (or reuses) each stage as the
retriever it is, with its own record and run file, then hands the stage runs, as their run files hold them,
to :meth:`FusionRetriever.fuse`. Reading the written runs (not in-memory scores) makes a fused run the same
whether its stages were computed now or reused; BM25's run files hold Pyserini's six decimals, so a hybrid
over them can differ from Pyserini's in-memory float32 fusion only where two documents' fused scores are
within ``alpha * 5e-7`` of each other.

The methods, each as its reference implementation computes it (and tested against it):

- ``rrf``: score(d) = sum over runs of 1 / (k + rank of d in that run), ranks from 1 in each run's order
  (Cormack et al. 2009; Pyserini ``reciprocal_rank_fusion``, ranx ``rrf``), k = 60;
- ``hybrid``: Pyserini's ``HybridSearcher``: score(d) = dense(d) + alpha * sparse(d) (``weight_on_dense``:
  alpha * dense(d) + sparse(d)); a document missing from one run takes that run's lowest score;
  ``normalization`` first maps each run's scores to (s - (min + max) / 2) / (max - min) (0 where
  max = min: Pyserini divides by zero there);
- ``wsum``: ranx's ``wsum``: sum of weight x normalised score (``norm``: none, min-max, max, sum), a
  document missing from a run counting 0 there.

The fused list is sorted by score descending, ties by document id ascending (Pyserini's ``TrecRun.merge``),
and cut to the requested depth. Scores are written with 17 significant digits (they read back exactly).

The stage runs are fused as arrays (:class:`~harness.trec.RunArrays`), all queries at once: :func:`line_up`
puts every (query, document) any stage retrieved on one line, with each stage's score, rank and per-query
statistics; each method computes every line's fused score with the same float64 operations, in the same order
of addition, as the per-query reference (a stage lacking a document adds an exact 0); :func:`ranked` orders and
cuts. tests/test_fusion_arrays.py checks the scores bit for bit against the per-query fusion this replaced.

``wsum`` can choose its weights on another split of the dataset (``optimise=dev``), as ranx's
``optimize_fusion`` does: every tuple of multiples of ``step`` in [0, 1] summing to 1 is tried on that split's
stage runs (ranx's order; ranx compares float sums with 1.0 and so skips a few tuples of three or more runs,
e.g. 0.1 + 0.2 + 0.7, which are tried here), the mean of ``metric`` over the split's queries decides (the
harness's measures: trec_eval's order among equal fused scores, where ranx's measures order them their own
way), a tie goes to the later tuple (ranx's ``>=``), and the evaluated split is then fused with the chosen
weights. The
record holds the weights, every tuple's score and the split's stage records; the split's data is part of the
fingerprint.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, NotRequired, TypedDict

from harness.errors import HarnessError
from harness.retrievers.base import JsonObject, Retriever, SearchContext, Searched, StageRef, StageRun
from harness.retrievers.spec import RetrieverSpec
from harness.trec import FLOAT64_SCORE_FORMAT, AnyRun, RunArrays

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    from harness.data.dataset import Dataset
    from harness.data.judgements import Judgements

Hits = Mapping[str, float]


class Lined(NamedTuple):
    """The stages' runs lined up: one line per (query, document) that any stage retrieved, lines by query (in
    ``qids``' order), each query's by document id ascending; and what each stage says of each line and query.

    ``keys`` are :class:`RunArrays` keys (a common width), or where a stage's ids hold a NUL (which keys cannot
    tell from padding) each id's position in ``names`` (the ids in order). A stage's ``scores`` are NaN and its
    ``ranks`` 0 on a line it did not retrieve. Per stage and query: ``counts`` (hits), ``lo`` and ``hi``
    (lowest and highest score as Python's ``min`` and ``max`` give them: the first of equal values, so 0.0 or
    -0.0 as the stage has it first; NaN without hits) and, where :func:`line_up` was asked for them,
    ``totals`` (the scores added left to right in the stage's order, from 0, as Python's ``sum``)."""

    qids: tuple[str, ...]
    rows: NDArray[np.int64]
    keys: NDArray[np.uint64]
    names: list[str] | None
    scores: NDArray[np.float64]
    ranks: NDArray[np.int64]
    counts: NDArray[np.int64]
    lo: NDArray[np.float64]
    hi: NDArray[np.float64]
    totals: NDArray[np.float64] | None

    def present(self, stage: int) -> NDArray[np.bool_]:
        """Which lines the stage retrieved."""
        held: NDArray[np.bool_] = self.ranks[stage] > 0
        return held

    def per_line(self, values: NDArray[np.float64]) -> NDArray[np.float64]:
        """A per-query value on each line of its query."""
        return values[self.rows]


def line_up(runs: Sequence[RunArrays], qids: Sequence[str], sums: bool = False) -> Lined:
    """Line up the runs' hits for ``qids`` (a query a run lacks has no hits there; queries not in ``qids`` are
    left out), without a Python object per hit; with ``sums``, each stage's per-query totals too (``norm=sum``
    reads them)."""
    import numpy as np

    position = {q: i for i, q in enumerate(qids)}
    if len(position) != len(qids):
        raise ValueError("a query id is given twice")
    stages, queries = len(runs), len(qids)
    names: list[str] | None = None
    if any(r.source is not None for r in runs):  # an id with a NUL: number the ids in their order instead
        ids = [r.doc_ids() for r in runs]
        names = sorted({d for row in ids for d in row})
        number = {d: i for i, d in enumerate(names)}
        keys = [np.fromiter(map(number.__getitem__, row), dtype=np.uint64, count=len(row)).reshape(-1, 1)
                for row in ids]
    else:
        words = max((r.keys.shape[1] for r in runs), default=1)
        keys = [np.pad(r.keys, ((0, 0), (0, words - r.keys.shape[1]))) for r in runs]
    counts = np.zeros((stages, queries), dtype=np.int64)
    lo = np.full((stages, queries), np.nan)
    hi = np.full((stages, queries), np.nan)
    totals = np.zeros((stages, queries)) if sums else None
    taken_q: list[NDArray[np.int64]] = []
    taken_k: list[NDArray[np.uint64]] = []
    taken_s: list[NDArray[np.float64]] = []
    taken_rank: list[NDArray[np.int64]] = []
    taken_stage: list[NDArray[np.int64]] = []
    for s, r in enumerate(runs):
        home = np.array([position.get(q, -1) for q in r.qids], dtype=np.int64)
        sizes = np.diff(r.bounds)
        held = np.flatnonzero((home >= 0) & (sizes > 0))  # the run's queries asked for, with hits
        if not len(held):
            continue
        starts, ends = r.bounds[held], r.bounds[held + 1]
        at = home[held]
        counts[s, at] = sizes[held]
        lo[s, at], hi[s, at] = _extremes(r.scores, starts, ends)
        if totals is not None:
            totals[s, at] = _sums(r.scores, starts, sizes[held])
        segment = np.repeat(np.arange(len(held)), sizes[held])
        first = np.cumsum(sizes[held]) - sizes[held]  # each held query's first place among the rows taken
        rank = np.arange(len(segment)) - first[segment] + 1
        rows = starts[segment] + rank - 1
        taken_q.append(np.repeat(at, sizes[held]))
        taken_k.append(keys[s][rows])
        taken_s.append(r.scores[rows])
        taken_rank.append(rank)
        taken_stage.append(np.full(len(rows), s, dtype=np.int64))
    if not taken_q:
        width = keys[0].shape[1] if keys else 1
        return Lined(tuple(qids), np.zeros(0, dtype=np.int64), np.zeros((0, width), dtype=np.uint64), names,
                     np.zeros((stages, 0)), np.zeros((stages, 0), dtype=np.int64), counts, lo, hi, totals)
    q_all = np.concatenate(taken_q)
    distinct, code = _numbered(np.concatenate(taken_k))
    order = _stable_order(q_all * len(distinct) + code, queries * len(distinct))  # by query, then id
    pair = q_all[order] * len(distinct) + code[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = pair[1:] != pair[:-1]
    line = np.empty(len(order), dtype=np.int64)
    line[order] = np.cumsum(new) - 1
    lines = int(new.sum())
    stage = np.concatenate(taken_stage)
    in_order = stage[order]  # a stable sort of the stages one after another: a line's hits by stage ascending
    if ((in_order[1:] == in_order[:-1]) & ~new[1:]).any():
        raise ValueError("a stage's run holds a document twice for one query")
    scores = np.full((stages, lines), np.nan)
    ranks = np.zeros((stages, lines), dtype=np.int64)
    scores[stage, line] = np.concatenate(taken_s)
    ranks[stage, line] = np.concatenate(taken_rank)
    return Lined(tuple(qids), q_all[order][new], distinct[code[order][new]], names, scores, ranks, counts, lo, hi,
                 totals)


def _extremes(scores: NDArray[np.float64], starts: NDArray[np.int64], ends: NDArray[np.int64]
              ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The lowest and highest score of each segment ``starts[i]:ends[i]`` (none empty) as Python's ``min`` and
    ``max`` give them: the first of equal values, where numpy's may take another (0.0 and -0.0 are equal)."""
    import numpy as np

    edges = np.stack([starts, ends], axis=1).ravel()  # each segment's rows; what lies between is skipped
    padded = np.append(scores, 0.0)  # an end may be the last row's successor
    lo, hi = np.minimum.reduceat(padded, edges)[::2], np.maximum.reduceat(padded, edges)[::2]
    zeros = np.flatnonzero(scores == 0)  # the only equal values that differ: 0.0 and -0.0
    if len(zeros):
        first_zero = zeros[np.minimum(np.searchsorted(zeros, starts), len(zeros) - 1)]
        for extreme in (lo, hi):
            at = extreme == 0  # the segment holds a zero: its first one is what min() or max() returned
            extreme[at] = scores[first_zero[at]]
    return lo, hi


def _sums(scores: NDArray[np.float64], starts: NDArray[np.int64], sizes: NDArray[np.int64]) -> NDArray[np.float64]:
    """Each segment's scores added one at a time from 0 in their order (Python's ``sum``), a place at a time
    over the segments still that long (memory: the segments, not the longest times their number)."""
    import numpy as np

    by_length = np.argsort(-sizes, kind="stable")
    first, length = starts[by_length], sizes[by_length]
    totals = np.zeros(len(sizes))
    for place in range(int(length[0]) if len(length) else 0):
        longer = int(np.searchsorted(-length, -place, side="left"))  # the segments with more than `place` hits
        totals[:longer] += scores[first[:longer] + place]
    out = np.empty(len(sizes))
    out[by_length] = totals
    return out


def _numbered(keys: NDArray[np.uint64]) -> tuple[NDArray[np.uint64], NDArray[np.int64]]:
    """The distinct keys in id order, and each row's number among them."""
    import numpy as np

    if keys.shape[1] == 1:  # one word: numpy's unique (a sort of the values)
        values, code = np.unique(keys[:, 0], return_inverse=True)
        return values[:, None], code.astype(np.int64).ravel()
    order = np.lexsort(tuple(keys[:, j] for j in reversed(range(keys.shape[1]))))
    in_order = keys[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (in_order[1:] != in_order[:-1]).any(axis=1)
    code = np.empty(len(order), dtype=np.int64)
    code[order] = np.cumsum(new) - 1
    return in_order[new], code


def _stable_order(values: NDArray[np.int64], bound: int) -> NDArray[np.int64]:
    """A stable argsort of non-negative ``values`` below ``bound``: where the values and the row numbers fit in
    64 bits together, one sort of values (each with its row number in the low bits), else numpy's stable
    argsort."""
    import numpy as np

    row_bits = max(1, len(values).bit_length())
    if max(1, bound).bit_length() + row_bits > 64:
        return np.argsort(values, kind="stable").astype(np.int64)
    packed = values.astype(np.uint64) << np.uint64(row_bits)
    packed |= np.arange(len(values), dtype=np.uint64)
    packed.sort()
    return (packed & np.uint64((1 << row_bits) - 1)).astype(np.int64)


def ranked(lined: Lined, fused: NDArray[np.float64], depth: int | None) -> RunArrays:
    """The lines by fused score descending, equal scores by document id ascending (Pyserini's ``TrecRun.merge``),
    each query cut to ``depth``."""
    import numpy as np

    if np.isnan(fused).any():  # no order holds a NaN
        _refuse_overflow(lined, fused, np.flatnonzero(np.isnan(fused)))
    order = np.lexsort((-fused, lined.rows))  # stable: equal scores keep the lines' order, ids ascending
    rows = lined.rows[order]
    bounds = np.zeros(len(lined.qids) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(lined.qids)), out=bounds[1:])
    if depth is not None:
        order = order[np.arange(len(order)) - bounds[rows] < depth]
        np.cumsum(np.bincount(lined.rows[order], minlength=len(lined.qids)), out=bounds[1:])
    if not np.isfinite(fused[order]).all():  # an infinite score the cut leaves in the run
        _refuse_overflow(lined, fused, order[~np.isfinite(fused[order])])
    if lined.names is None:
        return RunArrays(lined.qids, bounds, fused[order], lined.keys[order])
    names, b = lined.names, bounds.tolist()
    docs = [names[i] for i in lined.keys[order, 0].tolist()]
    values = fused[order].tolist()
    return RunArrays.from_lists(lined.qids, [docs[b[i]:b[i + 1]] for i in range(len(lined.qids))],
                                [values[b[i]:b[i + 1]] for i in range(len(lined.qids))])


def _refuse_overflow(lined: Lined, fused: NDArray[np.float64], bad: NDArray[np.int64]) -> NoReturn:
    """Refuse a fused run holding a score that is not finite, naming the first such line's query and document."""
    import numpy as np

    line = int(bad.min())
    if lined.names is not None:
        doc = lined.names[int(lined.keys[line, 0])]
    else:
        doc = RunArrays(("",), np.array([0, 1]), fused[line:line + 1], lined.keys[line:line + 1]).doc_ids()[0]
    raise HarnessError(f"query {lined.qids[int(lined.rows[line])]!r}, document {doc!r}: the fused score is "
                       f"{float(fused[line])} (the stages' scores overflow it); fuse runs whose scores are in range")


def rrf_scores(lined: Lined, k: int = 60) -> NDArray[np.float64]:
    """Reciprocal rank fusion: each line's sum over the stages of 1 / (k + its rank there), added stage by
    stage from 0 (a stage without the document adds 0, which changes no sum)."""
    import numpy as np

    fused = np.zeros(len(lined.rows))
    for s in range(len(lined.ranks)):
        term = np.zeros(len(lined.rows))
        np.divide(1.0, k + lined.ranks[s], out=term, where=lined.present(s))
        fused = fused + term
    return fused


def hybrid_scores(lined: Lined, alpha: float, normalization: bool = False, weight_on_dense: bool = False
                  ) -> NDArray[np.float64]:
    """Pyserini's dense-sparse hybrid of stage 0 (dense) and stage 1 (sparse)."""
    import numpy as np

    def side(s: int) -> NDArray[np.float64]:
        has = lined.counts[s] > 0
        lo, hi = np.where(has, lined.lo[s], 0.0), np.where(has, lined.hi[s], 1.0)
        value = np.where(lined.present(s), lined.scores[s], lined.per_line(lo))
        if not normalization:
            return value
        span = hi - lo  # where Pyserini divides by zero (one hit, equal scores) the run counts 0
        out = np.zeros(len(value))
        np.divide(value - lined.per_line((lo + hi) / 2), lined.per_line(span), out=out,
                  where=lined.per_line(span) != 0)
        return out

    d, s = side(0), side(1)
    with np.errstate(over="ignore"):  # an overflow is refused where the fused run is ranked
        fused: NDArray[np.float64] = alpha * s + d if not weight_on_dense else s + alpha * d
    return fused


def normalised(lined: Lined, norm: str) -> list[NDArray[np.float64]]:
    """Each stage's scores normalised per query as ranx does (``min-max`` (s - min) / (max - min), ``max``
    s / max, ``sum`` (s - min) / (sum - n min), every denominator at least 1e-9), 0 where it lacks the
    document."""
    import numpy as np

    out = []
    for s in range(len(lined.scores)):
        score, lo = lined.scores[s], lined.per_line(lined.lo[s])
        with np.errstate(invalid="ignore"):  # NaN on the lines the stage lacks, set to 0 below
            if norm == "none":
                value = score
            elif norm == "min-max":
                value = (score - lo) / lined.per_line(np.maximum(lined.hi[s] - lined.lo[s], 1e-9))
            elif norm == "max":
                value = score / lined.per_line(np.maximum(lined.hi[s], 1e-9))
            elif norm == "sum":
                if lined.totals is None:
                    raise ValueError("norm='sum' reads the stages' totals: line_up(..., sums=True)")
                den = np.maximum(lined.totals[s] - lined.lo[s] * lined.counts[s], 1e-9)
                value = (score - lo) / lined.per_line(den)
            else:
                raise HarnessError(f"unknown norm {norm!r}")
        out.append(np.where(lined.present(s), value, 0.0))
    return out


def weighted(columns: Sequence[NDArray[np.float64]], weights: Sequence[float]) -> NDArray[np.float64]:
    """ranx's ``wsum``: the weighted normalised scores added stage by stage from 0 (Python's ``sum`` order)."""
    import numpy as np

    fused = np.zeros(len(columns[0]) if columns else 0)
    with np.errstate(over="ignore"):  # an overflow is refused where the fused run is ranked
        for w, column in zip(weights, columns, strict=True):
            fused = fused + w * column
    return fused


def _one_query(lists: Sequence[Hits], sums: bool = False) -> Lined:
    """One query's hit lists lined up, each in the one order of runs (score descending, equal scores in the
    order given), as a run file holds it and a fused retriever reads it."""
    return line_up([RunArrays.from_dict({"": hits}) for hits in lists], [""], sums)


def rrf(runs: Sequence[Hits], k: int = 60, depth: int | None = None) -> dict[str, float]:
    """Reciprocal rank fusion of one query's hit lists (:func:`rrf_scores`), each ranked by score descending,
    equal scores in the order given (ranx's ranking; a run file's order)."""
    lined = _one_query(runs)
    return dict(ranked(lined, rrf_scores(lined, k), depth).to_dict()[""])


def hybrid(dense: Hits, sparse: Hits, alpha: float, normalization: bool = False, weight_on_dense: bool = False,
           depth: int | None = None) -> dict[str, float]:
    """Pyserini's dense-sparse hybrid of one query's two hit lists (:func:`hybrid_scores`)."""
    lined = _one_query([dense, sparse])
    return dict(ranked(lined, hybrid_scores(lined, alpha, normalization, weight_on_dense), depth).to_dict()[""])


def wsum(runs: Sequence[Hits], weights: Sequence[float], norm: str = "none",
         depth: int | None = None) -> dict[str, float]:
    """Weighted sum of one query's normalised hit lists (missing documents count 0), as ranx's wsum; each list
    is taken in the one order of runs (``norm=sum`` adds its scores in that order)."""
    lined = _one_query(runs, sums=norm == "sum")
    return dict(ranked(lined, weighted(normalised(lined, norm), weights), depth).to_dict()[""])


#: the most weight tuples ``optimise=`` tries (a finer step or more runs is refused, not left to run for days)
MAX_TRIALS = 100_000


def weight_grid(runs: int, step: float) -> list[tuple[float, ...]]:
    """The weight tuples ranx's ``optimize_weights`` tries, in its order: every ``runs``-tuple of multiples of
    ``step`` in [0, 1] (rounded to ``step``'s decimals, as ranx rounds them) whose multiples add up to 1,
    decided in integers (see the module docstring); at most :data:`MAX_TRIALS` of them."""
    import math

    steps = round(1 / step)
    if steps < 1 or abs(steps * step - 1) > 1e-9:
        raise HarnessError(f"step={step!r}: 1 must be a whole number of steps (e.g. 0.1, 0.05, 0.25)")
    trials = math.comb(steps + runs - 1, runs - 1)
    if trials > MAX_TRIALS:
        raise HarnessError(f"step={step!r} over {runs} runs is {trials:,} weight tuples to try (at most "
                           f"{MAX_TRIALS:,}); take a coarser step, e.g. step=0.1")
    digits = str(step)[::-1].find(".")
    values = [round(i * step, digits) if digits >= 0 else float(i * step) for i in range(steps + 1)]

    def tuples(left: int, places: int) -> list[tuple[int, ...]]:  # lexicographic: itertools.product's order
        if places == 1:
            return [(left,)]
        return [(first, *rest) for first in range(left + 1) for rest in tuples(left - first, places - 1)]
    return [tuple(values[i] for i in seq) for seq in tuples(steps, runs)]


@dataclass(frozen=True)
class Optimised:
    """What an optimisation chose: the weights, their score and every tried tuple's score, in order."""

    weights: tuple[float, ...]
    score: float
    trials: list[tuple[tuple[float, ...], float]]


def optimise_wsum(runs: Sequence[AnyRun], judgements: Judgements, metric: str, norm: str, step: float,
                  depth: int) -> Optimised:
    """The ``wsum`` weights whose fused runs (each query cut to ``depth``) score the highest mean ``metric`` under
    ``judgements``, over :func:`weight_grid`; a tie goes to the later tuple (ranx's rule). The runs are lined up
    and normalised once; each tuple's fused run is :func:`weighted`'s, as a fused retriever computes it."""
    arrays = [r if isinstance(r, RunArrays) else RunArrays.from_dict(r) for r in runs]
    lined = line_up(arrays, list(dict.fromkeys(q for r in arrays for q in r.qids)), sums=norm == "sum")
    columns = normalised(lined, norm)
    name, _ = judgements.measure(metric)  # the name its values are keyed by
    best: tuple[tuple[float, ...], float] | None = None
    trials = []
    for weights in weight_grid(len(runs), step):
        per_query, _ = judgements.evaluate(ranked(lined, weighted(columns, weights), depth), [name])
        values = list(per_query[name].values())
        score = float(sum(values) / len(values)) if values else 0.0
        trials.append((weights, score))
        if best is None or score >= best[1]:
            best = (weights, score)
    assert best is not None  # the grid always holds (1, 0, ...)
    return Optimised(best[0], best[1], trials)


def stages_changed_settings(stages: Sequence[Retriever]) -> dict[str, Any]:
    """A composition's non-reference settings: those of its stages (a bf16 stage makes a bf16 fusion)."""
    merged: dict[str, Any] = {}
    for stage in stages:
        merged.update(stage.changed_settings())
    return merged


def elsewhere(stages: Sequence[StageRun]) -> bool:
    """Whether a stage's run was computed elsewhere (a run file, or a composition over one)."""
    return any(s.computed_elsewhere for s in stages)


@dataclass(frozen=True)
class StagesIndexed:
    """What a composition's ``index()`` did: nothing of its own; the documents and the stages it reads."""

    index: str
    documents: int | None
    stages: list[StageRef]
    computed: bool = False  # the stages' records say what they built
    store: str | None = None

    def summary(self) -> str:
        return f"index {self.index}"

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "documents": self.documents, "stages": self.stages}


class FusionFingerprint(TypedDict):
    kind: str
    method: str
    params: dict[str, Any]
    fusion_format: int
    stages: list[JsonObject]


class StageResult(StageRef):
    metrics: dict[str, float]


class ElsewhereNote(TypedDict, total=False):
    """What a composition's provenance says when a stage was computed elsewhere (a run file)."""

    computed_elsewhere: str


class OptimisedProvenance(TypedDict):
    """How ``optimise=`` chose a fusion's weights: on which split and measure, the choice and every trial."""

    split: str
    metric: str
    step: float
    weights: list[float]
    score: float
    trials: list[dict[str, Any]]
    stages: list[StageResult]


class FusionProvenance(TypedDict):
    fusion: str
    params: dict[str, Any]
    device: str
    computed_elsewhere: NotRequired[str]
    stages: list[StageResult]
    optimised: NotRequired[OptimisedProvenance]


class FusionRetriever:
    """Fuses the runs of its stages; its identity is the method, its parameters and the stages' own."""

    score_format = FLOAT64_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, stages: Sequence[Retriever]):
        self.spec = spec
        self.method = str(spec.params["method"])
        self.params = {k: v for k, v in spec.params.items() if k != "method"}
        self.stages = list(stages)
        self.stage_runs: list[StageRun] = []
        self.tuning_runs: list[StageRun] = []  # the stages on the split the weights are chosen on
        self.tuning_judgements: Judgements | None = None
        self.optimised: Optimised | None = None

    def stage_depth(self, depth: int) -> int:
        """How deep each stage is run: ``hits`` when given (Pyserini's hybrid takes 1000 from each), else
        the fused run's own depth."""
        return int(self.params.get("hits") or depth)

    def changed_settings(self) -> dict[str, Any]:
        return stages_changed_settings(self.stages)

    def fingerprint(self) -> FusionFingerprint:
        return {"kind": "fuse", "method": self.method, "params": self.params, "fusion_format": 1,
                "stages": [s.fingerprint() for s in self.stages]}

    def use_stages(self, stages: Sequence[StageRun]) -> None:
        """The stages' results (their runs as their run files hold them), from the runner."""
        self.stage_runs = list(stages)

    def tuning_split(self) -> str | None:
        """The split whose judgements choose this fusion's weights (``optimise=``), None when they are given."""
        split = self.params.get("optimise")
        return str(split) if split else None

    def use_tuning(self, stages: Sequence[StageRun], judgements: Judgements) -> None:
        """The stages' runs on the tuning split and its judgements, from the runner (before ``search``)."""
        self.tuning_runs, self.tuning_judgements = list(stages), judgements
        self.optimised = None

    def _searched(self) -> int | None:
        """The documents every stage searched here (a run computed elsewhere searched nothing here: its record
        says so, and so does this one); None when no stage searched."""
        if len(self.stage_runs) != len(self.stages):
            raise RuntimeError("use_stages() must run before index() and search()")
        searched = [s.documents_searched for s in self.stage_runs if not s.computed_elsewhere]
        if any(n is None for n in searched) or len(set(searched)) > 1:
            raise HarnessError(f"{self.spec.name}: its stages searched {searched} documents; every stage must "
                               "have searched the whole corpus (rerun them with --force)")
        return searched[0] if searched else None

    def help_index(self, dataset: Dataset) -> None:
        return None  # index() only reads the stages' runs

    def index(self, dataset: Dataset) -> StagesIndexed:
        searched = self._searched()
        documents = searched if searched is not None else self.stage_runs[0].documents_indexed
        return StagesIndexed("none (fusion of the stages' runs)", documents, [s.ref() for s in self.stage_runs])

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        sums = self.method == "wsum" and self.params.get("norm") == "sum"
        lined = line_up([stage.run for stage in self.stage_runs], list(queries), sums)
        return Searched(ranked(lined, self.fused(lined, k), k), self._searched(), "cpu", elsewhere(self.stage_runs))

    def fused(self, lined: Lined, k: int) -> NDArray[np.float64]:
        """Each line's fused score, by this retriever's method."""
        p = self.params
        if self.method == "rrf":
            return rrf_scores(lined, int(p["k"]))
        if self.method == "hybrid":
            return hybrid_scores(lined, float(p["alpha"]), bool(p["normalization"]), bool(p["weight_on_dense"]))
        if self.method == "wsum":
            return weighted(normalised(lined, str(p["norm"])), self.weights(k))
        raise HarnessError(f"unknown fusion method {self.method!r}")

    def weights(self, depth: int) -> list[float]:
        """``wsum``'s weights: as given, or chosen on the tuning split (once, at this run's depth)."""
        split = self.tuning_split()
        if split is None:
            return list(self.params["weights"])
        if self.optimised is None:
            if self.tuning_judgements is None or len(self.tuning_runs) != len(self.stages):
                raise RuntimeError("use_tuning() must run before search() when weights are optimised")
            self.optimised = optimise_wsum([s.run for s in self.tuning_runs], self.tuning_judgements,
                                           str(self.params["metric"]), str(self.params["norm"]),
                                           float(self.params["step"]), depth)
        return list(self.optimised.weights)

    def provenance(self, context: SearchContext) -> FusionProvenance:
        out: FusionProvenance = {"fusion": self.method, "params": self.params, "device": "cpu",
                                 "stages": [{**s.ref(), "metrics": s.metrics} for s in self.stage_runs]}
        if elsewhere(self.stage_runs):
            out["computed_elsewhere"] = "in part (a stage is a run file)"
        if self.optimised is not None:
            out["optimised"] = {
                "split": str(self.params["optimise"]), "metric": str(self.params["metric"]),
                "step": float(self.params["step"]), "weights": list(self.optimised.weights),
                "score": self.optimised.score,
                "trials": [{"weights": list(w), "score": v} for w, v in self.optimised.trials],
                "stages": [{**s.ref(), "metrics": s.metrics} for s in self.tuning_runs]}
        return out
