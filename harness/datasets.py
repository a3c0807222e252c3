"""Resolve dataset ids and folders to datasets of any kind, fetching registered ones when missing.

This module sits above ``harness.data`` (BEIR) and ``harness.odqa`` (open-domain QA): it is the one place
that knows both kinds. Every dataset it returns offers the same interface (``id``, ``split``,
``protocol``, ``corpus_path``, ``files()``, ``check_layout()``, ``corpus()``, ``queries()``,
``default_metrics``, ``metric()``, ``judged_documents()``, ``evaluate()``), so the runner never asks
which kind it has.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

from harness.data import load as beir_load
from harness.data.beir import BeirDataset, default_split
from harness.data.corpus import Doc
from harness.data.dataset import Dataset
from harness.data.registry import DATASETS, SUITES, DatasetSpec, EvalProtocol, expand
from harness.errors import HarnessError
from harness.odqa import dataset as odqa
from harness.paths import data_roots, offline
from harness.registry import Registry

__all__ = ["SOURCES", "Dataset", "DatasetSource", "Doc", "dataset_ids", "fetch", "find_local", "register_source",
           "resolve_all", "resolve_dataset"]


def dataset_ids(datasets: Sequence[str] = (), suites: Sequence[str] = ()) -> list[str]:
    """The dataset ids to run: suites expanded, collections (CQADupStack) split into their parts."""
    ids: list[str] = []
    for s in suites:
        if s not in SUITES:
            raise HarnessError(f"unknown suite {s!r}; known: {', '.join(SUITES)}")
        ids.extend(SUITES[s])
    ids.extend(datasets)
    return expand(ids)


class DatasetSource:
    """One source of datasets (a kind of files and their reader): finds, fetches and opens registered
    datasets of its kind (``DatasetSpec.kind`` names it) and the folders it recognises. A new source is one
    subclass and :func:`register_source` (docs/ARCHITECTURE.md, "Add a dataset source")."""

    name: ClassVar[str] = ""

    def find_local(self, spec: DatasetSpec) -> Path | None:
        """Where a registered dataset's files are, or None."""
        raise NotImplementedError

    def fetch(self, spec: DatasetSpec) -> Path:
        """Download a registered dataset when it is missing; returns its folder."""
        raise NotImplementedError

    def needs_fetch(self, spec: DatasetSpec) -> bool:
        """Whether :func:`resolve_all` must fetch the dataset before opening it (offline: refuse it)."""
        return self.find_local(spec) is None

    def missing_message(self, spec: DatasetSpec, reason: str) -> str:
        raise NotImplementedError

    def open(self, spec: DatasetSpec, split: str | None, allow_fetch: bool) -> Dataset:
        """The dataset of a registered spec, its layout checked."""
        raise NotImplementedError

    def claims_folder(self, folder: Path) -> bool:
        """Whether a folder given by path is in this source's format."""
        return False

    def open_folder(self, folder: Path, dataset_id: str, split: str | None) -> Dataset:
        raise NotImplementedError


class OdqaSource(DatasetSource):
    """Open-domain QA in DPR's files: passages TSV and question files (``harness.odqa``)."""

    name = "odqa"

    def find_local(self, spec: DatasetSpec) -> Path | None:
        found = odqa.find_local(spec)
        return found.root if found is not None else None

    def fetch(self, spec: DatasetSpec) -> Path:
        return odqa.fetch(spec).root

    def missing_message(self, spec: DatasetSpec, reason: str) -> str:
        return odqa.missing_message(spec, reason)

    def open(self, spec: DatasetSpec, split: str | None, allow_fetch: bool) -> Dataset:
        ds = odqa.fetch(spec) if allow_fetch else odqa.find_local(spec)
        if ds is None:
            raise HarnessError(odqa.missing_message(spec, "not fetched"))
        if split is not None:
            ds.protocol = replace(ds.protocol, split=split)
        ds.check_layout()
        return ds

    def claims_folder(self, folder: Path) -> bool:
        return odqa.is_odqa_folder(folder)

    def open_folder(self, folder: Path, dataset_id: str, split: str | None) -> Dataset:
        found = odqa.from_folder(folder, dataset_id, split)
        found.check_layout()
        return found


