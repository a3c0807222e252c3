"""A ColBERT model's token embeddings (torch): the transformer run by the harness's encoder
(:class:`~harness.retrievers.encoder.HFEncoder`: its planned compute, token budget batches and out-of-memory
back-off), the linear projection, the markers, the query augmentation with ``[MASK]``, the document skiplist and
the per-token L2 normalisation, as Stanford ColBERT and PyLate compute them (``harness.retrievers.colbert_config``).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.devices import is_out_of_memory
from harness.errors import HarnessError
from harness.retrievers.colbert_config import ColbertConfig, Projection
from harness.retrievers.compute.plan import Compute
from harness.retrievers.config import EncoderConfig


@dataclass(frozen=True)
class TokenIds:
    """The token ids a ColBERT model reads besides the text's: its markers, [MASK], padding, the skiplist."""

    query_marker: int
    doc_marker: int
    mask: int
    pad: int
    skiplist: frozenset[int]


def _weights(folder: Path, projection: Projection) -> torch.Tensor:
    path = folder / projection.file
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                if projection.tensor not in f.keys():  # noqa: SIM118 (safe_open has no __contains__)
                    raise HarnessError(f"{path}: no {projection.tensor} (the ColBERT projection); this is not a "
                                       "ColBERT checkpoint, or its projection was not saved (save it with its "
                                       "linear layer)")
                weight: torch.Tensor = f.get_tensor(projection.tensor)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if projection.tensor not in state:
                raise HarnessError(f"{path}: no {projection.tensor} (the ColBERT projection); this is not a "
                                   "ColBERT checkpoint, or its projection was not saved (save it with its linear "
                                   "layer)")
            weight = state[projection.tensor]
    except pickle.UnpicklingError:
        raise HarnessError(f"refusing {path}: it holds Python objects besides tensors; use a model.safetensors "
                           "copy") from None
    except OSError as e:
        raise HarnessError(f"{path}: unreadable ({e})") from None
    expected = (projection.out_features, projection.in_features)
    if projection.in_features and tuple(weight.shape) != expected:
        raise HarnessError(f"{path}: {projection.tensor} has shape {tuple(weight.shape)}, the configuration says "
                           f"{expected}; the weights do not belong to this configuration")
    return weight.float()


def _bias(folder: Path, projection: Projection) -> torch.Tensor | None:
    if not projection.bias:
        return None
    return _weights(folder, Projection(projection.file, projection.tensor.replace("weight", "bias"), 0, 0))


