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
#: model types whose position ids start after the padding index (pad_token_id + 1 positions are never read)
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "mpnet", "xlm-roberta-xl"}
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
    #: (setting, "file: key") for each setting the model's files state (a recipe may fill only the others), and
    #: ("setting", "the recipe NAME: setting") for each one a recipe filled
    stated: tuple[tuple[str, str], ...] = ()

    @property
    def dim(self) -> int:
        return self.projection[-1].out_features

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def recipe(self) -> dict[str, Any]:
        """What decides the token vectors (everything but where the settings were read from)."""
        d = asdict(self)
        d.pop("source")
        d.pop("stated")
        return d

    def with_overrides(self, params: dict[str, Any], recipe: str = "the recipe") -> ColbertConfig:
        """The settings a recipe (``recipe``: its name) gives, filled in where the model's files leave them
        unstated; a recipe value that disagrees with what a file states is refused (the checkpoint's own files
        decide), one equal to it changes nothing."""
        unknown = sorted(k for k in params if k not in OVERRIDABLE)
        if unknown:
            raise HarnessError(f"{recipe}: unknown ColBERT setting(s) {unknown}; a recipe may set "
                               f"{', '.join(OVERRIDABLE)}")
        stated = dict(self.stated)
        fill: dict[str, Any] = {}
        for key, value in params.items():
            if value is None:
                continue
            value = _recipe_value(key, value, recipe)
            if key in stated and value == getattr(self, key):
                continue  # the recipe agrees with the file
            if key in stated:
                raise HarnessError(f"{stated[key]} is {getattr(self, key)!r}, the recipe {recipe} says {value!r}; "
                                   f"the checkpoint's own file decides: run it as colbert:<model> without the "
                                   "recipe, or correct that file")
            fill[key] = value
        if not fill:
            return self
        out = replace(self, **fill, source=f"{self.source}; set by the recipe {recipe} where the files are silent: "
                                           f"{', '.join(sorted(fill))}",
                      stated=(*self.stated, *((k, f"the recipe {recipe}: {k}") for k in sorted(fill))))
        return replace(out, attend_to_masks=out.attend_to_masks and out.query_expansion)


def _recipe_value(key: str, value: Any, recipe: str) -> Any:
    """A recipe's value for ``key``, of the type the setting takes (one line otherwise)."""
    where = f"{recipe}: {key}"
    if key in ("query_length", "doc_length"):
        if not isinstance(value, int) or isinstance(value, bool) or value < 3:
            raise HarnessError(f"{where} is {value!r}, not a length of at least 3 tokens; correct the recipe")
        return value
    if key in ("attend_to_masks", "query_expansion"):
        if not isinstance(value, bool):
            raise HarnessError(f"{where} is {value!r}, not true or false; correct the recipe")
        return value
    if key == "skiplist":
        if not isinstance(value, (list, tuple)) or not all(isinstance(w, str) for w in value):
            raise HarnessError(f"{where} is {value!r}, not a list of strings; correct the recipe")
        return tuple(value)
    if not isinstance(value, str) or not value:
        raise HarnessError(f"{where} is {value!r}, not a token; correct the recipe")
    return value


def check_positions(config: ColbertConfig, folder: Path) -> None:
    """Refuse a query or document length beyond the transformer's positions (``max_position_embeddings`` of its
    config.json; RoBERTa-style models spend ``pad_token_id + 1`` of them): a long text would fail in the
    forward. The lengths count every token the model reads ([CLS], the marker, [SEP])."""
    path = Path(folder) / config.transformer_path / "config.json"
    hf = _json(path) if path.is_file() else {}
    positions = hf.get("max_position_embeddings")
    if positions is None:
        return
    if not isinstance(positions, int) or isinstance(positions, bool) or positions < 1:
        raise HarnessError(f"{path}: max_position_embeddings is {positions!r}, not a number of positions; "
                           "correct it in that file")
    limit = positions
    if str(hf.get("model_type", "")) in OFFSET_POSITIONS:
        pad = hf.get("pad_token_id", 1)
        limit -= (pad if isinstance(pad, int) and not isinstance(pad, bool) else 1) + 1
    stated = dict(config.stated)
    for key, length in (("query_length", config.query_length), ("doc_length", config.doc_length)):
        if length > limit:
            raise HarnessError(f"{stated.get(key, f'the default {key} (no file states it)')} is {length} tokens, "
                               "more than the model "
                               f"reads ({path}: max_position_embeddings {positions}, so at most {limit} tokens); "
                               f"lower it to {limit} or less")


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as e:
        raise HarnessError(f"{path}: unreadable ({e}); {FIX}") from None
    if not isinstance(data, dict):
        raise HarnessError(f"{path}: not a JSON object; {FIX}")
    return data


def _int(value: Any, path: Path, key: str) -> int:
    """A query or document length: at least 3 tokens ([CLS], the marker and [SEP] are counted in it)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 3:
        raise HarnessError(f"{path}: {key} is {value!r}, not a length of at least 3 tokens ([CLS], the marker and "
                           "[SEP] count); correct it in that file")
    return value


def _bool(data: dict[str, Any], key: str, path: Path, default: bool) -> bool:
    """A JSON true/false (absent or null: ``default``); a string such as "false" is refused, not read as true."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise HarnessError(f"{path}: {key} is {value!r}, not true or false (a JSON boolean); correct it in that "
                           "file")
    return value


