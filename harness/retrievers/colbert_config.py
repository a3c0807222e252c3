"""A late-interaction (ColBERT) model's own settings, read from its folder without torch.

Two layouts are read:

- **PyLate / sentence-transformers** (``modules.json`` with a Transformer module and one or more Dense modules,
  e.g. ``1_Dense/`` holding ``config.json`` and ``linear.weight``): the markers are PyLate's prefixes
  (``query_prefix`` / ``document_prefix`` of ``config_sentence_transformers.json``, ``"[Q] "`` / ``"[D] "`` by
  default, tokens added to the tokenizer), the lengths its ``query_length`` / ``document_length`` (32 / 180),
  its ``skiplist_words`` (``string.punctuation``), ``attend_to_expansion_tokens`` and ``do_query_expansion``.
- **Stanford ColBERT** (``config.json`` of an ``HF_ColBERT`` and/or ``artifact.metadata``, the weights holding
  ``bert.*`` and ``linear.weight``): ``query_token_id`` / ``doc_token_id`` (``[unused0]`` / ``[unused1]``),
  ``query_maxlen`` / ``doc_maxlen``, ``attend_to_mask_tokens`` and ``mask_punctuation`` of ``artifact.metadata``
  (PyLate's defaults when the file is absent, as PyLate reads such a checkpoint).

Both compute alike: the marker token inserted after ``[CLS]`` (the lengths count it), queries padded with
``[MASK]`` to the query length (attended or not as the model says), the linear projection without bias on
every token, punctuation skipped in documents, each token vector L2-normalised.
"""

from __future__ import annotations

import json
import string
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

COLBERT_FORMAT = 1  # bump when the token embeddings are computed or stored differently
STANFORD_DEFAULTS: dict[str, Any] = {"query_marker": "[unused0]", "doc_marker": "[unused1]", "query_length": 32,
                                     "doc_length": 180, "attend_to_masks": False}
PYLATE_DEFAULTS: dict[str, Any] = {"query_marker": "[Q] ", "doc_marker": "[D] ", "query_length": 32,
                                   "doc_length": 180, "attend_to_masks": False}
#: the settings a recipe or a name may set (the rest is the model's files)
OVERRIDABLE = ("query_marker", "doc_marker", "query_length", "doc_length", "attend_to_masks", "query_expansion",
               "skiplist")
FIX = ("give a PyLate/sentence-transformers ColBERT folder (modules.json with a Dense module, "
       "config_sentence_transformers.json) or a Stanford ColBERT checkpoint (config.json, artifact.metadata, "
       "weights with linear.weight)")


@dataclass(frozen=True)
class Projection:
    """One linear layer of the projection: where its weight is (a file, the tensor's name) and its shape."""

    file: str  # relative to the model folder
    tensor: str
    in_features: int
    out_features: int
    bias: bool = False


@dataclass(frozen=True)
class ColbertConfig:
    layout: str  # "pylate" or "stanford"
    query_marker: str
    doc_marker: str
    query_length: int
    doc_length: int
    attend_to_masks: bool
    query_expansion: bool
    skiplist: tuple[str, ...]  # document tokens dropped (punctuation)
    skiplist_rule: str  # how a skiplist word becomes a token id: "token" (PyLate) or "first-piece" (Stanford)
    projection: tuple[Projection, ...]
    transformer_path: str = ""
    source: str = ""

    @property
    def dim(self) -> int:
        return self.projection[-1].out_features

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recipe(self) -> dict[str, Any]:
        """What decides the token vectors (everything but where the settings were read from)."""
        d = asdict(self)
        d.pop("source")
        return d

    def with_overrides(self, params: dict[str, Any]) -> ColbertConfig:
        given: dict[str, Any] = {k: (tuple(v) if k == "skiplist" else v) for k, v in params.items()
                 if k in OVERRIDABLE and v is not None}
        if not given:
            return self
        return replace(self, **given, source=f"{self.source}; set by the recipe: {', '.join(sorted(given))}")


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise HarnessError(f"{path}: unreadable ({e}); {FIX}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: not a JSON object; {FIX}")
    return data


