"""Every objective computes its logits and loss in fp32 from fp32 embeddings, whatever the encoder's precision:
a training step under bf16 autocast (on the CPU, as a GPU's default ``--precision auto`` runs) reports the
loss that the fp32 computation gives for the very embeddings the step produced, to 1e-6. Once, the
relevance-aware and moco losses ran inside the autocast block: their similarity einsums, relevance weights
and argmax in bf16, 2e-3 relative off the fp32 loss. The test walks the registry, so an objective added
later is held to it too."""

from __future__ import annotations

import pytest
import torch

from harness.train.config import TrainConfig
from harness.train.encoder import TrainEncoder
from harness.train.loop import objective_step
from harness.train.moco import KeyQueue
from harness.train.objectives import OBJECTIVES, Objective
from harness.train.state import RunState


def _run(tiny_bert, objective: Objective, amp: torch.dtype | None) -> RunState:
    from transformers import BertModel

    torch.manual_seed(0)
    encoder = TrainEncoder(BertModel.from_pretrained(tiny_bert, add_pooling_layer=False))
    encoder.train()
    key_encoder = queue = None
    if objective.uses_queue:
        key_encoder = encoder.frozen_copy()
        queue = KeyQueue(24, encoder.model.config.hidden_size)
        queue.enqueue(torch.randn(24, encoder.model.config.hidden_size) * 3)
    opt = torch.optim.SGD(encoder.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return RunState(torch.device("cpu"), tiny_bert, None, encoder, None, "", key_encoder, queue, opt, sched,  # type: ignore[arg-type]
                    None, amp, 0, 1, None)


def _batch(cfg: TrainConfig, m: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    B = cfg.batch_size
    return {"anchor_ids": torch.randint(5, 60, (B, 12), generator=g),
            "anchor_mask": torch.ones(B, 12, dtype=torch.long),
            "key_ids": torch.randint(5, 60, (B * m, 10), generator=g),
            "key_mask": torch.ones(B * m, 10, dtype=torch.long)}


@pytest.mark.parametrize("accum", [1, 2])
def test_a_bf16_step_reports_the_fp32_loss_of_its_own_embeddings(tiny_bert, tmp_path, monkeypatch, accum):
    names = OBJECTIVES.names()
    assert {"relevance-aware", "moco", "inbatch"} <= set(names)
    for name in names:
        objective = OBJECTIVES.get(name)
        own = {"pairs": 3} if "pairs" in objective.declared() else {}
        cfg = TrainConfig(init=str(tiny_bert), corpus="x", output=str(tmp_path), objective=name, **own,
                          batch_size=4, grad_accum=accum, temperature=0.05)
        run = _run(tiny_bert, objective, torch.bfloat16)
        seen: list[tuple[dict[str, torch.Tensor], float]] = []
        real = type(objective).loss

        def spy(self, cfg_, emb, real=real, seen=seen):
            out = real(self, cfg_, emb)
            seen.append(({k: v.detach().clone() for k, v in emb.items()}, float(out.loss.detach())))
            return out

        monkeypatch.setattr(type(objective), "loss", spy)
        m = objective.pairs_per_window(cfg)
        outs = objective_step(objective, cfg, run, [_batch(cfg, m, s) for s in range(accum)])
        monkeypatch.undo()
        assert len(seen) == len(outs) >= 1, name
        for (emb, _), out in zip(seen, outs, strict=True):
            assert all(t.dtype == torch.float32 for t in emb.values()), name
            with torch.autocast("cpu", enabled=False):  # the reference, computed here and not by the loop
                want = float(objective.loss(cfg, emb).loss)
            got = float(out.loss.detach())
            assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (name, got, want)
            # the same embeddings' loss under bf16 autocast is measurably another number: the test can fail
            with torch.autocast("cpu", dtype=torch.bfloat16):
                in_bf16 = float(objective.loss(cfg, emb).loss)
            assert abs(in_bf16 - want) > 1e-5 * max(1.0, abs(want)), (name, in_bf16, want)


def test_the_encoder_pools_in_fp32_under_autocast(tiny_bert):
    """Mean pooling sums token states: in bf16 a sum of 10 states loses ~3 digits; the trainer pools fp32."""
    from transformers import BertModel

    encoder = TrainEncoder(BertModel.from_pretrained(tiny_bert, add_pooling_layer=False))
    ids, mask = torch.randint(5, 60, (3, 10)), torch.ones(3, 10, dtype=torch.long)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = encoder(ids, mask)
    assert out.dtype == torch.float32
