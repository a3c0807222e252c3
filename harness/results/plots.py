"""Charts for people who would rather look than read (matplotlib, Agg backend: no display needed).

- ``leaderboard_chart``: grouped bars of one metric, datasets along x, one bar per retriever;
- ``difference_chart``: per-query differences B - A of a ``harness compare``, sorted, one panel per dataset;
- ``efficiency_chart``: the metric against query time (batch mean, latency p50) and against index size, each
  dataset's and device's Pareto front marked (``harness leaderboard --efficiency --plot`` and ``harness report``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import HarnessError
from harness.results.stats import PairedComparison


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path, dpi: int = 150) -> Path:
    path = Path(path)
    if path.suffix.lower() not in {".png", ".pdf", ".svg"}:
        raise HarnessError(f"{path}: plots are written as .png, .pdf or .svg")
    from harness.io import atomic_stream

    atomic_stream(path, lambda f: fig.savefig(f, format=path.suffix.lower()[1:], dpi=dpi, bbox_inches="tight"))
    return path


def leaderboard_chart(pivot: pd.DataFrame, metric: str, path: Path, *, title: str | None = None,
                      marks: dict[tuple[str, str], str] | None = None) -> Path:
    """Grouped bar chart of a ``leaderboard.table`` pivot (retriever rows x dataset columns).

    Missing cells are left out (no bar), never drawn as zero. ``marks`` (retriever, dataset) -> symbol
    is printed above the bar (e.g. significance against a baseline).
    """
    if pivot.empty:
        raise HarnessError(f"nothing to plot: no results with {metric}")
    plt = _pyplot()
    datasets, retrievers = list(pivot.columns), list(pivot.index)
    n_ds, n_r = len(datasets), len(retrievers)
    width = 0.8 / n_r
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + n_ds * (0.35 + 0.28 * n_r)), 4.8))
    colors = plt.get_cmap("tab10" if n_r <= 10 else "tab20")
    top = 0.0
    for j, retriever in enumerate(retrievers):
        cells = [(i - 0.4 + width * (j + 0.5), float(pivot.loc[retriever, ds]), ds)
                 for i, ds in enumerate(datasets) if pd.notna(pivot.loc[retriever, ds])]
        xs, ys = [c[0] for c in cells], [c[1] for c in cells]
        top = max([top, *ys])
        bars = ax.bar(xs, ys, width, label=retriever, color=colors(j % colors.N), edgecolor="white", linewidth=0.5)
        if n_ds * n_r <= 40:
            labels = [f"{y:.3f}{(marks or {}).get((retriever, ds), '')}" for _, y, ds in cells]
            ax.bar_label(bars, labels=labels, fontsize=7, padding=2, rotation=90 if n_r > 3 else 0)
    ax.set_xticks(range(n_ds))
    ax.set_xticklabels([d.removeprefix("beir/") for d in datasets], rotation=30 if n_ds > 4 else 0, ha="right"
                       if n_ds > 4 else "center")
    ax.set_ylabel(metric)
    ax.set_ylim(0, min(1.05, top * 1.18 + 0.02) if top <= 1 else top * 1.18)
    ax.set_title(title or f"{metric} by retriever and dataset")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    path = _save(fig, path)
    plt.close(fig)
    return path


def difference_chart(comparisons: Sequence[PairedComparison], path: Path, *, test: str = "t") -> Path:
    """Per-query differences B - A, sorted, one panel per (dataset, metric); green: B better."""
    if not comparisons:
        raise HarnessError("nothing to plot: no comparisons")
    plt = _pyplot()
    n = len(comparisons)
    n_datasets = len({c.dataset for c in comparisons})
    cols = 1 if n <= 2 else 2 if n <= 8 else 3
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 3.4 * rows), squeeze=False)
    for ax, c in zip(axes.flat, comparisons, strict=False):
        diffs = sorted(c.diffs, reverse=True)
        colors = ["#2a9d3f" if d > 0 else "#c8372d" if d < 0 else "#999999" for d in diffs]
        ax.bar(range(len(diffs)), diffs, width=1.0, color=colors, linewidth=0)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.axhline(c.mean_diff, color="#1f4e9c", linewidth=1, linestyle="--", label=f"mean {c.mean_diff:+.4f}")
        p = c.pvalue(test)
        holm = f", Holm {c.holm[test]:.3g}" if c.holm and n_datasets > 1 else ""
        ax.set_title(f"{c.dataset} — {c.metric}", fontsize=10)
        ax.text(0.99, 0.97, f"{c.b} − {c.a}\nmean {c.mean_diff:+.4f}  95% CI [{c.ci_low:+.4f}, {c.ci_high:+.4f}]\n"
                f"wins/ties/losses {c.wins}/{c.ties}/{c.losses}\np ({test}) {p:.3g}{holm}",
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5,
                bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "#cccccc"})
        ax.set_xlim(-0.5, len(diffs) - 0.5)
        lim = max(1e-6, max(abs(d) for d in diffs)) * 1.08
        ax.set_ylim(-lim, lim)
        ax.set_xlabel(f"queries ({c.queries}), sorted by difference")
        ax.set_ylabel(f"Δ {c.metric}")
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"per-query difference: {comparisons[0].b} − {comparisons[0].a}", fontsize=11)
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def efficiency_chart(frame: pd.DataFrame, metric: str, path: Path, *, title: str | None = None,
                     dpi: int = 150) -> Path:
    """``metric`` against each cost a record measured (log x), a panel each: search ms/query (the batch mean),
    query latency p50 where some record timed its queries one by one, and index size. A point per record
    labelled by its retriever, a colour per dataset, a marker per device; each (dataset, device)'s Pareto
    front (cheaper and better) drawn: times from different devices are never on one front, and the titles name
    the devices. The figure for ``harness leaderboard --efficiency --plot`` and for ``harness report``."""
    from harness.results.efficiency import base_device, pareto_front

    plt = _pyplot()
    measured = [isinstance(v, int | float) and not isinstance(v, bool) for v in frame["search_ms_p50"]]
    panels = [("search_ms_per_query", "search ms/query (batch mean)", 1.0)]
    if any(measured):
        panels.append(("search_ms_p50", "query latency p50 (ms, queries timed one by one)", 1.0))
    panels.append(("index_bytes", "index size (MB)", 2.0**20))
    device = [base_device(d) or "device unknown" for d in frame["device"]]
    frame = frame.assign(_device=device)
    devices = sorted(set(device))
    datasets = sorted({str(d) for d in frame["dataset"]})
    colors = plt.get_cmap("tab10" if len(datasets) <= 10 else "tab20")
    marker = {d: "os^Dv<>ph*"[i % 10] for i, d in enumerate(devices)}
    where = devices[0] if len(devices) == 1 else (f"{', '.join(devices)}: a marker and a front per device, "
                                                  "times compared within one device only")
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), squeeze=False)
    for ax, (key, label, scale) in zip(axes[0], panels, strict=True):
        for (dataset, on), group in frame.groupby(["dataset", "_device"], sort=True):
            rows = group[[isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in group[key]]]
            if rows.empty:
                continue
            cost = [float(v) / scale for v in rows[key]]
            score = [float(v) for v in rows[metric]]
            color = colors(datasets.index(str(dataset)) % colors.N)
            ax.scatter(cost, score, color=color, marker=marker[str(on)],
                       label=str(dataset) if len(devices) == 1 else f"{dataset} · {on}")
            for x, y, name in zip(cost, score, rows["retriever"], strict=True):
                ax.annotate(str(name), (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            front = pareto_front(cost, score)
            ax.step([cost[i] for i in front], [score[i] for i in front], where="post", color=color, alpha=0.6)
            ax.scatter([cost[i] for i in front], [score[i] for i in front], s=140, facecolors="none",
                       edgecolors=color, linewidths=1.2, marker=marker[str(on)])  # a front of one is marked too
        ax.set_xscale("log")
        ax.margins(x=0.25, y=0.12)  # room for the labels
        _plain_log_ticks(ax)
        _labels_inside(ax)
        ax.set_xlabel(label)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} against {label.split(' (')[0]} ({devices[0] if len(devices) == 1 else 'by device'})",
                     fontsize=9)
        ax.grid(alpha=0.3)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.suptitle(title or f"{metric} against cost, Pareto front marked; measured on {where}", fontsize=10)
    out = _save(fig, path, dpi)
    plt.close(fig)
    return out


def _plain_log_ticks(ax: Any) -> None:
    """A log axis's ticks as plain numbers (20, 50, 100, not 2x10^1); the minor ones labelled only where the
    axis spans less than about a decade and a half (else they crowd)."""
    from matplotlib import ticker

    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    low, high = ax.get_xlim()
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain if low > 0 and high / low < 30 else ticker.NullFormatter())


def _labels_inside(ax: Any) -> None:
    """Point labels in the right half of a log axis written leftwards of their point, so none runs out of its
    panel into the next."""
    import math

    low, high = ax.get_xlim()
    if low <= 0:
        return
    middle = (math.log(low) + math.log(high)) / 2
    for text in ax.texts:
        x = text.xy[0]
        if x > 0 and math.log(x) > middle:
            text.set_horizontalalignment("right")
            text.set_position((-3, 3))
