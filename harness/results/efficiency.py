"""Efficiency beside effectiveness: what a run cost, measured where it ran and kept in its record's
``timings`` (``measure``), and the table ``harness leaderboard --efficiency`` prints of it.

Each figure says what it is. ``docs_per_s``: documents indexed (encoded or built) a second, only where this
run built the index (a reused one cost nothing here). ``search_ms_per_query``: the search's time over its
queries, all searched together (a batch mean, not a single query's latency), without loading the query model
or starting the JVM; only where the retriever times its search apart from that. ``index_bytes``: what the
index or vector store holds on disk. ``peak_rss_mb``: the peak resident memory up to this record of the
process or of a worker it ran (BM25's JVM), earlier datasets of the same process included;
``peak_gpu_mb``: the CUDA allocator's peak during this record. ``device``: where it ran. Figures from
different devices are never compared without saying so.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from harness.results.records import ResultRecord
    from harness.retrievers.base import IndexReport

__all__ = ["COLUMNS", "efficiency_frame", "measure", "pareto_front", "render_efficiency", "reset_peaks"]

#: the table's columns after the metric: (record key, header, format)
COLUMNS = (("device", "device", "{}"), ("docs_per_s", "docs/s", "{:,.0f}"),
           ("search_ms_per_query", "ms/query", "{:.2f}"), ("index_bytes", "index MB", "{:,.1f}"),
           ("peak_rss_mb", "peak RSS MB", "{:,.0f}"), ("peak_gpu_mb", "peak GPU MB", "{:,.0f}"),
           ("parameters", "params M", "{:,.1f}"), ("dim", "dim", "{}"))


def reset_peaks() -> None:
    """Start a record's GPU peak afresh (where torch has a CUDA context already; nothing is imported)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def _size(path: str | None) -> int | None:
    if not path or not os.path.exists(path):
        return None
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def measure(indexed: IndexReport, queries: int, index_s: float, search_s: float | None, device: str | None,
            provenance: dict[str, Any]) -> dict[str, Any]:
    """What this record's run cost (see the module docstring), for its ``timings``."""
    import resource

    out: dict[str, Any] = {"device": device, "queries": queries, "index_computed": bool(indexed.computed)}
    if indexed.computed and indexed.documents and index_s > 0:
        out["docs_per_s"] = round(indexed.documents / index_s, 1)
    if queries and search_s is not None:  # only where the retriever timed its search without its loading
        out["search_ms_per_query"] = round(1000 * search_s / queries, 3)
    size = _size(indexed.store)
    if size is not None:
        out["index_bytes"] = size
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    out["peak_rss_mb"] = round(peak / 1024, 1)  # Linux: KiB; a worker's (the JVM's) counts too
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    for key in ("parameters", "dim"):
        if provenance.get(key) is not None:
            out[key] = provenance[key]
    return out


def _valid(key: str, value: object) -> bool:
    """A figure as ``measure`` writes it: a device name, or a finite number >= 0 (> 0 for a count of
    parameters or dimensions), never a bool."""
    if key == "device":
        return isinstance(value, str) and bool(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (INF, -INF):
        return False
    return value > 0 if key in ("parameters", "dim") else value >= 0


INF = float("inf")


def efficiency_frame(records: list[ResultRecord], metric: str) -> tuple[pd.DataFrame, list[str]]:
    """A row per record holding ``metric``: dataset, retriever (with its settings), the metric, and each of
    :data:`COLUMNS` as measured (None where the record has none: an older record, a reused index, weights
    that are not safetensors), plus ``index_computed``; and a line for each figure a record holds that is not
    one (an edited record): shown as "?", never as a number."""
    import pandas as pd

    rows, problems = [], []
    for r in sorted(records, key=lambda r: (r.dataset, r.label)):
        if metric in r.metrics:
            t = r.timings
            row: dict[str, Any] = {"dataset": r.dataset, "retriever": r.label, metric: r.metrics[metric],
                                   "index_computed": t.get("index_computed")}
            for key, _, _ in COLUMNS:
                value = t.get(key) if key in t else (r.device if key == "device" else None)
                if value is not None and not _valid(key, value):
                    problems.append(f"{r.dataset} | {r.label}: timings.{key} = {value!r} is not a measurement; "
                                    "shown as ? (the record was edited: run it again with --force)")
                    value = BAD
                row[key] = value
            rows.append(row)
    frame = pd.DataFrame(rows, columns=["dataset", "retriever", metric, *(k for k, _, _ in COLUMNS),
                                        "index_computed"]).astype(object)
    return frame.where(frame.notna(), None), problems


#: a figure a record holds that is not a measurement
BAD = "?"


def pareto_front(cost: list[float], score: list[float]) -> list[int]:
    """The indices of the points no other point beats on both (lower or equal cost and higher or equal score,
    one of them strictly), by increasing cost."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -score[i]))
    front, best = [], float("-inf")
    for i in order:
        if score[i] > best:
            front.append(i)
            best = score[i]
    return front


def render_efficiency(frame: pd.DataFrame, metric: str, fmt: str = "text", problems: list[str] | None = None) -> str:
    """The table as text, with what each figure is and, where rows ran on several devices, that saying."""
    from tabulate import tabulate

    if frame.empty:
        return f"no records with {metric}"
    rows = []
    for row in frame.to_dict("records"):
        cells = [row["dataset"], row["retriever"], f"{row[metric]:.4f}"]
        for key, _, form in COLUMNS:
            value = row[key]
            if value == BAD:
                cells.append(BAD)
            elif value is None or (isinstance(value, float) and value != value):
                cells.append("reused" if key == "docs_per_s" and row["index_computed"] is False else "—")
            else:
                scale = 2**20 if key == "index_bytes" else 1e6 if key == "parameters" else 1
                value = value / scale if scale != 1 else int(value) if key == "dim" else value
                cells.append(form.format(value))
        rows.append(cells)
    body = tabulate(rows, headers=["dataset", "retriever", metric, *(h for _, h, _ in COLUMNS)],
                    tablefmt={"text": "simple", "markdown": "github"}[fmt], disable_numparse=True,
                    colalign=["left", "left", "right", "left"] + ["right"] * (len(COLUMNS) - 1))
    notes = ["docs/s: documents indexed a second where the run built its index (reused: built before); ms/query: "
             "the search step over its queries, searched together (a batch mean, not one query's latency); "
             "peak RSS: the process's or a worker's (the JVM's) peak up to the record"]
    devices = sorted({d.split(" (")[0] for d in frame["device"] if isinstance(d, str) and d != BAD})  # cpu (JVM)
    if len(devices) > 1:
        notes.append(f"measured on {len(devices)} devices ({', '.join(devices)}): compare times only between rows "
                     "of one device")
    return "\n".join([body, *notes, *(problems or [])])
