"""The Python API (``harness.run``, ``harness.evaluate``, ``harness.leaderboard``, and :func:`dataset` for a
dataset made of Python objects): the same computations as the command line, for notebooks.
``harness/__init__.py`` hands these out lazily."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.memory import MemoryDataset
from harness.data.memory import from_memory as dataset

if TYPE_CHECKING:
    import pandas as pd

    from harness.data.dataset import Dataset
    from harness.results.records import ResultRecord
    from harness.settings import EncodeSettings, Execution

__all__ = ["dataset", "evaluate", "evaluate_model", "leaderboard", "run"]

#: what names a dataset to the Python API: an id, a folder, or a dataset made by :func:`dataset`
DatasetRef = str | Path | MemoryDataset


def _names(datasets: Sequence[DatasetRef] | DatasetRef) -> list[str]:
    """The names the runner resolves: a dataset made in Python is named by its copy's folder (which keeps its id
    and protocol); anything else is refused in one line."""
    if isinstance(datasets, str | Path | MemoryDataset):
        datasets = [datasets]
    names = []
    for d in datasets:
        if isinstance(d, MemoryDataset):
            names.append(str(d.folder))
        elif isinstance(d, str | Path):
            names.append(str(d))
        else:
            raise TypeError(f"a dataset is an id, a folder or harness.api.dataset(...)'s result, not a "
                            f"{type(d).__name__}")
    return names


def run(retrievers: Sequence[str], datasets: Sequence[DatasetRef] = (), metrics: Sequence[str] | None = None,
        output_dir: str | Path = "results", *, suites: Sequence[str] = (), settings: EncodeSettings | None = None,
        execution: Execution | None = None, force: bool = False, depth: int | None = None,
        split: str | None = None, drop_self_hits: bool = False) -> list[ResultRecord]:
    """Evaluate every retriever on every dataset (``harness run``); returns the result records, which are
    also written under ``output_dir`` with their run files and the leaderboard. A dataset is an id, a folder,
    or one made of Python objects (:func:`dataset`)."""
    from harness import runner
    from harness.settings import DEFAULT_EXECUTION, REFERENCE

    return runner.run(retrievers, _names(datasets), metrics, Path(output_dir), suites=suites,
                      settings=settings or REFERENCE, execution=execution or DEFAULT_EXECUTION, force=force,
                      depth=depth, split=split, drop_self_hits=drop_self_hits)


def evaluate_model(model: Any, datasets: Sequence[DatasetRef] | DatasetRef, *, name: str, revision: str,
                   metrics: Sequence[str] | None = None, output_dir: str | Path = "results", split: str | None = None,
                   batch_size: int = 128, settings: EncodeSettings | None = None, execution: Execution | None = None,
                   force: bool = False, depth: int | None = None) -> list[ResultRecord]:
    """Evaluate a model object of yours on datasets, as ``harness run`` evaluates a registered retriever: the
    same corpus batching, embedding cache, search, records, run files and leaderboard (row ``name@revision``).

    ``model`` has ``encode_queries(texts, batch_size)`` and ``encode_corpus(docs, batch_size)`` (BEIR's
    convention; docs are ``{"title", "text"}`` dicts) or ``encode(texts, ...)`` (sentence-transformers',
    MTEB's; ``prompt_type="query"``/``"document"`` is passed when it takes it). ``name`` and ``revision`` are
    its identity, checked by a probe of what it computes (the row is ``name@revision#<probe digest>``): the
    harness cannot read the object's weights, so the record says it was declared by the user; a changed model
    under the same revision is a new row, and a new revision is a new computation."""
    from harness.retrievers.declared import DeclaredModels

    declared = DeclaredModels()  # this call's own: the model is found by its name here, and nowhere else
    spec = declared.declare(model, name, revision, batch_size=batch_size)
    _say_if_changed(spec.name, f"{name}@{revision}#", Path(output_dir))
    from harness import runner
    from harness.settings import DEFAULT_EXECUTION, REFERENCE

    return runner.run([spec.name], _names(datasets), metrics, Path(output_dir), settings=settings or REFERENCE,
                      execution=execution or DEFAULT_EXECUTION, force=force, depth=depth, split=split,
                      declared=declared)


def evaluate(qrels: Any, run: Any = None, metrics: Sequence[str] | None = None, **model_options: Any) -> Any:
    """The mean of each trec_eval measure (``harness evaluate``); ``qrels`` and ``run`` are dicts or files.
    Given a dataset first (:func:`dataset`'s, or any ``Dataset``), the run is scored by its judgements (its
    default measures unless named). Given a model object first (anything with ``encode_queries``/
    ``encode_corpus`` or ``encode``), it is :func:`evaluate_model` instead: ``harness.evaluate(model,
    ["beir/scifact"], name=..., revision=...)``."""
    if not isinstance(qrels, Mapping | str | Path) and (hasattr(qrels, "encode_queries") or hasattr(qrels, "encode")):
        return evaluate_model(qrels, run, metrics=metrics, **model_options)
    if model_options:
        raise TypeError(f"evaluate() got options {sorted(model_options)} that only apply to a model object")
    if not isinstance(qrels, Mapping | str | Path) and hasattr(qrels, "judgements"):
        return _evaluate_on(qrels, run, metrics)
    from harness.metrics import check_scorable, mean
    from harness.metrics import evaluate as per_query
    from harness.trec import read_qrels, read_run

    q = read_qrels(Path(qrels)) if isinstance(qrels, str | Path) else qrels
    r = read_run(Path(run)) if isinstance(run, str | Path) else run
    check_scorable(q, r, qrels_source=str(qrels) if isinstance(qrels, str | Path) else "qrels",
                   run_source=str(run) if isinstance(run, str | Path) else "run")
    return {m: mean(v) for m, v in per_query(q, r, metrics or ("ndcg@10", "recall@100")).items()}


def _evaluate_on(ds: Dataset, run: Any, metrics: Sequence[str] | None) -> dict[str, float]:
    """The mean of each measure of ``run`` (a dict or a run file) under ``ds``'s judgements."""
    from harness.data.judgements import GradedJudgements
    from harness.metrics import check_scorable, mean
    from harness.trec import read_run

    r = read_run(Path(run)) if isinstance(run, str | Path) else run
    judgements = ds.judgements()
    if isinstance(judgements, GradedJudgements):
        check_scorable(judgements.qrels(), r, qrels_source=ds.id, run_source=str(run) if isinstance(run, str | Path)
                       else "run")
    names = list(dict.fromkeys(judgements.measure(m)[0] for m in (metrics or ds.default_metrics)))
    per_query, _ = judgements.evaluate(r, names)
    return {m: mean(v) for m, v in per_query.items()}


def _say_if_changed(row: str, declared: str, output_dir: Path) -> None:
    """One line when ``output_dir`` holds rows of the same name and revision computed by another model (another
    probe digest): this one is a new row, never their record."""
    import sys

    from harness.results.records import load_records

    if not output_dir.is_dir():
        return
    others = sorted({r.retriever for _, r in load_records(output_dir)[0]
                     if r.retriever.startswith(declared) and r.retriever != row})
    if others:
        print(f"harness: {row} computes other vectors than {', '.join(others)} in {output_dir} (another model under "
              f"the same name and revision): it is a new row; give a changed model a new revision", file=sys.stderr)


def leaderboard(output_dir: str | Path = "results", metric: str = "ndcg@10") -> pd.DataFrame:
    """The retriever x dataset table of ``metric`` with its average column, from the records under
    ``output_dir`` (``harness leaderboard``)."""
    from harness.results.baselines import normalize_metric
    from harness.results.leaderboard import rebuild, table

    df, _ = rebuild(Path(output_dir))
    return table(df, normalize_metric(metric))[0]
