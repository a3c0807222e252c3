"""Dataset sources, and the resolution of dataset ids and folders to datasets, fetching registered ones when
missing.

A source is a kind of files and how they make a dataset: it combines readers (``harness.data.formats``,
``harness.odqa.dataset.AnswerFile``, ``harness.data.memory``) into a ``PartsDataset`` under a protocol, and
owns what names it: its registered ids (``DatasetSpec.kind`` names the source; each source reads its own
typed spec), the id prefix it answers for (``irds:``, ``memory:``; :attr:`DatasetSource.prefix`, looked up
through :data:`SOURCES`), and the folders it claims. Every dataset offers the same interface
(``harness.data.dataset.Dataset``), so the runner never asks which source made it. A new source is one
subclass and :func:`register_source` (docs/ARCHITECTURE.md, "A dataset source").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from harness.data import files as named_files
from harness.data import irds as irds_export
from harness.data import load as beir_load
from harness.data import memory
from harness.data.beir import BeirDataset, default_split
from harness.data.corpus import Doc
from harness.data.dataset import Dataset
from harness.data.local import LOCAL_SOURCE, local_dataset_id, local_folder
from harness.data.registry import (
    DATASETS,
    SUITES,
    BeirSpec,
    DatasetSpec,
    EvalProtocol,
    IrdsSpec,
    OdqaSpec,
    check_split,
    expand,
)
from harness.errors import HarnessError
from harness.odqa import dataset as odqa
from harness.paths import data_roots, offline
from harness.registry import Registry

__all__ = ["LOCAL_SOURCE", "SOURCES", "Dataset", "DatasetSource", "Doc", "dataset_ids", "fetch", "find_local",
           "local_dataset_id", "register_source", "resolve_all", "resolve_dataset", "source_of"]

S = TypeVar("S", bound=DatasetSpec)


def dataset_ids(datasets: Sequence[str] = (), suites: Sequence[str] = ()) -> list[str]:
    """The dataset ids to run: suites expanded, collections (CQADupStack) split into their parts."""
    ids: list[str] = []
    for s in suites:
        if s not in SUITES:
            raise HarnessError(f"unknown suite {s!r}; known: {', '.join(SUITES)}")
        ids.extend(SUITES[s])
    ids.extend(datasets)
    return expand(ids)


class DatasetSource(Generic[S]):
    """One source of datasets: finds, fetches and opens the registered datasets of its kind (specs of type
    ``spec_type`` whose ``kind`` is its ``name``), the ids that start with its ``prefix``, and the folders it
    claims. Each method a source does not serve says so in one line."""

    name: ClassVar[str] = ""
    #: the id prefix this source answers for (``irds:``); "" for none
    prefix: ClassVar[str] = ""
    #: the spec type its registered datasets have
    spec_type: ClassVar[type[DatasetSpec]] = DatasetSpec

    def find_local(self, spec: S) -> Path | None:
        """Where a registered dataset's files are, or None."""
        return None

    def fetch(self, spec: S) -> Path:
        """Download a registered dataset when it is missing; returns its folder."""
        raise HarnessError(self.missing_message(spec, "this source downloads nothing"))

    def needs_fetch(self, spec: S) -> bool:
        """Whether :func:`resolve_all` must fetch the dataset before opening it (offline: refuse it); a source
        that downloads says so when its files are not here."""
        return False

    def missing_message(self, spec: S, reason: str) -> str:
        return f"{spec.id} is not available ({reason})"

    def open(self, spec: S, split: str | None, allow_fetch: bool) -> Dataset:
        """The dataset of a registered spec, its layout checked."""
        raise HarnessError(f"{spec.id}: the {self.name} source opens no registered dataset")

    def open_name(self, name: str, split: str | None) -> Dataset:
        """The dataset of an id that starts with :attr:`prefix`."""
        raise HarnessError(f"{name}: the {self.name} source reads no {self.prefix}<id>")

    def claims_folder(self, folder: Path) -> bool:
        """Whether a folder given by path is in this source's format."""
        return False

    def open_folder(self, folder: Path, split: str | None, output_dir: Path | None) -> Dataset:
        """The dataset of a folder it claims (its id: :func:`~harness.data.local.local_dataset_id`, unique
        within ``output_dir``, unless the folder says its own)."""
        raise HarnessError(f"{folder}: the {self.name} source reads no folder")


