"""Result records: one JSON file per (retriever, dataset, split), next to its TREC run file.

Layout under the output directory: ``<dataset id>/<split>/<retriever slug>.json`` and ``.trec``.
"""

from __future__ import annotations

from pathlib import Path

from harness.errors import DataError
from harness.io import read_json

SCHEMA = "harness-result/1"


def record_paths(output_dir: Path, dataset_id: str, split: str, slug: str) -> tuple[Path, Path]:
    folder = Path(output_dir) / dataset_id / split
    return folder / f"{slug}.json", folder / f"{slug}.trec"


def read_record(path: Path) -> dict:
    rec = read_json(path, problem="not valid JSON",
                    fix="delete it and rerun; records are rewritten atomically, so this file was edited")
    if not isinstance(rec, dict) or rec.get("schema") != SCHEMA:
        raise DataError(path, f"not a harness result record (schema {SCHEMA!r} expected)")
    return rec


def load_records(output_dir: Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    """Every record under ``output_dir`` (sorted by path), and a message per JSON file that is not one."""
    records, problems = [], []
    for path in sorted(Path(output_dir).rglob("*.json")):
        if path.name.startswith("."):
            continue
        try:
            records.append((path, read_record(path)))
        except DataError as e:
            problems.append(str(e))
    return records, problems
