"""harness: an evaluation-first benchmark harness for dense retrieval.

The Python API (for notebooks), the same computations as the command line::

    import harness
    records = harness.run(["bm25", "hf:sentence-transformers/all-MiniLM-L6-v2"], ["beir/scifact"])
    records[0].metrics                    # {"ndcg@10": ..., "recall@100": ..., "recall@1000": ...}
    harness.evaluate(qrels, run, ["ndcg@10"])        # trec_eval measures of in-memory dicts or TREC files
    harness.leaderboard("results", "ndcg@10")          # the retriever x dataset table (pandas)
    harness.experiment(["bm25", "hf:..."], ["beir/scifact"], ["ndcg@10"], baseline="bm25")  # + paired tests

Nothing heavy is imported until a function is called.
"""

from __future__ import annotations

from typing import Any

from harness.version import __version__

__all__ = ["__version__", "evaluate", "experiment", "leaderboard", "run"]
_API = ("dataset", "evaluate", "experiment", "leaderboard", "run")


def __getattr__(name: str) -> Any:
    """``harness.run`` and the rest, from ``harness.api`` on first use (so ``import harness`` stays light)."""
    if name in _API:
        import importlib

        return getattr(importlib.import_module("harness.api"), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
