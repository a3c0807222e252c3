"""Checkpoints: Hugging Face model + tokenizer (safetensors) + ``harness_checkpoint.json``, written in a
temporary folder and moved into place with ``os.replace``; only the last N are kept. The resume state
(optimiser, scheduler, key encoder, queue, data position, every RNG) is ``training_state.pt``, plain
tensors and containers only, so it loads with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.errors import HarnessError
from harness.io import atomic_write_json, shareable
from harness.retrievers.config import CHECKPOINT_FORMAT, CHECKPOINT_METADATA, EncoderConfig
from harness.train.folders import STATE_FILE as STATE_FILE  # re-exported: the torch-free half of a run's folder
from harness.train.folders import claim_output as claim_output
from harness.train.folders import latest_resumable as latest_resumable
from harness.train.folders import list_checkpoints as list_checkpoints
from harness.train.folders import read_metadata as read_metadata
from harness.train.folders import require_resumable as require_resumable
from harness.version import __version__


def encoder_block(cfg: EncoderConfig) -> dict[str, Any]:
    return {"pooling": cfg.pooling, "normalize": cfg.normalize,
            "similarity": "cos" if cfg.normalize else "dot", "max_length": cfg.max_length}


def checkpoint_metadata(*, encoder: EncoderConfig, objective: str, hyperparameters: dict[str, Any], data_checksum: str,
                        step: int, init: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"format": CHECKPOINT_FORMAT, "encoder": encoder_block(encoder), "objective": objective,
            "hyperparameters": hyperparameters, "data_checksum": data_checksum, "step": step,
            "harness_version": __version__, "init": init, **(extra or {})}


def check_finite_weights(model: Any, step: int, output: Path) -> None:
    """Refuse weights holding NaN or infinity (every rank calls it before a checkpoint: all refuse alike)."""
    broken = [name for name, t in model.state_dict().items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if broken:
        raise HarnessError(f"step {step}: {len(broken)} weight tensors hold NaN or infinity (first {broken[0]!r}); "
                           f"no checkpoint was written to {output}. Lower --lr, or check the data and --precision")


def save_checkpoint(output: Path, step: int, model: Any, tokenizer: Any, metadata: dict[str, Any],
                    state: dict[str, Any] | None, keep_last: int) -> Path:
    """Write ``output/checkpoint-<step>`` atomically and delete all but the newest ``keep_last``. Weights that
    are not all finite are refused: no checkpoint full of NaN is ever written."""
    check_finite_weights(model, step, output)
    output.mkdir(parents=True, exist_ok=True)
    final = output / f"checkpoint-{step:07d}"
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=output))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if state is not None:
            torch.save(state, tmp / STATE_FILE)
        atomic_write_json(tmp / CHECKPOINT_METADATA, metadata)
        if final.exists():
            trash = output / f".{final.name}.old"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        shareable(tmp)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, old in list_checkpoints(output)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


STATE_KEYS = ("step", "optimizer", "scheduler", "rng")


def load_state(folder: Path) -> dict[str, Any]:
    """A checkpoint's training state (torch.load with weights_only: no code runs), checked to hold what a
    resume restores; a truncated, foreign or pickled-code file is one line."""
    path = folder / STATE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError or pickle.UnpicklingError here
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise HarnessError(f"{path}: the training state cannot be read ({type(e).__name__}: {first}); resume "
                           "from an earlier checkpoint or start a new --output") from None
    if not isinstance(state, dict) or any(k not in state for k in STATE_KEYS) or not isinstance(state["rng"], list):
        raise HarnessError(f"{path}: not a training state (it needs {', '.join(STATE_KEYS)}); resume from an "
                           "earlier checkpoint or start a new --output")
    return state


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every RNG the trainer touches: python, numpy's global, torch's CPU generator and, on a GPU, the
    generator of this rank's own device (by rank, not by device index: a resume on another node layout,
    1 x 8 GPUs -> 2 x 4, restores each rank's state to that rank's device)."""
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state(legacy=True)
    state = {"python": {"version": version, "state": list(mt), "gauss": gauss},
             "numpy": {"name": np_name, "keys": torch.from_numpy(np.asarray(np_keys).astype(np.int64)),
                       "pos": int(np_pos),
                       "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
             "torch": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        state["cuda_device"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if device is not None and device.type == "cuda":
        if "cuda_device" in state:
            torch.cuda.set_rng_state(state["cuda_device"], device)
        elif "cuda" in state and (device.index or 0) < len(state["cuda"]):  # written before 2026-12-06: by index
            torch.cuda.set_rng_state(state["cuda"][device.index or 0], device)