class BeirSource(DatasetSource[BeirSpec]):
    """BEIR-format folders: corpus.jsonl, queries.jsonl (or TREC topics), qrels/<split>.tsv; any folder that no
    other source claims is read as one."""

    name = "beir"
    spec_type = BeirSpec

    def find_local(self, spec: BeirSpec) -> Path | None:
        return beir_load.find_local(spec)

    def needs_fetch(self, spec: BeirSpec) -> bool:
        return self.find_local(spec) is None

    def fetch(self, spec: BeirSpec) -> Path:
        return beir_load.fetch(spec)

    def missing_message(self, spec: BeirSpec, reason: str) -> str:
        return beir_load.missing_message(spec, reason)

    def open(self, spec: BeirSpec, split: str | None, allow_fetch: bool) -> Dataset:
        folder = beir_load.fetch(spec) if allow_fetch else beir_load.find_local(spec)
        if folder is None:
            raise HarnessError(beir_load.missing_message(spec, "not fetched"))
        protocol = spec.protocol if split is None else replace(spec.protocol, split=split)
        return _checked(BeirDataset.folder(spec.id, folder, protocol))

    def claims_folder(self, folder: Path) -> bool:
        return True

    def open_folder(self, folder: Path, split: str | None, output_dir: Path | None) -> Dataset:
        protocol = EvalProtocol(split=split or default_split(folder))
        return _checked(BeirDataset.folder(local_dataset_id(folder, output_dir), folder, protocol))


class OdqaSource(DatasetSource[OdqaSpec]):
    """Open-domain QA in DPR's files: passages TSV and question files (``harness.odqa``)."""

    name = "odqa"
    spec_type = OdqaSpec

    def find_local(self, spec: OdqaSpec) -> Path | None:
        found = odqa.find_local(spec)
        return found.root if found is not None else None

    def needs_fetch(self, spec: OdqaSpec) -> bool:
        return self.find_local(spec) is None

    def fetch(self, spec: OdqaSpec) -> Path:
        return odqa.fetch(spec).root

    def missing_message(self, spec: OdqaSpec, reason: str) -> str:
        return odqa.missing_message(spec, reason)

    def open(self, spec: OdqaSpec, split: str | None, allow_fetch: bool) -> Dataset:
        ds = odqa.fetch(spec, split) if allow_fetch else odqa.find_local(spec, split)
        if ds is None:
            raise HarnessError(odqa.missing_message(spec, "not fetched"))
        return _checked(ds)

    def claims_folder(self, folder: Path) -> bool:
        return odqa.is_odqa_folder(folder)

    def open_folder(self, folder: Path, split: str | None, output_dir: Path | None) -> Dataset:
        return _checked(odqa.from_folder(folder, local_dataset_id(folder, output_dir), split))


