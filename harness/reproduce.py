"""``harness reproduce``: the reproduction matrix of published scores (``baselines/published/``).

For chosen published systems, sources and datasets, every published row is mapped to a retriever of ours
(``published/systems.csv``), run or reused through ``harness check`` and judged against the published value
with a tolerance the publication itself fixes: half a unit of its last printed decimal (0.6789 is matched
by anything that rounds to it; 0.274 by anything within 0.0005). A row that cannot run says why: no
retriever of ours is that system (GAR-T5 expansion, a checkpoint we do not register), or its dataset is not
downloaded (with the command that fetches it). ``--dry-run`` prints the ``harness run`` command of every
runnable (retriever, dataset) instead.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.results.baselines import Expected, Published, load_published, mapped_names

if TYPE_CHECKING:
    from harness.registry import Registry

#: why a published system has no retriever of ours, by a piece of its name
MISSING_KINDS = (("dkrr", "needs the DPR-DKRR checkpoint"),
                 ("gart5", "needs GAR-T5 query expansion"), ("dpr-topics", "needs DPR's own BM25 topic files"),
                 ("lucene-flat", "needs Lucene's HNSW/flat vector index (we search the same vectors with FAISS)"))


@dataclass(frozen=True)
class NotRunnable:
    published: Published
    retriever: str | None
    reason: str


def source_key(source: str) -> str:
    """A source's short name for ``--source``: ``pyserini 2cr/beir.yaml`` -> ``pyserini-2cr-beir-yaml``."""
    return re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")


def select(published: Sequence[Published], *, systems: Sequence[str] = (), datasets: Sequence[str] = (),
           sources: Sequence[str] = (), systems_map: dict[str, list[str]] | None = None) -> list[Published]:
    """The published rows chosen. ``systems`` may name a published system (``bm25-flat``) or a retriever
    of ours that systems.csv maps one to (``bm25``)."""
    keys = [source_key(s) for s in sources]
    wanted = set(systems)

    def named(p: Published) -> bool:
        return p.system in wanted or bool(wanted & set(mapped_names(systems_map or {}, p.system, p.dataset)))

    return [p for p in published
            if (not systems or named(p))
            and (not datasets or p.dataset in datasets)
            and (not keys or any(source_key(p.source).startswith(k) for k in keys))]


