"""The training curve as a PNG beside the checkpoints: loss (and contrastive accuracy), relevance-weight
statistics, and the evaluation score of each saved checkpoint."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PLOT_FILE = "training_curve.png"


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by an interrupted run
    return rows


def plot_training(output: Path, metric: str = "ndcg@10") -> Path | None:
    """Write ``output/training_curve.png`` from ``train_log.jsonl`` and ``eval_log.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.train.config import LOG_FILE
    from harness.train.evaluate import EVAL_LOG

    by_step = {r["step"]: r for r in _read_jsonl(output / LOG_FILE)}  # a resumed run's rows replace old ones
    if not by_step:
        return None
    steps = sorted(by_step)
    rows = [by_step[s] for s in steps]
    evals = [r for r in _read_jsonl(output / EVAL_LOG) if r.get("step") is not None]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ax.plot(steps, [r["loss"] for r in rows], label="loss", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax2 = ax.twinx()
    ax2.plot(steps, [r["accuracy"] for r in rows], color="tab:orange", lw=0.6, alpha=0.6, label="accuracy")
    ax2.set_ylabel("contrastive accuracy")
    ax.set_title("loss")
    ax = axes[1]
    if "w_mean" in rows[0]:
        for key in ("w_mean", "w_min", "w_max"):
            ax.plot(steps, [r[key] for r in rows], label=key, lw=0.8)
        ax.plot(steps, [r["w_entropy"] for r in rows], label="w_entropy (nats)", lw=0.8, ls="--")
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no relevance weights\n(objective without weights)", ha="center", va="center")
    ax.set_title("relevance weights")
    ax.set_xlabel("step")
    ax = axes[2]
    datasets = sorted({e["dataset"] for e in evals})
    for ds in datasets:
        pts = sorted((e["step"], e["metrics"].get(metric)) for e in evals if e["dataset"] == ds)
        pts = [(s, v) for s, v in pts if v is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=ds)
    if datasets:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no evaluation (--eval)", ha="center", va="center")
    ax.set_title(f"eval {metric} per checkpoint")
    ax.set_xlabel("step")
    fig.tight_layout()
    path = output / PLOT_FILE
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
