"""Training objectives as classes: each owns its name, what it needs (pairs per window, a key encoder and
queue, a smallest batch), what it encodes of a batch and the loss it computes from the encodings. The trainer
(``harness.train.trainer``) runs whichever is named by ``--objective``; a new objective is one subclass and
:func:`register_objective` (docs/ARCHITECTURE.md, "Add a training objective").

Built in (METHOD.md): ``relevance-aware`` (ReContriever: m key crops per window, each pair's InfoNCE term
weighted by its estimated relevance), ``moco`` (Contriever: one key crop, a queue of negatives) and
``inbatch`` (the other windows' keys are the negatives). :class:`SupervisedPairs` is few-shot fine-tuning's
objective (labelled pairs, in-batch and mined negatives).

This module imports no torch at load time (the option parser reads the names); the losses are imported
when a step runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from harness.params import Param
from harness.registry import Registry
from harness.train.guards import WEIGHT_GUARDS

if TYPE_CHECKING:
    import torch

    from harness.train.state import RunState

Batch = dict[str, "torch.Tensor"]
#: what an objective's loss is computed from: named tensors of one micro-batch (or of the whole step, joined)
Embeddings = dict[str, "torch.Tensor"]


class TrainConfig(Protocol):
    """What an objective reads of the options (``harness.train.config.TrainConfig``, ``FinetuneConfig``): the
    temperature, and its own options through :meth:`option`."""

    temperature: float

    def option(self, name: str) -> Any: ...


class LossOutput(Protocol):
    """A loss and its statistics (``harness.train.losses.LossOutput``)."""

    loss: torch.Tensor
    extra: dict[str, float]  # statistics of the objective's own, logged with the loss's

    def stats(self) -> dict[str, float]: ...


class Objective:
    """A pre-training objective over contrastive batches (anchor crops, key crops; ``harness.train.crops``).

    An objective says what to encode (:meth:`embed`) and what loss to compute from the encodings
    (:meth:`loss`); the step around them is the loop's (``harness.train.loop.objective_step``), the same for
    every objective: the encoder forwards run under the run's mixed precision, their outputs are cast to
    fp32, and the loss is computed with autocast off, so every logit, weight and softmax is fp32 whatever
    the encoder's precision (``tests/train/test_precision.py`` checks every registered objective).
    Accumulation is the loop's too: each micro-batch's loss over ``grad_accum``, or, for an objective whose
    loss couples the step's micro-batches (:attr:`spans_step`), one loss over the whole step by gradient
    caching."""

    name: ClassVar[str] = ""
    #: one line for ``harness train --help``
    summary: ClassVar[str] = ""
    #: a momentum key encoder and a queue of negative keys (the MoCo family)
    uses_queue: ClassVar[bool] = True
    #: the smallest --batch-size it can train with
    min_batch_size: ClassVar[int] = 1
    #: whether the loss couples every window of the step (in-batch negatives across micro-batches); the loop
    #: then computes it once over the step's joined embeddings and replays each micro-batch (gradient caching)
    spans_step: ClassVar[bool] = False
    #: the objective's own options, declared once (``harness.params.Param``; the name is the flag): shown under
    #: the objective's name in ``harness train --help``, checked like every option (command line, YAML,
    #: Python), recorded with the hyper-parameters a checkpoint keeps and a resume must match; read in the
    #: objective as ``cfg.option("name")``. Subclasses add to their bases' (:meth:`declared`).
    params: ClassVar[tuple[Param, ...]] = ()

    @classmethod
    def declared(cls) -> dict[str, Param]:
        """Every option of this objective, its bases' first, by option name (``--queue-size`` -> queue_size)."""
        out: dict[str, Param] = {}
        for klass in reversed(cls.__mro__):
            for param in vars(klass).get("params", ()):
                out[option_name(param)] = param
        return out

    def pairs_per_window(self, cfg: TrainConfig) -> int:
        """m, the key crops drawn per window."""
        return 1

    def embed(self, cfg: TrainConfig, run: RunState, batch: Batch) -> Embeddings:
        """The encoder forwards of one micro-batch (the loop runs this under the run's autocast and casts every
        tensor to fp32); what needs no gradient is computed under ``torch.no_grad()`` here. Rows of every
        tensor follow the batch's windows (the loop joins and slices micro-batches by rows)."""
        raise NotImplementedError

    def loss(self, cfg: TrainConfig, emb: Embeddings) -> LossOutput:
        """The loss of fp32 embeddings, a pure function of them (the loop calls it with autocast off)."""
        raise NotImplementedError

    def after_step(self, cfg: TrainConfig, run: RunState, embs: list[Embeddings]) -> None:
        """After every micro-batch's backward pass of a step (a queue takes the step's keys here)."""


