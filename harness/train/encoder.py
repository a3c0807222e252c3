"""A Hugging Face model used as a retrieval encoder in training, pooled exactly as evaluation pools it."""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from harness.errors import HarnessError
from harness.retrievers.config import CONTRIEVER, EncoderConfig, read_encoder_config
from harness.retrievers.pooling import pool


class TrainEncoder(torch.nn.Module):
    """``model`` (a Hugging Face base model) + pooling (+ optional L2 normalisation) -> [N, d]."""

    def __init__(self, model: torch.nn.Module, pooling: str = "mean", normalize: bool = False):
        super().__init__()
        self.model = model
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        emb = pool(self.pooling, hidden.float(), attention_mask)  # fp32 under autocast, as evaluation pools
        return torch.nn.functional.normalize(emb, dim=-1) if self.normalize else emb

    def frozen_copy(self) -> TrainEncoder:
        """A copy without gradients (the MoCo key encoder)."""
        other = copy.deepcopy(self)
        for p in other.parameters():
            p.requires_grad_(False)
        return other


@dataclass
class Loaded:
    encoder: TrainEncoder
    tokenizer: Any
    config: EncoderConfig


def init_encoder_config(init: str, pooling: str | None, normalize: bool | None,
                        max_length: int | None) -> EncoderConfig:
    """The init model's encoder config (checkpoint metadata, sentence-transformers files, or Contriever's
    conventions), with the user's overrides applied."""
    path = Path(init).expanduser()
    cfg = read_encoder_config(path) if path.is_dir() else _hub_encoder_config(init)
    over: dict[str, Any] = {k: v for k, v in (("pooling", pooling), ("normalize", normalize),
                                              ("max_length", max_length)) if v is not None}
    cfg = replace(cfg, **over)
    return replace(cfg, similarity="cos" if cfg.normalize else "dot")


def init_identity(init: str) -> str | None:
    """The content digest of the init model's files (weights, config, tokenizer: ``hub.model_digest``): a
    local folder's, or the cached snapshot's of a hub id; None where neither is on disk. A run records it, and
    a resume checks that ``--init`` is still that model (another copy of it, at any path, is)."""
    from harness.retrievers.hub import model_digest

    path = Path(init).expanduser()
    if not path.is_dir():
        try:
            from huggingface_hub import snapshot_download

            path = Path(snapshot_download(init, local_files_only=True))
        except Exception:  # not cached (or not a hub id): nothing on disk to digest
            return None
    return "sha256:" + model_digest(path)


def _hub_encoder_config(model_id: str) -> EncoderConfig:
    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(model_id, allow_patterns=["*.json"])
        return read_encoder_config(Path(folder))
    except Exception:  # offline or not on the hub: the model loader reports the real problem
        return CONTRIEVER


def load_encoder(init: str, cfg: EncoderConfig, *, trust_remote_code: bool = False) -> Loaded:
    """Load model + tokenizer from a Hugging Face id or a local folder (one of our checkpoints included)."""
    from transformers import AutoTokenizer

    from harness.retrievers.encoder import load_model
    from harness.retrievers.hub import check_custom_code

    source = str(Path(init).expanduser()) if Path(init).expanduser().is_dir() else init
    if Path(source).is_dir():
        check_custom_code(Path(source), trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        model = load_model(source, trust_remote_code)  # refuses weights that lack a tensor (it would be random)
    except (OSError, ValueError) as e:
        raise HarnessError(f"cannot load the init model {init!r}: {str(e).splitlines()[0]} "
                           "(give a local folder or a Hugging Face id that is cached or reachable; "
                           "models with custom code need --trust-remote-code)") from None
    from harness.retrievers.pooling import POOLERS

    if cfg.pooling not in POOLERS:
        raise HarnessError(f"unknown pooling {cfg.pooling!r}; the trainer pools with one of {', '.join(POOLERS)}")
    features = (("Dense modules", bool(cfg.dense)), ("include_prompt false", not cfg.include_prompt),
                ("do_lower_case", cfg.lowercase), ("(title, text) pairs", cfg.text_pair),
                ("an appended EOS", cfg.append_eos),
                ("a Transformer module in a subfolder", bool(cfg.transformer_path)))
    unsupported = [name for name, on in features if on]
    if unsupported:
        raise HarnessError(f"the init model {init!r} has a recipe the trainer cannot carry into its checkpoints "
                           f"({', '.join(unsupported)}); start from a plain encoder")
    return Loaded(TrainEncoder(model, cfg.pooling, cfg.normalize), tokenizer, cfg)
