"""The ids of datasets given as folders: ``local/<folder name>``, claimed once per results folder so that two
folders named alike never share a leaderboard column (``harness.datasets`` resolves folders; a source asks
:func:`local_dataset_id` for the id of a folder it reads)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from harness.errors import HarnessError

__all__ = ["LOCAL_SOURCE", "local_dataset_id", "local_folder"]


#: marks which folder a ``local/<name>`` id of a results folder belongs to
LOCAL_SOURCE = ".folder"  # JSON; not *.json, which is where records live


def local_dataset_id(folder: Path, output_dir: Path | None = None) -> str:
    """``local/<folder name>``, unless another folder of that name already holds it in ``output_dir``: then
    ``local/<folder name>-<8 hex of the path>``. The first folder to use a name in a results folder claims
    it (``<output_dir>/local/<name>/.folder`` records its path, under a lock), so two folders named
    alike never share one leaderboard column, and one folder keeps its id from run to run."""
    import re

    from filelock import FileLock

    from harness.io import atomic_write_json, read_json

    folder = Path(folder).resolve()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-")
    base = "local/" + (name if name.strip(".") else "dataset")  # never "." or "..": an id is a folder too
    if output_dir is None:
        return base
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(output_dir / ".local-ids.lock")):
        for candidate in (base, f"{base}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"):
            marker = output_dir / candidate / LOCAL_SOURCE
            if marker.is_file():
                claimed = read_json(marker, fix=f"delete {marker} (its records keep their paths)")
                if isinstance(claimed, dict) and claimed.get("path") == str(folder):
                    return candidate
                continue
            if candidate == base and (output_dir / candidate).is_dir():
                continue  # records of a folder that claimed nothing (never written by this version)
            atomic_write_json(marker, {"path": str(folder)})
            return candidate
    raise HarnessError(f"{output_dir}: the dataset ids {base} and its suffixed form are both taken by other "
                       f"folders; rename {folder} or use another --output-dir")


def local_folder(dataset_id: str, output_dir: Path | None) -> Path:
    """The folder a ``local/<name>`` id stands for in ``output_dir`` (its ``.folder`` marker), refused in one
    line when that results folder does not know it or the folder is gone."""
    from harness.io import read_json

    marker = Path(output_dir) / dataset_id / LOCAL_SOURCE if output_dir is not None else None
    if marker is None or not marker.is_file():
        raise HarnessError(f"{dataset_id} is the id of a folder in a results folder, and "
                           f"{output_dir or 'no results folder'} has none of that id: name the folder by its path, "
                           "or give the --output-dir whose records hold it")
    claimed = read_json(marker, fix=f"delete {marker} (its records keep their paths)")
    folder = Path(str(claimed.get("path"))) if isinstance(claimed, dict) else None
    if folder is None or not folder.is_dir():
        raise HarnessError(f"{dataset_id} is the folder {folder} (as {marker} says), which is gone; name the folder "
                           "by its path")
    return folder
