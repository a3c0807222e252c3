"""Resolve a dataset id or folder to a readable dataset, fetching registered ones when missing."""

from __future__ import annotations

import hashlib
from pathlib import Path

from filelock import FileLock

from harness.data.beir import BeirDataset
from harness.data.fetch import download, safe_unzip
from harness.data.registry import DATASETS, DatasetSpec, Protocol
from harness.errors import HarnessError, OfflineError
from harness.paths import cache_root, data_roots, download_root


def is_registered(name: str) -> bool:
    return name in DATASETS


def find_local(spec: DatasetSpec) -> Path | None:
    """The first data root holding the dataset's files, or None."""
    for root in data_roots():
        folder = root / spec.path
        if (folder / "corpus.jsonl").is_file():
            return folder
    return None


def fetch(spec: DatasetSpec) -> Path:
    """Make the dataset available locally (download + unpack when missing); returns its folder."""
    if spec.kind == "odqa":
        from harness.odqa.dataset import fetch as fetch_odqa

        return fetch_odqa(spec).root
    found = find_local(spec)
    if found is not None:
        return found
    if spec.url is None or spec.archive_root is None:
        raise HarnessError(f"{spec.id} has no download address; put its files under {data_roots()[0] / spec.path}")
    root = download_root()
    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock_dir / f"fetch-{spec.archive_root.replace('/', '_')}.lock")):
        found = find_local(spec)
        if found is not None:
            return found
        try:
            archive = download(spec.url, cache_root() / "downloads" / Path(spec.url).name, spec.md5)
        except OfflineError as e:
            raise HarnessError(_missing_message(spec, str(e))) from None
        target = root / spec.kind / spec.archive_root
        if not target.exists():
            safe_unzip_archive(archive, target)
    found = find_local(spec)
    if found is None:
        raise HarnessError(f"{spec.id}: the archive did not contain {spec.path}/corpus.jsonl")
    return found


def safe_unzip_archive(archive: Path, target: Path) -> None:
    """BEIR archives hold one top folder ``<name>/``; unpack it so that it lands at ``target``."""
    staging = target.parent / f".{target.name}.unpack"
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    safe_unzip(archive, staging)
    inner = staging / target.name
    (inner if inner.is_dir() else staging).rename(target)
    if staging.exists():
        import shutil

        shutil.rmtree(staging, ignore_errors=True)


def _missing_message(spec: DatasetSpec, reason: str) -> str:
    split = spec.protocol.split
    where = " or ".join(str(r / spec.path) for r in data_roots())
    return (f"{spec.id} is not available locally and cannot be downloaded ({reason}).\n"
            f"Looked for {where}/ with corpus.jsonl, queries.jsonl and qrels/{split}.tsv.\n"
            f"Provide it: download {spec.url} (md5 {spec.md5}), unzip it into "
            f"{data_roots()[0] / spec.kind}/, or point HARNESS_DATA at a folder that has {spec.path}/.")


def resolve_dataset(name: str, *, split: str | None = None, allow_fetch: bool = True) -> BeirDataset:
    """A registered id (``beir/scifact``, ``odqa/nq``), a BEIR-format folder, or an ODQA folder
    (``passages.tsv`` + a question file, see ``harness.odqa.dataset``)."""
    if is_registered(name):
        spec = DATASETS.get(name)
        if spec.is_collection:
            raise HarnessError(f"{name} is a collection of {len(spec.subsets)} datasets; run it as a whole "
                               "with `harness run`, or name one part, e.g. " + spec.subsets[0])
        if spec.kind == "odqa":
            return _resolve_odqa(spec, split, allow_fetch)
        folder = fetch(spec) if allow_fetch else find_local(spec)
        if folder is None:
            raise HarnessError(_missing_message(spec, "not fetched"))
        protocol = spec.protocol if split is None else Protocol(**{**spec.protocol.to_dict(), "split": split})
        ds = BeirDataset(spec.id, folder, protocol)
    else:
        path = Path(name).expanduser()
        if not path.is_dir():
            if "/" in name and not name.startswith((".", "/", "~")):
                raise HarnessError(DATASETS.unknown_message(name))
            raise HarnessError(f"dataset {name!r} is neither a registered id nor a folder"
                               f"{_did_you_mean(name)} (`harness list datasets` shows the ids)")
        resolved = path.resolve()
        digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
        from harness.odqa.dataset import from_folder, is_odqa_folder

        if is_odqa_folder(resolved):
            odqa = from_folder(resolved, f"local/{resolved.name}-{digest}", split)
            odqa.check_layout()
            return odqa  # type: ignore[return-value]
        ds = BeirDataset(f"local/{resolved.name}-{digest}", resolved, Protocol(split=split or "test"))
    ds.check_layout()
    return ds


def _resolve_odqa(spec: DatasetSpec, split: str | None, allow_fetch: bool):
    from dataclasses import replace

    from harness.odqa.dataset import fetch as fetch_odqa
    from harness.odqa.dataset import find_local as find_odqa
    from harness.odqa.dataset import missing_message

    ds = fetch_odqa(spec) if allow_fetch else find_odqa(spec)
    if ds is None:
        raise HarnessError(missing_message(spec, "not fetched"))
    if split is not None:
        ds.protocol = replace(ds.protocol, split=split)
    ds.check_layout()
    return ds


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, DATASETS.names(), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
