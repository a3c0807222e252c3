"""Results that travel: records exported in MTEB's result format (a folder the MTEB results repository takes)
and as one flat per-query table (CSV or Parquet); MTEB result files and ranx / trec_eval outputs imported as
read-only rows, with their source recorded.

Imported rows are not records: nothing was computed here, so they have no run file, no per-query values and
no fingerprint. They live in ``<output>/imported/*.json`` and the leaderboard shows them as rows of their own
(``[imported: <source>]``); check, diff and compare read records only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import DataError, HarnessError
from harness.io import atomic_write, atomic_write_json, read_json, sha256_file
from harness.metrics.measures import parse_measure
from harness.results.records import ResultRecord
from harness.version import __version__

IMPORTED_DIR = "imported"
IMPORT_SCHEMA = "harness-imported/1"

#: BEIR ids -> MTEB task names (MTEB's retrieval tasks built from BEIR)
MTEB_TASKS = {
    "beir/arguana": "ArguAna", "beir/climate-fever": "ClimateFEVER", "beir/dbpedia-entity": "DBPedia",
    "beir/fever": "FEVER", "beir/fiqa": "FiQA2018", "beir/hotpotqa": "HotpotQA", "beir/msmarco": "MSMARCO",
    "beir/nfcorpus": "NFCorpus", "beir/nq": "NQ", "beir/quora": "QuoraRetrieval", "beir/scidocs": "SCIDOCS",
    "beir/scifact": "SciFact", "beir/webis-touche2020": "Touche2020", "beir/trec-covid": "TRECCOVID",
    **{f"beir/cqadupstack/{f}": f"CQADupstack{f.capitalize()}Retrieval"
       for f in ("android", "english", "gaming", "gis", "mathematica", "physics", "programmers", "stats", "tex",
                 "unix", "webmasters", "wordpress")},
}
#: harness measure family -> MTEB's score key prefix (``ndcg@10`` -> ``ndcg_at_10``)
MTEB_KEYS = {"ndcg": "ndcg_at", "recall": "recall_at", "map": "map_at", "mrr": "mrr_at", "p": "precision_at"}


def mteb_key(metric: str) -> str | None:
    """MTEB's name of a record metric, or None when MTEB has none (relevance levels, Judged, accuracy)."""
    m = parse_measure(metric)
    if m.rel != 1 or m.k is None or m.name not in MTEB_KEYS:
        return None
    return f"{MTEB_KEYS[m.name]}_{m.k}"


def export_mteb(records: Sequence[ResultRecord], folder: Path, model_name: str, revision: str) -> list[Path]:
    """``<folder>/<model name, / as __>/<revision>/<Task>.json`` per record of a BEIR dataset MTEB has, and
    ``model_meta.json``: the layout of the MTEB results repository. Records of other datasets are refused."""
    if not records:
        raise HarnessError("no records to export")
    unknown = sorted({r.dataset for r in records if r.dataset not in MTEB_TASKS})
    if unknown:
        raise HarnessError(f"MTEB has no task for {', '.join(unknown)}; export those as per-query tables "
                           "(--format per-query)")
    if len({r.retriever for r in records}) != 1 or len({r.settings_label for r in records}) != 1:
        raise HarnessError("an MTEB result folder holds one model: pick one retriever (and one set of settings) "
                           "with --retriever")
    target = folder / model_name.replace("/", "__") / revision
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for r in records:
        scores = {key: value for m, value in r.metrics.items() if (key := mteb_key(m))}
        if "ndcg_at_10" not in scores:
            raise HarnessError(f"{r.retriever} on {r.dataset}: the record has no ndcg@10, MTEB's main score for "
                               "retrieval; run it with --metric ndcg@10")
        payload = {
            "dataset_revision": f"harness:{r.dataset_provenance.get('sha256', {}).get('corpus.jsonl', '')[:16]}",
            "task_name": MTEB_TASKS[r.dataset], "mteb_version": "1.12.0",
            "scores": {r.split: [{**scores, "main_score": scores["ndcg_at_10"], "hf_subset": "default",
                                  "languages": ["eng-Latn"]}]},
            "evaluation_time": float(sum(v for v in r.timings.values() if isinstance(v, int | float))),
            "kg_co2_emissions": None,
            "harness": {"version": __version__, "retriever": r.retriever, "fingerprint": r.fingerprint,
                        "settings": r.settings, "dataset": r.dataset,
                        "note": "computed by the harness on BEIR's files; dataset_revision names their digest"}}
        path = target / f"{MTEB_TASKS[r.dataset]}.json"
        atomic_write_json(path, payload)
        written.append(path)
    meta = {"name": model_name, "revision": revision, "release_date": None, "languages": ["eng-Latn"],
            "framework": ["harness"], "harness_version": __version__}
    atomic_write_json(target / "model_meta.json", meta)
    return [*written, target / "model_meta.json"]


def export_per_query(records: Sequence[ResultRecord], path: Path) -> int:
    """One row per (retriever, settings, dataset, split, metric, query): ``.csv`` or ``.parquet``."""
    import pandas as pd

    rows = [{"retriever": r.retriever, "settings": r.settings_label, "dataset": r.dataset, "split": r.split,
             "metric": m, "query_id": q, "value": v}
            for r in records for m, values in r.per_query.items() for q, v in values.items()]
    df = pd.DataFrame(rows, columns=["retriever", "settings", "dataset", "split", "metric", "query_id", "value"])
    if path.suffix == ".parquet":
        try:
            df.to_parquet(path, index=False)
        except ImportError as e:
            raise HarnessError(f"{path}: writing Parquet needs pyarrow or fastparquet ({e}); or write .csv") from None
    elif path.suffix == ".csv":
        atomic_write(path, df.to_csv(index=False, float_format="%.17g"))
    else:
        raise HarnessError(f"{path}: the per-query table is written as .csv or .parquet")
    return len(df)


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


