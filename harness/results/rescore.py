"""A measure a record lacks, scored from its stored run file: what ``harness run --metric M`` does for a run it
reuses, without the retriever (so without a model, a GPU or a JVM). The leaderboard asks for it when its
metric (or ``--judged K``) is missing from records whose dataset is here.

A record is scored again only when everything it was computed from is still what it was: its run file has
the digest the record holds (``run_sha256``), and the dataset's files have the digests in its provenance; a
record that fails either is named and left as it is (a rerun computes it). The new measure joins the
record's metrics and per-query values, and the record is written back atomically, as the runner writes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.metrics.evaluate import mean
from harness.results.records import ResultRecord, load_records, write_record

if TYPE_CHECKING:
    from harness.data.dataset import Dataset


def score_missing(output_dir: Path, measures: Sequence[str], *, split: str | None = None,
                  datasets: Sequence[str] | None = None) -> tuple[int, list[str]]:
    """Add each of ``measures`` to every record of ``output_dir`` that lacks it (and that ``split`` and
    ``datasets`` select). Returns (records written, one line per record that could not be scored and why)."""
    from harness.datasets import resolve_dataset
    from harness.io import TRUSTED, sha256_file
    from harness.trec import read_run

    found, _ = load_records(Path(output_dir))
    written, notes = 0, []
    opened: dict[tuple[str, str], Dataset] = {}
    for path, record in found:
        missing = [m for m in measures if m not in record.metrics]
        if not missing or (split and record.split != split) or (datasets and record.dataset not in datasets):
            continue
        where = f"{record.label} on {record.dataset}"
        run_path = path.parent / record.run_file
        if not run_path.is_file() or (record.run_sha256 and sha256_file(run_path) != record.run_sha256):
            notes.append(f"{where}: its run file {run_path} is missing or changed; rerun it with --metric "
                         f"{' --metric '.join(missing)}")
            continue
        key = (record.dataset, record.split)
        try:
            if key not in opened:
                name = str(record.dataset_provenance.get("opened_as") or record.dataset)  # files: by its files
                opened[key] = resolve_dataset(name, split=record.split, allow_fetch=False, output_dir=Path(output_dir))
            ds = opened[key]
            digests = TRUSTED.digests(ds.files())
            before = record.dataset_provenance.get("sha256")
            if before and before != digests:
                notes.append(f"{where}: the dataset's files changed since the record was computed; rerun it")
                continue
            per_query, _ = ds.judgements().evaluate(read_run(run_path), missing)
        except HarnessError as e:
            notes.append(f"{where}: {', '.join(missing)} not scored ({e})")
            continue
        _merge(record, per_query)
        write_record(path, record)
        written += 1
    return written, notes


def _merge(record: ResultRecord, per_query: dict[str, dict[str, float]]) -> None:
    for name, values in per_query.items():
        record.per_query[name] = values
        record.metrics[name] = mean(values)
