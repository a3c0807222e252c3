"""Result records: one JSON file per (retriever, settings, dataset, split), next to its TREC run file.

Layout under the output directory: ``<dataset id>/<split>/<retriever slug>.json`` and ``.trec`` for the
reference computation; a run whose settings differ from it (``harness.settings``) is stored as
``<slug>+<settings digest>.json``, so two computations never overwrite one another. A record is read and
written only here, as a :class:`ResultRecord`; a file that parses as JSON but does not validate is a
:class:`~harness.errors.DataError` naming the file and the field.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.errors import DataError, HarnessError
from harness.io import atomic_write_json, inside, read_json
from harness.settings import settings_digest, settings_label

SCHEMA = "harness-result/2"


@dataclass
class ResultRecord:
    """The result of one retriever under one set of settings on one dataset split."""

    retriever: str
    dataset: str
    split: str
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    fingerprint: str
    run_file: str
    run_sha256: str = ""  # of the run file as written: a run file is reused only while it still has it
    settings: dict[str, Any] = field(default_factory=dict)  # the non-reference settings; {} = reference
    num_queries: int = 0
    queries_answered: int = 0
    documents_searched: int | None = None
    first_hit_rank: dict[str, int | None] | None = None  # open-domain QA: rank of each question's first hit
    retriever_spec: dict[str, Any] = field(default_factory=dict)
    retriever_fingerprint: dict[str, Any] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    #: what each protocol rule removed, per query: {"drop_self_hits": {qid: n}}; no key where no rule applied
    removed_by_protocol: dict[str, dict[str, int]] = field(default_factory=dict)
    dataset_provenance: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    device: str | None = None
    harness_version: str = ""
    index: dict[str, Any] = field(default_factory=dict)
    corpus: dict[str, Any] = field(default_factory=dict)
    retriever_provenance: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    reused_run: bool = False
    schema: str = SCHEMA

    @property
    def settings_label(self) -> str:
        """``precision=bf16`` and the like; '' for the reference computation."""
        return settings_label(self.settings)

    @property
    def label(self) -> str:
        """How tables name this row: the retriever, plus its settings when they are not the reference."""
        return f"{self.retriever} [{self.settings_label}]" if self.settings else self.retriever

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: object, path: Path | str) -> ResultRecord:
        """Validate a parsed record; a problem is a DataError naming ``path`` and the field."""
        if not isinstance(obj, dict):
            raise DataError(path, "not a harness result record (expected a JSON object)")
        if obj.get("schema") != SCHEMA:
            found = obj.get("schema")
            raise DataError(path, f"not a harness result record of schema {SCHEMA!r} (found {found!r})",
                            fix="rerun the (retriever, dataset) pair to write it again" if found else None)
        known = {f.name for f in fields(cls)}
        for name in ("retriever", "dataset", "split", "fingerprint", "run_file"):
            if not isinstance(obj.get(name), str) or not obj.get(name):
                raise DataError(path, f"field {name!r} is missing or not a string")
        metrics = obj.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            raise DataError(path, "field 'metrics' is missing or empty")
        for name, value in metrics.items():
            if not _number(value):
                raise DataError(path, f"metric {name!r} is {value!r}, not a finite number")
            why = _out_of_range(name, value)
            if why:  # nDCG@10 = 1.7: no computation gives it
                raise DataError(path, f"{why}: the record was edited",
                                fix="delete it and rerun the (retriever, dataset) pair to write it again")
        per_query = obj.get("per_query")
        if not isinstance(per_query, dict):
            raise DataError(path, "field 'per_query' is missing or not an object")
        for name, values in per_query.items():
            if not isinstance(values, dict) or not all(_number(v) for v in values.values()):
                raise DataError(path, f"per-query values of {name!r} are not numbers")
            if values and name in metrics:  # a metric is its per-query values' mean: one edited alone is refused
                average = sum(values.values()) / len(values)
                if abs(average - metrics[name]) > 1e-9 * max(1.0, abs(average)):
                    raise DataError(path, f"metric {name!r} is {metrics[name]!r} but its per-query values average "
                                          f"{average!r}: the record was edited",
                                    fix="delete it and rerun the (retriever, dataset) pair to write it again")
        for f in fields(cls):  # every other field: of the type the schema declares, or absent (its default)
            if f.name in obj and not _fits(obj[f.name], _types(str(f.type))):
                raise DataError(path, f"field {f.name!r} is {_json_kind(obj[f.name])}, not "
                                      f"{_json_kind_of(str(f.type))}",
                                fix="rerun the (retriever, dataset) pair to write it again")
        return cls(**{k: v for k, v in obj.items() if k in known})


_TYPES: dict[str, tuple[type, ...]] = {"dict": (dict,), "str": (str,), "int": (int,), "bool": (bool,),
                                       "float": (int, float), "None": (type(None),), "list": (list,), "Any": (object,)}
_KINDS = {dict: "an object", str: "a string", int: "a number", float: "a number", bool: "true or false",
          type(None): "null", list: "a list"}


def _types(annotation: str) -> tuple[type, ...]:
    """The JSON types an annotation such as ``dict[str, int | None] | None`` allows (its outer union)."""
    depth, parts, cur = 0, [], ""
    for ch in annotation:
        depth += (ch == "[") - (ch == "]")
        if ch == "|" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return tuple(t for p in parts for t in _TYPES[p.split("[")[0]])


def _fits(value: object, types: tuple[type, ...]) -> bool:
    """isinstance, except that a JSON true/false is not a number."""
    return isinstance(value, types) and (not isinstance(value, bool) or bool in types or object in types)


def _json_kind(value: object) -> str:
    return next((k for t, k in _KINDS.items() if type(value) is t), type(value).__name__)


def _json_kind_of(annotation: str) -> str:
    return " or ".join(dict.fromkeys(_KINDS[t] for t in _types(annotation)))


def _out_of_range(name: str, value: float) -> str | None:
    """Why ``value`` cannot be a value of the measure ``name`` (outside its range); None for one this
    harness does not know (a measure registered by a plugin not loaded here)."""
    from harness.metrics.measures import parse_measure

    try:
        return parse_measure(name).out_of_range(value)
    except HarnessError:
        return None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def record_stem(slug: str, settings: dict[str, Any]) -> str:
    """The file stem of a record and its run file: the slug, plus a digest of non-reference settings."""
    return f"{slug}+{settings_digest(settings)}" if settings else slug


def record_paths(output_dir: Path, dataset_id: str, split: str, slug: str,
                 settings: dict[str, Any] | None = None) -> tuple[Path, Path]:
    folder = inside(Path(output_dir), Path(output_dir) / dataset_id / split, f"dataset {dataset_id!r}, split {split!r}")
    stem = record_stem(slug, settings or {})
    return folder / f"{stem}.json", folder / f"{stem}.trec"


def run_file_of(output_dir: Path, record: ResultRecord) -> Path:
    """The run file a record was computed from: beside the record, under the name the record gives."""
    return record_paths(output_dir, record.dataset, record.split, "_")[1].with_name(record.run_file)


def read_record(path: Path) -> ResultRecord:
    obj = read_json(path, problem="not valid JSON",
                    fix="delete it and rerun; records are rewritten atomically, so this file was edited")
    return ResultRecord.from_json(obj, path)


def write_record(path: Path, record: ResultRecord) -> None:
    """Write a record atomically; one whose metrics are not finite numbers is refused (never written)."""
    bad = {m: v for m, v in record.metrics.items() if not _number(v)}
    if bad:
        raise HarnessError(f"{path}: {', '.join(f'{m} = {v!r}' for m, v in bad.items())}; a record with "
                           "non-finite metrics is not written")
    atomic_write_json(path, record.to_json())


def load_records(output_dir: Path) -> tuple[list[tuple[Path, ResultRecord]], list[str]]:
    """Every record under ``output_dir`` (sorted by path), and a message per JSON file that is not one."""
    records, problems = [], []
    imported = Path(output_dir) / "imported"  # rows computed elsewhere (harness.results.exchange), not records
    for path in sorted(Path(output_dir).rglob("*.json")):
        if path.name.startswith(".") or path.is_relative_to(imported):
            continue
        try:
            records.append((path, read_record(path)))
        except DataError as e:
            problems.append(str(e))
        except OSError as e:
            problems.append(f"{path}: {e.strerror or e}")
    return records, problems


def row_label(retriever: str, settings: str) -> str:
    """How a table names a row: the retriever, plus its non-reference settings."""
    return f"{retriever} [{settings}]" if settings else retriever


def unique_records(records: Sequence[tuple[Path, ResultRecord]]) -> tuple[list[ResultRecord], list[str]]:
    """One record per (retriever, settings, dataset, split). Copies of one computation (the same
    fingerprint) count once; records of one row with different fingerprints (e.g. one left by an older
    version under another file name) are left out and named in one line each (both files, the newest
    written), never chosen between by file order: every command that folds records uses this."""
    by_key: dict[tuple[str, str, str, str], list[tuple[Path, ResultRecord]]] = {}
    for path, record in records:
        by_key.setdefault((record.retriever, record.settings_label, record.dataset, record.split), []).append(
            (path, record))
    kept, conflicts = [], []
    for (retriever, settings, dataset, split), group in by_key.items():
        if len({r.fingerprint for _, r in group}) == 1:
            kept.append(group[0][1])
            continue
        files = ", ".join(str(p) for p, _ in group)
        newest = max(group, key=lambda item: _mtime(item[0]))[0]
        conflicts.append(f"{row_label(retriever, settings)} on {dataset} ({split}): {len(group)} records of "
                         f"different computations ({files}; the newest written: {newest.name}); none is used "
                         "(not in tables, exports or comparisons) until you delete the one you do not want")
    return kept, conflicts


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def folded_records(output_dir: Path) -> tuple[list[ResultRecord], list[str]]:
    """The records of ``output_dir``, one per row (:func:`unique_records`), and one line per file that is not
    a record and per row with two records: what every command that folds records reads, and says."""
    found, problems = load_records(Path(output_dir))
    kept, conflicts = unique_records(found)
    return kept, problems + conflicts


def find_record(output_dir: Path, name: str, dataset: str, split: str | None = None) -> ResultRecord | None:
    """The one record of the row ``name`` (a label as tables print it, or a retriever name such as a model
    folder, matched to its row) on ``dataset`` (and ``split``) in ``output_dir``; None when there is none. Two
    records for the row, or several rows the name could be, are refused in one line naming them: what
    ``harness diff`` and ``harness compare`` read without running anything (so without the data or model)."""
    from harness.results.baselines import same_retriever

    kept, problems = folded_records(output_dir)
    records = [r for r in kept if r.dataset == dataset and (split is None or r.split == split)]
    if split is None:  # the split the leaderboard shows, decided over every record of the dataset, so that
        shown = split_shown(dataset, {r.split for r in records})  # two rows read are of one split
        records = [r for r in records if shown is None or r.split == shown]
    exact = [r for r in records if r.label == name]
    found = exact or [r for r in records if not r.settings and same_retriever(r.retriever, name)]
    conflict = next((p for p in problems if p.startswith(f"{name} on {dataset} (")), None)
    if not found and conflict:  # two records for this row: named, neither used
        raise HarnessError(conflict)
    if len(found) > 1:
        shown = ", ".join(sorted(f"{r.label} ({r.split})" for r in found))
        raise HarnessError(f"more than one record of {name!r} on {dataset} in {output_dir} ({shown}); name the "
                           "row as the leaderboard prints it" + ("" if split else ", or give --split"))
    return found[0] if found else None


def split_shown(dataset: str, splits: set[str]) -> str | None:
    """The split tables show for ``dataset`` with records of ``splits``: the one there is, or its evaluation
    split (its protocol's; "test" for a folder) among several; None when that is not among them (each split
    is then a column of its own, ``dataset (split)``)."""
    from harness.data.registry import DATASETS

    if len(splits) == 1:
        return next(iter(splits))
    evaluation = DATASETS.get(dataset).protocol.split if dataset in DATASETS else "test"
    return evaluation if evaluation in splits else None


#: a row's label as tables print it: ``<retriever> [<settings>]``
_LABEL = re.compile(r"^(?P<name>.+?) \[(?P<settings>[^\[\]]+)\]$")


def row_of_label(label: str, output_dir: Path) -> tuple[str, dict[str, Any]]:
    """(retriever, settings) of a row named as tables print it: a plain name is itself with no settings;
    ``<retriever> [<settings>]`` takes its settings from the record of that label in ``output_dir`` (the label
    abbreviates them), refused in one line when there is none (an imported row, or another results folder)."""
    m = _LABEL.match(label)
    if not m:
        return label, {}
    if m.group("settings").startswith("imported: "):
        raise HarnessError(f"{label!r} is an imported row (read-only, no run file or per-query values); only "
                           "the leaderboard shows it")
    kept, problems = folded_records(Path(output_dir))
    found = [r for r in kept if r.label == label]
    conflict = next((p for p in problems if p.startswith(f"{label} on ")), None)
    if not found and conflict:
        raise HarnessError(conflict)
    if not found:
        raise HarnessError(f"{label!r}: no record of that row in {output_dir}; name the retriever "
                           f"{m.group('name')!r} and give its settings as options, or the --output-dir that holds it")
    return m.group("name"), dict(found[0].settings)
