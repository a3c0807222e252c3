"""Evaluate saved checkpoints with the harness runner, so trained rows land on the leaderboard next to
BM25 and the init model. Each evaluation is also appended to ``<output>/eval_log.jsonl`` for the plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.train.config import RunOptions

if TYPE_CHECKING:
    from harness.results.records import ResultRecord

EVAL_LOG = "eval_log.jsonl"


def _run(retriever: str, cfg: RunOptions) -> list[ResultRecord]:
    from harness.runner import run
    from harness.settings import EncodeSettings, Execution

    return run([retriever], list(cfg.eval), list(cfg.eval_metrics), Path(cfg.eval_output),
               settings=EncodeSettings(precision=getattr(cfg, "eval_precision", "fp32")),
               execution=Execution(device=cfg.device, trust_remote_code=cfg.trust_remote_code))


def _append(output: Path, rows: list[dict[str, Any]]) -> None:
    with open(output / EVAL_LOG, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _rows(records: list[ResultRecord], step: int | None, retriever: str) -> list[dict[str, Any]]:
    return [{"step": step, "retriever": retriever, "dataset": r.dataset, "metrics": r.metrics} for r in records]


def evaluate_checkpoint(folder: Path, step: int, cfg: RunOptions) -> list[ResultRecord]:
    """Run ``cfg.eval`` datasets on one checkpoint folder; returns the result records."""
    records = _run(str(folder), cfg)
    _append(Path(cfg.output), _rows(records, step, str(folder)))
    return records


def evaluate_baselines(cfg: RunOptions) -> list[ResultRecord]:
    """The init model and BM25 on the same datasets (reused when already run)."""
    from harness.errors import HarnessError

    records: list[ResultRecord] = []
    init = cfg.init if Path(cfg.init).expanduser().is_dir() else f"hf:{cfg.init}"
    for name in (init, "bm25"):
        try:
            got = _run(name, cfg)
        except HarnessError as e:  # e.g. no Java for BM25: the trained rows still count
            print(f"harness: baseline {name} not evaluated: {e}")
            continue
        _append(Path(cfg.output), _rows(got, None, name))
        records += got
    return records