def _int(value: Any, path: Path, key: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise HarnessError(f"{path}: {key} is {value!r}, not a length of at least 2; correct it in that file")
    return value


def read_colbert_config(folder: Path) -> ColbertConfig:
    """The ColBERT settings of a model folder in either layout; anything else is one line naming the file."""
    folder = Path(folder)
    config = _json(folder / "config.json") if (folder / "config.json").is_file() else {}
    stanford = (folder / "artifact.metadata").is_file() or "HF_ColBERT" in (config.get("architectures") or [])
    if (folder / "modules.json").is_file() and not (stanford and not _has_dense(folder)):
        return _pylate(folder)  # (a Stanford checkpoint with sentence-transformers files but no Dense: Stanford's)
    if stanford:
        return _stanford(folder, config)
    raise HarnessError(f"{folder}: neither a PyLate ColBERT folder (no modules.json) nor a Stanford ColBERT "
                       f"checkpoint (no artifact.metadata, config.json architectures not HF_ColBERT); {FIX}")


def _has_dense(folder: Path) -> bool:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return True  # _pylate says what is wrong with it
    return not isinstance(modules, list) or any(isinstance(m, dict) and str(m.get("type", "")).endswith("Dense")
                                                for m in modules)


def _pylate(folder: Path) -> ColbertConfig:
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise HarnessError(f"{folder / 'modules.json'}: unreadable ({e}); {FIX}") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise HarnessError(f"{folder / 'modules.json'}: not a list of modules; {FIX}")
    transformer = next((m for m in modules if str(m.get("type", "")).endswith("Transformer")), None)
    if transformer is None:
        raise HarnessError(f"{folder / 'modules.json'}: no Transformer module; {FIX}")
    dense = [m for m in modules if str(m.get("type", "")).endswith("Dense")]
    others = [m.get("type") for m in modules if m not in dense and m is not transformer]
    if not dense:
        raise HarnessError(f"{folder / 'modules.json'}: no Dense module, so no ColBERT projection (the "
                           "1_Dense/ folder with linear.weight); save the model with PyLate (ColBERT.save) so "
                           "that its projection is written")
    if others:
        raise HarnessError(f"{folder / 'modules.json'}: modules {others} after the Transformer are not a "
                           "ColBERT's (a Transformer, then Dense projections)")
    projection = tuple(_pylate_dense(folder, str(m.get("path", ""))) for m in dense)
    st_path = folder / "config_sentence_transformers.json"
    st = _json(st_path) if st_path.is_file() else {}
    own = {**PYLATE_DEFAULTS, **{k: st[s] for k, s in (("query_marker", "query_prefix"),
                                                      ("doc_marker", "document_prefix"),
                                                      ("query_length", "query_length"),
                                                      ("doc_length", "document_length"),
                                                      ("attend_to_masks", "attend_to_expansion_tokens"))
                                 if st.get(s) is not None}}
    expansion = bool(st.get("do_query_expansion", True))
    words = st.get("skiplist_words")
    skiplist = tuple(str(w) for w in words) if isinstance(words, list) else tuple(string.punctuation)
    return ColbertConfig("pylate", str(own["query_marker"]), str(own["doc_marker"]),
                         _int(own["query_length"], st_path, "query_length"),
                         _int(own["doc_length"], st_path, "document_length"),
                         bool(own["attend_to_masks"]) and expansion, expansion, skiplist, "token", projection,
                         str(transformer.get("path", "")),
                         f"PyLate folder {folder.name} (config_sentence_transformers.json"
                         f"{'' if st else ' absent: PyLate defaults'})")


def _pylate_dense(folder: Path, path: str) -> Projection:
    where = folder / path
    config = _json(where / "config.json") if (where / "config.json").is_file() else None
    if config is None:
        raise HarnessError(f"{where / 'config.json'}: missing, so the ColBERT projection's shape is unknown; "
                           "copy the Dense module folder whole")
    activation = str(config.get("activation_function", "torch.nn.modules.linear.Identity"))
    if not activation.endswith("Identity"):
        raise HarnessError(f"{where / 'config.json'}: activation {activation}; a ColBERT projection is linear "
                           "(Identity)")
    weights = next((n for n in ("model.safetensors", "pytorch_model.bin") if (where / n).is_file()), None)
    if weights is None:
        raise HarnessError(f"{where}: no model.safetensors or pytorch_model.bin, so no ColBERT projection "
                           "weights; copy the Dense module folder whole")
    try:
        return Projection(str(Path(path) / weights), "linear.weight", int(config["in_features"]),
                          int(config["out_features"]), bool(config.get("bias", False)))
    except (KeyError, TypeError, ValueError):
        raise HarnessError(f"{where / 'config.json'}: no in_features/out_features; copy the Dense module "
                           "folder whole") from None


def _stanford(folder: Path, config: dict[str, Any]) -> ColbertConfig:
    meta_path = folder / "artifact.metadata"
    meta = _json(meta_path) if meta_path.is_file() else {}
    weights = next((n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    if weights is None:
        raise HarnessError(f"{folder}: a Stanford ColBERT checkpoint without weights (model.safetensors or "
                           "pytorch_model.bin); copy the checkpoint folder whole")
    hidden = int(config.get("hidden_size") or 0)
    dim = int(meta.get("dim") or 128)
    own = {**STANFORD_DEFAULTS, **{k: meta[s] for k, s in (("query_marker", "query_token_id"),
                                                          ("doc_marker", "doc_token_id"),
                                                          ("query_length", "query_maxlen"),
                                                          ("doc_length", "doc_maxlen"),
                                                          ("attend_to_masks", "attend_to_mask_tokens"))
                                   if meta.get(s) is not None}}
    skiplist = tuple(string.punctuation) if meta.get("mask_punctuation", True) else ()
    return ColbertConfig("stanford", str(own["query_marker"]), str(own["doc_marker"]),
                         _int(own["query_length"], meta_path, "query_maxlen"),
                         _int(own["doc_length"], meta_path, "doc_maxlen"), bool(own["attend_to_masks"]), True,
                         skiplist, "first-piece", (Projection(weights, "linear.weight", hidden, dim),), "",
                         f"Stanford ColBERT checkpoint {folder.name} (artifact.metadata"
                         f"{'' if meta else ' absent: PyLate defaults'})")
