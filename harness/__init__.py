"""harness: an evaluation-first benchmark harness for dense retrieval.

The Python API (for notebooks), the same computations as the command line::

    import harness
    records = harness.run(["bm25", "hf:sentence-transformers/all-MiniLM-L6-v2"], ["beir/scifact"])
    records[0].metrics                    # {"ndcg@10": ..., "recall@100": ..., "recall@1000": ...}
    harness.evaluate(qrels, run, ["ndcg@10"])        # trec_eval measures of in-memory dicts or TREC files
    harness.leaderboard("results", "ndcg@10")          # the retriever x dataset table (pandas)

Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

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
