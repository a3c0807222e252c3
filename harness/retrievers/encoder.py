"""Turn texts into vectors with a Hugging Face encoder: length-sorted token-budget batches, no grad.

Texts are tokenised once, ordered by length (longest first), and packed into batches whose padded size
stays under ``batch_tokens``; short documents are never padded to long ones. Embeddings come back in
the input order, as float32.

How the forward pass is computed (:class:`Compute`) is decided before the model is loaded, from the
device, the requested precision and the model's ``config.json``, so it can be part of the embedding
cache key. The default is the reference computation, fp32 (TF32 off on CUDA): on CPU, BERT encoders run
the fused forward of :mod:`harness.retrievers.compute.fused_bert` (equal to transformers' to float32 rounding),
other encoders transformers' own forward. Speed modes are opt-in: bf16x3 (:mod:`harness.retrievers.compute.amx`,
CPUs with AMX), tf32 (float32 with TensorFloat-32 matmuls during the forward pass only, CUDA on Ampere and later:
:func:`harness.devices.tensor_float32`), bf16 and fp16 autocast.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.devices import exact_float32, pick_device, tensor_float32
from harness.errors import HarnessError
from harness.retrievers.base import Text
from harness.retrievers.compute.batching import TokenBudget, run_batches
from harness.retrievers.compute.plan import (
    Compute,
    default_batch_tokens,
    device_free_bytes,
    fit_gpu_budget,
    plan_compute,
)
from harness.retrievers.compute.threads import ThreadTuner
from harness.retrievers.config import EncoderConfig
from harness.retrievers.pooling import pool

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


#: a text longer than max length x this many characters is cut to a prefix before tokenizing
PREFIX_CHARS_PER_TOKEN = 32
#: tokens the prefix must hold beyond the max length (the cut may change the last ones)
PREFIX_MARGIN_TOKENS = 8


def _last_space(text: str, end: int) -> int:
    """The index of the last whitespace character before ``end`` (0 when there is none)."""
    for i in range(end - 1, max(0, end - 4096), -1):
        if text[i].isspace():
            return i
    return 0


class HFEncoder:
    """A :class:`~harness.retrievers.base.TextEncoder`: ``encode(texts, kind)`` -> float32 array of shape
    (len(texts), dim)."""

    def __init__(self, model_dir: str, config: EncoderConfig, *, device: str = "auto",
                 batch_tokens: int | None = None, max_batch: int = 256, precision: str = "fp32",
                 forward: str = "auto", compute: Compute | None = None, trust_remote_code: bool = False,
                 progress: bool = True, threads: int | None = None):
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call, unused-ignore]
        hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call, unused-ignore]

        self.config = config
        # a caller that already planned (DenseRetriever, for its cache key) passes its plan
        self.compute = compute or plan_compute(model_dir, device, precision, forward)
        self.device = pick_device(device)
        self.progress = progress
        self.folder = Path(model_dir)
        hf_dir = str(self.folder / config.transformer_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(hf_dir, trust_remote_code=trust_remote_code)
            self.model = _unwrap_dpr(load_model(hf_dir, trust_remote_code), hf_dir)
        except ValueError as e:
            if trust_remote_code or "trust_remote_code" not in str(e):
                raise
            raise HarnessError(f"{model_dir} ships its own Python code, which the harness does not run unless "
                               "you pass --trust-remote-code (only do so for code you have read)") from None
        self.model.eval().to(self.device)
        self.head = _load_head(self.folder, config).to(self.device)
        if self.compute.precision == "fp32":
            exact_float32(self.device)  # the reference computation: true float32 matmuls, not TensorFloat-32
        self.hidden = hidden = int(self.model.config.hidden_size)
        self.dim = config.embedding_dim(hidden)
        tokens = batch_tokens or default_batch_tokens(self.device, self.compute.precision, hidden)
        #: the token budget checked against the GPU's free memory (planner): None, or what was lowered
        self.budget_fit: dict[str, int] | None = None
        free = device_free_bytes(self.device)
        if free is not None:
            tokens, self.budget_fit = fit_gpu_budget(tokens, self.model.config.to_dict(),
                                                     int(config.max_length or 512), free)
        #: the batches' token budget, halved on each out-of-memory error (batch grouping only: float rounding;
        #: its ``backoffs`` are recorded)
        self.budget = TokenBudget(tokens, max_batch, self.device)
        self._skip: dict[str, int] = {}
        #: the thread count on CPU (harness.retrievers.compute.threads): ``threads`` where given
        #: (``Execution.threads``), else OMP_NUM_THREADS's where set, both fixed; else chosen between batches.
        #: None on a GPU
        self.threads: ThreadTuner | None = None
        if self.device.type == "cpu":
            if threads is not None:
                self.threads = ThreadTuner(threads, fixed=True)
            elif "OMP_NUM_THREADS" in os.environ:
                omp = os.environ["OMP_NUM_THREADS"].strip()  # torch's count may have been moved since start
                self.threads = ThreadTuner(int(omp) if omp.isdigit() and int(omp) > 0 else torch.get_num_threads(),
                                           fixed=True)
            else:
                from harness.distributed import cpu_threads

                self.threads = ThreadTuner(cpu_threads())
        self._fused = None
        if self.compute.forward.startswith("fused-bert"):
            from harness.retrievers.compute.fused_bert import FusedBertForward

            self._fused = FusedBertForward(self.model, backend=self.compute.forward.split("+", 1)[1])

    def forward(self, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states of one padded batch, as :attr:`compute` says."""
        if self._fused is not None:
            return self._fused(input_ids, mask)
        dtype = AUTOCAST.get(self.compute.precision)
        # tf32: TensorFloat-32 matmuls in this forward only, the flags restored after it
        tf32 = tensor_float32() if self.compute.precision == "tf32" else contextlib.nullcontext()
        with tf32, torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            hidden: torch.Tensor = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
        return hidden

    def tokenize(self, texts: Sequence[Text]) -> list[list[int]]:
        """Token ids, truncated to the max length; a (title, text) pair is tokenized as a pair, truncated
        longest first (DPR). A very long text is first cut to a prefix that still holds more tokens than the
        max length (cut at whitespace, so every word before the cut tokenizes as in the whole text): the ids
        are the same, without tokenizing megabytes that truncation drops. With ``append_eos`` the tokenizer's
        EOS token ends every text (after truncation to one token less)."""
        eos = self.tokenizer.eos_token_id if self.config.append_eos else None
        if self.config.append_eos and eos is None:
            raise HarnessError(f"{self.folder}: the recipe appends EOS, but the tokenizer has no EOS token")
        max_length = self.config.max_length
        pairs = [t for t in texts if isinstance(t, tuple)]
        if pairs and len(pairs) != len(texts):
            raise ValueError("a batch mixes texts and (title, text) pairs")
        if pairs:
            enc = self.tokenizer([a for a, _ in pairs], [self._prefix(b) for _, b in pairs], truncation=True,
                                 max_length=max_length, add_special_tokens=True, return_attention_mask=False)
        else:
            enc = self.tokenizer([self._prefix(t) for t in texts if isinstance(t, str)], truncation=True,
                                 max_length=max_length, add_special_tokens=True, return_attention_mask=False)
        ids: list[list[int]] = enc["input_ids"]
        if eos is not None:  # the first max_length - 1 tokens and EOS, whether the tokenizer adds it or not
            ids = [x if x and x[-1] == eos else [*x[:max_length - 1], eos] for x in ids]
        return ids

    def prompt_tokens(self, prompt: str) -> int:
        """How many leading tokens a prompt takes (its special start token included, a trailing special token
        not), as sentence-transformers counts them for ``include_prompt: false``."""
        if prompt not in self._skip:
            ids = self.tokenizer(prompt.lower() if self.config.lowercase else prompt)["input_ids"]
            special = set(getattr(self.tokenizer, "all_special_ids", []))
            self._skip[prompt] = len(ids) - (1 if ids and ids[-1] in special else 0)
        return self._skip[prompt]

    def _prefix(self, text: str) -> str:
        max_length = self.config.max_length
        chars = max_length * PREFIX_CHARS_PER_TOKEN
        if len(text) <= chars or getattr(self.tokenizer, "truncation_side", "right") != "right":
            return text
        while chars < len(text):
            cut = _last_space(text, chars)
            if cut > 0:
                prefix = text[:cut]
                n = len(self.tokenizer(prefix, add_special_tokens=False, truncation=False)["input_ids"])
                if n >= max_length + PREFIX_MARGIN_TOKENS:
                    return prefix
            chars *= 4
        return text

    @property
    def batch_tokens(self) -> int:
        """The token budget of a batch now (lowered by out-of-memory back-offs)."""
        return self.budget.tokens

    @batch_tokens.setter
    def batch_tokens(self, tokens: int) -> None:
        self.budget.tokens = tokens

    @property
    def backoffs(self) -> list[dict[str, int]]:
        """Each out-of-memory back-off: the token budget halved, and the rows of the batch that did not fit."""
        return self.budget.backoffs

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Index batches of similar length under the token budget (longest first)."""
        return self.budget.batches(lengths)

    @torch.inference_mode()
    def encode(self, texts: Sequence[Text], kind: str = "doc", desc: str | None = None, *,
               query_prefix: str | None = None) -> np.ndarray:
        """float32 vectors, one row per text (a string, or a (title, text) pair), in the input order;
        ``query_prefix`` replaces the recipe's query prefix (a dataset's own)."""
        if kind == "query":
            prefix = self.config.query_prefix if query_prefix is None else query_prefix
        else:
            prefix = self.config.doc_prefix
        texts = [_prepend(prefix, t, self.config.lowercase) for t in texts]
        skip = self.prompt_tokens(prefix) if prefix and not self.config.include_prompt else 0
        ids = self.tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        bar = _progress(len(ids), desc or f"encode {kind}s", self.progress)
        if self.threads is not None:
            self.threads.apply()

        def step(idx: np.ndarray) -> None:
            start = time.perf_counter()
            out[idx] = self._encode_batch(ids, idx, lengths, skip)
            if self.threads is not None:  # the work: padded tokens, attention's share growing with length
                width = int(lengths[idx].max())
                self.threads.batch_done(len(idx) * width * (1 + width / (6 * self.hidden)),
                                        time.perf_counter() - start)
            bar.update(len(idx))

        run_batches(self.budget, lengths, step)
        bar.close()
        return out

    def _encode_batch(self, ids: list[list[int]], idx: np.ndarray, lengths: np.ndarray, skip: int) -> np.ndarray:
        pad_id = self.tokenizer.pad_token_id or 0
        width = int(lengths[idx].max())
        input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            n = len(ids[i])
            input_ids[row, :n] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, :n] = 1
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        vec = self.head(pool(self.config.pooling, self.forward(input_ids, mask).float(), mask, skip))
        if self.config.normalize:
            vec = torch.nn.functional.normalize(vec, p=2, dim=-1)
        out: np.ndarray = vec.cpu().numpy()
        return out


def _prepend(prefix: str, text: Text, lowercase: bool) -> Text:
    """The prefix before the text (before the first of a pair, as sentence-transformers does), lowercased
    when the recipe says so (sentence-transformers lowercases the prompt too)."""
    if isinstance(text, tuple):
        first, second = prefix + text[0], text[1]
        return (first.lower(), second.lower()) if lowercase else (first, second)
    joined = prefix + text
    return joined.lower() if lowercase else joined


#: architectures AutoModel does not map to themselves (AutoModel loads every "dpr" config as a question
#: encoder, which would leave a context encoder's weights unread)
EXPLICIT_CLASSES = ("DPRContextEncoder", "DPRQuestionEncoder")


def load_model(folder: str, trust_remote_code: bool = False) -> Any:
    """The Hugging Face model of ``folder`` with all of its weights (``hub.load_checked``); DPR's encoders by
    their own classes."""
    import transformers
    from transformers import AutoConfig, AutoModel

    from harness.retrievers.hub import load_checked

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    arch = next((a for a in (getattr(config, "architectures", None) or []) if a in EXPLICIT_CLASSES), None)
    cls = getattr(transformers, arch) if arch else AutoModel
    return load_checked(cls, folder, trust_remote_code=trust_remote_code)


def _unwrap_dpr(model: Any, folder: str) -> Any:
    """DPR's encoders wrap a BERT whose first token's state is their output (``projection_dim`` 0): the
    harness runs that BERT and pools CLS, which is DPR's pooler output. A projection is refused."""
    for attr in ("question_encoder", "ctx_encoder"):
        inner = getattr(model, attr, None)
        if inner is not None and hasattr(inner, "bert_model"):
            if getattr(inner, "projection_dim", 0):
                raise HarnessError(f"{folder}: a DPR encoder with a projection (projection_dim "
                                   f"{inner.projection_dim}) is not one the harness implements")
            return inner.bert_model
    return model


