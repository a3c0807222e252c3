"""The Python API (``harness.run``, ``harness.evaluate``, ``harness.leaderboard``, ``harness.experiment``, and
:func:`dataset` for a dataset made of Python objects): the same computations as the command line, for notebooks.
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

__all__ = ["dataset", "evaluate", "evaluate_model", "experiment", "leaderboard", "run"]

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
        split: str | None = None, drop_self_hits: bool = False, corpus: str | Path | None = None,
        topics: str | Path | None = None, qrels: str | Path | None = None,
        run_file: str | Path | None = None) -> list[ResultRecord]:
    """Evaluate every retriever on every dataset (``harness run``, with its options); returns the result
    records, which are also written under ``output_dir`` with their run files and the leaderboard. A dataset
    is an id, a folder, or one made of Python objects (:func:`dataset`); ``corpus``, ``topics`` and ``qrels``
    together are a dataset of three files (``--corpus --topics --qrels``); ``run_file`` also writes the one
    run there (``--run-file``)."""
    from harness import runner
    from harness.settings import DEFAULT_EXECUTION, REFERENCE

    if isinstance(retrievers, str):  # one name, not its characters
        retrievers = [retrievers]
    names = _names(datasets)
    given = {"corpus": corpus, "topics": topics, "qrels": qrels}
    if any(v is not None for v in given.values()):
        missing = [k for k, v in given.items() if v is None]
        if missing:
            from harness.errors import HarnessError

            raise HarnessError(f"{' and '.join(missing)} missing: a dataset of files needs corpus, topics and qrels")
        from harness.data.files import files_name

        names.append(files_name(Path(str(corpus)), Path(str(topics)), Path(str(qrels))))
    return runner.run(retrievers, names, metrics, Path(output_dir), suites=suites,
                      settings=settings or REFERENCE, execution=execution or DEFAULT_EXECUTION, force=force,
                      depth=depth, split=split, drop_self_hits=drop_self_hits,
                      run_file=Path(run_file) if run_file is not None else None)


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
    from harness.metrics import mean
    from harness.metrics.evaluate import evaluate_inputs

    return {m: mean(v) for m, v in evaluate_inputs(qrels, run, metrics or ("ndcg@10", "recall@100")).items()}


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


def experiment(systems: Sequence[str], datasets: Sequence[DatasetRef] | DatasetRef,
               measures: Sequence[str] | None = None, baseline: str | int | None = None, *,
               correction: str | None = "holm", test: str = "t", alpha: float = 0.05,
               output_dir: str | Path | None = None, **run_options: Any) -> pd.DataFrame:
    """Every system on every dataset as one table, tested against a baseline (PyTerrier's ``pt.Experiment``).

    Runs (or reuses, as :func:`run` does: the same records under ``output_dir``, default ``results``) each of
    ``systems`` (retriever names, as ``harness run`` takes them) on each of ``datasets``; ``run_options`` go to
    :func:`run` (``settings``, ``execution``, ``force``, ``depth``, ``split``, ``suites``, ``drop_self_hits``).
    ``measures`` None: each dataset's default measures; a set (``beir``) or trec_eval's list (``P.5,10``)
    stands for its members. Unknown systems, datasets or measures are refused in the one line :func:`run` gives.

    The DataFrame has one row per (dataset, system), datasets in the order run, systems in the order given,
    and the columns:

    - ``dataset``: the dataset's id; ``system``: the row as tables print it (the record's label);
    - ``<m>`` per measure (named as given; the records' canonical names when ``measures`` is None): the
      system's mean over the judged queries (the record's metric);

    and, when ``baseline`` is given (a system as named in ``systems``, its row's label, or its index in
    ``systems``), per measure ``<m>``:

    - ``<m> delta``: the system's mean minus the baseline's on that dataset;
    - ``<m> p``: the two-sided p-value of the paired ``test`` (``"t"``, ``"wilcoxon"`` or
      ``"randomization"``) over the queries of both records, aligned on query id: the functions
      ``harness compare`` uses (``harness.results.stats``; randomization at its default seed and resamples);
    - ``<m> p corrected``: Holm's adjustment (``correction="holm"``) of the ``<m> p`` of every non-baseline
      row across systems and datasets, as ``harness compare`` corrects across its comparisons; with
      ``correction=None`` it is ``<m> p``;
    - ``<m> sig`` (nullable boolean): ``<m> p corrected <= alpha`` and a non-zero delta, as ``harness
      compare``'s ``sig`` column;
    - ``<m> detectable``: the smallest mean difference the paired t-test detects with 80% power at 0.05 over
      these queries (``harness.results.power``; a smaller true difference is likely missed);

    and ``queries`` (nullable integer): how many queries were paired. The baseline's own rows hold NaN
    (``<NA>``) in every one of these columns.
    """
    import numpy as np
    import pandas as pd

    from harness.errors import HarnessError
    from harness.metrics.measures import expand_measures
    from harness.results.power import paired_power
    from harness.results.stats import PairedComparison, holm, paired_pvalue, paired_scores

    systems = [systems] if isinstance(systems, str) else list(systems)
    if test not in PairedComparison.TESTS:
        raise HarnessError(f"unknown test {test!r}; known: {', '.join(PairedComparison.TESTS)}")
    if correction not in ("holm", None):
        raise HarnessError(f"unknown correction {correction!r}; known: 'holm', None (no correction)")
    if not 0 < alpha < 1:
        raise HarnessError(f"alpha must lie in (0, 1), got {alpha}")
    if not systems:
        raise HarnessError("name at least one system")
    base = _baseline_index(baseline, systems)
    named: dict[str, str] = {}  # canonical measure -> its column (the first name given for it)
    for key, measure in expand_measures(measures or ()):
        named.setdefault(str(measure), key)
    records = run(systems, _names(datasets), list(named.values()) or None,
                  "results" if output_dir is None else output_dir, **run_options)
    if not named:  # each dataset's defaults, in the order the records keep them
        named = {m: m for r in records for m in r.metrics}
    n = len(systems)
    groups = [records[i:i + n] for i in range(0, len(records), n)]  # the runner's order: per dataset, each system
    if base is None and baseline is not None and groups:
        base = next((i for i, r in enumerate(groups[0]) if baseline in (r.label, r.retriever)), None)
        if base is None:
            raise HarnessError(f"baseline {baseline!r} is none of the systems ({', '.join(systems)}) nor their rows "
                               f"({', '.join(r.label for r in groups[0])})")
    rows: list[dict[str, Any]] = []
    tested: dict[str, list[tuple[int, float]]] = {m: [] for m in named}  # measure -> (row, p) of every test
    for group in groups:
        for i, rec in enumerate(group):
            row: dict[str, Any] = {"dataset": rec.dataset, "system": rec.label}
            row.update({col: rec.metrics.get(m, np.nan) for m, col in named.items()})
            if base is not None:
                row["queries"] = pd.NA
                for m, col in named.items():
                    row.update({f"{col} delta": np.nan, f"{col} p": np.nan, f"{col} p corrected": np.nan,
                                f"{col} sig": pd.NA, f"{col} detectable": np.nan})
                    if i == base or m not in rec.per_query:
                        continue
                    _, a, b = paired_scores(group[base], rec, m)
                    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
                    p = paired_pvalue(test, a, b)
                    row.update({f"{col} delta": float(d.mean()), f"{col} p": p,
                                f"{col} detectable": paired_power(d).detectable})
                    row["queries"] = len(d)
                    tested[m].append((len(rows), p))
            rows.append(row)
    if base is not None:
        for m, col in named.items():
            pairs = tested[m]
            adjusted = holm([p for _, p in pairs]) if correction == "holm" else [p for _, p in pairs]
            for (r, _), q in zip(pairs, adjusted, strict=True):
                rows[r][f"{col} p corrected"] = q
                rows[r][f"{col} sig"] = bool(q <= alpha and rows[r][f"{col} delta"] != 0)
    columns = ["dataset", "system", *named.values()]
    if base is not None:
        columns += [f"{col} {what}" for col in named.values()
                    for what in ("delta", "p", "p corrected", "sig", "detectable")] + ["queries"]
    df = pd.DataFrame(rows, columns=columns)
    if base is not None:
        df = df.astype({"queries": "Int64", **{f"{col} sig": "boolean" for col in named.values()}})
    return df


def _baseline_index(baseline: str | int | None, systems: Sequence[str]) -> int | None:
    """The index in ``systems`` of the baseline given as an index or as named there; None when it is not
    given, or is a name to look for among the rows' labels once they are run."""
    from harness.errors import HarnessError

    if baseline is None or isinstance(baseline, str):
        return systems.index(baseline) if baseline in systems else None
    if isinstance(baseline, bool) or not isinstance(baseline, int):
        raise TypeError(f"baseline is a system's name or its index in systems, not a {type(baseline).__name__}")
    if not -len(systems) <= baseline < len(systems):
        raise HarnessError(f"baseline {baseline} is not an index of the {len(systems)} system(s)")
    return baseline % len(systems)
