"""Rows computed elsewhere: MTEB result files and ranx / trec_eval outputs imported as read-only leaderboard
rows, with their source recorded.

Imported rows are not records: nothing was computed here, so they have no run file, no per-query values and
no fingerprint. They live in ``<output>/imported/*.json`` and the leaderboard shows them as rows of their own
(``[imported: <source>]``); check, diff and compare read records only.

Every number is taken under the measure language's rules (:class:`Rows`): its name must parse as a measure,
its value must be a number (a JSON number, not text standing for one), finite, and within the measure's range
(``Measure.out_of_range``: nDCG, recall, AP, P, RR, Success in [0, 1]); one (system, dataset, split, measure)
has one value (an identical repeat is one row, a different one is refused with both places). trec_eval does
not print the relevance level (``-l``) it was run with: ``rel`` says it, and it is written into the measure's
name (``map(rel=2)``, shown as ``AP(rel=2)``), never assumed.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from harness.errors import DataError, HarnessError
from harness.io import atomic_write_json, read_json, sha256_file
from harness.lines import plain_float
from harness.metrics.measures import Measure, parse_measure
from harness.retrievers.mteb import MTEB_TASKS

IMPORTED_DIR = "imported"
IMPORT_SCHEMA = "harness-imported/1"
_FIX_NUMBER = "every imported score must be a finite number (a JSON number, not text)"


@dataclass
class Imported:
    """Rows computed elsewhere: (system, dataset, split, metric, value), with where they come from."""

    source: str
    file: str
    sha256: str
    rows: list[dict[str, Any]]
    skipped: list[str]

    def save(self, output_dir: Path) -> Path:
        folder = output_dir / IMPORTED_DIR
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(self.file).name).strip("-")
        path = folder / f"{slug}-{self.sha256[:8]}.json"
        atomic_write_json(path, {"schema": IMPORT_SCHEMA, "imported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                      time.gmtime()),
                                 **asdict(self)})
        return path


def measure_of(name: str) -> Measure | None:
    """The measure a name means in the measure language, or None."""
    try:
        return parse_measure(name)
    except HarnessError:
        return None


def checked_value(path: Path | str, value: object, measure: Measure, *, line: int | None = None, at: str = "",
                  text: bool = False) -> float:
    """``value`` as a value of ``measure``: a number (``text``: a numeral read from a text file), finite, and
    in the measure's range; otherwise a DataError naming the file and the line (or ``at``, a place in JSON)."""
    where = f" ({at})" if at else ""
    if text and isinstance(value, str):
        try:
            number = plain_float(value)
        except ValueError:
            raise DataError(path, f"score {value!r} of {measure} is not a number{where}", line=line,
                            fix=_FIX_NUMBER) from None
    elif isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(path, f"score {value!r} of {measure} is not a number{where}", line=line, fix=_FIX_NUMBER)
    else:
        number = float(value)
    if not math.isfinite(number):
        raise DataError(path, f"score {value!r} of {measure} is not a finite number{where}", line=line,
                        fix=_FIX_NUMBER)
    why = measure.out_of_range(number)
    if why:
        raise DataError(path, why + where, line=line,
                        fix="import the measure's own value (not a percentage, a sum or another measure)")
    return number


