"""Locate model files: a local folder, or the Hugging Face hub (through its cache).

Offline (``HARNESS_OFFLINE=1`` / ``HF_HUB_OFFLINE=1``) only the cache is used. When a model is neither
cached nor downloadable, the error says how to provide it; it never ends in a traceback.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.paths import offline

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# what a model folder needs (sentence-transformers module folders included: their configs match *.json and their
# weights *.safetensors); pickled weights only when a repository has no safetensors (see _from_hub)
ALLOW = ["*.json", "*.txt", "*.model", "*.safetensors", "1_Pooling/*", "tokenizer*", "vocab*", "merges*"]
PICKLED = ["pytorch_model.bin", "*/pytorch_model.bin"]


@dataclass(frozen=True)
class ModelFiles:
    path: Path
    source: str  # "local" or "hub"
    model_id: str
    revision: str  # hub commit, or "sha256:<weights>" for a local folder

    def provenance(self) -> ModelProvenance:
        return {"model": self.model_id, "source": self.source, "revision": self.revision, "path": str(self.path)}


class ModelProvenance(TypedDict):
    """Where a model's files came from, as a record's provenance says."""

    model: str
    source: str
    revision: str
    path: str


#: files of a model folder that cannot change its vectors (training state, logs, pictures, docs)
IGNORED_MODEL_FILES = ("training_state.pt", "training_args.bin", "trainer_state.json", "optimizer.pt",
                       "scheduler.pt", "eval_log.jsonl", "train_log.jsonl")
IGNORED_MODEL_SUFFIXES = (".md", ".png", ".jpg", ".svg", ".lock", ".log", ".pth", ".ckpt", ".h5", ".msgpack",
                          ".onnx", ".ot")


def model_files(folder: Path) -> list[Path]:
    """Every file of a model folder that can change what it computes: weights, ``config.json``, tokenizer
    files, sentence-transformers module configs (and every module folder ``modules.json`` names), the
    harness checkpoint metadata, and any Python file (run with ``--trust-remote-code``). Training state,
    logs, pictures, other frameworks' weights and hidden files are left out."""
    folder = Path(folder)
    found: set[Path] = set()
    for p in folder.iterdir():
        if p.is_file() and not p.name.startswith(".") and p.name not in IGNORED_MODEL_FILES \
                and not p.name.endswith(IGNORED_MODEL_SUFFIXES):
            found.add(p)
    modules = folder / "modules.json"
    if modules.is_file():
        from harness.io import read_json

        listed = read_json(modules, fix="repair or re-download the model folder")
        for module in listed if isinstance(listed, list) else []:
            sub = folder / str(module.get("path", "")) if isinstance(module, dict) else folder
            if sub != folder and sub.is_dir():
                found.update(q for q in sub.rglob("*") if q.is_file() and not q.name.startswith("."))
    return sorted(found)


def model_digest(folder: Path, checksums: Checksums = TRUSTED) -> str:
    """sha256 over (relative path, content sha256) of :func:`model_files`: the model's content identity.
    Two copies of one model share it, whatever their paths; an edited config or tokenizer changes it."""
    import hashlib

    folder = Path(folder)
    h = hashlib.sha256()
    for p in model_files(folder):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0" + checksums.sha256(p).encode() + b"\n")
    return h.hexdigest()


def weights_file(folder: Path) -> Path | None:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    return None


def safetensors_parameters(path: Path) -> int | None:
    """The number of parameters a ``.safetensors`` file holds, from its header alone (no tensor is read, no
    torch imported); None for another format or an unreadable header."""
    import math
    import struct

    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 * 2**20:
                return None
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error):
        return None
    if not isinstance(header, dict):
        return None
    return sum(math.prod(int(n) for n in v.get("shape", [])) for k, v in header.items()
               if k != "__metadata__" and isinstance(v, dict))


def spec_model_files(name: str, model: str | None, revision: str | None, trust_remote_code: bool,
                     checksums: Checksums = TRUSTED) -> ModelFiles:
    """The files of the model retriever ``name`` runs (refused in one line when it names none), checked for a
    model's own code (:func:`check_custom_code`): how every model-running kind starts."""
    if model is None:
        raise HarnessError(f"retriever {name} names no model")
    files = resolve_model(model, revision, checksums)
    check_custom_code(files.path, trust_remote_code)
    return files


def check_custom_code(folder: Path, trust_remote_code: bool) -> None:
    """Refuse a model whose config.json names its own code (``auto_map``) unless --trust-remote-code: without
    it, transformers would quietly run the stock class of its model type instead of the model's own code."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise HarnessError(f"{Path(folder) / 'config.json'}: unreadable ({e})") from None
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    if auto_map and not trust_remote_code:
        raise HarnessError(f"{folder} ships its own Python code (config.json auto_map: {', '.join(sorted(auto_map))}), "
                           "which the harness does not run unless you pass --trust-remote-code (only do so for code "
                           "you have read); without it the stock class would run instead and compute something else")


def load_weights_error(folder: Path | str, error: BaseException) -> HarnessError:
    """One line for weights that transformers (or torch.load, for pickled .bin files) cannot read."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return HarnessError(f"{folder}: the model's weights cannot be loaded ({type(error).__name__}: {first}); a "
                        "truncated or foreign file, or a pickled .bin torch refuses to read safely: re-save the "
                        "model as safetensors (model.safetensors)")


class Widened(TypedDict, total=False):
    widened_from: str  # the dtype a model was saved in, where not float32 (loaded widened to float32)


