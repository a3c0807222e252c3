"""Turn texts into vectors with a Hugging Face encoder: length-sorted token-budget batches, no grad.

Texts are tokenised once, ordered by length (longest first), and packed into batches whose padded size
stays under ``batch_tokens``; short documents are never padded to long ones. Embeddings come back in
the input order, as float32.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence

import numpy as np
import torch

from harness.retrievers.config import EncoderConfig
from harness.retrievers.pooling import pool


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; anything else is passed to torch."""
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class HFEncoder:
    """An ``Encoder``: ``encode(texts, kind)`` -> float32 array of shape (len(texts), dim)."""

    def __init__(self, model_dir: str, config: EncoderConfig, *, device: str = "auto",
                 batch_tokens: int = 16384, max_batch: int = 256, autocast: bool = True,
                 trust_remote_code: bool = False, progress: bool = True):
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

        self.config = config
        self.device = pick_device(device)
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.progress = progress
        self.autocast = autocast and self.device.type == "cuda"
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
            self.model = AutoModel.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        except ValueError as e:
            if trust_remote_code or "trust_remote_code" not in str(e):
                raise
            from harness.errors import HarnessError

            raise HarnessError(f"{model_dir} ships its own Python code, which the harness does not run unless "
                               "you pass --trust-remote-code (only do so for code you have read)") from None
        except pickle.UnpicklingError as e:
            from harness.errors import HarnessError

            found = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line][:1]
            raise HarnessError(f"refusing the weights in {model_dir}: they hold Python objects besides tensors and "
                               "are loaded only with torch.load(weights_only=True)"
                               f"{' (' + found[0] + ')' if found else ''}; use a model.safetensors copy") from None
        self.model.eval().to(self.device)
        self.dim = int(self.model.config.hidden_size)
        if self.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            torch.set_num_threads(max(1, os.cpu_count() or 1))

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.config.max_length,
                             add_special_tokens=True, return_attention_mask=False)
        return enc["input_ids"]

    def batches(self, lengths: np.ndarray) -> list[np.ndarray]:
        """Index batches of similar length under the token budget (longest first)."""
        order = np.argsort(-lengths, kind="stable")
        out, start = [], 0
        while start < len(order):
            longest = int(lengths[order[start]])
            size = max(1, min(self.max_batch, self.batch_tokens // max(1, longest)))
            out.append(order[start:start + size])
            start += size
        return out

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], kind: str = "doc", desc: str | None = None) -> np.ndarray:
        prefix = self.config.query_prefix if kind == "query" else self.config.doc_prefix
        if prefix:
            texts = [prefix + t for t in texts]
        ids = self.tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        batches = self.batches(lengths)
        bar = _progress(len(ids), desc or f"encode {kind}s", self.progress)
        pad_id = self.tokenizer.pad_token_id or 0
        for idx in batches:
            width = int(lengths[idx].max())
            input_ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for row, i in enumerate(idx):
                n = len(ids[i])
                input_ids[row, :n] = torch.tensor(ids[i], dtype=torch.long)
                mask[row, :n] = 1
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                hidden = self.model(input_ids=input_ids, attention_mask=mask).last_hidden_state
            vec = pool(self.config.pooling, hidden.float(), mask)
            if self.config.normalize:
                vec = torch.nn.functional.normalize(vec, p=2, dim=-1)
            out[idx] = vec.cpu().numpy()
            bar.update(len(idx))
        bar.close()
        return out


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="text", disable=not enabled, leave=False, dynamic_ncols=True)
