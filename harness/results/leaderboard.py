"""The leaderboard: a pure fold over result records.

``leaderboard.csv`` has one row per (retriever, settings, dataset, split) and one column per metric, named
as on the command line. ``settings`` is empty for the reference computation and names what differs
otherwise (``precision=bf16``); tables show such a row as ``retriever [precision=bf16]``, so two
computations of one retriever are never merged. Collections (CQADupStack) get a row holding the mean over
their parts when every part is present for that retriever and settings; otherwise no row, and the table
says what is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from harness.data.registry import DATASETS
from harness.errors import HarnessError
from harness.io import atomic_write
from harness.results.records import ResultRecord, load_records, row_label, split_shown, unique_records

KEYS = ["retriever", "settings", "dataset", "split"]


def _metric_order(names: set[str]) -> list[str]:
    def key(m: str) -> tuple[int, str, int]:
        base, _, k = m.partition("@")
        rank = ["ndcg", "recall", "map", "mrr", "p", "accuracy"]
        return (rank.index(base) if base in rank else len(rank), base, int(k) if k.isdigit() else 0)
    return sorted(names, key=key)


def fold(records: Sequence[ResultRecord], imported: Sequence[dict[str, Any]] = ()) -> pd.DataFrame:
    """Rows (retriever, settings, dataset, split, metrics...) from records and imported rows (one metric
    each, ``harness.results.exchange``), with collection means added."""
    rows = [{"retriever": r.retriever, "settings": r.settings_label, "dataset": r.dataset, "split": r.split,
             **r.metrics} for r in records] + list(imported)
    df = pd.DataFrame(rows, columns=KEYS) if not rows else pd.DataFrame(rows)
    if df.empty:
        return df
    df = df.groupby(KEYS, as_index=False, sort=False).last()  # one row a key; an imported row's metrics joined
    extra = []
    for name, spec in DATASETS.items():
        if not spec.subsets or spec.protocol.aggregate != "mean-of-subsets":  # how the collection reports
            continue
        parts = df[df["dataset"].isin(spec.subsets)]
        for (retriever, settings, split), group in parts.groupby(["retriever", "settings", "split"]):
            if set(group["dataset"]) == set(spec.subsets):
                means = group.drop(columns=KEYS).mean(numeric_only=True, skipna=False)
                extra.append({"retriever": retriever, "settings": settings, "dataset": name, "split": split,
                              **means.dropna().to_dict()})
    if extra:
        df = pd.concat([df, pd.DataFrame(extra)], ignore_index=True)
    metrics = _metric_order(set(df.columns) - set(KEYS))
    return df[KEYS + metrics].sort_values(["dataset", "split", "retriever", "settings"]).reset_index(drop=True)


def rebuild(output_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Rewrite ``<output_dir>/leaderboard.csv`` from every record (under a lock, atomically)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise HarnessError(f"{output_dir}: no such results folder (run `harness run` first, or pass --output-dir)")
    with FileLock(str(output_dir / ".leaderboard.lock")):
        from harness.results.imports import imported_rows

        records, problems = load_records(output_dir)
        kept, conflicts = unique_records(records)
        imported, unreadable = imported_rows(output_dir)
        df = fold(kept, imported)
        problems = problems + unreadable
        atomic_write(output_dir / "leaderboard.csv", df.to_csv(index=False))
    return df, problems + conflicts


def table(df: pd.DataFrame, metric: str, *, split: str | None = None,
          datasets: Sequence[str] | None = None) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Retriever x dataset pivot of ``metric`` with an average column over the datasets shown.

    Returns (table, the datasets averaged over, notes). A retriever missing any of those datasets gets
    no average (shown empty) and a note naming what is missing: nothing is skipped silently.
    """
    if df.empty or metric not in df.columns:
        return pd.DataFrame(), [], [f"no results with metric {metric}"]
    sub = df if split is None else df[df["split"] == split]
    sub = _collections_whole(sub[sub[metric].notna()])
    if datasets:
        sub = sub[sub["dataset"].isin(datasets)]
    names = set(sub["dataset"])
    sub, notes = one_split_a_dataset(sub)
    per_split = sorted(set(sub["dataset"]) - names)  # "dataset (split)" columns: one dataset, several splits
    sub = sub.assign(row=[row_label(r, st) for r, st in zip(sub["retriever"], sub["settings"].fillna(""), strict=True)])
    pivot = sub.pivot_table(index="row", columns="dataset", values=metric, aggfunc="last")
    pivot.index.name = "retriever"
    cols = sorted(pivot.columns)
    pivot = pivot[cols]
    averaged = [c for c in cols if c not in per_split]  # a dataset counts once: its split columns are not averaged
    if per_split:
        notes.append(f"{', '.join(per_split)}: splits of one dataset, none of them its evaluation split; shown, "
                     "not averaged")
    averages = {}
    for retriever, row in pivot.iterrows():
        missing = [c for c in averaged if pd.isna(row[c])]
        if missing:
            notes.append(f"{retriever}: no average, missing {', '.join(missing)}")
            averages[retriever] = float("nan")
        else:
            averages[retriever] = float(row[averaged].mean()) if averaged else float("nan")
    label = f"avg ({len(averaged)})"
    pivot[label] = pd.Series(averages)
    pivot = pivot.sort_values(label, ascending=False, na_position="last")
    return pivot, averaged, notes


