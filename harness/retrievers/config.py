"""How a Hugging Face encoder is used for retrieval: its recipe (pooling, head, normalisation, prompts, text
handling, max length), read completely from the model's own files or refused.

Read in this order of precedence:
1. ``harness_checkpoint.json`` written by ``harness train`` / ``harness finetune`` (key ``encoder``);
2. sentence-transformers files, read completely: ``modules.json`` (Transformer, Pooling, Dense, Normalize
   and Dropout modules, in that order), the Pooling config (``cls``, ``mean``, ``max``,
   ``mean_sqrt_len_tokens``, ``weightedmean``, ``lasttoken``, several concatenated; ``include_prompt``),
   each Dense module's config, ``sentence_bert_config.json`` (``max_seq_length``, ``do_lower_case``) and
   ``config_sentence_transformers.json`` (``prompts``, ``default_prompt_name``, ``similarity_fn_name``).
   Anything else (a custom or unknown module, an unknown pooling mode or similarity) is refused with the
   module's name and file: never a silent fallback;
3. the Contriever conventions: mean pooling, dot product, no normalisation, max length 512.

Prompts are chosen as MTEB's retrieval tasks choose them: the ``query`` prompt for queries, the first
non-empty one of ``document``, ``passage``, ``corpus`` for documents (MTEB 1 named them "passage", MTEB 2
"document"), and ``default_prompt_name``'s prompt where there is none. (sentence-transformers 6.2's own
``encode_document`` differs for a file that names only a "passage" prompt: it adds an empty "document" one
and uses that.) Per-task prompts (``SciFact-query``) are not chosen. No torch import here, so listing
retrievers stays fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.settings import EncodeSettings

CHECKPOINT_METADATA = "harness_checkpoint.json"
CHECKPOINT_FORMAT = "harness-checkpoint/1"

POOLING_MODES = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
#: sentence-transformers' legacy pooling flags, in the order it concatenates them
LEGACY_POOLING_FLAGS = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                        "pooling_mode_mean_tokens": "mean", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                        "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
#: torch activations a Dense module may name (``activation_function``), by the name the harness uses
ACTIVATIONS = {"torch.nn.modules.linear.Identity": "identity", "torch.nn.modules.activation.Tanh": "tanh",
               "torch.nn.modules.activation.ReLU": "relu", "torch.nn.modules.activation.GELU": "gelu",
               "torch.nn.modules.activation.Sigmoid": "sigmoid"}
SIMILARITIES = {"cosine": "cos", "cos_sim": "cos", "dot": "dot", "dot_product": "dot", "dot_score": "dot"}
QUERY_PROMPTS = ("query",)
DOC_PROMPTS = ("document", "passage", "corpus")


@dataclass(frozen=True)
class DenseLayer:
    """A sentence-transformers Dense module: ``activation(W x + b)`` (+ ``x`` or ``R x`` when residual)."""

    path: str  # the module's folder, relative to the model folder (weights: model.safetensors there)
    in_features: int
    out_features: int
    bias: bool = True
    activation: str = "tanh"
    residual: bool = False


@dataclass(frozen=True)
class EncoderConfig:
    pooling: str = "mean"  # one of POOLING_MODES, or several joined by "+" (concatenated in that order)
    normalize: bool = False
    similarity: str = "dot"  # "dot" or "cos" (cos = dot of normalised vectors)
    max_length: int = 512
    query_prefix: str = ""
    doc_prefix: str = ""
    include_prompt: bool = True  # pool over the prefix's tokens too (False: as sentence-transformers' Pooling)
    dense: tuple[DenseLayer, ...] = ()  # Dense modules after pooling, in order
    lowercase: bool = False  # sentence_bert_config do_lower_case
    text_pair: bool = False  # documents as the pair (title, text), token types all zero (DPR); else title + " " + text
    append_eos: bool = False  # append the tokenizer's EOS token to every text (decoder embedders that need it)
    transformer_path: str = ""  # the Hugging Face model's folder inside the model folder (sentence-transformers)
    #: per-dataset query instructions, (dataset id, prefix) pairs that replace ``query_prefix`` on those
    #: datasets ("" for none), as MTEB's task prompts and Pyserini's 2CR conditions give them
    query_prefix_by_dataset: tuple[tuple[str, str], ...] = ()
    source: str = "contriever defaults"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recipe(self) -> dict[str, Any]:
        """What decides the vectors (everything but where the config was read from)."""
        d = asdict(self)
        d.pop("source")
        if not self.query_prefix_by_dataset:
            d.pop("query_prefix_by_dataset")  # recipes without it keep the fingerprints they always had
        return d

    def embedding_dim(self, hidden: int) -> int:
        """The width of the vectors for a transformer ``hidden`` wide: the last Dense module's, else one hidden
        width per pooling mode (several are concatenated)."""
        return self.dense[-1].out_features if self.dense else hidden * len(self.pooling.split("+"))

    def query_prefix_for(self, dataset_id: str | None) -> str:
        """The query instruction on ``dataset_id``: its own when the recipe gives one, else ``query_prefix``."""
        return dict(self.query_prefix_by_dataset).get(dataset_id or "", self.query_prefix)

    def with_settings(self, settings: EncodeSettings) -> EncoderConfig:
        """This recipe with the fields ``settings`` sets (not None) put in their place."""
        changes: dict[str, Any] = {name: getattr(settings, name)
                                   for name in ("max_length", "pooling", "normalize", "query_prefix", "doc_prefix")
                                   if getattr(settings, name) is not None}
        if "normalize" in changes:
            changes["similarity"] = "cos" if changes["normalize"] else "dot"
        if "query_prefix" in changes:  # a prefix given on the command line applies to every dataset
            changes["query_prefix_by_dataset"] = ()
        return replace(self, **changes) if changes else self

    def describe(self) -> str:
        """One line for ``harness list retrievers``."""
        parts = [f"{self.pooling} pooling", self.similarity if not self.normalize else "cos (normalised)",
                 f"max {self.max_length}"]
        if self.dense:
            parts.append(f"{len(self.dense)} dense layer(s)")
        if self.query_prefix:
            parts.append(f"query prefix {self.query_prefix!r}")
        if self.query_prefix_by_dataset:
            parts.append("per dataset: " + ", ".join(f"{d} {p!r}" for d, p in self.query_prefix_by_dataset))
        if self.doc_prefix:
            parts.append(f"doc prefix {self.doc_prefix!r}")
        if self.text_pair:
            parts.append("documents as (title, text) pairs")
        if self.append_eos:
            parts.append("EOS appended")
        return ", ".join(parts)


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
    """How many tokens the model can take (``max_position_embeddings`` less RoBERTa's offset), or None
    (no such limit, e.g. rotary position embeddings with a large window)."""
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
    limit = model_max_positions(Path(model_dir) / config.transformer_path)
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
        return sentence_transformers_config(model_dir)
    return CONTRIEVER


def _refuse(path: Path, problem: str) -> Exception:
    from harness.errors import DataError

    return DataError(path, problem, fix="the harness runs only what it implements exactly; use another model, "
                                       "or set the recipe with --pooling/--normalize/--query-prefix/--doc-prefix")


def sentence_transformers_config(model_dir: Path) -> EncoderConfig:
    """The recipe of a sentence-transformers folder, read completely (see the module docstring)."""
    modules_path = model_dir / "modules.json"
    modules = _read_json(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise _refuse(modules_path, "expected a list of modules")
    stage = "start"  # modules must come as Transformer, Pooling, Dense..., Normalize
    fields: dict[str, Any] = {}
    order = {"start": 0, "Transformer": 1, "Pooling": 2, "Dense": 3, "Normalize": 4}
    dense: list[DenseLayer] = []
    for module in sorted(modules, key=lambda m: int(m.get("idx", 0))):
        kind = str(module.get("type", ""))
        name, path = kind.rsplit(".", 1)[-1], str(module.get("path", ""))
        if not kind.startswith("sentence_transformers.") or name not in {*order, "Dropout"} - {"start"}:
            raise _refuse(modules_path, f"module {kind!r} (folder {path!r}) is not one the harness implements "
                          "(Transformer, Pooling, Dense, Normalize, Dropout)")
        if name == "Dropout":  # the identity at inference
            continue
        if order[name] < order[stage] or (name == stage and name != "Dense"):
            raise _refuse(modules_path, f"module {name} ({path!r}) comes after {stage}; the harness runs "
                          "Transformer, Pooling, Dense..., Normalize in that order")
        stage = name
        if name == "Transformer":
            fields["transformer_path"] = path
        elif name == "Pooling":
            fields.update(_pooling(model_dir / path / "config.json"))
        elif name == "Dense":
            dense.append(_dense(model_dir, path))
        elif name == "Normalize":
            fields["normalize"] = True
    if stage in ("start", "Transformer"):
        raise _refuse(modules_path, "no Pooling module: the harness would have to guess how to pool")
    sbert = model_dir / fields.get("transformer_path", "") / "sentence_bert_config.json"
    if not sbert.is_file():
        sbert = model_dir / "sentence_bert_config.json"
    max_length, lowercase = _tokenizer_max_length(model_dir / fields.get("transformer_path", "")), False
    if sbert.is_file():
        cfg = _read_json(sbert)
        max_length = int(cfg.get("max_seq_length") or max_length)
        lowercase = bool(cfg.get("do_lower_case", False))
    normalize = bool(fields.pop("normalize", False))
    similarity, query_prefix, doc_prefix = _prompts_and_similarity(model_dir / "config_sentence_transformers.json")
    return EncoderConfig(**fields, normalize=normalize or similarity == "cos",
                         similarity="cos" if normalize or similarity == "cos" else "dot",
                         max_length=max_length, lowercase=lowercase, dense=tuple(dense),
                         query_prefix=query_prefix, doc_prefix=doc_prefix, source="sentence-transformers files")


def _pooling(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _refuse(path, "the Pooling module's config.json is missing")
    cfg = _read_json(path)
    if "pooling_mode" in cfg:
        mode = cfg["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode) if isinstance(mode, list) else []
    else:
        unknown = sorted(k for k in cfg if k.startswith("pooling_mode") and k not in LEGACY_POOLING_FLAGS and cfg[k])
        if unknown:
            raise _refuse(path, f"pooling option {unknown[0]!r} is not one the harness implements")
        modes = [m for k, m in LEGACY_POOLING_FLAGS.items() if cfg.get(k)] or ["mean"]
    bad = [m for m in modes if m not in POOLING_MODES]
    if bad or not modes:
        raise _refuse(path, f"pooling mode {bad[0] if bad else cfg.get('pooling_mode')!r} is not one the harness "
                      f"implements ({', '.join(POOLING_MODES)})")
    return {"pooling": "+".join(modes), "include_prompt": bool(cfg.get("include_prompt", True))}


def _dense(model_dir: Path, folder: str) -> DenseLayer:
    path = model_dir / folder / "config.json"
    if not path.is_file():
        raise _refuse(path, "the Dense module's config.json is missing")
    cfg = _read_json(path)
    activation = str(cfg.get("activation_function", "torch.nn.modules.activation.Tanh"))
    if activation not in ACTIVATIONS:
        raise _refuse(path, f"activation {activation!r} is not one the harness implements ({', '.join(ACTIVATIONS)})")
    if cfg.get("module_input_name", "sentence_embedding") != "sentence_embedding" or \
            cfg.get("module_output_name", "sentence_embedding") not in (None, "sentence_embedding"):
        raise _refuse(path, "a Dense module that reads or writes anything but the sentence embedding")
    try:
        return DenseLayer(folder, int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg.get("bias", True)),
                          ACTIVATIONS[activation], bool(cfg.get("use_residual", False)))
    except (KeyError, TypeError, ValueError):
        raise _refuse(path, "in_features and out_features must be integers") from None


def _tokenizer_max_length(folder: Path) -> int:
    """sentence-transformers' default max length: the tokenizer's, capped by the model's positions."""
    limit = model_max_positions(folder) or 512
    path = folder / "tokenizer_config.json"
    if path.is_file():
        value = _read_json(path).get("model_max_length")
        if isinstance(value, int | float) and 0 < value < 10**9:
            return min(int(value), limit)
    return limit


def _prompts_and_similarity(path: Path) -> tuple[str, str, str]:
    """(similarity, query prompt, document prompt) from ``config_sentence_transformers.json``; its absence
    means sentence-transformers' defaults: cosine, no prompts."""
    if not path.is_file():
        return "cos", "", ""
    cfg = _read_json(path)
    name = cfg.get("similarity_fn_name") or "cosine"
    if name not in SIMILARITIES:
        raise _refuse(path, f"similarity {name!r} is not one exact inner-product search can compute "
                      "(cosine or dot)")
    prompts = cfg.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise _refuse(path, "'prompts' must map names to strings")
    default = prompts.get(cfg.get("default_prompt_name") or "", "")

    def pick(names: tuple[str, ...]) -> str:
        return str(next((prompts[n] for n in names if prompts.get(n)), default))

    return SIMILARITIES[name], pick(QUERY_PROMPTS), pick(DOC_PROMPTS)