class IrdsSource(DatasetSource[IrdsSpec]):
    """Any ir_datasets id (``irds:<id>``) and the registered ids read through ir_datasets (MS MARCO, TREC DL,
    LoTTE): ir_datasets downloads and caches the files; ``harness.data.irds`` writes them once in BEIR's
    layout under the harness's cache, read by BEIR's readers."""

    name = "irds"
    prefix = irds_export.PREFIX
    spec_type = IrdsSpec

    def find_local(self, spec: IrdsSpec) -> Path | None:
        return irds_export.exported(spec.irds_id)

    def fetch(self, spec: IrdsSpec) -> Path:
        return irds_export.open_dataset(spec.id, spec.irds_id, None, protocol=spec.protocol, metrics=spec.metrics).root

    def needs_fetch(self, spec: IrdsSpec) -> bool:
        return False  # ir_datasets reads its own cache on open, and says what it could not download

    def missing_message(self, spec: IrdsSpec, reason: str) -> str:
        return (f"{spec.id} is read through ir_datasets and is not exported here yet ({reason}); where there is "
                f"internet `harness fetch {spec.id}` downloads it (ir_datasets keeps its files in "
                f"{irds_export.home()}, or IR_DATASETS_HOME)")

    def open(self, spec: IrdsSpec, split: str | None, allow_fetch: bool) -> Dataset:
        if split is not None and split != spec.protocol.split:
            raise HarnessError(f"{spec.id} is the {spec.protocol.split} split of its collection; for another, name "
                               f"the ir_datasets id: --dataset {self.prefix}<id> (https://ir-datasets.com)")
        return irds_export.open_dataset(spec.id, spec.irds_id, None, protocol=spec.protocol, metrics=spec.metrics)

    def open_name(self, name: str, split: str | None) -> Dataset:
        """``irds:<id>``: any ir_datasets id with documents, queries and qrels."""
        return irds_export.open_dataset(name, name.removeprefix(self.prefix), split)


class MemorySource(DatasetSource[DatasetSpec]):
    """Datasets made in Python (``harness.data.memory.from_memory``): their content-addressed copy in the cache
    is claimed by its marker and keeps the dataset's id and protocol; ``memory:<name>`` finds the copy."""

    name = "memory"
    prefix = memory.PREFIX

    def claims_folder(self, folder: Path) -> bool:
        return (folder / memory.MARKER).is_file()

    def open_folder(self, folder: Path, split: str | None, output_dir: Path | None) -> Dataset:
        from harness.io import read_json

        marker = read_json(folder / memory.MARKER, fix=f"delete {folder} (the dataset writes it again when used)")
        if not isinstance(marker, dict) or not isinstance(marker.get("protocol"), dict):
            raise HarnessError(f"{folder / memory.MARKER}: not a dataset's marker; delete {folder}")
        protocol = EvalProtocol(**marker["protocol"])
        if split is not None and split != protocol.split:
            raise HarnessError(f"{marker.get('id')} has the one split {protocol.split}; drop --split {split}")
        ds = BeirDataset.folder(str(marker.get("id")), folder, protocol)
        ds.default_metrics = tuple(marker.get("metrics") or ds.default_metrics)
        return _checked(ds)

    def open_name(self, name: str, split: str | None) -> Dataset:
        found = memory.copies_of(name)
        if len(found) != 1:
            why = "none is in this cache" if not found else f"{len(found)} copies are ({', '.join(map(str, found))})"
            raise HarnessError(f"{name} is a dataset made in Python (harness.data.memory.from_memory) and {why}: "
                               "pass the dataset object to harness.run, or its folder by path")
        return self.open_folder(found[0], split, None)


class FilesSource(DatasetSource[DatasetSpec]):
    """Three files named one by one (``files:corpus=C;topics=T;qrels=Q``; ``harness run --corpus C --topics T
    --qrels Q``), each read by its format's reader (``harness.data.files``)."""

    name = "files"
    prefix = named_files.PREFIX

    def open_name(self, name: str, split: str | None) -> Dataset:
        return _checked(named_files.files_dataset(name, split))


def _checked(ds: Dataset) -> Dataset:
    ds.check_layout()
    return ds


#: dataset sources by name; a folder given by path is read by the last registered that claims it
SOURCES: Registry[DatasetSource[Any]] = Registry("dataset source")


def register_source(source: DatasetSource[Any]) -> DatasetSource[Any]:
    """Add a dataset source (registered datasets of ``kind == source.name``, the ids under its prefix, the
    folders it claims). A source registered later is asked about a folder before the ones registered earlier,
    BEIR's fallback last. A prefix another source has is refused."""
    if source.prefix and any(s.prefix == source.prefix for _, s in SOURCES.items()):
        raise ValueError(f"dataset source {source.name!r}: the prefix {source.prefix!r} is another source's")
    SOURCES.register(source.name, source)
    return source