class QueueObjective(Objective):
    """Anchors against key crops from the momentum encoder, with the queue's keys as negatives; the step's
    keys reach the queue once, after every micro-batch (so no micro-batch sees an earlier one's keys)."""

    params: ClassVar[tuple[Param, ...]] = (
        Param("--queue-size", int, 131072, "negative keys kept in the queue", low=0, high=2**31 - 1),
        Param("--momentum", float, 0.9995, "momentum of the key encoder", low=0, high=1))

    def pair_loss(self, cfg: TrainConfig, q: torch.Tensor, keys: torch.Tensor,
                  negatives: torch.Tensor | None) -> LossOutput:
        """The loss of anchors ``q`` [B, d] against their keys [B, m, d] and the queue's negatives [K, d]."""
        raise NotImplementedError

    def embed(self, cfg: TrainConfig, run: RunState, batch: Batch) -> Embeddings:
        import torch

        assert run.key_encoder is not None and run.queue is not None
        q = run.encoder(batch["anchor_ids"], batch["anchor_mask"])
        with torch.no_grad():
            k = run.key_encoder(batch["key_ids"], batch["key_mask"])
        return {"q": q, "keys": k.reshape(q.shape[0], self.pairs_per_window(cfg), -1), "negatives": run.queue.get()}

    def loss(self, cfg: TrainConfig, emb: Embeddings) -> LossOutput:
        negatives = emb["negatives"]
        out = self.pair_loss(cfg, emb["q"], emb["keys"], negatives)
        # 0 at step 1: the queue fills with each step's keys
        out.extra["negatives"] = float(negatives.shape[0])
        return out

    def after_step(self, cfg: TrainConfig, run: RunState, embs: list[Embeddings]) -> None:
        import torch

        from harness.train.moco import gather_nograd

        assert run.queue is not None
        keys = torch.cat([e["keys"].reshape(-1, e["keys"].shape[-1]) for e in embs])
        run.queue.enqueue(gather_nograd(keys.detach()))  # once per step: no micro-batch saw these


class RelevanceAware(QueueObjective):
    name = "relevance-aware"
    summary = "relevance-aware (ReContriever)"
    params: ClassVar[tuple[Param, ...]] = (
        Param("--pairs", int, 4, "key crops per window m", low=1, high=1024),
        Param("--weight-guard", str, "clamp", "guard of the relevance normalisation against non-positive sums; "
              "uniform: equal weights, the control arm (docs/TRAINING.md)", choices=WEIGHT_GUARDS),
        Param("--weight-eps", float, 1e-6, "epsilon of the relevance normalisation", low=0, high=1, low_open=True),
        Param("--weight-temperature", float, 1.0, "temperature of --weight-guard softmax", low=0, high=100,
              low_open=True))

    def pairs_per_window(self, cfg: TrainConfig) -> int:
        return int(cfg.option("pairs"))

    def pair_loss(self, cfg: TrainConfig, q: torch.Tensor, keys: torch.Tensor,
                  negatives: torch.Tensor | None) -> LossOutput:
        from harness.train.losses import relevance_aware_loss

        return relevance_aware_loss(q, keys, negatives, cfg.temperature, cfg.option("weight_guard"),
                                    cfg.option("weight_eps"), cfg.option("weight_temperature"))