def one_split_a_dataset(sub: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Rows of one split per dataset, so that no cell takes one split's value for another's: where a dataset has
    records of several splits, those of its evaluation split (its protocol's; "test" for a folder) with a note
    naming the others; where none of them is that split, each split its own column, ``dataset (split)``."""
    notes: list[str] = []
    keep, renamed = [], sub.copy()
    for dataset, group in sub.groupby("dataset", sort=True):
        splits = set(group["split"])
        shown = split_shown(str(dataset), splits)
        if shown is None:
            keep.append(group.index)
            renamed.loc[group.index, "dataset"] = [f"{dataset} ({x})" for x in group["split"]]
            continue
        keep.append(group.index[group["split"] == shown])
        others = sorted(splits - {shown})
        if others:
            notes.append(f"{dataset}: its {shown} split shown; records of {', '.join(others)} too "
                         f"(--split {others[0]} shows them)")
    index = keep[0].append(keep[1:]) if keep else sub.index[:0]
    return renamed.loc[index], notes


def column_of(dataset: str, split: str, splits: set[str]) -> str | None:
    """The table column a record of ``dataset`` and ``split`` fills (None: a split the table leaves out)."""
    shown = split_shown(dataset, splits)
    return f"{dataset} ({split})" if shown is None else (dataset if split == shown else None)


def _collections_whole(sub: pd.DataFrame) -> pd.DataFrame:
    """Rows without the parts of a collection whose own row is there (CQADupStack shown as its mean)."""
    shown = set(sub["dataset"])
    hidden = {p for n, s in DATASETS.items() if n in shown for p in s.subsets}
    return sub[~sub["dataset"].isin(hidden)]


def run_table(df: pd.DataFrame, metrics: Sequence[str], *, split: str | None = None) -> str:
    """The one table that ends a run: a row per (dataset, retriever), a column per measure the run computed
    (in the order asked; "—" where a row has none), and, over several datasets, each retriever's mean over the
    datasets that have the measure, where every one of them has it."""
    from tabulate import tabulate

    sub, _ = one_split_a_dataset(_collections_whole(df if split is None else df[df["split"] == split]))
    columns = [m for m in dict.fromkeys(metrics) if m in sub.columns]
    if sub.empty or not columns:
        return "no results"
    sub = sub.assign(row=[row_label(r, st) for r, st in zip(sub["retriever"], sub["settings"].fillna(""),
                                                              strict=True)]).sort_values(["dataset", "row"])

    def cell(v: object) -> str:
        return "—" if v is None or (isinstance(v, float) and v != v) else f"{float(v):.4f}"  # type: ignore[arg-type]

    rows = [[d, r, *(cell(v) for v in values)] for d, r, *values in
            sub[["dataset", "row", *columns]].itertuples(index=False, name=None)]
    datasets = sorted(set(sub["dataset"]))
    notes = []
    if len(datasets) > 1:
        for label, group in sub.groupby("row", sort=True):
            means = [cell(group[m].mean()) if group[m].notna().sum() == len(datasets) else "—" for m in columns]
            rows.append([f"avg ({len(datasets)})", label, *means])
        notes.append(f"avg ({len(datasets)}) = mean over {', '.join(datasets)}; — where a dataset lacks the measure")
    body = tabulate(rows, headers=["dataset", "retriever", *columns], tablefmt="simple", disable_numparse=True,
                    colalign=["left", "left"] + ["right"] * len(columns))
    return "\n".join([body, *notes])


def with_judged(df: pd.DataFrame, pivot: pd.DataFrame, k: int, *,
                split: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """``pivot`` with a ``<dataset> judged@k`` column after each dataset's column: the share of each
    retriever's top k that has a relevance judgement, so that a score computed on many unjudged documents is
    visible as such. A record without judged@k is shown empty and named in a note (`harness run --metric
    Judged@k` adds it from the run file, re-encoding nothing)."""
    name = f"judged@{k}"
    notes: list[str] = []
    if pivot.empty:
        return pivot, notes
    datasets = [c for c in pivot.columns if not str(c).startswith("avg (")]
    judged, _, _ = table(df, name, split=split, datasets=datasets) if name in df.columns else (pd.DataFrame(), [], [])
    out = pd.DataFrame(index=pivot.index)
    missing: dict[str, list[str]] = {}
    for c in pivot.columns:
        out[c] = pivot[c]
        if c in datasets:
            values = judged[c] if c in judged.columns else pd.Series(dtype=float)
            out[f"{c} {name}"] = [values.get(r, float("nan")) for r in pivot.index]
            for r in pivot.index:
                if not pd.isna(pivot.at[r, c]) and pd.isna(out.at[r, f"{c} {name}"]):
                    missing.setdefault(str(r), []).append(str(c))
    for r, ds in missing.items():
        notes.append(f"{r}: no {name} on {', '.join(ds)} (harness run --metric Judged@{k} adds it from the run file)")
    return out, notes


def render(pivot: pd.DataFrame, metric: str, averaged: list[str], notes: list[str], fmt: str = "text", *,
           marks: dict[tuple[str, str], str] | None = None, baseline: str | None = None) -> str:
    """The table as text. ``marks`` (retriever, dataset) -> symbol is appended to cells (see
    ``significance_marks``); the ``baseline`` retriever's row is labelled as such."""
    from tabulate import tabulate

    if pivot.empty:
        return "\n".join(notes) or "no results"
    data = pivot.reset_index()
    table_fmt = {"text": "simple", "markdown": "github"}[fmt]
    if marks is None and baseline is None:
        values = [[None if isinstance(v, float) and v != v else v for v in row] for row in data.values.tolist()]
        body = tabulate(values, headers=list(data.columns), tablefmt=table_fmt, floatfmt=".4f",
                        missingval="—")  # tabulate shows None (not NaN) as missing
    else:
        rows = []
        for retriever, row in pivot.iterrows():
            cells = ["—" if pd.isna(v) else f"{v:.4f}{_mark(marks, retriever, c)}" for c, v in row.items()]
            rows.append([f"{retriever} (baseline)" if retriever == baseline else retriever, *cells])
        body = tabulate(rows, headers=list(data.columns), tablefmt=table_fmt, disable_numparse=True,
                        colalign=["left"] + ["right"] * (len(data.columns) - 1))
    lines = [f"{metric}", body, f"avg = mean of {metric} over {len(averaged)} datasets: {', '.join(averaged)}"]
    lines += notes
    return "\n".join(lines)


BETTER, WORSE = "▲", "▼"


def _mark(marks: dict[tuple[str, str], str] | None, retriever: str, dataset: str) -> str:
    symbol = (marks or {}).get((retriever, dataset), "")
    return f" {symbol}" if symbol else ""


def significance_marks(records: Sequence[ResultRecord], pivot: pd.DataFrame, metric: str, baseline: str, *,
                       split: str | None = None, test: str = "t", alpha: float = 0.05, resamples: int = 10_000,
                       seed: int = 0) -> tuple[dict[tuple[str, str], str], str, list[str]]:
    """Which cells of ``pivot`` are significantly better (▲) or worse (▼) than the ``baseline`` retriever.

    Each retriever is tested against the baseline on each dataset shown with a paired ``test`` (t,
    wilcoxon or randomization) over per-query scores; the p-values of all those tests are Holm-corrected
    together, and a cell is marked when its adjusted p <= ``alpha``. Returns (marks, the baseline's name
    as the records spell it, notes). Collection rows (means over parts) have no per-query scores and are
    not tested.
    """
    import numpy as np

    from harness.errors import HarnessError
    from harness.results.baselines import same_retriever
    from harness.results.stats import PairedComparison, holm, paired_pvalue, paired_scores

    if test not in PairedComparison.TESTS:
        raise HarnessError(f"unknown test {test!r}; known: {', '.join(PairedComparison.TESTS)}")
    names = [r for r in pivot.index if same_retriever(r, baseline)]
    if not names:
        raise HarnessError(f"--baseline {baseline!r} is not in the table; retrievers: {', '.join(pivot.index)}")
    base = names[0]
    chosen = [r for r in records if split is None or r.split == split]
    splits: dict[str, set[str]] = {}
    for r in chosen:
        splits.setdefault(r.dataset, set()).add(r.split)
    by_key = {}
    for r in chosen:  # keyed as the table's columns are: one split a dataset, or "dataset (split)"
        column = column_of(r.dataset, r.split, splits[r.dataset])
        if column is not None:
            by_key[(r.label, column)] = r
    avg_cols = [c for c in pivot.columns if str(c).startswith("avg (")]
    pvalues: list[float] = []
    diffs: list[float] = []
    cells: list[tuple[str, str]] = []
    notes: list[str] = []
    for dataset in [c for c in pivot.columns if c not in avg_cols]:
        ref = by_key.get((base, dataset))
        if ref is None or metric not in ref.per_query:
            if pivot[dataset].notna().sum() > 1:
                notes.append(f"{dataset}: no per-query {metric} of {base}; not tested")
            continue
        for retriever in pivot.index:
            other = by_key.get((retriever, dataset))
            if retriever == base or other is None or pd.isna(pivot.loc[retriever, dataset]):
                continue
            # only the test asked for: the same p-value compare_records computes, without its other tests,
            # bootstrap and resamples (27 ms a cell, 16 s over 200 records, once)
            _, a, b = paired_scores(ref, other, metric)
            pvalues.append(paired_pvalue(test, a, b, resamples=resamples, seed=seed))
            diffs.append(float(np.mean(np.asarray(b) - np.asarray(a))))  # compare_records' mean_diff
            cells.append((retriever, dataset))
    marks = {}
    for cell, adjusted, diff in zip(cells, holm(pvalues) if pvalues else [], diffs, strict=True):
        if adjusted <= alpha and diff != 0:
            marks[cell] = BETTER if diff > 0 else WORSE
    notes.append(f"{BETTER}/{WORSE}: significantly better/worse than {base} (paired {test} test over queries, "
                 f"Holm-corrected over {len(pvalues)} comparisons, alpha {alpha})")
    return marks, base, notes


def against_published(df: pd.DataFrame, metric: str, published: Sequence[Any], systems: dict[str, list[str]], *,
                      split: str | None = None, datasets: Sequence[str] | None = None) -> pd.DataFrame:
    """Each of our scores of ``metric`` beside every published score of the same system, dataset and split.

    ``published`` holds ``harness.results.baselines.Published`` rows; ``systems`` maps a published system name to
    our retriever names (a system name equal to a retriever name matches too). Columns: retriever (with
    its settings when they are not the reference computation), dataset, split, ours, published, delta
    (ours - published), system, source, note, tolerance (half a unit of the source's last printed decimal).
    A result with no published counterpart keeps one row with an empty published value; a row computed in
    another way than the reference (e.g. bf16) says so in its note, since published numbers were made in the
    reference computation.
    """
    from harness.results.baselines import mapped_names, same_retriever

    cols = ["retriever", "dataset", "split", "ours", "published", "delta", "system", "source", "note", "tolerance"]
    if df.empty or metric not in df.columns:
        return pd.DataFrame(columns=cols)
    sub = df[df[metric].notna()]
    if split is not None:
        sub = sub[sub["split"] == split]
    if datasets:
        sub = sub[sub["dataset"].isin(datasets)]
    refs = [p for p in published if p.metric == metric]
    out = []
    for _, row in sub.iterrows():
        ours = float(row[metric])
        settings = row.get("settings") if isinstance(row.get("settings"), str) else ""
        shown = row_label(row["retriever"], settings)
        note = f"not the reference computation ({settings})" if settings else ""
        hits = [p for p in refs if p.dataset == row["dataset"] and p.split == row["split"]
                and any(same_retriever(row["retriever"], name)
                        for name in mapped_names(systems, p.system, p.dataset))]
        for p in hits:
            out.append([shown, row["dataset"], row["split"], ours, p.value, ours - p.value, p.system, p.source, note,
                        p.tolerance])
        if not hits:
            out.append([shown, row["dataset"], row["split"], ours, float("nan"), float("nan"), "", "", note,
                        float("nan")])
    return pd.DataFrame(out, columns=cols).sort_values(["dataset", "split", "retriever"], kind="stable") \
        .reset_index(drop=True)


def render_against(table_: pd.DataFrame, metric: str, fmt: str = "text") -> str:
    """The ``against_published`` table as text."""
    from tabulate import tabulate

    if table_.empty:
        return f"no results with metric {metric}"
    rows = [[r.retriever, r.dataset, r.split, f"{r.ours:.4f}", "—" if pd.isna(r.published) else f"{r.published:.4f}",
             "—" if pd.isna(r.delta) else f"{r.delta:+.4f}", r.system or "—",
             (r.source or "no published score") + (f"; {r.note}" if r.note else "")]
            for r in table_.itertuples()]
    table_fmt = {"text": "simple", "markdown": "github"}[fmt]
    body = tabulate(rows, headers=["retriever", "dataset", "split", "ours", "published", "delta", "published as",
                                   "source"], tablefmt=table_fmt, disable_numparse=True,
                    colalign=["left", "left", "left", "right", "right", "right", "left", "left"])
    return f"{metric}: ours beside published (delta = ours - published)\n{body}"
