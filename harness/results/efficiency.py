"""Efficiency beside effectiveness: what a run cost, measured where it ran and kept in its record's
``timings`` (``measure``), and the table ``harness leaderboard --efficiency`` and ``harness report`` show of it.

Each figure says what it is. ``docs_per_s``: documents indexed (encoded or built) a second, only where this
run built the index (a reused one cost nothing here). ``search_ms_per_query``: the search's time over its
queries, all searched together (a batch mean, not a single query's latency), without loading the query model
or starting the JVM; only where the retriever times its search apart from that. ``search_ms_p50`` and
``search_ms_p95``: one query's latency, the 50th and 95th percentiles of the per-query times a retriever
measured (``Searched.query_seconds``), computed by :func:`latency_percentiles` with numpy's ``'linear'`` method
(numpy's default, Hyndman and Fan's type 7: the value at rank ``p/100 * (n - 1)``, interpolated between its
neighbours); ``latency_queries`` says over how many queries, ``latency_method`` how they were timed (a dense
retriever under ``harness run --latency N``: N queries one at a time after the batch run, each encoded and
searched alone). A record whose retriever only measured the batch mean has no percentiles (its
``latency_method`` says "batch mean only"): they are shown as "—", never derived from the mean.
``index_bytes``: what the index or vector store holds on disk. ``peak_rss_mb``: the peak resident memory up to
this record of the process or of a worker it ran (BM25's JVM), earlier datasets of the same process included;
``peak_gpu_mb``: the CUDA allocator's peak during this record. ``device``: where it ran. Figures from
different devices are never compared without saying so: the table says when its rows ran on several devices,
and the plot draws each device with its own marker and its own Pareto front.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import pandas as pd

    from harness.results.records import ResultRecord
    from harness.retrievers.base import IndexReport

__all__ = ["COLUMNS", "LATENCY_METHOD", "PERCENTILE_METHOD", "base_device", "devices_of", "efficiency_frame",
           "efficiency_notes", "format_cell", "latency_percentiles", "measure", "pareto_front", "render_efficiency",
           "reset_peaks"]

#: the table's columns after the metric: (record key, header, format)
COLUMNS = (("device", "device", "{}"), ("docs_per_s", "docs/s", "{:,.0f}"),
           ("search_ms_per_query", "ms/query", "{:.2f}"), ("search_ms_p50", "p50 ms", "{:.2f}"),
           ("search_ms_p95", "p95 ms", "{:.2f}"), ("index_bytes", "index MB", "{:,.1f}"),
           ("peak_rss_mb", "peak RSS MB", "{:,.0f}"), ("peak_gpu_mb", "peak GPU MB", "{:,.0f}"),
           ("parameters", "params M", "{:,.1f}"), ("dim", "dim", "{}"))


#: numpy's percentile method for the latency percentiles (its default, named so a numpy change cannot move them)
PERCENTILE_METHOD: Final = "linear"
#: what a record's ``latency_method`` says when its retriever measured only the batch mean
BATCH_ONLY = "batch mean only"
#: what it says when a retriever gave per-query times without saying how it took them
LATENCY_METHOD = "each query timed as it was searched"


def latency_percentiles(seconds: Sequence[float]) -> dict[str, float] | None:
    """``search_ms_p50`` and ``search_ms_p95`` (milliseconds, 3 decimals) of per-query times in seconds, by
    numpy's ``'linear'`` method; None for no times or any that is not a finite number >= 0 (never a guess)."""
    import numpy as np

    values = np.asarray(list(seconds), dtype=np.float64)
    if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0):
        return None
    p50, p95 = np.percentile(1000 * values, [50, 95], method=PERCENTILE_METHOD)
    return {"search_ms_p50": round(float(p50), 3), "search_ms_p95": round(float(p95), 3)}


