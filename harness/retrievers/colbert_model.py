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

from harness.errors import HarnessError
from harness.retrievers.colbert_config import ColbertConfig, Projection
from harness.retrievers.compute.batching import run_batches
from harness.retrievers.compute.plan import Compute
from harness.retrievers.config import EncoderConfig


class NoTokenVectors(HarnessError):
    """A document that would be stored without a token vector (or with a zero one, which the store would take for
    padding): ``text`` is the document's text, ``cause`` why (the skiplist, the projection)."""

    def __init__(self, text: str, cause: str):
        super().__init__(f"a document has no token vector: {cause}")
        self.text, self.cause = text, cause


@dataclass(frozen=True)
class TokenIds:
    """The token ids a ColBERT model reads besides the text's: its markers, [MASK], padding, the skiplist."""

    query_marker: int
    doc_marker: int
    mask: int
    pad: int
    skiplist: frozenset[int]


def _weights(folder: Path, projection: Projection) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A projection's weight and bias (None when its configuration declares none), as its file holds them; a
    weights file holding a tensor the configuration does not declare (a bias, or anything else in a Dense
    module's own file) is refused: running without it would compute other vectors than the checkpoint's."""
    path = folder / projection.file
    bias_name = projection.tensor[:-len("weight")] + "bias" if projection.tensor.endswith("weight") else ""
    config = (folder / projection.file).parent / "config.json"
    own_file = Path(projection.file).parent != Path(".")  # a Dense module's folder: nothing but its layer
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                names = set(f.keys())
                wanted = [n for n in (projection.tensor, bias_name) if n in names]
                tensors: dict[str, torch.Tensor] = {n: f.get_tensor(n) for n in wanted}
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            names = set(state)
            tensors = {n: state[n] for n in (projection.tensor, bias_name) if n in names}
    except pickle.UnpicklingError:
        raise HarnessError(f"refusing {path}: it holds Python objects besides tensors; use a model.safetensors "
                           "copy") from None
    except OSError as e:
        raise HarnessError(f"{path}: unreadable ({e})") from None
    if projection.tensor not in tensors:
        raise HarnessError(f"{path}: no {projection.tensor} (the ColBERT projection); this is not a ColBERT "
                           "checkpoint, or its projection was not saved (save it with its linear layer)")
    if projection.bias and bias_name not in tensors:
        raise HarnessError(f"{path}: no {bias_name}, which {config} declares (bias true); the weights do not "
                           "belong to this configuration: copy the Dense module folder whole")
    if not projection.bias and bias_name in tensors:
        raise HarnessError(f"{path}: holds {bias_name}, which {config} does not declare (bias false or absent); "
                           "the weights file holds tensors the configuration does not declare: copy the Dense "
                           "module folder whole, or set bias true if the projection has one")
    extra = sorted(names - {projection.tensor, bias_name}) if own_file else []
    if extra:
        raise HarnessError(f"{path}: holds tensors {extra[:5]} that {config} does not declare (a Dense module's "
                           f"weights are {projection.tensor}{' and ' + bias_name if projection.bias else ''}); "
                           "copy the Dense module folder whole")
    weight = tensors[projection.tensor]
    expected = (projection.out_features, projection.in_features)
    if projection.in_features and tuple(weight.shape) != expected:
        raise HarnessError(f"{path}: {projection.tensor} has shape {tuple(weight.shape)}, the configuration says "
                           f"{expected}; the weights do not belong to this configuration")
    if projection.in_features == 0 and (weight.ndim != 2 or weight.shape[0] != projection.out_features):
        raise HarnessError(f"{path}: {projection.tensor} has shape {tuple(weight.shape)}, the configuration says "
                           f"{projection.out_features} output features; the weights do not belong to this "
                           "configuration")
    bias = tensors.get(bias_name) if projection.bias else None
    if bias is not None and tuple(bias.shape) != (projection.out_features,):
        raise HarnessError(f"{path}: {bias_name} has shape {tuple(bias.shape)}, the configuration says "
                           f"({projection.out_features},); the weights do not belong to this configuration")
    return weight.float(), None if bias is None else bias.float()


class ColbertEncoder:
    """Token embeddings of queries and documents: float32, L2-normalised per token."""

    def __init__(self, folder: Path, config: ColbertConfig, *, device: str, compute: Compute,
                 batch_tokens: int | None = None, trust_remote_code: bool = False, progress: bool = True,
                 threads: int | None = None):
        from harness.retrievers.encoder import HFEncoder

        self.folder, self.config = Path(folder), config
        # documents: the tokenizer's truncation leaves room for the marker (the lengths count it)
        hf_config = EncoderConfig(pooling="cls", max_length=config.doc_length - 1,
                                  transformer_path=config.transformer_path, source=config.source)
        self.hf = HFEncoder(str(folder), hf_config, device=device, batch_tokens=batch_tokens, compute=compute,
                            trust_remote_code=trust_remote_code, progress=progress, threads=threads)
        self.device = self.hf.device
        self.tokenizer = self.hf.tokenizer
        self.ids = token_ids(self.tokenizer, config, self.folder)
        layers: list[torch.nn.Linear] = []
        for p in config.projection:
            weight, bias = _weights(self.folder, p)
            if layers and layers[-1].out_features != weight.shape[1]:
                raise HarnessError(f"{self.folder / p.file}: this projection takes {weight.shape[1]} features, the "
                                   f"one before it gives {layers[-1].out_features}; the projections do not chain")
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
        out = self._encode(ids, [[1] * len(x) for x in ids], documents=True, desc=desc)
        keep = [[t not in self.ids.skiplist for t in x] for x in ids]
        nonzero = np.abs(out).max(axis=2) > 0 if out.size else np.zeros(out.shape[:2], dtype=bool)
        for i, k in enumerate(keep):
            n = sum(k)
            if n == 0:
                raise NoTokenVectors(texts[i], f"every one of its {len(k)} tokens is in the model's skiplist "
                                               f"({self.config.source}); drop the document or use a model whose "
                                               "skiplist leaves it a token")
            zero = n - int(nonzero[i, :n].sum())
            if zero:
                files = ", ".join(p.file for p in self.config.projection)
                raise NoTokenVectors(texts[i], f"the projection ({files}) maps {zero} of its {n} tokens to the zero "
                                               "vector, which has no direction to compare (and would be stored as "
                                               "padding); check the projection weights")
        return out

    @torch.inference_mode()
    def _encode(self, ids: list[list[int]], attention: list[list[int]], *, documents: bool,
                desc: str) -> np.ndarray:
        from harness.progress import progress_bar

        keep = [[not (documents and t in self.ids.skiplist) for t in x] for x in ids]
        kept = [sum(k) for k in keep]
        out = np.zeros((len(ids), max(kept, default=0), self.dim), dtype=np.float32)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        bar = progress_bar(len(ids), desc, "text", enabled=self.hf.progress)

        def step(idx: np.ndarray) -> None:
            for i, vectors in zip(idx, self._batch(ids, attention, keep, idx, int(lengths[idx].max())), strict=True):
                out[i, :len(vectors)] = vectors
            bar.update(len(idx))

        run_batches(self.hf.budget, lengths, step)  # the dense encoder's budget and back-offs
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
