"""The losses on hand-made embeddings, checked against METHOD.md's formula written out by hand."""

import math

import pytest
import torch

from harness.train.losses import (
    inbatch_loss,
    moco_loss,
    pair_losses,
    relevance_aware_loss,
    relevance_weights,
    weight_stats,
)
from harness.train.moco import KeyQueue, momentum_update

TAU = 0.05


def _by_hand(q, keys, queue, tau=TAU):
    """The formula with python loops: returns (L, l[b][i], w[b][i])."""
    B, m = keys.shape[0], keys.shape[1]
    ls, ws = [], []
    for b in range(B):
        s_pos = [float(q[b] @ keys[b, i]) for i in range(m)]
        s_neg = [float(q[b] @ n) for n in queue]
        row = []
        for i in range(m):
            num = math.exp(s_pos[i] / tau)
            den = num + sum(math.exp(s / tau) for s in s_neg)
            row.append(-math.log(num / den))
        ls.append(row)
        ws.append([s / sum(s_pos) for s in s_pos])
    L = sum(ws[b][i] * ls[b][i] for b in range(B) for i in range(m)) / (m * B)
    return L, ls, ws


def _example(B=3, m=4, d=5, K=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.rand(B, d, generator=g, dtype=torch.float64) * 0.5  # non-negative => positive relevances
    keys = torch.rand(B, m, d, generator=g, dtype=torch.float64) * 0.5
    queue = torch.randn(K, d, generator=g, dtype=torch.float64) * 0.3
    return q, keys, queue


def test_relevance_aware_loss_equals_formula():
    q, keys, queue = _example()
    out = relevance_aware_loss(q, keys, queue, tau=TAU)
    L, ls, ws = _by_hand(q, keys, queue)
    assert out.loss.item() == pytest.approx(L, rel=1e-9)
    for b in range(3):
        assert out.weights[b].tolist() == pytest.approx(ws[b], rel=1e-9)
        assert out.weights[b].sum().item() == pytest.approx(1.0)


def test_pair_losses_match_hand_values_and_tiny_example():
    # one anchor, one key, one negative, tau = 1: l = -log(e^1 / (e^1 + e^0))
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[[1.0, 0.0]]])
    queue = torch.tensor([[0.0, 1.0]])
    losses, correct = pair_losses(q, k, queue, tau=1.0)
    assert losses.item() == pytest.approx(-math.log(math.e / (math.e + 1)))
    assert correct.item()
    _, ls, _ = _by_hand(*_example())
    losses, _ = pair_losses(*_example(), tau=TAU)
    for row, expected in zip(losses.tolist(), ls, strict=True):
        assert row == pytest.approx(expected, rel=1e-9)


def test_equal_weights_give_moco_loss_scaled_by_one_over_m():
    """Weights sum to 1 per window, so equal weights are 1/m and L = (1/m) * mean of the m*B pair losses."""
    m = 4
    q = torch.tensor([[0.3, 0.1, 0.2]], dtype=torch.float64).repeat(2, 1)
    base = torch.tensor([[0.5, 0.2, 0.1]], dtype=torch.float64)
    # keys with the same relevance to their anchor but different directions -> different losses
    keys = torch.stack([base, base + torch.tensor([[0.0, 0.3, -0.15]], dtype=torch.float64),
                        base + torch.tensor([[0.1, -0.3, 0.0]], dtype=torch.float64),
                        base + torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)], dim=1).repeat(2, 1, 1)
    keys = keys.squeeze(2)
    queue = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    r = torch.einsum("bd,bmd->bm", q, keys)
    assert torch.allclose(r, r[:, :1].expand_as(r))  # equal relevance => equal weights
    ra = relevance_aware_loss(q, keys, queue, tau=TAU)
    assert torch.allclose(ra.weights, torch.full((2, m), 1 / m, dtype=ra.weights.dtype))
    plain = moco_loss(q, keys, queue, tau=TAU)
    assert ra.loss.item() == pytest.approx(plain.loss.item() / m, rel=1e-9)
    # and with m = 1 the weight is 1: relevance-aware == MoCo exactly
    one = relevance_aware_loss(q, keys[:, :1], queue, tau=TAU)
    assert one.loss.item() == pytest.approx(moco_loss(q, keys[:, 0], queue, tau=TAU).loss.item(), rel=1e-12)