class BeirSource(DatasetSource):
    """BEIR-format folders: corpus.jsonl, queries.jsonl, qrels/<split>.tsv (``harness.data``); any folder
    that no other source claims is read as one."""

    name = "beir"

    def find_local(self, spec: DatasetSpec) -> Path | None:
        return beir_load.find_local(spec)

    def fetch(self, spec: DatasetSpec) -> Path:
        return beir_load.fetch(spec)

    def missing_message(self, spec: DatasetSpec, reason: str) -> str:
        return beir_load.missing_message(spec, reason)

    def open(self, spec: DatasetSpec, split: str | None, allow_fetch: bool) -> Dataset:
        folder = beir_load.fetch(spec) if allow_fetch else beir_load.find_local(spec)
        if folder is None:
            raise HarnessError(beir_load.missing_message(spec, "not fetched"))
        protocol = spec.protocol if split is None else replace(spec.protocol, split=split)
        beir = BeirDataset(spec.id, folder, protocol)
        beir.check_layout()
        return beir

    def claims_folder(self, folder: Path) -> bool:
        return True

    def open_folder(self, folder: Path, dataset_id: str, split: str | None) -> Dataset:
        beir = BeirDataset(dataset_id, folder, EvalProtocol(split=split or default_split(folder)))
        beir.check_layout()
        return beir


class IrdsSource(DatasetSource):
    """Any ir_datasets id (``irds:<id>``) and the registered ids read through ir_datasets (MS MARCO, TREC DL,
    LoTTE): ir_datasets downloads and caches the files; ``harness.data.irds`` writes them once in BEIR's
    layout under the harness's cache."""

    name = "irds"

    def find_local(self, spec: DatasetSpec) -> Path | None:
        from harness.data import irds

        assert spec.irds_id is not None
        return irds.exported(spec.irds_id)

    def fetch(self, spec: DatasetSpec) -> Path:
        from harness.data import irds

        assert spec.irds_id is not None
        return irds.open_dataset(spec.id, spec.irds_id, None, protocol=spec.protocol, metrics=spec.metrics).root

    def needs_fetch(self, spec: DatasetSpec) -> bool:
        return False  # ir_datasets reads its own cache on open, and says what it could not download

    def missing_message(self, spec: DatasetSpec, reason: str) -> str:
        from harness.data import irds

        return (f"{spec.id} is read through ir_datasets and is not exported here yet ({reason}); where there is "
                f"internet `harness fetch {spec.id}` downloads it (ir_datasets keeps its files in {irds.home()}, "
                "or IR_DATASETS_HOME)")

    def open(self, spec: DatasetSpec, split: str | None, allow_fetch: bool) -> Dataset:
        from harness.data import irds

        assert spec.irds_id is not None
        if split is not None and split != spec.protocol.split:
            raise HarnessError(f"{spec.id} is the {spec.protocol.split} split of its collection; for another, name "
                               f"the ir_datasets id: --dataset irds:<id> (https://ir-datasets.com)")
        return irds.open_dataset(spec.id, spec.irds_id, None, protocol=spec.protocol, metrics=spec.metrics)

    def open_name(self, name: str, split: str | None) -> Dataset:
        """``irds:<id>``: any ir_datasets id with documents, queries and qrels."""
        from harness.data import irds

        return irds.open_dataset(name, name.removeprefix(irds.PREFIX), split)


#: dataset sources by name; a folder given by path is read by the first (in registration order) that claims it
SOURCES: Registry[DatasetSource] = Registry("dataset source")


def register_source(source: DatasetSource) -> DatasetSource:
    """Add a dataset source (registered datasets of ``kind == source.name`` and the folders it claims). A
    source registered later is asked about a folder before the ones registered earlier, BEIR's fallback last."""
    SOURCES.register(source.name, source)
    return source


for _source in (BeirSource(), OdqaSource(), IrdsSource()):
    register_source(_source)


def source_of(spec: DatasetSpec) -> DatasetSource:
    return SOURCES.get(spec.kind)


def find_local(spec: DatasetSpec) -> Path | None:
    """Where a registered dataset's files are, or None."""
    return source_of(spec).find_local(spec)


def fetch(spec: DatasetSpec) -> Path:
    """Download a registered dataset when it is missing; returns its folder."""
    return source_of(spec).fetch(spec)