def parse_model_paths(pairs: Sequence[str]) -> dict[str, str]:
    """``--model-path NAME=FOLDER`` (repeatable): NAME, a Hugging Face id that a published row's ``hf:``
    retriever names, is run from FOLDER (which must hold a model) instead of the hub."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, folder = pair.partition("=")
        if not sep or not name.strip() or not folder.strip():
            raise HarnessError(f"--model-path {pair!r}: write NAME=FOLDER, e.g. "
                               "sentence-transformers/all-MiniLM-L6-v2=models/all-MiniLM-L6-v2")
        path = Path(folder.strip()).expanduser()
        if not (path / "config.json").is_file():
            raise HarnessError(f"--model-path {pair}: {path} holds no model (no config.json)")
        out[name.strip().removeprefix("hf:")] = str(path.resolve())
    return out


def _local_first(names: list[str], model_paths: dict[str, str]) -> list[str]:
    """The retriever names of a row with ``--model-path`` applied, a model that is here before one that
    must come from the hub (the same system: a published name maps to both in systems.csv)."""
    swapped = []
    for name in names:
        if name.startswith("hf:"):
            target, at, revision = name[3:].partition("@")
            if target in model_paths:
                name = f"hf:{model_paths[target]}"
        swapped.append(name)
    here = [n for n in swapped if n.startswith("hf:") and Path(n[3:].partition("@")[0]).expanduser().is_dir()]
    return list(dict.fromkeys(here + swapped))


def plan(rows: Sequence[Published], systems_map: dict[str, list[str]], *, need_local: bool = True,
         model_paths: dict[str, str] | None = None) -> tuple[list[Expected], list[NotRunnable]]:
    """The rows ``harness check`` can run (as Expected rows) and the ones it cannot, with the reason. With
    ``need_local`` a row whose dataset is not downloaded cannot run (offline: nothing could fetch it).
    ``model_paths`` runs a hub model from a local folder (``--model-path``)."""
    from harness.data.registry import DATASETS
    from harness.datasets import find_local
    from harness.retrievers.registry import RETRIEVERS

    runnable, not_runnable = [], []
    for p in rows:
        names = [n for n in _local_first(mapped_names(systems_map, p.system, p.dataset), model_paths or {})
                 if _ours(n, RETRIEVERS)]
        if not names:
            reason = next((why for part, why in MISSING_KINDS if part in p.system.lower()),
                          "no retriever of ours is this system (map one in baselines/published/systems.csv)")
            not_runnable.append(NotRunnable(p, None, reason))
            continue
        if p.dataset not in DATASETS and "/" in p.dataset and not Path(p.dataset).expanduser().exists():
            not_runnable.append(NotRunnable(p, names[0], "not a public dataset (BEIR does not distribute it), so "
                                                         "not in the harness's registry"))
            continue
        if need_local and p.dataset in DATASETS and find_local(DATASETS.get(p.dataset)) is None:
            not_runnable.append(NotRunnable(p, names[0], f"dataset not downloaded (harness fetch {p.dataset})"))
            continue
        runnable.append(Expected(names[0], p.dataset, p.split, p.metric, p.value, p.tolerance, p.path, p.line,
                                 source=p.source, system=p.system))
    return runnable, not_runnable


def _ours(name: str, registry: Registry[Any]) -> bool:
    """A name we can run: registered, a model folder or hub id given as hf:... or sparse:..., or a
    composition whose stages are all ours."""
    if name in registry:
        return True
    if name.startswith(("fuse:", "rerank:")):
        from harness.errors import HarnessError
        from harness.retrievers.registry import resolve_retriever

        try:
            resolve_retriever(name)
        except HarnessError:
            return False
        return True
    if name.startswith("sparse:"):
        return _ours("hf:" + name[len("sparse:"):], registry)
    if name.startswith("hf:"):
        target = name[3:].partition("@")[0]
        return Path(target).expanduser().is_dir() or not target.startswith((".", "/", "~"))
    return Path(name).expanduser().is_dir()


def commands(rows: Sequence[Expected]) -> list[str]:
    """One ``harness run`` per (retriever, dataset), with every metric its rows need; a dataset that is not
    here is marked (``harness run`` fetches it where there is network)."""
    from harness.data.registry import DATASETS
    from harness.datasets import find_local

    groups: dict[tuple[str, str, str], list[str]] = {}
    for r in rows:
        metrics = groups.setdefault((r.retriever, r.dataset, r.split), [])
        if r.metric not in metrics:
            metrics.append(r.metric)
    out = []
    for (retriever, dataset, split), metrics in groups.items():
        spec = DATASETS.get(dataset) if dataset in DATASETS else None
        line = (f"harness run --retriever {shlex.quote(retriever)} --dataset {shlex.quote(dataset)} "
                + ("" if spec is not None and spec.protocol.split == split else f"--split {shlex.quote(split)} ")
                + " ".join(f"--metric {shlex.quote(m)}" for m in metrics))
        missing = spec is not None and find_local(spec) is None
        out.append(line + ("    # not downloaded here" if missing else ""))
    return out


def load(*, systems: Sequence[str] = (), suites: Sequence[str] = (), datasets: Sequence[str] = (),
         sources: Sequence[str] = (), published_dir: Path | None = None, need_local: bool = True,
         split: str | None = None, model_paths: dict[str, str] | None = None
         ) -> tuple[list[Expected], list[NotRunnable]]:
    """The plan of a reproduction matrix: the published rows selected (``split``: only that split's), split
    into runnable and not."""
    from harness.datasets import dataset_ids

    published, systems_map = load_published(published_dir)
    wanted = dataset_ids(datasets, suites) if suites or datasets else []
    # a suite's published rows on datasets outside its public list (BEIR's licensed BioASQ, Signal-1M,
    # TREC-NEWS, Robust04) are kept, so that the matrix says why they cannot run instead of leaving them out
    wanted += sorted({p.dataset for p in published if any(p.dataset.startswith(f"{s}/") for s in suites)}
                     - set(wanted))
    rows = [p for p in select(published, systems=systems, datasets=wanted, sources=sources, systems_map=systems_map)
            if split is None or p.split == split]
    if not rows:
        known = sorted({p.system for p in published})
        raise HarnessError("no published row matches; systems (or a retriever of ours they map to): "
                           + ", ".join(known))
    return plan(rows, systems_map, need_local=need_local, model_paths=model_paths)


def render_not_runnable(rows: Sequence[NotRunnable], fmt: str = "text") -> str:
    from tabulate import tabulate

    if not rows:
        return ""
    table = [[r.published.source, r.published.system, r.retriever or "—", r.published.dataset, r.published.metric,
              f"{r.published.value:.{r.published.decimals}f}", "not runnable", r.reason] for r in rows]
    return str(tabulate(table, headers=["source", "published system", "retriever", "dataset", "metric", "published",
                                        "status", "why"], tablefmt={"text": "simple", "markdown": "github"}[fmt],
                        disable_numparse=True))
