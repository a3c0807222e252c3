"""A training run's output folder without torch: its checkpoints, the newest resumable one, their metadata,
and whether the folder may take a new run. ``harness train`` asks these before it imports torch, so a held
``--output`` or a ``--resume`` with nothing to resume is one line in under a second
(``harness.train.checkpoint`` re-exports them)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.retrievers.config import CHECKPOINT_METADATA

STATE_FILE = "training_state.pt"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def list_checkpoints(output: Path) -> list[tuple[int, Path]]:
    """(step, folder) of every finished checkpoint under ``output``, oldest first."""
    if not output.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output.iterdir()
             if p.is_dir() and (m := _NAME.match(p.name)) and (p / CHECKPOINT_METADATA).is_file()]
    return sorted(found)


def latest_resumable(output: Path) -> Path | None:
    for _, folder in reversed(list_checkpoints(output)):
        if (folder / STATE_FILE).is_file():
            return folder
    return None


def claim_output(output: Path, *, resume: bool, overwrite: bool, clear: bool = True, resumable: bool = True) -> None:
    """Refuse to mix two runs in one folder: an --output that holds checkpoints or a training log is continued
    with --resume, or cleared with --overwrite; otherwise refused (replacing some checkpoints with another
    run's and appending to its log would leave evaluations of weights that no longer exist). Every rank
    checks (so every rank refuses alike); ``clear`` (rank 0) removes the earlier run's files, and only them."""
    from harness.train.config import LOG_FILE

    held = bool(list_checkpoints(output)) or (output / LOG_FILE).is_file()
    if resume and overwrite:
        raise HarnessError("--resume continues the run in --output and --overwrite clears it; pass one of them")
    if held and not resume:
        if not overwrite:
            how = "continue it with --resume, start" if resumable else "start"  # finetune has no --resume
            raise HarnessError(f"{output} already holds a training run (checkpoints or {LOG_FILE}); {how} a new "
                               "--output, or pass --overwrite to clear it")
        if clear:
            for folder in output.glob("checkpoint-*"):
                if _NAME.match(folder.name) and folder.is_dir():
                    shutil.rmtree(folder)
            for name in (LOG_FILE, "training_curve.png"):
                (output / name).unlink(missing_ok=True)


def require_resumable(output: Path) -> Path:
    """The newest checkpoint under ``output`` that ``--resume`` continues from, or one line saying there is
    none and what to do."""
    folder = latest_resumable(output)
    if folder is None:
        raise HarnessError(f"--resume: no checkpoint with training state under {output} (the run stopped before its "
                           "first checkpoint, or was saved with --no-state); start it again with --overwrite")
    return folder


def read_metadata(folder: Path) -> dict[str, Any]:
    """A checkpoint's harness_checkpoint.json, checked to be an object with its hyper-parameters."""
    from harness.io import read_json

    path = folder / CHECKPOINT_METADATA
    meta = read_json(path, problem="not valid JSON", fix="resume from an earlier checkpoint or start a new --output")
    if not isinstance(meta, dict) or not isinstance(meta.get("hyperparameters"), dict) \
            or not isinstance(meta.get("step"), int):
        raise HarnessError(f"{path}: not a checkpoint's metadata (an object with 'step' and 'hyperparameters'); "
                           "resume from an earlier checkpoint or start a new --output")
    return meta