def widened_from(folder: Path | str) -> Widened:
    """``{"widened_from": "float16"}`` where the model's ``config.json`` names a floating dtype other than
    float32 (its weights are widened when loaded: :func:`load_checked`), else ``{}``: part of fingerprints and
    cache keys, so vectors or scores computed before loading was float32 (transformers 5 ran such a model in
    half precision) are never reused; float32 models keep the keys they always had."""
    path = Path(folder) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    saved = config.get("dtype", config.get("torch_dtype")) if isinstance(config, dict) else None
    if isinstance(saved, str) and saved not in ("float32", "auto") and saved.startswith(("float", "bfloat")):
        return {"widened_from": saved}
    return Widened()


def _dtype_option() -> str:
    """The name of ``from_pretrained``'s dtype option: ``dtype`` since transformers 4.56, ``torch_dtype`` before."""
    import transformers

    major, minor = (int(part) for part in transformers.__version__.split(".")[:2])
    return "dtype" if (major, minor) >= (4, 56) else "torch_dtype"


def load_checked(cls: Any, folder: Path | str, *, trust_remote_code: bool = False, **kwargs: Any) -> Any:
    """``cls.from_pretrained(folder)`` with all of its weights, in float32: a tensor the model needs but the
    weights file lacks would be initialised at random and change every number silently, so it is refused (the
    pooler, which no recipe reads, excepted); weights that cannot be read are one line, not a traceback.

    float32 whatever the folder says: transformers 5 loads in the ``dtype`` of ``config.json`` (or of the
    weights) by default, so a model saved in float16 or bfloat16 would run in half precision under a record
    that says fp32. The weights are widened exactly; the precision modes (bf16, bf16x3, tf32) are the
    encoder's, applied to the float32 model."""
    import torch

    kwargs[_dtype_option()] = torch.float32
    try:
        model, info = cls.from_pretrained(str(folder), trust_remote_code=trust_remote_code,
                                          output_loading_info=True, **kwargs)
    except (OSError, ValueError, RuntimeError, EOFError) as e:
        if "trust_remote_code" in str(e):
            raise
        raise load_weights_error(folder, e) from None
    except Exception as e:  # pickle.UnpicklingError from torch.load of a .bin
        if type(e).__name__ != "UnpicklingError":
            raise
        found = [line.strip() for line in str(e).splitlines() if "GLOBAL" in line][:1]
        raise HarnessError(f"refusing the weights in {folder}: they hold Python objects besides tensors and "
                           "are loaded only with torch.load(weights_only=True)"
                           f"{' (' + found[0] + ')' if found else ''}; use a model.safetensors copy") from None
    missing = [k for k in info.get("missing_keys", []) if "pooler." not in k]
    if missing:
        raise HarnessError(f"{folder}: the weights lack {len(missing)} tensor(s) the model needs (first: "
                           f"{missing[0]}); they would be random. The weights do not belong to this config.json")
    if any(t.is_floating_point() and t.dtype != torch.float32 for t in (*model.parameters(), *model.buffers())):
        model = model.float()  # code of the model's own that set its dtype after loading
    return model


def resolve_model(name: str, revision: str | None = None, checksums: Checksums = TRUSTED) -> ModelFiles:
    """A local folder (returned as is, its revision the checksum of its weights) or a hub id fetched into the
    Hugging Face cache."""
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise HarnessError(f"{local} is not a Hugging Face model folder (no config.json)")
        weights = weights_file(local)
        if weights is None:
            raise HarnessError(f"{local} has no model weights ({' or '.join(WEIGHT_FILES)})")
        return ModelFiles(local.resolve(), "local", name, f"sha256:{checksums.sha256(weights)}")
    if name.startswith((".", "/", "~")) or os.sep + os.sep in name or name.count("/") >= 2:
        # a hub id is owner/name: more slashes can only be a path, and no folder is there
        raise HarnessError(f"model folder {name} does not exist")
    return _from_hub(name, revision)


def _from_hub(repo_id: str, revision: str | None) -> ModelFiles:
    from huggingface_hub import snapshot_download

    how = ("Download it where there is internet (`hf download " + repo_id + "`) and copy the Hugging Face "
           "cache (HF_HOME) here, or give a local folder in the id's place, under the same prefix "
           "(hf:/path/to/model, colbert:/path/to/model, ...).")
    try:
        folder = Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=ALLOW,
                                        local_files_only=offline(), etag_timeout=10))
    except Exception as e:  # the hub raises many kinds: offline, DNS, 404, gated
        kind = type(e).__name__
        state = "offline and not in the Hugging Face cache" if offline() else f"not reachable ({kind})"
        if "RepositoryNotFound" in kind or "RevisionNotFound" in kind:
            state = f"not found on the hub ({kind})"
        raise HarnessError(f"model {repo_id}{'@' + revision if revision else ''} is {state}. {how}") from None
    if weights_file(folder) is None and not offline():
        try:  # an older repository with pickled weights only (read with weights_only=True)
            folder = Path(snapshot_download(repo_id=repo_id, revision=revision, allow_patterns=ALLOW + PICKLED,
                                            etag_timeout=10))
        except Exception:  # the first download worked; report the missing weights below
            pass
    if weights_file(folder) is None:
        raise HarnessError(f"model {repo_id} has no safetensors/pytorch weights in {folder}. {how}")
    return ModelFiles(folder, "hub", repo_id, folder.name)