def _measure(name: str) -> str | None:
    try:
        return str(parse_measure(name))
    except HarnessError:
        return None


_TREC_EVAL = {"ndcg_cut": "ndcg", "recall": "recall", "P": "p", "map_cut": "map", "success": "success"}


def import_trec_eval(path: Path, system: str, dataset: str, split: str) -> Imported:
    """trec_eval's output (``measure<TAB>all<TAB>value``; per-query lines are left out): its ``all`` rows."""
    from harness.lines import iter_lines

    rows, skipped = [], []
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
        if metric is None or _measure(metric) is None:
            if name not in {"runid", "num_q", "num_ret", "num_rel", "num_rel_ret"}:
                skipped.append(name)
            continue
        rows.append({"system": system, "dataset": dataset, "split": split, "metric": _measure(metric),
                     "value": _value(path, lineno, value)})
    return _imported("trec_eval", path, rows, skipped)


def import_ranx(path: Path, system: str | None, dataset: str, split: str) -> Imported:
    """ranx's scores: ``{metric: value}`` (``ranx.evaluate``) or a saved Report (``{model: {"scores": ...}}``)."""
    obj = read_json(path, fix="a JSON file of ranx.evaluate's scores or a saved ranx Report")
    if not isinstance(obj, dict):
        raise DataError(path, "expected a JSON object of ranx scores")
    models = {k: v["scores"] for k, v in obj.items() if isinstance(v, dict) and isinstance(v.get("scores"), dict)}
    if not models:
        if system is None:
            raise HarnessError(f"{path}: ranx scores without model names; name the system with --system")
        models = {system: obj}
    rows, skipped = [], []
    aliases = {"precision": "p", "hit_rate": "success", "hits": None}
    for model, scores in models.items():
        for name, value in scores.items():
            family, at, cut = str(name).partition("@")
            metric = _measure(f"{aliases.get(family, family)}{at}{cut}") if aliases.get(family, family) else None
            if metric is None:
                skipped.append(str(name))
                continue
            rows.append({"system": system or model, "dataset": dataset, "split": split, "metric": metric,
                         "value": _value(path, None, value)})
    return _imported("ranx", path, rows, sorted(set(skipped)))


def import_mteb(path: Path, system: str | None = None) -> Imported:
    """An MTEB result file (``<Task>.json``) or a folder of them (``<model>/<revision>/``); the system is the
    folder's model and revision unless named."""
    files = sorted(p for p in path.rglob("*.json") if p.name != "model_meta.json") if path.is_dir() else [path]
    tasks = {v: k for k, v in MTEB_TASKS.items()}
    rows, skipped = [], []
    for f in files:
        obj = read_json(f, fix="an MTEB result file (TaskResult JSON)")
        if not isinstance(obj, dict) or not isinstance(obj.get("scores"), dict) or "task_name" not in obj:
            raise DataError(f, "not an MTEB result file (no task_name or scores)")
        name = system or f"{f.parent.parent.name.replace('__', '/')}@{f.parent.name}"
        dataset = tasks.get(obj["task_name"], f"mteb/{obj['task_name']}")
        for split, entries in obj["scores"].items():
            for entry in entries if isinstance(entries, list) else []:
                for key, value in entry.items():
                    # MTEB's ndcg_at_10, recall_at_100, precision_at_5 ... are the measure language's ndcg@10 ...
                    metric = _measure(key.replace("_at_", "@")) if "_at_" in key else None
                    if metric is None:
                        if key not in {"main_score", "hf_subset", "languages", "evaluation_time"}:
                            skipped.append(key)
                        continue
                    rows.append({"system": name, "dataset": dataset, "split": split, "metric": metric,
                                 "value": _value(f, None, value)})
    return _imported("mteb", path, rows, sorted(set(skipped)))


def _value(path: Path, lineno: int | None, value: object) -> float:
    """A score as a finite float; anything else (text, NaN, infinity, a bool) is refused with where it is."""
    try:
        number = float(value) if not isinstance(value, bool) else math.nan  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise DataError(path, f"score {value!r} is not a finite number", line=lineno,
                        fix="every imported score must be a finite number")
    return number


def _imported(source: str, path: Path, rows: list[dict[str, Any]], skipped: list[str]) -> Imported:
    if not rows:
        raise HarnessError(f"{path}: no score the harness can read ({source}); skipped: {', '.join(skipped) or '-'}")
    digest = sha256_file(path) if path.is_file() else hashlib.sha256(
        "".join(sha256_file(p) for p in sorted(path.rglob("*.json"))).encode()).hexdigest()
    return Imported(source, str(path.resolve()), digest, rows, skipped)


def imported_rows(output_dir: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every imported row under ``output_dir`` (for the leaderboard), and the files that could not be read."""
    rows, problems = [], []
    for path in sorted((output_dir / IMPORTED_DIR).glob("*.json")):
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
            if obj.get("schema") != IMPORT_SCHEMA:
                raise ValueError(f"schema {obj.get('schema')!r}")
            for row in obj["rows"]:
                rows.append({"retriever": row["system"], "settings": f"imported: {obj['source']}",
                             "dataset": row["dataset"], "split": row["split"], row["metric"]: float(row["value"])})
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(f"{path}: not an imported-results file ({e})")
    return rows, problems