def _str(value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise HarnessError(f"{path}: {key} is {value!r}, not a token (a non-empty string); correct it in that file")
    return value


def _count(data: dict[str, Any], key: str, path: Path, default: int) -> int:
    """A positive whole number (a width); absent or null: ``default``. A JSON boolean is not a number."""
    value = data.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HarnessError(f"{path}: {key} is {value!r}, not a positive whole number; correct it in that file")
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
    for (a, m), b in zip(zip(projection, dense, strict=True), projection[1:], strict=False):
        if a.out_features != b.in_features:
            raise HarnessError(f"{folder / str(m.get('path', '')) / 'config.json'}: this Dense module gives "
                               f"{a.out_features} features, the next ({b.file}) takes {b.in_features}; the "
                               "projections do not chain: copy the model's Dense module folders whole")
    st_path = folder / "config_sentence_transformers.json"
    st = _json(st_path) if st_path.is_file() else {}
    keys = (("query_marker", "query_prefix"), ("doc_marker", "document_prefix"), ("query_length", "query_length"),
            ("doc_length", "document_length"), ("attend_to_masks", "attend_to_expansion_tokens"),
            ("query_expansion", "do_query_expansion"), ("skiplist", "skiplist_words"))
    stated = tuple((k, f"{st_path}: {s}") for k, s in keys if st.get(s) is not None)
    expansion = _bool(st, "do_query_expansion", st_path, True)
    attend = _bool(st, "attend_to_expansion_tokens", st_path, PYLATE_DEFAULTS["attend_to_masks"])
    words = st.get("skiplist_words")
    if words is None:
        skiplist = tuple(string.punctuation)
    elif isinstance(words, list) and all(isinstance(w, str) for w in words):
        skiplist = tuple(words)
    else:
        raise HarnessError(f"{st_path}: skiplist_words is {words!r}, not a list of strings; correct it in that "
                           "file")

    def own(key: str, setting: str) -> Any:
        return st[key] if st.get(key) is not None else PYLATE_DEFAULTS[setting]

    return ColbertConfig("pylate", _str(own("query_prefix", "query_marker"), st_path, "query_prefix"),
                         _str(own("document_prefix", "doc_marker"), st_path, "document_prefix"),
                         _int(own("query_length", "query_length"), st_path, "query_length"),
                         _int(own("document_length", "doc_length"), st_path, "document_length"),
                         attend and expansion, expansion, skiplist, "token", projection,
                         str(transformer.get("path", "")),
                         f"PyLate folder {folder.name} (config_sentence_transformers.json"
                         f"{'' if st else ' absent: PyLate defaults'})", stated)


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
    features = []
    for key in ("in_features", "out_features"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise HarnessError(f"{where / 'config.json'}: {key} is {value!r}, not a positive whole number; copy the "
                               "Dense module folder whole")
        features.append(value)
    return Projection(str(Path(path) / weights), "linear.weight", features[0], features[1],
                      _bool(config, "bias", where / "config.json", False))


def _stanford(folder: Path, config: dict[str, Any]) -> ColbertConfig:
    meta_path = folder / "artifact.metadata"
    meta = _json(meta_path) if meta_path.is_file() else {}
    weights = next((n for n in ("model.safetensors", "pytorch_model.bin") if (folder / n).is_file()), None)
    if weights is None:
        raise HarnessError(f"{folder}: a Stanford ColBERT checkpoint without weights (model.safetensors or "
                           "pytorch_model.bin); copy the checkpoint folder whole")
    config_path = folder / "config.json"
    hidden = _count(config, "hidden_size", config_path, 0)
    dim = _count(meta, "dim", meta_path, 128)
    similarity = meta.get("similarity")
    if similarity is not None and similarity != "cosine":
        raise HarnessError(f"{meta_path}: similarity is {similarity!r}; the harness scores ColBERT by cosine MaxSim "
                           "only (the token vectors L2-normalised), so this checkpoint's scores would be other "
                           "numbers: use a checkpoint trained with similarity \"cosine\"")
    keys = (("query_marker", "query_token_id"), ("doc_marker", "doc_token_id"), ("query_length", "query_maxlen"),
            ("doc_length", "doc_maxlen"), ("attend_to_masks", "attend_to_mask_tokens"),
            ("skiplist", "mask_punctuation"))
    stated = tuple((k, f"{meta_path}: {s}") for k, s in keys if meta.get(s) is not None)

    def own(key: str, setting: str) -> Any:
        return meta[key] if meta.get(key) is not None else STANFORD_DEFAULTS[setting]

    attend = _bool(meta, "attend_to_mask_tokens", meta_path, STANFORD_DEFAULTS["attend_to_masks"])
    skiplist = tuple(string.punctuation) if _bool(meta, "mask_punctuation", meta_path, True) else ()
    return ColbertConfig("stanford", _str(own("query_token_id", "query_marker"), meta_path, "query_token_id"),
                         _str(own("doc_token_id", "doc_marker"), meta_path, "doc_token_id"),
                         _int(own("query_maxlen", "query_length"), meta_path, "query_maxlen"),
                         _int(own("doc_maxlen", "doc_length"), meta_path, "doc_maxlen"), attend, True,
                         skiplist, "first-piece", (Projection(weights, "linear.weight", hidden, dim),), "",
                         f"Stanford ColBERT checkpoint {folder.name} (artifact.metadata"
                         f"{'' if meta else ' absent: PyLate defaults'})", stated)