def reset_peaks() -> None:
    """Start a record's GPU peak afresh (where torch has a CUDA context already; nothing is imported)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):  # the allocator's counters: no context is created
            torch.cuda.reset_peak_memory_stats(index)


def _size(path: str | None) -> int | None:
    if not path or not os.path.exists(path):
        return None
    p = Path(path)
    return p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def measure(indexed: IndexReport, queries: int, index_s: float, search_s: float | None, device: str | None,
            provenance: dict[str, Any], query_seconds: Sequence[float] | None = None,
            query_timing: str | None = None) -> dict[str, Any]:
    """What this record's run cost (see the module docstring), for its ``timings``; ``query_seconds`` and
    ``query_timing`` are the search's per-query times and how they were taken (``Searched``)."""
    import resource

    out: dict[str, Any] = {"device": device, "queries": queries, "index_computed": bool(indexed.computed)}
    if indexed.computed and indexed.documents and index_s > 0:
        out["docs_per_s"] = round(indexed.documents / index_s, 1)
    if queries and search_s is not None:  # only where the retriever timed its search without its loading
        out["search_ms_per_query"] = round(1000 * search_s / queries, 3)
    latency = latency_percentiles(query_seconds) if query_seconds is not None else None
    if latency is not None and query_seconds is not None:
        out.update(latency, latency_queries=len(query_seconds), latency_method=query_timing or LATENCY_METHOD)
    elif "search_ms_per_query" in out:
        out["latency_method"] = BATCH_ONLY
    size = _size(indexed.store)
    if size is not None:
        out["index_bytes"] = size
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    out["peak_rss_mb"] = round(peak / 1024, 1)  # Linux: KiB; a worker's (the JVM's) counts too
    torch = sys.modules.get("torch")
    gpu = device if device and device.startswith("cuda") else None if device not in (None, "auto") else "current"
    if torch is not None and gpu is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        # the record's own GPU (cuda:1 is not the current device); the current one where it says none
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(None if gpu == "current" else gpu) / 2**20, 1)
    for key in ("parameters", "dim"):
        if provenance.get(key) is not None:
            out[key] = provenance[key]
    return out


def _valid(key: str, value: object) -> bool:
    """A figure as ``measure`` writes it: a device name or a latency method (a non-empty string), a count of
    timed queries (an integer > 0), or a finite number >= 0 (> 0 for a count of parameters or dimensions),
    never a bool."""
    if key in ("device", "latency_method"):
        return isinstance(value, str) and bool(value.strip())
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or value in (INF, -INF):
        return False
    if key == "latency_queries":
        return isinstance(value, int) and value > 0
    return value > 0 if key in ("parameters", "dim") else value >= 0


INF = float("inf")
#: the frame's columns after :data:`COLUMNS`: how its latency was measured, over how many queries, whether
#: the run built its index
EXTRA = ("latency_method", "latency_queries", "index_computed")


def efficiency_frame(records: list[ResultRecord], metric: str) -> tuple[pd.DataFrame, list[str]]:
    """A row per record holding ``metric``: dataset, retriever (with its settings), the metric, and each of
    :data:`COLUMNS` as measured (None where the record has none: an older record, a reused index, weights
    that are not safetensors, a retriever that timed only its batch), plus :data:`EXTRA`; and a line for each
    figure a record holds that is not one (an edited record): shown as "?", never as a number."""
    import pandas as pd

    rows, problems = [], []
    for r in sorted(records, key=lambda r: (r.dataset, r.label)):
        if metric in r.metrics:
            t = r.timings
            row: dict[str, Any] = {"dataset": r.dataset, "retriever": r.label, metric: r.metrics[metric],
                                   "index_computed": t.get("index_computed")}
            for key in [k for k, _, _ in COLUMNS] + ["latency_method", "latency_queries"]:
                value = t.get(key) if key in t else (r.device if key == "device" else None)
                if value is not None and not _valid(key, value):
                    problems.append(f"{r.dataset} | {r.label}: timings.{key} = {value!r} is not a measurement; "
                                    "shown as ? (the record was edited: run it again with --force)")
                    value = BAD
                row[key] = value
            rows.append(row)
    frame = pd.DataFrame(rows, columns=["dataset", "retriever", metric, *(k for k, _, _ in COLUMNS),
                                        *EXTRA]).astype(object)
    return frame.where(frame.notna(), None), problems


