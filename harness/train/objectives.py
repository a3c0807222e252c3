"""Training objectives as classes: each owns its name, what it needs (pairs per window, a key encoder and
queue, a smallest batch) and how one optimiser step's micro-batches become losses and gradients. The trainer
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

from harness.registry import Registry

if TYPE_CHECKING:
    import torch

    from harness.train.loop import RunState

Batch = dict[str, "torch.Tensor"]


class TrainConfig(Protocol):
    """The options an objective reads (``harness.train.config.TrainConfig`` has them all)."""

    pairs: int
    batch_size: int
    grad_accum: int
    temperature: float
    weight_guard: str
    weight_eps: float
    weight_temperature: float


class LossOutput(Protocol):
    """A loss and its statistics (``harness.train.losses.LossOutput``)."""

    loss: torch.Tensor

    def stats(self) -> dict[str, float]: ...


class Objective:
    """A pre-training objective over contrastive batches (anchor crops, key crops; ``harness.train.crops``)."""

    name: ClassVar[str] = ""
    #: one line for ``harness train --help``
    summary: ClassVar[str] = ""
    #: a momentum key encoder and a queue of negative keys (the MoCo family)
    uses_queue: ClassVar[bool] = True
    #: the smallest --batch-size it can train with
    min_batch_size: ClassVar[int] = 1

    def pairs_per_window(self, cfg: TrainConfig) -> int:
        """m, the key crops drawn per window."""
        return 1

    def step(self, cfg: TrainConfig, run: RunState, micro: list[Batch]) -> list[dict[str, float]]:
        """Forward and backward over the step's micro-batches (gradients accumulate in the encoder); returns
        each loss's statistics. The optimiser step, gradient averaging and momentum update are the loop's."""
        raise NotImplementedError


class QueueObjective(Objective):
    """Anchors against key crops from the momentum encoder, with the queue's keys as negatives; the step's
    keys reach the queue once, after every micro-batch (so no micro-batch sees an earlier one's keys)."""

    def loss(self, cfg: TrainConfig, q: torch.Tensor, keys: torch.Tensor,
             negatives: torch.Tensor | None) -> LossOutput:
        """The loss of anchors ``q`` [B, d] against their keys [B, m, d] and the queue's negatives."""
        raise NotImplementedError

    def step(self, cfg: TrainConfig, run: RunState, micro: list[Batch]) -> list[dict[str, float]]:
        import torch

        from harness.train.loop import autocast
        from harness.train.moco import gather_nograd

        assert run.key_encoder is not None and run.queue is not None
        stats, keys = [], []
        m = self.pairs_per_window(cfg)
        negatives = float(run.queue.get().shape[0])  # 0 at step 1: the queue fills with each step's keys
        for batch in micro:
            with autocast(run.device, run.amp):
                q = run.encoder(batch["anchor_ids"], batch["anchor_mask"])
                with torch.no_grad():
                    k = run.key_encoder(batch["key_ids"], batch["key_mask"]).float().view(cfg.batch_size, m, -1)
                out = self.loss(cfg, q.float(), k, run.queue.get())
            loss = out.loss / cfg.grad_accum
            (run.scaler.scale(loss) if run.scaler else loss).backward()
            keys.append(k.reshape(-1, k.shape[-1]).float())
            stats.append({**out.stats(), "negatives": negatives})
        run.queue.enqueue(gather_nograd(torch.cat(keys)))  # once per step: no micro-batch saw these
        return stats


class RelevanceAware(QueueObjective):
    name = "relevance-aware"
    summary = "relevance-aware (ReContriever)"

    def pairs_per_window(self, cfg: TrainConfig) -> int:
        return cfg.pairs

    def loss(self, cfg: TrainConfig, q: torch.Tensor, keys: torch.Tensor,
             negatives: torch.Tensor | None) -> LossOutput:
        from harness.train.losses import relevance_aware_loss

        return relevance_aware_loss(q, keys, negatives, cfg.temperature, cfg.weight_guard, cfg.weight_eps,
                                    cfg.weight_temperature)


class Moco(QueueObjective):
    name = "moco"
    summary = "moco (Contriever's)"

    def loss(self, cfg: TrainConfig, q: torch.Tensor, keys: torch.Tensor,
             negatives: torch.Tensor | None) -> LossOutput:
        from harness.train.losses import moco_loss

        return moco_loss(q, keys[:, 0], negatives, cfg.temperature)


class InBatch(Objective):
    """In-batch negatives over the whole step's batch: every micro-batch and (gathered with gradient) every
    rank. One micro-batch: the plain forward and backward. Several: gradient caching, exact for a model
    whose forward is replayed with the same random state (dropout included)."""

    name = "inbatch"
    summary = "inbatch (Contriever's)"
    uses_queue = False
    min_batch_size = 2

    def step(self, cfg: TrainConfig, run: RunState, micro: list[Batch]) -> list[dict[str, float]]:
        import torch

        from harness.train.loop import autocast
        from harness.train.losses import inbatch_loss
        from harness.train.moco import gather_with_grad

        encoder, amp, scaler, device = run.encoder, run.amp, run.scaler, run.device
        if len(micro) == 1:
            batch = micro[0]
            with autocast(device, amp):
                q = encoder(batch["anchor_ids"], batch["anchor_mask"])
                k = encoder(batch["key_ids"], batch["key_mask"])
            k_all, offset = gather_with_grad(k.float())
            out = inbatch_loss(q.float(), k_all, cfg.temperature, offset)
            (scaler.scale(out.loss) if scaler else out.loss).backward()
            return [out.stats()]
        states, qs, ks = [], [], []
        with torch.no_grad():
            for batch in micro:
                states.append(_rng_states(device))
                with autocast(device, amp):
                    qs.append(encoder(batch["anchor_ids"], batch["anchor_mask"]).float())
                    ks.append(encoder(batch["key_ids"], batch["key_mask"]).float())
        end_state = _rng_states(device)
        q_all, k_local = torch.cat(qs).requires_grad_(), torch.cat(ks).requires_grad_()
        k_all, offset = gather_with_grad(k_local)
        out = inbatch_loss(q_all, k_all, cfg.temperature, offset)
        (scaler.scale(out.loss) if scaler else out.loss).backward()
        assert q_all.grad is not None and k_local.grad is not None
        row = 0
        for batch, state in zip(micro, states, strict=True):
            _set_rng_states(state, device)
            with autocast(device, amp):
                q = encoder(batch["anchor_ids"], batch["anchor_mask"]).float()
                k = encoder(batch["key_ids"], batch["key_mask"]).float()
            n = q.shape[0]
            torch.autograd.backward([q, k], [q_all.grad[row: row + n], k_local.grad[row: row + n]])
            row += n
        _set_rng_states(end_state, device)
        return [out.stats()]


class SupervisedPairs:
    """Few-shot fine-tuning's objective: labelled (query, document) pairs, the other pairs' documents and
    mined hard negatives as negatives (in-batch InfoNCE)."""

    name = "finetune-inbatch"

    def loss(self, q: torch.Tensor, d: torch.Tensor, temperature: float,
             hard: torch.Tensor | None) -> LossOutput:
        from harness.train.losses import inbatch_loss

        return inbatch_loss(q.float(), d.float(), temperature,
                            extra_negatives=None if hard is None else hard.float())


def _rng_states(device: torch.device) -> tuple[Any, Any]:
    import torch

    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def _set_rng_states(state: tuple[Any, Any], device: torch.device) -> None:
    import torch

    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)


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