for _source in (BeirSource(), OdqaSource(), IrdsSource(), MemorySource(), FilesSource()):
    register_source(_source)


def source_of(spec: DatasetSpec) -> DatasetSource[Any]:
    """The source of a registered spec (its ``kind``), which must be of the source's spec type."""
    source = SOURCES.get(spec.kind)
    if not isinstance(spec, source.spec_type):
        raise HarnessError(f"{spec.id}: the {source.name} source reads a {source.spec_type.__name__}, and this one "
                           f"is a {type(spec).__name__}; register it as a {source.spec_type.__name__}")
    return source


def source_for_name(name: str) -> DatasetSource[Any] | None:
    """The source whose id prefix ``name`` starts with, or None."""
    return next((s for _, s in SOURCES.items() if s.prefix and name.startswith(s.prefix)), None)


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
    """A registered id (``beir/scifact``, ``odqa/nq``, ``msmarco-passage/dev/small``), an id under a source's
    prefix (``irds:<ir_datasets id>``, ``memory:<name>``, ``files:corpus=C;topics=T;qrels=Q``), a BEIR-format
    folder, or an ODQA folder (``passages.tsv`` + a question file, see ``harness.odqa.dataset``). A folder's id
    is ``local/<folder name>`` (:func:`local_dataset_id`; unique within ``output_dir``)."""
    if split is not None:
        check_split(split)
    by_prefix = source_for_name(name)
    if by_prefix is not None:
        return by_prefix.open_name(name, split)
    if name in DATASETS:
        spec = DATASETS.get(name)
        if spec.is_collection:
            raise HarnessError(f"{name} is a collection of {len(spec.subsets)} datasets; run it as a whole "
                               "with `harness run`, or name one part, e.g. " + spec.subsets[0])
        return source_of(spec).open(spec, split, allow_fetch)
    path = Path(name).expanduser()
    if not path.is_dir() and name.startswith("local/"):  # a folder by the id a table printed
        path = local_folder(name, output_dir)
    if not path.is_dir():
        if "/" in name and not name.startswith((".", "/", "~")):
            raise HarnessError(DATASETS.unknown_message(name))
        raise HarnessError(f"dataset {name!r} is neither a registered id nor a folder"
                           f"{_did_you_mean(name)} (`harness list datasets` shows the ids)")
    resolved = path.resolve()
    for _, source in SOURCES.items()[::-1]:
        if source.claims_folder(resolved):
            return source.open_folder(resolved, split, output_dir)
    raise HarnessError(f"{resolved}: no dataset source reads this folder")  # BEIR claims every folder


def at_split(ds: Dataset, split: str, output_dir: Path | None = None) -> Dataset:
    """``ds`` with the topics and judgements of another ``split``: the same corpus, resolved as ``ds`` was (its
    registered id or prefixed name, else its folder)."""
    if split == ds.split:
        return ds
    opened_as = getattr(ds, "opened_as", None)
    by_id = ds.id in DATASETS or source_for_name(ds.id) is not None
    name = str(opened_as) if opened_as else ds.id if by_id else str(ds.root)
    other = resolve_dataset(name, split=split, allow_fetch=False, output_dir=output_dir)
    if other.id != ds.id or other.corpus_path != ds.corpus_path:
        raise HarnessError(f"{ds.id}: its split {split!r} resolves to another dataset ({other.id}, "
                           f"{other.corpus_path}); name a split of this one")
    if set(other.files()) == set(ds.files()):  # a files: dataset: one qrels file, whatever the split is called
        raise HarnessError(f"{ds.id}: split {split!r} reads the same topics and judgements as {ds.split!r} "
                           "(a dataset of named files has one split); give the other split's files as a dataset "
                           "of their own")
    return other


def _did_you_mean(name: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, DATASETS.names(), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
