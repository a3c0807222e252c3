"""The Python API (``harness.run``, ``harness.evaluate``, ``harness.leaderboard``): the same computations as
the command line, for notebooks. ``harness/__init__.py`` hands these out lazily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from harness.results.records import ResultRecord
    from harness.settings import EncodeSettings, Execution


def run(retrievers: Sequence[str], datasets: Sequence[str] = (), metrics: Sequence[str] | None = None,
        output_dir: str | Path = "results", *, suites: Sequence[str] = (), settings: EncodeSettings | None = None,
        execution: Execution | None = None, force: bool = False, depth: int | None = None) -> list[ResultRecord]:
    """Evaluate every retriever on every dataset (``harness run``); returns the result records, which are
    also written under ``output_dir`` with their run files and the leaderboard."""
    from harness import runner
    from harness.settings import DEFAULT_EXECUTION, REFERENCE

    return runner.run(retrievers, datasets, metrics, Path(output_dir), suites=suites, settings=settings or REFERENCE,
                      execution=execution or DEFAULT_EXECUTION, force=force, depth=depth)


def evaluate(qrels: Mapping[str, Mapping[str, int]] | str | Path, run: Mapping[str, Mapping[str, float]] | str | Path,
             metrics: Sequence[str] = ("ndcg@10", "recall@100")) -> dict[str, float]:
    """The mean of each trec_eval measure (``harness evaluate``); ``qrels`` and ``run`` are dicts or files."""
    from harness.metrics import evaluate as per_query
    from harness.metrics import mean
    from harness.trec import read_qrels, read_run

    q = read_qrels(Path(qrels)) if isinstance(qrels, str | Path) else qrels
    r = read_run(Path(run)) if isinstance(run, str | Path) else run
    return {m: mean(v) for m, v in per_query(q, r, metrics).items()}


def leaderboard(output_dir: str | Path = "results", metric: str = "ndcg@10") -> pd.DataFrame:
    """The retriever x dataset table of ``metric`` with its average column, from the records under
    ``output_dir`` (``harness leaderboard``)."""
    from harness.results.baselines import normalize_metric
    from harness.results.leaderboard import rebuild, table

    df, _ = rebuild(Path(output_dir))
    return table(df, normalize_metric(metric))[0]
