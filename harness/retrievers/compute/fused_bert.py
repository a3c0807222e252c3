"""An inference-only forward pass for BERT encoders, arranged for CPUs.

It computes what ``transformers.BertModel(...).last_hidden_state`` computes in eval mode (absolute
positions, token type 0, no cross-attention), in float32, with the same operations in the same order,
laid out for a CPU's caches:

* the query, key and value projections are one matmul against a ``[3d, d]`` weight, so the activations
  are read once instead of three times and the head split is a view, not a copy;
* the feed-forward block runs in row blocks of ``ffn_block`` tokens, so the ``4d``-wide intermediate of a
  block stays in cache between its matmul, GELU and the down projection;
* the linear layers run through oneDNN with the bias, and the feed-forward's exact (erf) GELU, applied
  inside the matmul, against weights reordered once into oneDNN's blocked layout (instead of at every
  call), where this torch build has oneDNN; otherwise through ``torch.addmm``; or, in bf16x3
  (``backend="amx"``), through the AMX kernel of :mod:`harness.retrievers.compute.amx` on weights split and
  packed once, with the bias added in the kernel;
* residual additions are done in place; with oneDNN (whose fused linear allocates its output) the
  feed-forward's residual is added as each block's output is moved into the layer's output (one pass, where
  a copy and a later addition took two: ``z + x`` and ``x + z`` are the same float), and in bf16x3 the
  query/key/value projection is written into one buffer kept across layers and batches (see
  ``FusedBertForward._qkv_buffer``).

Attention is PyTorch's fused ``scaled_dot_product_attention``, as in transformers' default ``sdpa`` path.
With ``addmm`` the result is bit for bit transformers'; oneDNN sums in another order, which moves
MiniLM's hidden states by at most ~1e-5 (float32 rounding, as a different BLAS would); bf16x3 by at most
~1e-4 (its ~2^-16 relative error per product). Agreement is tested
on random BERTs with padding and on all-MiniLM-L6-v2 (tests/test_fused_bert.py); SciFact nDCG@10 is
identical (benchmarks/end_to_end/encode_vs_beir.py). Speed: benchmarks/compute/forward_variants.py, encode_flops.py and
forward_against_rev.py. Models
that are not plain BERT (RoBERTa's position offsets, relative positions, decoders, other activations)
keep transformers' own forward: :func:`unsupported_reason` says why.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "relu": F.relu}


def unsupported_reason(config: dict[str, Any]) -> str | None:
    """``None`` when a model with this ``config.json`` loads (through AutoModel) as a plain BERT encoder
    that this forward reproduces; otherwise the reason it does not apply."""
    if config.get("model_type") != "bert":
        return f"model_type {config.get('model_type')!r} is not 'bert'"
    if "auto_map" in config:
        return "the model ships its own modelling code"
    if config.get("is_decoder") or config.get("add_cross_attention"):
        return "decoder / cross-attention configuration"
    if config.get("position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {config.get('position_embedding_type')!r}"
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        return f"hidden_act {config.get('hidden_act')!r}"
    if config.get("hidden_size", 768) % config.get("num_attention_heads", 12):
        return "hidden size not divisible by the number of heads"
    return None


class _Layer(NamedTuple):
    w_qkv: torch.Tensor  # [3d, d]: query, key and value stacked; weights as _Linear.prepare returns them
    b_qkv: torch.Tensor
    w_o: torch.Tensor
    b_o: torch.Tensor
    norm1_w: torch.Tensor
    norm1_b: torch.Tensor
    w_in: torch.Tensor
    b_in: torch.Tensor
    w_out: torch.Tensor
    b_out: torch.Tensor
    norm2_w: torch.Tensor
    norm2_b: torch.Tensor


BACKENDS = ("amx", "onednn", "addmm")


class _Linear:
    """``y = act(x @ w.T + b)``, optionally into ``out``: oneDNN with the bias and activation fused, addmm,
    or the bf16x3 AMX kernel with the bias fused.

    :meth:`prepare` turns a ``[out, in]`` weight into the backend's form once: oneDNN's blocked layout laid
    out for about ``rows_hint`` rows per call (a copy), or the kernel's split bf16 tiles; a prepared weight
    is only for this class's calls.
    """

    def __init__(self, backend: str, rows_hint: int = 512):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.backend = backend
        self.rows_hint = rows_hint
        #: whether ``out=`` is written by the matmul itself (else the result is copied there: oneDNN's fused
        #: linear allocates its output)
        self.writes_out = backend != "onednn"

    def prepare(self, w: torch.Tensor) -> Any:
        if self.backend == "amx":
            from harness.retrievers.compute.amx import PackedWeight

            return PackedWeight(w)
        return torch.ops.mkldnn._reorder_linear_weight(w, self.rows_hint) if self.backend == "onednn" else w

    def __call__(self, x: torch.Tensor, w: Any, b: torch.Tensor, act: str = "none",
                 out: torch.Tensor | None = None) -> torch.Tensor:
        if self.backend == "amx":
            if act == "none":
                fused: torch.Tensor = w(x, b, out=out)
                return fused
            y = ACTIVATIONS[act](w(x, b))
            return out.copy_(y) if out is not None else y
        if self.backend == "onednn":
            z: torch.Tensor = torch.ops.mkldnn._linear_pointwise(x, w, b, act, [None] if act == "gelu" else [],
                                                                 "none" if act == "gelu" else "")
            if out is not None:
                out.copy_(z)
                return out
            return z
        y = torch.addmm(b, x, w.t(), out=out) if out is not None else torch.addmm(b, x, w.t())
        return ACTIVATIONS[act](y) if act != "none" else y


@functools.cache
def onednn_works() -> bool:
    """Whether this torch build runs oneDNN's fused linear, on a reordered weight, on this CPU, and it
    agrees with addmm."""
    if getattr(torch.ops, "mkldnn", None) is None \
            or not torch.backends.mkldnn.is_available():  # type: ignore[no-untyped-call, unused-ignore]
        return False
    try:
        gen = torch.Generator().manual_seed(0)
        x, w, b = (torch.randn(*shape, generator=gen) for shape in ((8, 16), (12, 16), (12,)))
        with torch.inference_mode():
            linear = _Linear("onednn", rows_hint=4)
            got = linear(x, linear.prepare(w), b, "gelu")
            return bool(torch.allclose(got, F.gelu(torch.addmm(b, x, w.t())), rtol=1e-5, atol=1e-5))
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class FusedBertForward:
    """``forward(input_ids, attention_mask) -> last_hidden_state`` for a :class:`transformers.BertModel`.

    Shares the model's embeddings, biases and norms. The weight matrices are copies: with addmm only the
    stacked query/key/value weight (3d^2 per layer: 85 MB of float32 for BERT-base), with oneDNN all four
    in its blocked layout (about the size of the encoder's layers again: 340 MB for BERT-base, 43 MB for
    MiniLM), with amx all four split into bf16 high and low parts (the same size). ``backend`` None:
    oneDNN where it works, else addmm (see the module docstring); "amx" is the bf16x3 kernel.
    """

    def __init__(self, model: Any, *, ffn_block: int = 512, backend: str | None = None):
        reason = (f"{type(model).__name__} is not transformers' BertModel" if type(model).__name__ != "BertModel"
                  else unsupported_reason(model.config.to_dict()))
        if reason:
            raise ValueError(f"the fused BERT forward does not apply: {reason}")
        config = model.config
        self.heads = config.num_attention_heads
        self.dim = config.hidden_size
        self.eps = config.layer_norm_eps
        self.act = config.hidden_act
        self.ffn_block = ffn_block
        self._per_thread = threading.local()  # the bf16x3 projection buffer (see _qkv_buffer)
        if backend is None:
            backend = "onednn" if onednn_works() else "addmm"
        self.linear = linear = _Linear(backend, rows_hint=ffn_block)
        emb = model.embeddings
        self.word = emb.word_embeddings.weight
        self.position = emb.position_embeddings.weight
        self.token_type0 = emb.token_type_embeddings.weight[0]
        self.emb_norm_w, self.emb_norm_b = emb.LayerNorm.weight, emb.LayerNorm.bias
        with torch.no_grad():
            self.layers = [_Layer(
                linear.prepare(torch.cat([lay.attention.self.query.weight, lay.attention.self.key.weight,
                                          lay.attention.self.value.weight])),
                torch.cat([lay.attention.self.query.bias, lay.attention.self.key.bias, lay.attention.self.value.bias]),
                linear.prepare(lay.attention.output.dense.weight), lay.attention.output.dense.bias,
                lay.attention.output.LayerNorm.weight, lay.attention.output.LayerNorm.bias,
                linear.prepare(lay.intermediate.dense.weight), lay.intermediate.dense.bias,
                linear.prepare(lay.output.dense.weight), lay.output.dense.bias,
                lay.output.LayerNorm.weight, lay.output.LayerNorm.bias,
            ) for lay in model.encoder.layer]

    @property
    def backend(self) -> str:
        return self.linear.backend

    def _qkv_buffer(self, rows: int) -> torch.Tensor | None:
        """Where the bf16x3 kernel writes the query/key/value projection: one buffer, kept across layers
        and batches. A fresh [rows, 3d] output of over 32 MiB (BERT-base from 4,096 tokens a batch) is a
        new mapping that glibc's malloc returns to the system when freed, so every layer would fault its
        pages in again: inside the kernel that costs about a third of the matmul's time
        (``python -m benchmarks.compute.amx_kernel``). One buffer per calling thread, as large as the largest
        batch so far. The other backends allocate their outputs (oneDNN's fused linear takes no ``out``)."""
        if self.linear.backend != "amx":
            return None
        buffer = getattr(self._per_thread, "qkv", None)
        if buffer is None or buffer.shape[0] < rows:
            buffer = self._per_thread.qkv = torch.empty(rows, 3 * self.dim)
        return buffer[:rows]

    @torch.inference_mode()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch, length = input_ids.shape
        d, heads, linear = self.dim, self.heads, self.linear
        # same order of additions as BertEmbeddings: (word + token type) + position
        x = (F.embedding(input_ids, self.word) + self.token_type0) + self.position[:length]
        x = F.layer_norm(x, (d,), self.emb_norm_w, self.emb_norm_b, self.eps).reshape(batch * length, d)
        keep = attention_mask.bool()
        mask = None if bool(keep.all()) else keep.view(batch, 1, 1, length)
        qkv_out = self._qkv_buffer(batch * length)
        for p in self.layers:
            qkv = linear(x, p.w_qkv, p.b_qkv, out=qkv_out).view(batch, length, 3, heads, d // heads)
            qkv = qkv.permute(2, 0, 3, 1, 4)  # (3, batch, heads, length, head_dim), a view
            ctx = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
            ctx = ctx.transpose(1, 2).reshape(batch * length, d)  # SDPA's output is token-major: no copy
            x = F.layer_norm(linear(ctx, p.w_o, p.b_o).add_(x), (d,), p.norm1_w, p.norm1_b, self.eps)
            ffn = torch.empty_like(x)
            for start in range(0, batch * length, self.ffn_block):
                rows = slice(start, start + self.ffn_block)
                hidden = linear(x[rows], p.w_in, p.b_in, self.act)
                if linear.writes_out:  # the down projection into its rows, the residual added after
                    linear(hidden, p.w_out, p.b_out, out=ffn[rows])
                else:  # oneDNN's output is new: the residual is added into the rows as it is moved there
                    torch.add(linear(hidden, p.w_out, p.b_out), x[rows], out=ffn[rows])
            if linear.writes_out:
                ffn.add_(x)
            x = F.layer_norm(ffn, (d,), p.norm2_w, p.norm2_b, self.eps)
        return x.view(batch, length, d)