#: a figure a record holds that is not a measurement
BAD = "?"


def base_device(value: object) -> str | None:
    """The device a figure was measured on, as rows are compared: ``cpu (JVM)`` is the cpu (BM25's worker runs
    beside the process, on its CPUs); None for no device or one that is not a measurement."""
    return value.split(" (")[0] if isinstance(value, str) and value != BAD and value.strip() else None


def devices_of(frame: pd.DataFrame) -> list[str]:
    """The devices the frame's rows ran on, sorted (``cpu (JVM)`` counted as ``cpu``)."""
    return sorted({d for d in map(base_device, frame["device"]) if d is not None})


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


def format_cell(row: dict[str, Any], key: str) -> str:
    """One figure of a frame's row as the table shows it: "?" for what is not a measurement, "—" for none
    ("reused" for the docs/s of an index built before), else in its column's format and unit."""
    form = next(f for k, _, f in COLUMNS if k == key)
    value = row[key]
    if value == BAD:
        return BAD
    if value is None or (isinstance(value, float) and value != value):
        return "reused" if key == "docs_per_s" and row["index_computed"] is False else "—"
    scale = 2**20 if key == "index_bytes" else 1e6 if key == "parameters" else 1
    value = value / scale if scale != 1 else int(value) if key == "dim" else value
    return form.format(value)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value


def efficiency_notes(frame: pd.DataFrame) -> list[str]:
    """What each figure is, how each row's latency was measured (or that it was not: a batch mean only), and,
    where rows ran on several devices, that saying."""
    notes = ["docs/s: documents indexed a second where the run built its index (reused: built before); ms/query: "
             "the search step over its queries, searched together (a batch mean, not one query's latency); "
             f"p50/p95 ms: one query's latency, percentiles (numpy '{PERCENTILE_METHOD}') of per-query times; "
             "peak RSS: the process's or a worker's (the JVM's) peak up to the record"]
    several = frame["dataset"].nunique() > 1
    timed: dict[str, list[str]] = {}
    batch_only = 0
    for row in frame.to_dict("records"):
        name = f"{row['retriever']} on {row['dataset']}" if several else str(row["retriever"])
        if _number(row["search_ms_p50"]):
            method = row["latency_method"] if isinstance(row["latency_method"], str) and row["latency_method"] \
                != BAD else "not said how"
            queries = row["latency_queries"]
            timed.setdefault(method, []).append(name + (f" ({int(queries)} queries)" if _number(queries) else ""))
        elif _number(row["search_ms_per_query"]) and row["search_ms_p50"] is None:
            batch_only += 1
    for method, names in timed.items():
        notes.append(f"p50/p95 ms, {method}: {', '.join(names)}")
    if batch_only:
        notes.append(f"p50/p95 —: {batch_only} row{'s' if batch_only > 1 else ''} measured only a batch mean (no "
                     "per-query times; `harness run --latency N --force` times a dense retriever's first N queries "
                     "one at a time)")
    devices = devices_of(frame)
    if len(devices) > 1:
        notes.append(f"measured on {len(devices)} devices ({', '.join(devices)}): compare times only between rows "
                     "of one device")
    return notes


def render_efficiency(frame: pd.DataFrame, metric: str, fmt: str = "text", problems: list[str] | None = None) -> str:
    """The table as text, with what each figure is, how latency was measured and, where rows ran on several
    devices, that saying."""
    from tabulate import tabulate

    if frame.empty:
        return f"no records with {metric}"
    rows = []
    for row in frame.to_dict("records"):
        rows.append([row["dataset"], row["retriever"], f"{row[metric]:.4f}",
                     *(format_cell(row, key) for key, _, _ in COLUMNS)])
    body = tabulate(rows, headers=["dataset", "retriever", metric, *(h for _, h, _ in COLUMNS)],
                    tablefmt={"text": "simple", "markdown": "github"}[fmt], disable_numparse=True,
                    colalign=["left", "left", "right", "left"] + ["right"] * (len(COLUMNS) - 1))
    return "\n".join([body, *efficiency_notes(frame), *(problems or [])])
