"""Results that travel: records exported in MTEB's result format (a folder the MTEB results repository takes)
and as one flat per-query table (CSV or Parquet). Rows computed elsewhere come in through
``harness.results.imports``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.io import atomic_stream, atomic_write, atomic_write_json
from harness.metrics.measures import parse_measure
from harness.results.records import ResultRecord
from harness.retrievers.mteb import MTEB_TASKS
from harness.version import __version__

#: harness measure family -> MTEB's score key prefix (``ndcg@10`` -> ``ndcg_at_10``)
MTEB_KEYS = {"ndcg": "ndcg_at", "recall": "recall_at", "map": "map_at", "mrr": "mrr_at", "p": "precision_at"}


def mteb_key(metric: str) -> str | None:
    """MTEB's name of a record metric, or None when MTEB has none (relevance levels, Judged, accuracy)."""
    m = parse_measure(metric)
    if m.rel != 1 or m.k is None or m.name not in MTEB_KEYS or m.options:  # judged_only, gains: not MTEB's
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
    by_task: dict[str, list[ResultRecord]] = {}
    for r in records:  # one task file holds every split of its task
        by_task.setdefault(r.dataset, []).append(r)
    for dataset, group in by_task.items():
        splits: dict[str, list[dict[str, Any]]] = {}
        for r in group:
            scores = {key: value for m, value in r.metrics.items() if (key := mteb_key(m))}
            if "ndcg_at_10" not in scores:
                raise HarnessError(f"{r.retriever} on {r.dataset} ({r.split}): the record has no ndcg@10, MTEB's "
                                   "main score for retrieval; run it with --metric ndcg@10")
            splits[r.split] = [{**scores, "main_score": scores["ndcg_at_10"], "hf_subset": "default",
                                "languages": ["eng-Latn"]}]
        first = group[0]
        payload = {
            "dataset_revision": f"harness:{first.dataset_provenance.get('sha256', {}).get('corpus.jsonl', '')[:16]}",
            "task_name": MTEB_TASKS[dataset], "mteb_version": "1.12.0", "scores": splits,
            # seconds: each record's index and search time (its timings also hold bytes, megabytes, counts)
            "evaluation_time": float(sum(_seconds(r.timings) for r in group)),
            "kg_co2_emissions": None,
            "harness": {"version": __version__, "retriever": first.retriever,
                        "fingerprint": {r.split: r.fingerprint for r in group}, "settings": first.settings,
                        "dataset": dataset,
                        "note": "computed by the harness on BEIR's files; dataset_revision names their digest"}}
        path = target / f"{MTEB_TASKS[dataset]}.json"
        atomic_write_json(path, payload)
        written.append(path)
    meta = {"name": model_name, "revision": revision, "release_date": None, "languages": ["eng-Latn"],
            "framework": ["harness"], "harness_version": __version__}
    atomic_write_json(target / "model_meta.json", meta)
    return [*written, target / "model_meta.json"]


def _seconds(timings: dict[str, Any]) -> float:
    """A record's evaluation time in seconds: its index and search times."""
    return sum(float(timings.get(k) or 0.0) for k in ("index_s", "search_s"))


def export_mteb_rows(records: Sequence[ResultRecord], folder: Path, revision: str,
                     model_name: str | None = None) -> list[Path]:
    """Every row of ``records`` (retriever and settings) as its own MTEB model folder under ``folder``: the
    retriever's name (``model_name`` where one row is exported), its revision ``revision``, plus
    ``+<settings>`` for a row computed in settings other than the reference (so two settings of one model
    are two revisions, as MTEB keeps them)."""
    rows: dict[tuple[str, str], list[ResultRecord]] = {}
    for r in records:
        rows.setdefault((r.retriever, r.settings_label), []).append(r)
    if model_name and len(rows) > 1:
        shown = ", ".join(f"{n} [{s}]" if s else n for n, s in rows)
        raise HarnessError(f"--model-name names one model, and the records hold {len(rows)} rows ({shown}); "
                           "pick one with --retriever, or leave --model-name out (each row is named after itself)")
    written: list[Path] = []
    for (retriever, settings), group in rows.items():
        variant = revision + (f"+{settings.replace(' ', '').replace('/', '_')}" if settings else "")
        written += export_mteb(group, folder, model_name or retriever, variant)
    return written


def export_per_query(records: Sequence[ResultRecord], path: Path) -> int:
    """One row per (retriever, settings, dataset, split, metric, query): ``.csv`` or ``.parquet``."""
    import pandas as pd

    rows = [{"retriever": r.retriever, "settings": r.settings_label, "dataset": r.dataset, "split": r.split,
             "metric": m, "query_id": q, "value": v}
            for r in records for m, values in r.per_query.items() for q, v in values.items()]
    df = pd.DataFrame(rows, columns=["retriever", "settings", "dataset", "split", "metric", "query_id", "value"])
    if path.suffix == ".parquet":
        try:
            atomic_stream(path, lambda f: df.to_parquet(f, index=False))
        except ImportError as e:
            raise HarnessError(f"{path}: writing Parquet needs pyarrow or fastparquet ({e}); or write .csv") from None
    elif path.suffix == ".csv":
        atomic_write(path, df.to_csv(index=False, float_format="%.17g"))
    else:
        raise HarnessError(f"{path}: the per-query table is written as .csv or .parquet")
    return len(df)