def test_no_gradient_flows_into_the_weights():
    q, keys, queue = _example()
    q = q.clone().requires_grad_(True)
    keys = keys.clone().requires_grad_(True)
    out = relevance_aware_loss(q, keys, queue, tau=TAU)
    assert not out.weights.requires_grad
    out.loss.backward()
    # gradient = sum w * dl/dq with w treated as constants
    q2, k2 = q.detach().clone().requires_grad_(True), keys.detach().clone().requires_grad_(True)
    losses, _ = pair_losses(q2, k2, queue, TAU)
    w_const = out.weights.detach()
    ((w_const * losses).sum() / losses.numel()).backward()
    assert torch.allclose(q.grad, q2.grad) and torch.allclose(keys.grad, k2.grad)


def test_weight_guards():
    q = torch.tensor([[1.0, 0.0]])
    keys = torch.tensor([[[1.0, 0.0], [-1.0, 0.0], [0.5, 0.0]]])  # relevances 1, -1, 0.5 (sum 0.5)
    clamp = relevance_weights(q, keys, "clamp", eps=1e-6)
    assert clamp.sum().item() == pytest.approx(1.0)
    assert clamp[0].tolist() == pytest.approx([1 / 1.5, 0.0, 0.5 / 1.5], abs=1e-5)
    raw = relevance_weights(q, keys, "raw")
    assert raw[0].tolist() == pytest.approx([2.0, -2.0, 1.0])
    neg = torch.tensor([[[-1.0, 0.0], [-0.5, 0.0]]])
    assert relevance_weights(q, neg, "raw")[0].tolist() == pytest.approx([0.5, 0.5])
    clamped = relevance_weights(q, neg, "clamp")
    assert torch.isfinite(clamped).all() and clamped.sum().item() == pytest.approx(1.0)
    soft = relevance_weights(q, keys, "softmax", weight_temperature=1.0)
    assert soft[0].tolist() == pytest.approx(torch.softmax(torch.tensor([1.0, -1.0, 0.5]), 0).tolist())
    with pytest.raises(ValueError):
        relevance_weights(q, keys, "nope")


def test_weight_stats():
    w = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    s = weight_stats(w)
    assert s["w_mean"] == pytest.approx(0.5) and s["w_min"] == 0.0 and s["w_max"] == 1.0
    assert s["w_entropy"] == pytest.approx(math.log(2) / 2, abs=1e-6)


def test_inbatch_loss_is_cross_entropy_on_the_diagonal():
    q = torch.eye(3)
    k = torch.eye(3)
    out = inbatch_loss(q, k, tau=1.0)
    expected = -math.log(math.e / (math.e + 2))
    assert out.loss.item() == pytest.approx(expected)
    assert out.accuracy == 1.0


def test_queue_update_matches_fifo_definition():
    queue = KeyQueue(size=5, dim=2)
    assert queue.get().shape == (0, 2)
    a = torch.arange(6.0).view(3, 2)
    queue.enqueue(a)
    assert queue.filled == 3 and queue.ptr == 3 and torch.equal(queue.get(), a)
    b = torch.arange(100.0, 106.0).view(3, 2)
    queue.enqueue(b)  # wraps: slots 3, 4 then 0
    assert queue.filled == 5 and queue.ptr == 1
    assert torch.equal(queue.buffer, torch.stack([b[2], a[1], a[2], b[0], b[1]]))
    big = torch.arange(14.0).view(7, 2)
    queue.enqueue(big)  # more keys than slots: only the newest 5 survive
    assert sorted(queue.buffer[:, 0].tolist()) == sorted(big[2:, 0].tolist())
    state = queue.state_dict()
    other = KeyQueue(5, 2)
    other.load_state_dict(state)
    assert torch.equal(other.buffer, queue.buffer) and other.ptr == queue.ptr and other.filled == 5


def test_momentum_update_matches_definition():
    torch.manual_seed(0)
    fq, fk = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in fk.parameters()]
    momentum_update(fk, fq, 0.9)
    for pk, pk0, pq in zip(fk.parameters(), before, fq.parameters(), strict=True):
        assert torch.allclose(pk, 0.9 * pk0 + 0.1 * pq)
        assert not pk.requires_grad or pk.grad is None
