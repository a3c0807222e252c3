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
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from harness.errors import HarnessError
from harness.retrievers.base import JsonObject, Retriever, SearchContext, Searched, StageRef, StageRun
from harness.retrievers.spec import RetrieverSpec
from harness.trec import FLOAT64_SCORE_FORMAT, Run

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.data.judgements import Judgements

Hits = Mapping[str, float]


def _sorted(scores: dict[str, float], k: int | None) -> dict[str, float]:
    order = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return dict(order[:k] if k is not None else order)


def rrf(runs: Sequence[Hits], k: int = 60, depth: int | None = None) -> dict[str, float]:
    """Reciprocal rank fusion of one query's hit lists (each in rank order)."""
    fused: dict[str, float] = {}
    for hits in runs:
        for rank, doc in enumerate(hits, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (k + rank)
    return _sorted(fused, depth)


def hybrid(dense: Hits, sparse: Hits, alpha: float, normalization: bool = False, weight_on_dense: bool = False,
           depth: int | None = None) -> dict[str, float]:
    """Pyserini's dense-sparse hybrid of one query's two hit lists."""
    lo_d, hi_d = (min(dense.values()), max(dense.values())) if dense else (0.0, 1.0)
    lo_s, hi_s = (min(sparse.values()), max(sparse.values())) if sparse else (0.0, 1.0)
    fused: dict[str, float] = {}
    for doc in dict.fromkeys([*dense, *sparse]):
        d = dense.get(doc, lo_d)
        s = sparse.get(doc, lo_s)
        if normalization:  # where Pyserini divides by zero (one hit, equal scores) the run counts 0
            s = (s - (lo_s + hi_s) / 2) / (hi_s - lo_s) if hi_s != lo_s else 0.0
            d = (d - (lo_d + hi_d) / 2) / (hi_d - lo_d) if hi_d != lo_d else 0.0
        fused[doc] = alpha * s + d if not weight_on_dense else s + alpha * d
    return _sorted(fused, depth)


def normalise(hits: Hits, norm: str) -> dict[str, float]:
    """One query's scores normalised as ranx does: ``min-max`` (s - min) / (max - min), ``max`` s / max,
    ``sum`` (s - min) / (sum - n min), every denominator at least 1e-9."""
    if norm == "none" or not hits:
        return dict(hits)
    values = list(hits.values())
    if norm == "min-max":
        lo, hi = min(values), max(values)
        den = max(hi - lo, 1e-9)
        return {d: (s - lo) / den for d, s in hits.items()}
    if norm == "max":
        top = max(max(values), 1e-9)
        return {d: s / top for d, s in hits.items()}
    if norm == "sum":
        lo = min(values)
        den = max(sum(values) - lo * len(values), 1e-9)
        return {d: (s - lo) / den for d, s in hits.items()}
    raise HarnessError(f"unknown norm {norm!r}")


def wsum(runs: Sequence[Hits], weights: Sequence[float], norm: str = "none",
         depth: int | None = None) -> dict[str, float]:
    """Weighted sum of one query's normalised hit lists (missing documents count 0), as ranx's wsum."""
    normed = [normalise(h, norm) for h in runs]
    fused: dict[str, float] = {}
    for hits in normed:
        for doc in hits:
            if doc not in fused:
                fused[doc] = sum(w * h.get(doc, 0.0) for w, h in zip(weights, normed, strict=True))
    return _sorted(fused, depth)


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


def optimise_wsum(runs: Sequence[Mapping[str, Hits]], judgements: Judgements, metric: str, norm: str, step: float,
                  depth: int) -> Optimised:
    """The ``wsum`` weights whose fused runs (each query cut to ``depth``) score the highest mean ``metric`` under
    ``judgements``, over :func:`weight_grid`; a tie goes to the later tuple (ranx's rule). Each query's fused
    scores are those :func:`wsum` computes (the same products, added in the same order)."""
    import numpy as np

    queries = list(dict.fromkeys(q for run in runs for q in run))
    prepared = []  # per query: documents in id order, and each run's normalised scores over them (0: missing)
    for q in queries:
        normed = [normalise(run.get(q, {}), norm) for run in runs]
        docs = sorted({d for hits in normed for d in hits})
        prepared.append((docs, [np.array([h.get(d, 0.0) for d in docs], dtype=np.float64) for h in normed]))
    name, _ = judgements.measure(metric)  # the name its values are keyed by
    best: tuple[tuple[float, ...], float] | None = None
    trials = []
    for weights in weight_grid(len(runs), step):
        fused_run: dict[str, dict[str, float]] = {}
        for q, (docs, columns) in zip(queries, prepared, strict=True):
            fused = np.zeros(len(docs))
            for w, column in zip(weights, columns, strict=True):
                fused = fused + w * column  # sum() of the same products, left to right
            order = np.lexsort((np.arange(len(docs)), -fused))[:depth]  # score descending, then id ascending
            fused_run[q] = {docs[i]: float(fused[i]) for i in order}
        per_query, _ = judgements.evaluate(fused_run, [name])
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

    def index(self, dataset: Dataset) -> StagesIndexed:
        searched = self._searched()
        documents = searched if searched is not None else self.stage_runs[0].documents_indexed
        return StagesIndexed("none (fusion of the stages' runs)", documents, [s.ref() for s in self.stage_runs])

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        out: Run = {}
        for q in queries:
            lists = [stage.run.get(q, {}) for stage in self.stage_runs]
            out[q] = self.fuse(lists, k)
        return Searched(out, self._searched(), "cpu", elsewhere(self.stage_runs))

    def fuse(self, lists: list[dict[str, float]], k: int) -> dict[str, float]:
        p = self.params
        if self.method == "rrf":
            return rrf(lists, int(p["k"]), k)
        if self.method == "hybrid":
            return hybrid(lists[0], lists[1], float(p["alpha"]), bool(p["normalization"]),
                          bool(p["weight_on_dense"]), k)
        if self.method == "wsum":
            return wsum(lists, self.weights(k), str(p["norm"]), k)
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
