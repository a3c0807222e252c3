"""Fixtures for the baselines / check / compare / plots tests: fake result records, and real SciFact runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.results.records import ResultRecord, record_stem

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
needs_shared = pytest.mark.skipif(not (SHARED / "data" / "beir" / "scifact").is_dir(),
                                  reason=f"real data not found at {SHARED}")


def fake_record(retriever: str, dataset: str, per_query: dict[str, dict[str, float]], split: str = "test",
                settings: dict | None = None) -> ResultRecord:
    """A minimal result record, as harness.runner writes them (only the fields the fold and tests read)."""
    return ResultRecord(retriever=retriever, dataset=dataset, split=split,
                        metrics={m: float(np.mean(list(v.values()))) for m, v in per_query.items()},
                        per_query=per_query, fingerprint="fake", run_file="fake.trec", settings=settings or {},
                        num_queries=len(next(iter(per_query.values()))))


def scores(seed: int, n: int = 60, shift: float = 0.0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    return {f"q{i}": float(np.clip(v + shift, 0, 1)) for i, v in enumerate(rng.uniform(0, 1, n))}


def write_records(folder: Path, records: list[ResultRecord]) -> Path:
    for r in records:
        stem = record_stem(r.retriever.replace(":", "_").replace("/", "_"), r.settings)
        path = folder / r.dataset / r.split / f"{stem}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r.to_json()))
    return folder


@pytest.fixture
def fake_results(tmp_path) -> Path:
    """Three retrievers on two datasets; 'good' is clearly better than 'base', 'same' is base plus noise."""
    recs = []
    for ds, seed in [("beir/scifact", 1), ("beir/nfcorpus", 2)]:
        base = scores(seed)
        recs.append(fake_record("base", ds, {"ndcg@10": base}))
        recs.append(fake_record("good", ds, {"ndcg@10": {q: min(1.0, v + 0.3) for q, v in base.items()}}))
        noise = scores(seed + 10)
        recs.append(fake_record("same", ds, {"ndcg@10": {q: float(np.clip(v + (noise[q] - 0.5) * 0.02, 0, 1))
                                                         for q, v in base.items()}}))
    return write_records(tmp_path / "results", recs)