class Rows:
    """The rows of one import, each checked as it is added (:func:`checked_value`), one value per (system,
    dataset, split, measure)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.first: dict[tuple[str, str, str, str], str] = {}
        self.skipped: list[str] = []

    def add(self, path: Path, system: str, dataset: str, split: str, measure: Measure, value: object, *,
            line: int | None = None, at: str = "", text: bool = False) -> None:
        number = checked_value(path, value, measure, line=line, at=at, text=text)
        key = (system, dataset, split, str(measure))
        here = f"line {line}" if line is not None else (at or str(path))
        if key in self.rows:
            before = self.rows[key]["value"]
            if before != number:
                raise DataError(path, f"{measure} of {system} on {dataset} ({split}) is given twice: {before!r} "
                                      f"({self.first[key]}) and {number!r} ({here})", line=line,
                                fix="keep one value per measure; the harness does not choose between them")
            return
        self.first[key] = here
        self.rows[key] = {"system": system, "dataset": dataset, "split": split, "metric": str(measure),
                          "value": number}

    def skip(self, name: str) -> None:
        if name not in self.skipped:
            self.skipped.append(name)

    def imported(self, path: Path) -> Imported:
        if not self.rows:
            raise HarnessError(f"{path}: no score the harness can read ({self.source}); skipped: "
                               f"{', '.join(self.skipped) or '-'}")
        digest = sha256_file(path) if path.is_file() else hashlib.sha256(
            "".join(sha256_file(p) for p in sorted(path.rglob("*.json"))).encode()).hexdigest()
        return Imported(self.source, str(path.resolve()), digest, list(self.rows.values()), self.skipped)


_TREC_EVAL = {"ndcg_cut": "ndcg", "recall": "recall", "P": "p", "map_cut": "map", "success": "success"}
_TREC_EVAL_COUNTS = {"runid", "num_q", "num_ret", "num_rel", "num_rel_ret"}


def import_trec_eval(path: Path, system: str, dataset: str, split: str, rel: int = 1) -> Imported:
    """trec_eval's output (``measure<TAB>all<TAB>value``; per-query lines are left out): its ``all`` rows, at
    relevance level ``rel`` (trec_eval's ``-l``, which its output does not print) for the measures that have
    one."""
    from harness.lines import iter_lines

    if rel < 1:
        raise HarnessError(f"--rel {rel}: a relevance level is at least 1 (trec_eval's -l)")
    rows = Rows("trec_eval")
    for lineno, line in iter_lines(path):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            raise DataError(path, "expected 'measure qid value' (trec_eval's output)", line=lineno)
        name, qid, value = parts
        if qid != "all":
            continue
        base, _, cut = name.rpartition("_")
        metric = ({"map": "map", "recip_rank": "mrr", "ndcg": "ndcg"}.get(name)
                  or (f"{_TREC_EVAL[base]}@{cut}" if base in _TREC_EVAL and cut.isdigit() else None))
        measure = measure_of(metric) if metric else None
        if measure is None:
            if name not in _TREC_EVAL_COUNTS:
                rows.skip(name)
            continue
        if measure.family.takes_rel:
            measure = replace(measure, rel=rel)
        rows.add(path, system, dataset, split, measure, value, line=lineno, text=True)
    return rows.imported(path)


def import_ranx(path: Path, system: str | None, dataset: str, split: str) -> Imported:
    """ranx's scores: ``{metric: value}`` (``ranx.evaluate``) or a saved Report (``{model: {"scores": ...}}``)."""
    obj = read_json(path, fix="a JSON file of ranx.evaluate's scores or a saved ranx Report")
    if not isinstance(obj, dict):
        raise DataError(path, "expected a JSON object of ranx scores")
    models = {k: v["scores"] for k, v in obj.items() if isinstance(v, dict) and isinstance(v.get("scores"), dict)}
    nested = bool(models)
    if not models:
        if system is None:
            raise HarnessError(f"{path}: ranx scores without model names; name the system with --system")
        models = {system: obj}
    rows = Rows("ranx")
    aliases = {"precision": "p", "hit_rate": "success", "hits": None}
    for model, scores in models.items():
        for name, value in scores.items():
            family, at, cut = str(name).partition("@")
            alias = aliases.get(family, family)
            measure = measure_of(f"{alias}{at}{cut}") if alias else None
            if measure is None:
                rows.skip(str(name))
                continue
            rows.add(path, system or model, dataset, split, measure, value,
                     at=f"{model}.scores.{name}" if nested else str(name))
    rows.skipped.sort()
    return rows.imported(path)


def import_mteb(path: Path, system: str | None = None) -> Imported:
    """An MTEB result file (``<Task>.json``) or a folder of them (``<model>/<revision>/``); the system is the
    folder's model and revision unless named."""
    files = sorted(p for p in path.rglob("*.json") if p.name != "model_meta.json") if path.is_dir() else [path]
    tasks = {v: k for k, v in MTEB_TASKS.items()}
    rows = Rows("mteb")
    for f in files:
        obj = read_json(f, fix="an MTEB result file (TaskResult JSON)")
        if not isinstance(obj, dict) or not isinstance(obj.get("scores"), dict) or "task_name" not in obj:
            raise DataError(f, "not an MTEB result file (no task_name or scores)")
        name = system or f"{f.parent.parent.name.replace('__', '/')}@{f.parent.name}"
        dataset = tasks.get(obj["task_name"], f"mteb/{obj['task_name']}")
        for split, entries in obj["scores"].items():
            for i, entry in enumerate(entries if isinstance(entries, list) else []):
                for key, value in (entry.items() if isinstance(entry, dict) else ()):
                    # MTEB's ndcg_at_10, recall_at_100, precision_at_5 ... are the measure language's ndcg@10 ...
                    measure = measure_of(key.replace("_at_", "@")) if "_at_" in key else None
                    if measure is None:
                        if key not in {"main_score", "hf_subset", "languages", "evaluation_time"}:
                            rows.skip(key)
                        continue
                    rows.add(f, name, dataset, split, measure, value, at=f"{f.name}: scores.{split}[{i}].{key}")
    rows.skipped.sort()
    return rows.imported(path)


def imported_rows(output_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every imported row under ``output_dir`` (for the leaderboard), and the files that could not be read: a
    file with a row that the measure language refuses (edited since it was imported) is a problem, not rows."""
    rows, problems = [], []
    seen: dict[tuple[str, str, str, str, str], tuple[float, Path]] = {}
    conflicting: dict[tuple[str, str, str, str, str], set[Path]] = {}
    for path in sorted((output_dir / IMPORTED_DIR).glob("*.json")):
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj.get("schema") != IMPORT_SCHEMA:
                raise ValueError(f"schema {obj.get('schema')!r}")
            found = []
            for n, row in enumerate(obj["rows"]):
                measure = parse_measure(str(row["metric"]))
                value = checked_value(path, row["value"], measure, at=f"rows[{n}]")
                found.append({"retriever": row["system"], "settings": f"imported: {obj['source']}",
                              "dataset": row["dataset"], "split": row["split"], str(measure): value})
        except HarnessError as e:
            problems.append(f"{path}: not an imported-results file ({e})" if not str(e).startswith(str(path))
                            else str(e))
            continue
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            problems.append(f"{path}: not an imported-results file ({e})")
            continue
        for row in found:  # one row's value given by two imported files: named, neither used
            metric = next(k for k in row if k not in _KEYS)
            key = (row["retriever"], row["settings"], row["dataset"], row["split"], metric)
            if key in seen and seen[key][0] != row[metric]:
                conflicting.setdefault(key, {seen[key][1]}).add(path)
            seen.setdefault(key, (row[metric], path))
        rows.extend(found)
    for (system, source, dataset, split, metric), files in conflicting.items():
        problems.append(f"{system} [{source}] on {dataset} ({split}): {metric} imported with different values by "
                        f"{', '.join(str(f) for f in sorted(files))}; none is used until you delete the one you do "
                        "not want")
    bad = set(conflicting)
    kept = [r for r in rows if (r["retriever"], r["settings"], r["dataset"], r["split"],
                                next(k for k in r if k not in _KEYS)) not in bad]
    return kept, problems


_KEYS = ("retriever", "settings", "dataset", "split")