class ColbertEncoder:
    """Token embeddings of queries and documents: float32, L2-normalised per token."""

    def __init__(self, folder: Path, config: ColbertConfig, *, device: str, compute: Compute,
                 batch_tokens: int | None = None, trust_remote_code: bool = False, progress: bool = True):
        from harness.retrievers.encoder import HFEncoder

        self.folder, self.config = Path(folder), config
        # documents: the tokenizer's truncation leaves room for the marker (the lengths count it)
        hf_config = EncoderConfig(pooling="cls", max_length=config.doc_length - 1,
                                  transformer_path=config.transformer_path, source=config.source)
        self.hf = HFEncoder(str(folder), hf_config, device=device, batch_tokens=batch_tokens, compute=compute,
                            trust_remote_code=trust_remote_code, progress=progress)
        self.device = self.hf.device
        self.tokenizer = self.hf.tokenizer
        self.ids = token_ids(self.tokenizer, config, self.folder)
        layers = []
        for p in config.projection:
            weight = _weights(self.folder, p)
            bias = _bias(self.folder, p)
            lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
            lin.weight.data.copy_(weight)
            if bias is not None and lin.bias is not None:
                lin.bias.data.copy_(bias)
            layers.append(lin)
        hidden = int(self.hf.model.config.hidden_size)
        if layers[0].in_features != hidden:
            raise HarnessError(f"{self.folder / config.projection[0].file}: the projection takes "
                               f"{layers[0].in_features} features, the transformer gives {hidden}; the weights do "
                               "not belong to this model")
        self.projection = torch.nn.Sequential(*layers).eval().to(self.device)

    @property
    def dim(self) -> int:
        return self.config.dim

    def query_ids(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and attention of each query: [CLS] marker text [SEP], truncated to the query length, then
        (query augmentation) [MASK] up to the query length, attended only where the model says."""
        c, ids = self.config, self.ids
        enc = self.tokenizer(list(texts), truncation=True, max_length=c.query_length - 1, add_special_tokens=True,
                             return_attention_mask=False)["input_ids"]
        out, attention = [], []
        for x in enc:
            row = [*x[:1], ids.query_marker, *x[1:]]
            pad = c.query_length - len(row) if c.query_expansion else 0
            out.append(row + [ids.mask] * pad)
            attention.append([1] * len(row) + [1 if c.attend_to_masks else 0] * pad)
        return out, attention

    def doc_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each document: [CLS] marker text [SEP], truncated to the document length."""
        return [[*x[:1], self.ids.doc_marker, *x[1:]] for x in self.hf.tokenize(list(texts))]

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """queries x query tokens x dim (every query token kept, [MASK]s included; queries without
        augmentation padded with zero rows, which add nothing to a MaxSim score)."""
        ids, attention = self.query_ids(texts)
        return self._encode(ids, attention, documents=False, desc="encode queries")

    def encode_documents(self, texts: Sequence[str], desc: str = "encode documents") -> np.ndarray:
        """documents x width x dim: each document's kept tokens (not in the skiplist), zero rows after them."""
        ids = self.doc_ids(texts)
        return self._encode(ids, [[1] * len(x) for x in ids], documents=True, desc=desc)

    @torch.inference_mode()
    def _encode(self, ids: list[list[int]], attention: list[list[int]], *, documents: bool,
                desc: str) -> np.ndarray:
        from harness.progress import progress_bar

        keep = [[not (documents and t in self.ids.skiplist) for t in x] for x in ids]
        kept = [sum(k) for k in keep]
        out = np.zeros((len(ids), max(kept, default=0), self.dim), dtype=np.float32)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        pending = self.hf.batches(lengths)[::-1]
        bar = progress_bar(len(ids), desc, "text", enabled=self.hf.progress)
        while pending:
            idx = pending.pop()
            try:
                for i, vectors in zip(idx, self._batch(ids, attention, keep, idx, int(lengths[idx].max())),
                                      strict=True):
                    out[i, :len(vectors)] = vectors
                bar.update(len(idx))
                continue
            except RuntimeError as e:
                if not is_out_of_memory(e):
                    raise
            pending.extend(self.hf._back_off(idx, int(lengths[idx].max())))
        bar.close()
        return out

    def _batch(self, ids: list[list[int]], attention: list[list[int]], keep: list[list[bool]], idx: np.ndarray,
               width: int) -> list[np.ndarray]:
        input_ids = torch.full((len(idx), width), self.ids.pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):
            input_ids[row, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
            mask[row, :len(ids[i])] = torch.tensor(attention[i], dtype=torch.long)
        hidden = self.hf.forward(input_ids.to(self.device), mask.to(self.device)).float()
        vectors = torch.nn.functional.normalize(self.projection(hidden), p=2, dim=-1).cpu().numpy()
        return [vectors[row, :len(ids[i])][np.asarray(keep[i], dtype=bool)] for row, i in enumerate(idx)]


def token_ids(tokenizer: object, config: ColbertConfig, folder: Path) -> TokenIds:
    """The ids of the markers, [MASK], padding and the skiplist in ``tokenizer``; a marker the tokenizer does not
    hold is refused (PyLate would add it with a random embedding)."""
    convert = getattr(tokenizer, "convert_tokens_to_ids")  # noqa: B009 (a tokenizer of any class)
    unk = getattr(tokenizer, "unk_token_id", None)

    def marker(token: str, what: str) -> int:
        found = convert(token)
        if not isinstance(found, int) or found == unk:
            raise HarnessError(f"{folder}: the tokenizer has no token {token!r} (the {what} marker); save the model "
                               "with its tokenizer (PyLate adds its [Q]/[D] prefixes to it when it saves)")
        return found

    mask = getattr(tokenizer, "mask_token_id", None)
    if not isinstance(mask, int):
        raise HarnessError(f"{folder}: the tokenizer has no [MASK] token, which ColBERT's query augmentation needs")
    pad = getattr(tokenizer, "pad_token_id", None)
    if config.skiplist_rule == "first-piece":  # Stanford: the first piece of each symbol as the tokenizer splits it
        encode = getattr(tokenizer, "encode")  # noqa: B009
        pieces = [encode(w, add_special_tokens=False) for w in config.skiplist]
        skip = {int(p[0]) for p in pieces if p}
    else:  # PyLate: each word as one token
        skip = {int(t) for t in (convert(w) for w in config.skiplist) if isinstance(t, int)}
    return TokenIds(marker(config.query_marker, "query"), marker(config.doc_marker, "document"), mask,
                    pad if isinstance(pad, int) else mask, frozenset(skip))
