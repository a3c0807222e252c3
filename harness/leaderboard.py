"""The leaderboard: a pure fold over result records.

``leaderboard.csv`` has one row per (retriever, dataset, split) and one column per metric, named as on
the command line. Collections (CQADupStack) get a row holding the mean over their parts when every part
is present for that retriever; otherwise no row, and the table says what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from filelock import FileLock

from harness.data.registry import DATASETS
from harness.io import atomic_write
from harness.records import load_records

KEYS = ["retriever", "dataset", "split"]


def _metric_order(names: set[str]) -> list[str]:
    def key(m: str) -> tuple[int, str, int]:
        base, _, k = m.partition("@")
        rank = ["ndcg", "recall", "map", "mrr", "p", "accuracy"]
        return (rank.index(base) if base in rank else len(rank), base, int(k) if k.isdigit() else 0)
    return sorted(names, key=key)


def fold(records: Sequence[dict]) -> pd.DataFrame:
    """Rows (retriever, dataset, split, metrics...) from records, with collection means added."""
    rows = [{"retriever": r["retriever"], "dataset": r["dataset"], "split": r["split"], **r["metrics"]}
            for r in records]
    df = pd.DataFrame(rows, columns=KEYS) if not rows else pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.drop_duplicates(subset=KEYS, keep="last")
    extra = []
    for name, spec in DATASETS.items():
        if not spec.subsets:
            continue
        parts = df[df["dataset"].isin(spec.subsets)]
        for (retriever, split), group in parts.groupby(["retriever", "split"]):
            if set(group["dataset"]) == set(spec.subsets):
                means = group.drop(columns=KEYS).mean(numeric_only=True, skipna=False)
                extra.append({"retriever": retriever, "dataset": name, "split": split, **means.dropna().to_dict()})
    if extra:
        df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    metrics = _metric_order(set(df.columns) - set(KEYS))
    return df[KEYS + metrics].sort_values(["dataset", "split", "retriever"]).reset_index(drop=True)


def rebuild(output_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rewrite ``<output_dir>/leaderboard.csv`` from every record (under a lock, atomically)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(output_dir / ".leaderboard.lock")):
        records, problems = load_records(output_dir)
        df = fold([r for _, r in records])
        atomic_write(output_dir / "leaderboard.csv", df.to_csv(index=False, float_format="%.4f"))
    return df, problems


def table(df: pd.DataFrame, metric: str, *, split: str | None = None,
          datasets: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Retriever x dataset pivot of ``metric`` with an average column over the datasets shown.

    Returns (table, the datasets averaged over, notes). A retriever missing any of those datasets gets
    no average (shown empty) and a note naming what is missing: nothing is skipped silently.
    """
    if df.empty or metric not in df.columns:
        return pd.DataFrame(), [], [f"no results with metric {metric}"]
    sub = df if split is None else df[df["split"] == split]
    sub = sub[sub[metric].notna()]
    # parts of a collection are shown through the collection's row when it exists
    shown = set(sub["dataset"])
    hidden = {p for n, s in DATASETS.items() if n in shown for p in s.subsets}
    sub = sub[~sub["dataset"].isin(hidden)]
    if datasets:
        sub = sub[sub["dataset"].isin(datasets)]
    pivot = sub.pivot_table(index="retriever", columns="dataset", values=metric, aggfunc="last")
    cols = sorted(pivot.columns)
    pivot = pivot[cols]
    notes = []
    averages = {}
    for retriever, row in pivot.iterrows():
        missing = [c for c in cols if pd.isna(row[c])]
        if missing:
            notes.append(f"{retriever}: no average, missing {', '.join(missing)}")
            averages[retriever] = float("nan")
        else:
            averages[retriever] = float(row.mean())
    label = f"avg ({len(cols)})"
    pivot[label] = pd.Series(averages)
    pivot = pivot.sort_values(label, ascending=False, na_position="last")
    return pivot, cols, notes


def render(pivot: pd.DataFrame, metric: str, averaged: list[str], notes: list[str], fmt: str = "text") -> str:
    from tabulate import tabulate

    if pivot.empty:
        return "\n".join(notes) or "no results"
    data = pivot.reset_index()
    table_fmt = {"text": "simple", "markdown": "github"}[fmt]
    body = tabulate(data.values.tolist(), headers=list(data.columns), tablefmt=table_fmt, floatfmt=".4f",
                    missingval="—")
    lines = [f"{metric}", body, f"avg = mean of {metric} over {len(averaged)} datasets: {', '.join(averaged)}"]
    lines += notes
    return "\n".join(lines)
