"""Find and fetch registered BEIR datasets (``harness.datasets`` resolves every kind of dataset)."""

from __future__ import annotations

from pathlib import Path

from filelock import FileLock

from harness.data.fetch import download, safe_unzip
from harness.data.registry import DATASETS, BeirSpec
from harness.errors import HarnessError, OfflineError
from harness.paths import cache_root, data_roots, download_root


def is_registered(name: str) -> bool:
    return name in DATASETS


def find_local(spec: BeirSpec) -> Path | None:
    """The first data root holding the dataset's files, or None."""
    for root in data_roots():
        folder = root / spec.path
        if (folder / "corpus.jsonl").is_file():
            return folder
    return None


def fetch(spec: BeirSpec) -> Path:
    """Make the BEIR dataset available locally (download + unpack when missing); returns its folder."""
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
            raise HarnessError(missing_message(spec, str(e))) from None
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


def missing_message(spec: BeirSpec, reason: str) -> str:
    split = spec.protocol.split
    where = " or ".join(str(r / spec.path) for r in data_roots())
    return (f"{spec.id} is not available locally and cannot be downloaded ({reason}).\n"
            f"Looked for {where}/ with corpus.jsonl, queries.jsonl and qrels/{split}.tsv.\n"
            f"Provide it: download {spec.url} (md5 {spec.md5}), unzip it into "
            f"{data_roots()[0] / spec.kind}/, or point HARNESS_DATA at a folder that has {spec.path}/.")
