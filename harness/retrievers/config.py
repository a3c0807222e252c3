"""How a Hugging Face encoder is used for retrieval: pooling, normalisation, similarity, max length.

Read in this order of precedence:
1. ``harness_checkpoint.json`` written by ``harness train`` / ``harness finetune`` (key ``encoder``);
2. sentence-transformers files: ``modules.json``, ``<pooling dir>/config.json``, ``sentence_bert_config.json``
   (a ``Normalize`` module means L2-normalised embeddings);
3. the Contriever conventions: mean pooling, dot product, no normalisation, max length 512.
No torch import here, so listing retrievers stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.settings import EncodeSettings

CHECKPOINT_METADATA = "harness_checkpoint.json"
CHECKPOINT_FORMAT = "harness-checkpoint/1"


@dataclass(frozen=True)
class EncoderConfig:
    pooling: str = "mean"
    normalize: bool = False
    similarity: str = "dot"  # "dot" or "cos" (cos = dot of normalised vectors)
    max_length: int = 512
    query_prefix: str = ""
    doc_prefix: str = ""
    source: str = "contriever defaults"

    def to_dict(self) -> dict:
        return asdict(self)

    def recipe(self) -> dict:
        """What decides the vectors (everything but where the config was read from)."""
        d = asdict(self)
        d.pop("source")
        return d

    def with_settings(self, settings: EncodeSettings) -> EncoderConfig:
        """This recipe with the fields ``settings`` sets (not None) put in their place."""
        changes: dict[str, Any] = {name: getattr(settings, name)
                                   for name in ("max_length", "pooling", "normalize", "query_prefix", "doc_prefix")
                                   if getattr(settings, name) is not None}
        if "normalize" in changes:
            changes["similarity"] = "cos" if changes["normalize"] else "dot"
        return replace(self, **changes) if changes else self


CONTRIEVER = EncoderConfig(source="contriever conventions")


def _read_json(path: Path) -> Any:
    from harness.errors import DataError
    from harness.io import read_json

    obj = read_json(path, fix="repair or re-download the model folder")
    if not isinstance(obj, dict | list):
        raise DataError(path, f"expected a JSON object, got {type(obj).__name__}")
    return obj


#: position-embedding rows these model types reserve for padding (RoBERTa's offset)
POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2, "longformer": 2}


def model_max_positions(model_dir: Path) -> int | None:
    """How many tokens the model can take (``max_position_embeddings`` less RoBERTa's offset), or None."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return None
    cfg = _read_json(path)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("max_position_embeddings"), int):
        return None
    return int(cfg["max_position_embeddings"]) - POSITION_OFFSET.get(str(cfg.get("model_type")), 0)


def fit_max_length(config: EncoderConfig, model_dir: Path) -> EncoderConfig:
    """The recipe with its max length cut to what the model can take (a default of 512 on a model with
    128 positions would fail in the forward pass); the source says so."""
    limit = model_max_positions(model_dir)
    if limit is None or config.max_length <= limit:
        return config
    return replace(config, max_length=limit, source=f"{config.source}; max length cut to the model's {limit} positions")


def read_encoder_config(model_dir: Path) -> EncoderConfig:
    """Infer the encoder config of a local model folder (see the module docstring)."""
    meta = model_dir / CHECKPOINT_METADATA
    if meta.is_file():
        enc = _read_json(meta).get("encoder", {})
        known = {k: enc[k] for k in ("pooling", "normalize", "similarity", "max_length",
                                      "query_prefix", "doc_prefix") if k in enc}
        return replace(CONTRIEVER, **known, source=CHECKPOINT_METADATA)
    modules = model_dir / "modules.json"
    if modules.is_file():
        return _sentence_transformers_config(model_dir, _read_json(modules))
    return CONTRIEVER


def _sentence_transformers_config(model_dir: Path, modules: list[dict]) -> EncoderConfig:
    pooling, normalize = "mean", False
    for module in modules:
        kind = module.get("type", "")
        if kind.endswith("Pooling"):
            cfg_path = model_dir / module.get("path", "") / "config.json"
            if cfg_path.is_file():
                cfg = _read_json(cfg_path)
                if cfg.get("pooling_mode_cls_token"):
                    pooling = "cls"
                elif cfg.get("pooling_mode_max_tokens"):
                    pooling = "max"
                elif cfg.get("pooling_mode_mean_tokens", True):
                    pooling = "mean"
        elif kind.endswith("Normalize"):
            normalize = True
    max_length = 512
    sbert = model_dir / "sentence_bert_config.json"
    if sbert.is_file():
        max_length = int(_read_json(sbert).get("max_seq_length") or max_length)
    return EncoderConfig(pooling=pooling, normalize=normalize, similarity="cos" if normalize else "dot",
                         max_length=max_length, source="sentence-transformers files")