def _missing(spec: DatasetSpec, reason: str) -> str:
    return source_of(spec).missing_message(spec, reason)


def resolve_all(ids: Sequence[str], *, split: str | None = None, allow_fetch: bool = True,
                output_dir: Path | None = None) -> list[Dataset]:
    """Resolve every id before any work. Registered datasets that are missing are fetched; when some
    cannot be (offline, server unreachable), one error lists them all with the command that fetches them."""
    missing = [i for i in ids if i in DATASETS and not DATASETS.get(i).is_collection
               and source_of(DATASETS.get(i)).needs_fetch(DATASETS.get(i))]
    failed: list[tuple[str, str]] = []  # (id, the whole message)
    if missing and (offline() or not allow_fetch):
        reason = "offline: HARNESS_OFFLINE=1" if offline() else "not fetched"
        failed = [(i, _missing(DATASETS.get(i), reason)) for i in missing]
    else:
        for i in missing:
            try:
                fetch(DATASETS.get(i))
            except HarnessError as e:
                failed.append((i, str(e)))
    if len(failed) == 1:
        raise HarnessError(failed[0][1])
    if failed:
        where = " or ".join(str(r) for r in data_roots())
        lines = [f"{len(failed)} datasets are not available locally and could not be fetched:"]
        lines += [f"  {i}: {why.splitlines()[0]}" for i, why in failed]
        lines.append(f"Fetch them where there is internet: harness fetch {' '.join(i for i, _ in failed)}")
        lines.append(f"and copy the data root there to {where} (or point HARNESS_DATA at it).")
        raise HarnessError("\n".join(lines))
    return [resolve_dataset(i, split=split, allow_fetch=False, output_dir=output_dir) for i in ids]


def resolve_dataset(name: str, *, split: str | None = None, allow_fetch: bool = True,
                    output_dir: Path | None = None) -> Dataset:
    """A registered id (``beir/scifact``, ``odqa/nq``, ``msmarco-passage/dev/small``), ``irds:<ir_datasets id>``,
    a BEIR-format folder, or an ODQA folder
    (``passages.tsv`` + a question file, see ``harness.odqa.dataset``). A folder's id is
    ``local/<folder name>`` (:func:`local_dataset_id`; unique within ``output_dir``)."""
    if split is not None:
        check_split(split)
    if name.startswith("irds:"):
        source = SOURCES.get("irds")
        assert isinstance(source, IrdsSource)
        return source.open_name(name, split)
    if name in DATASETS:
        spec = DATASETS.get(name)
        if spec.is_collection:
            raise HarnessError(f"{name} is a collection of {len(spec.subsets)} datasets; run it as a whole "
                               "with `harness run`, or name one part, e.g. " + spec.subsets[0])
        return source_of(spec).open(spec, split, allow_fetch)
    path = Path(name).expanduser()
    if not path.is_dir() and name.startswith("local/"):  # a folder by the id a table printed
        path = _local_folder(name, output_dir)
    if not path.is_dir():
        if "/" in name and not name.startswith((".", "/", "~")):
            raise HarnessError(DATASETS.unknown_message(name))
        raise HarnessError(f"dataset {name!r} is neither a registered id nor a folder"
                           f"{_did_you_mean(name)} (`harness list datasets` shows the ids)")
    resolved = path.resolve()
    local_id = local_dataset_id(resolved, output_dir)
    for _, source in reversed(SOURCES.items()):
        if source.claims_folder(resolved):
            return source.open_folder(resolved, local_id, split)
    raise HarnessError(f"{resolved}: no dataset source reads this folder")  # BEIR claims every folder


def check_split(split: str) -> None:
    """A split names a qrels file and a folder of the results: letters, digits, ``.``, ``_``, ``-`` (not
    ``.`` or ``..``), so that it can never reach outside either."""
    import re

    if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9._-]+", split) or split.strip(".") == "":
        raise HarnessError(f"--split {split!r}: a split is a name of letters, digits, '.', '_' and '-' "
                           "(e.g. test, dev, train)")


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


def _local_folder(dataset_id: str, output_dir: Path | None) -> Path:
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


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, DATASETS.names(), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
