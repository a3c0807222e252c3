"""Expected scores as data: regression baselines, published references, and the system-name mapping.

Three CSV shapes live under ``baselines/`` (see ``baselines/README.md``):

- regression baselines: ``retriever,dataset,split,metric,expected,tolerance``;
- published references: ``source,system,dataset,split,metric,value`` (copied from ``../shared/reference``);
- ``published/systems.csv``: ``system,retriever[,datasets]`` (a published system name -> our retriever name;
  ``datasets``, space-separated ids, restricts the row to those datasets: Pyserini's "DPR" is the NQ-trained
  model on NQ and the multiset one on TriviaQA).

Lines starting with ``#`` and blank lines are skipped. Any malformed line is a ``DataError`` naming the
file and the line. Values are fractions (0.6789, not 67.89).
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, HarnessError
from harness.lines import plain_float
from harness.metrics import parse_measure

REGRESSION_COLUMNS = ("retriever", "dataset", "split", "metric", "expected", "tolerance")
REFERENCE_COLUMNS = ("source", "system", "dataset", "split", "metric", "value")
SYSTEM_COLUMNS = ("system", "retriever")


@dataclass(frozen=True)
class Expected:
    """One regression baseline row: ``retriever`` on ``dataset``/``split`` scores ``expected`` ± ``tolerance``."""

    retriever: str
    dataset: str
    split: str
    metric: str
    expected: float
    tolerance: float
    path: str
    line: int
    source: str = ""  # a published row: who published it (``harness reproduce`` shows it)
    system: str = ""  # a published row: the publisher's name for the system

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Published:
    """One published score of ``system`` (the publisher's name for it), with where it comes from."""

    source: str
    system: str
    dataset: str
    split: str
    metric: str
    value: float
    path: str
    line: int
    #: decimals its source prints (0: unknown, read from the value); see :func:`read_published`
    printed_decimals: int = 0

    @property
    def decimals(self) -> int:
        return self.printed_decimals or decimals(self.value)

    @property
    def tolerance(self) -> float:
        """Half a unit of the last decimal its source prints: what "reproduces it" means."""
        return float(0.5 * 10 ** -self.decimals)


def baselines_dir() -> Path:
    """``baselines/`` of the repository (beside the ``harness`` package), or ``./baselines``."""
    here = Path(__file__).resolve().parents[2] / "baselines"
    return here if here.is_dir() else Path("baselines")


def _rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for each data line of a CSV file whose header names ``columns`` (any order)."""
    from harness.lines import iter_lines  # BOM, CRLF and invalid UTF-8 (with its line) handled there

    path = Path(path)
    if not path.is_file():
        raise HarnessError(f"{path}: no such baseline file")
    lines = [(i, line) for i, line in iter_lines(path) if not line.lstrip().startswith("#")]
    if not lines:
        raise DataError(path, f"empty; expected a header line {','.join(columns)}")
    header_no, header_line = lines[0]
    header = [h.strip() for h in next(csv.reader([header_line]))]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(path, f"the header lacks column(s) {', '.join(missing)}", line=header_no,
                        fix=f"the header must name {','.join(columns)}")
    for no, line in lines[1:]:
        cells = next(csv.reader([line]))
        if len(cells) != len(header):
            raise DataError(path, f"{len(cells)} fields, the header has {len(header)}", line=no)
        row = {h: c.strip() for h, c in zip(header, cells, strict=True)}
        empty = [c for c in columns if not row[c] and c != "source"]
        if empty:
            raise DataError(path, f"empty {', '.join(empty)}", line=no)
        yield no, row


def _fraction(path: Path, no: int, name: str, text: str, *, upper: float | None = 1.0) -> float:
    try:
        value = plain_float(text)
    except ValueError:
        raise DataError(path, f"{name} {text!r} is not a number", line=no) from None
    if not math.isfinite(value) or value < 0 or (upper is not None and value > upper):
        hint = " (values are fractions: 0.6789, not 67.89)" if upper is not None and value > upper else ""
        raise DataError(path, f"{name} {text} is outside [0, {upper if upper is not None else 'inf'}]{hint}",
                        line=no)
    return value


def normalize_metric(text: str) -> str:
    """A metric name as records spell it: ``nDCG@10`` -> ``ndcg@10``, ``top-k accuracy@20`` -> ``accuracy@20``,
    ``R(rel=2)@1000`` -> ``recall(rel=2)@1000`` (the one measure parser)."""
    return str(parse_measure(text))


def _metric(path: Path, no: int, text: str) -> str:
    try:
        return normalize_metric(text)
    except HarnessError as e:
        raise DataError(path, str(e), line=no) from None


def read_regression(path: str | Path) -> list[Expected]:
    """Regression baseline rows of one file; a (retriever, dataset, split, metric) may appear once."""
    path = Path(path)
    out: list[Expected] = []
    seen: dict[tuple[Any, ...], int] = {}
    for no, row in _rows(path, REGRESSION_COLUMNS):
        metric = _metric(path, no, row["metric"])
        key = (row["retriever"], row["dataset"], row["split"], metric)
        if key in seen:
            raise DataError(path, f"duplicate of line {seen[key]} ({', '.join(key)})", line=no)
        seen[key] = no
        out.append(Expected(row["retriever"], row["dataset"], row["split"], metric,
                            _fraction(path, no, "expected", row["expected"]),
                            _fraction(path, no, "tolerance", row["tolerance"]), str(path), no))
    return out


def read_published(path: str | Path) -> list[Published]:
    """Published reference rows of one file.

    A source prints every figure with the same number of decimals (Pyserini's 2CR tables four, the
    Contriever README one of a percentage, i.e. three of a fraction), but a CSV loses trailing zeros (0.9800
    reads 0.98): each row is given the most decimals of any row of its source in the file.
    """
    path = Path(path)
    rows = [Published(row["source"], row["system"], row["dataset"], row["split"], _metric(path, no, row["metric"]),
                      _fraction(path, no, "value", row["value"]), str(path), no)
            for no, row in _rows(path, REFERENCE_COLUMNS)]
    printed: dict[str, int] = {}
    for r in rows:
        printed[r.source] = max(printed.get(r.source, 0), decimals(r.value))
    return [dataclasses.replace(r, printed_decimals=printed[r.source]) for r in rows]


def read_systems(path: str | Path) -> dict[str, list[str]]:
    """Published system name -> our retriever names (a system may map to several, e.g. hub id and folder).
    A row restricted to datasets is keyed ``system@dataset`` for each of them (see :func:`mapped_names`)."""
    path = Path(path)
    out: dict[str, list[str]] = {}
    for _, row in _rows(path, SYSTEM_COLUMNS):
        datasets = (row.get("datasets") or "").split()
        for key in [f"{row['system']}@{d}" for d in datasets] or [row["system"]]:
            out.setdefault(key, []).append(row["retriever"])
    return out


def mapped_names(systems: dict[str, list[str]], system: str, dataset: str) -> list[str]:
    """Our retriever names for a published system on a dataset (its own name when nothing maps it)."""
    return systems.get(f"{system}@{dataset}") or systems.get(system) or [system]


def load_published(folder: str | Path | None = None) -> tuple[list[Published], dict[str, list[str]]]:
    """Every published reference under ``folder`` (default ``baselines/published``) and the name mapping.

    ``folder`` may also be a single reference CSV; the mapping is then read from ``systems.csv`` beside it,
    when there is one.
    """
    folder = Path(folder) if folder is not None else baselines_dir() / "published"
    files = [folder] if folder.is_file() else sorted(p for p in folder.glob("*.csv") if p.name != "systems.csv")
    if not files:
        raise HarnessError(f"no published reference CSV files in {folder}")
    systems_file = (folder.parent if folder.is_file() else folder) / "systems.csv"
    systems = read_systems(systems_file) if systems_file.is_file() else {}
    return [row for f in files for row in read_published(f)], systems


def same_retriever(ours: str, name: str) -> bool:
    """Whether a result record's retriever name ``ours`` is the retriever ``name`` of a baseline.

    Names are equal, or ``name`` is a model folder (``hf:<folder>`` or a checkpoint folder, resolved against
    the current directory) whose canonical name (folder name and content digest) is ``ours``, or both name
    the same folder (records written before names were canonical).
    """
    if ours == name:
        return True
    canonical = canonical_name(name)
    if canonical is not None and canonical == ours:
        return True
    pa, pb = _folder(ours), _folder(name)
    return pa is not None and pa == pb


def canonical_name(name: str) -> str | None:
    """The canonical retriever name of a folder given as ``hf:<folder>`` or a path, or of a composition or
    ``sparse:`` name (stages resolved, every parameter written out); None for anything else."""
    from harness.errors import HarnessError
    from harness.retrievers.kinds import DenseKind
    from harness.retrievers.registry import folder_name, name_prefixes, resolve_retriever

    if name.startswith(tuple(p for p in name_prefixes() if p != DenseKind.prefix)) or name.endswith(")"):
        try:  # a composition, sparse:, run:, or a registered name with parameters (bm25(b=0.75;k1=1.2))
            return resolve_retriever(name).name
        except (HarnessError, OSError):
            return None

    target = name[3:].partition("@")[0] if name.startswith("hf:") else name
    try:
        return folder_name(target) if target and Path(target).expanduser().is_dir() else None
    except OSError:
        return None


def _folder(name: str) -> tuple[Path, str] | None:
    target, _, revision = name[3:].partition("@") if name.startswith("hf:") else (name, "", "")
    path = Path(target).expanduser()
    try:
        return (path.resolve(), revision) if path.is_dir() else None
    except OSError:
        return None


def decimals(value: float) -> int:
    """How many decimals the published figure was printed with (0.7887000000000001 is 0.7887: 4)."""
    for d in range(1, 7):
        if abs(value - round(value, d)) < 1e-9:
            return d
    return 6


def tolerance(value: float) -> float:
    """Half a unit of the published figure's last decimal: what "reproduces it" means."""
    return float(0.5 * 10 ** -decimals(value))