class Moco(QueueObjective):
    name = "moco"
    summary = "moco (Contriever's)"

    def pair_loss(self, cfg: TrainConfig, q: torch.Tensor, keys: torch.Tensor,
                  negatives: torch.Tensor | None) -> LossOutput:
        from harness.train.losses import moco_loss

        return moco_loss(q, keys[:, 0], negatives, cfg.temperature)


class InBatch(Objective):
    """In-batch negatives over the whole step's batch: every micro-batch (the loop's gradient caching, exact
    for a model whose forward is replayed with the same random state, dropout included) and every rank
    (gathered with gradient)."""

    name = "inbatch"
    summary = "inbatch (Contriever's)"
    uses_queue = False
    min_batch_size = 2
    spans_step = True

    def embed(self, cfg: TrainConfig, run: RunState, batch: Batch) -> Embeddings:
        return {"q": run.encoder(batch["anchor_ids"], batch["anchor_mask"]),
                "k": run.encoder(batch["key_ids"], batch["key_mask"])}

    def loss(self, cfg: TrainConfig, emb: Embeddings) -> LossOutput:
        from harness.train.losses import inbatch_loss
        from harness.train.moco import gather_with_grad

        k_all, offset = gather_with_grad(emb["k"])
        return inbatch_loss(emb["q"], k_all, cfg.temperature, offset)


class SupervisedPairs(Objective):
    """Few-shot fine-tuning's objective (``harness finetune``): labelled (query, document) pairs, the other
    pairs' documents and mined hard negatives as negatives (in-batch InfoNCE). Its batches are tokenised
    pairs (``query_ids``/``query_mask``, ``doc_ids``/``doc_mask``, optionally ``hard_ids``/``hard_mask``),
    not crops, so it is not one of ``--objective``'s choices; it runs through the same step as they do."""

    name = "finetune-inbatch"
    summary = "few-shot fine-tuning: labelled pairs, in-batch and mined negatives"
    uses_queue = False
    min_batch_size = 2
    spans_step = True

    def embed(self, cfg: TrainConfig, run: RunState, batch: Batch) -> Embeddings:
        emb = {"q": run.encoder(batch["query_ids"], batch["query_mask"]),
               "d": run.encoder(batch["doc_ids"], batch["doc_mask"])}
        if "hard_ids" in batch:
            emb["hard"] = run.encoder(batch["hard_ids"], batch["hard_mask"])
        return emb

    def loss(self, cfg: TrainConfig, emb: Embeddings) -> LossOutput:
        from harness.train.losses import inbatch_loss

        return inbatch_loss(emb["q"], emb["d"], cfg.temperature, extra_negatives=emb.get("hard"))


def option_name(param: Param) -> str:
    """The Python name of an objective's option (``--queue-size`` -> ``queue_size``)."""
    return param.name.lstrip("-").replace("-", "_")


def all_options() -> dict[str, tuple[Param, list[str]]]:
    """Every registered objective's options by name, with the objectives that declare each (the command line
    offers each flag once; its value goes to the objective run)."""
    out: dict[str, tuple[Param, list[str]]] = {}
    for name in OBJECTIVES.names():
        for key, param in OBJECTIVES.get(name).declared().items():
            out.setdefault(key, (param, []))[1].append(name)
    return out


OBJECTIVES: Registry[Objective] = Registry("objective")


def register_objective(objective: Objective) -> Objective:
    """Add a pre-training objective (the public API); duplicates raise."""
    if not objective.name:
        raise ValueError(f"{type(objective).__name__}: an objective needs a name")
    return OBJECTIVES.register(objective.name, objective)


def objective_names() -> list[str]:
    """The registered objectives' names, for the option parser and validation."""
    return OBJECTIVES.names()


def get_objective(name: str) -> Objective:
    return OBJECTIVES.get(name)


for _objective in (RelevanceAware(), Moco(), InBatch()):
    register_objective(_objective)