ACTIVATION_FUNCTIONS = {"identity": torch.nn.Identity, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU,
                        "gelu": torch.nn.GELU, "sigmoid": torch.nn.Sigmoid}


class DenseHead(torch.nn.Module):
    """The Dense modules after pooling (sentence-transformers' ``Dense``): activation(W x + b), + residual."""

    def __init__(self, layers: list[tuple[torch.nn.Linear, torch.nn.Module, torch.nn.Linear | None, bool]]):
        super().__init__()
        self.linears = torch.nn.ModuleList([lin for lin, _, _, _ in layers])
        self.activations = torch.nn.ModuleList([act for _, act, _, _ in layers])
        self.residuals = torch.nn.ModuleList([res if res is not None else torch.nn.Identity() for *_, res, _ in layers])
        self.use_residual = [r for *_, r in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin, act, res, use in zip(self.linears, self.activations, self.residuals, self.use_residual, strict=True):
            y = act(lin(x))
            x = y + res(x) if use else y
        return x


def _load_head(folder: Path, config: EncoderConfig) -> torch.nn.Module:
    layers = []
    for layer in config.dense:
        state = _module_weights(folder / layer.path)
        lin = torch.nn.Linear(layer.in_features, layer.out_features, bias=layer.bias)
        res = torch.nn.Linear(layer.in_features, layer.out_features, bias=False) \
            if layer.residual and layer.in_features != layer.out_features else None
        wanted = {"linear.weight", *(["linear.bias"] if layer.bias else []), *(["residual.weight"] if res else [])}
        missing = wanted - set(state)
        if missing:
            raise HarnessError(f"{folder / layer.path}: the Dense weights lack {', '.join(sorted(missing))}")
        lin.weight.data.copy_(state["linear.weight"])
        if layer.bias:
            lin.bias.data.copy_(state["linear.bias"])
        if res is not None:
            res.weight.data.copy_(state["residual.weight"])
        layers.append((lin, ACTIVATION_FUNCTIONS[layer.activation](), res, layer.residual))
    return DenseHead(layers).eval()


def _module_weights(folder: Path) -> dict[str, torch.Tensor]:
    safetensors = folder / "model.safetensors"
    if safetensors.is_file():
        from safetensors.torch import load_file

        return load_file(str(safetensors))
    bin_file = folder / "pytorch_model.bin"
    if bin_file.is_file():
        try:
            state: dict[str, torch.Tensor] = torch.load(bin_file, map_location="cpu", weights_only=True)
            return state
        except pickle.UnpicklingError:
            raise HarnessError(f"refusing {bin_file}: it holds Python objects besides tensors") from None
    raise HarnessError(f"{folder}: no model.safetensors or pytorch_model.bin for this Dense module")


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from harness.progress import progress_bar

    return progress_bar(total, desc, "text", enabled=enabled)
