"""Run retrievers over datasets: retrieve (or reuse), write the run file, evaluate, write the record.

Each (retriever, dataset) pair is independent: its run file and record are written atomically as soon as
it finishes, so an interrupted suite keeps every finished pair, and a rerun skips them. Reuse is keyed by
a fingerprint of everything that determines the run (retriever spec and model revision, dataset file
checksums, protocol, depth); ``force=True`` recomputes.

Evaluation depends on the dataset's kind: BEIR datasets are scored against qrels (trec_eval measures);
open-domain QA datasets (``kind == "odqa"``) by answer matching (accuracy@k, with each question's first-hit
rank kept in the record). Run files, records, reuse and the leaderboard are the same for both.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from harness import __version__
from harness.data.beir import BeirDataset
from harness.data.load import resolve_dataset
from harness.data.registry import SUITES, expand
from harness.distributed import world
from harness.errors import HarnessError
from harness.io import atomic_write_json, cached_sha256
from harness.leaderboard import rebuild
from harness.metrics import evaluate, mean, parse_measure
from harness.paths import cache_root
from harness.provenance import environment
from harness.records import SCHEMA, read_record, record_paths
from harness.retrievers.registry import RetrieverSpec, resolve_retriever
from harness.trec import quantize, read_run, write_run

DEFAULT_METRICS = ["ndcg@10", "recall@100", "recall@1000"]  # BEIR; ODQA: harness.odqa.evaluate.DEFAULT_METRICS
Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def dataset_ids(datasets: Sequence[str] = (), suites: Sequence[str] = ()) -> list[str]:
    ids: list[str] = []
    for s in suites:
        if s not in SUITES:
            raise HarnessError(f"unknown suite {s!r}; known: {', '.join(SUITES)}")
        ids.extend(SUITES[s])
    ids.extend(datasets)
    return expand(ids)


def _kind(ds) -> str:
    return getattr(ds, "kind", "beir")


def dataset_fingerprint(ds: BeirDataset) -> dict:
    return {"id": ds.id, "split": ds.split, "path": str(ds.root),
            "sha256": {p.name: cached_sha256(p) for p in ds.files()}}


def corpus_stats(ds: BeirDataset, qrels: dict) -> dict:
    """Validate the whole corpus with the harness reader (cached by checksum): counts for the record."""
    digest = cached_sha256(ds.corpus_path)
    memo = cache_root() / "corpus-stats" / f"{digest[:32]}-{hashlib.sha256(json.dumps(sorted(qrels)).encode()).hexdigest()[:8]}.json"
    try:
        return json.loads(memo.read_text())
    except (OSError, json.JSONDecodeError):
        pass
    judged = {d for rels in qrels.values() for d in rels}
    found, docs, empty = set(), 0, 0
    for doc in ds.corpus():
        docs += 1
        empty += not (doc.title.strip() or doc.text.strip())
        if doc.doc_id in judged:
            found.add(doc.doc_id)
    if docs == 0:
        raise HarnessError(f"{ds.corpus_path}: the corpus is empty")
    stats = {"documents": docs, "empty_documents": empty, "judged_documents_not_in_corpus": len(judged - found)}
    try:
        atomic_write_json(memo, stats)
    except OSError:
        pass
    return stats


class Runner:
    """Holds loaded retrievers across datasets so a model is loaded once per run."""

    def __init__(self, metrics: Sequence[str] | None = None, output_dir: Path = Path("results"), *,
                 force: bool = False, device: str = "auto", depth: int | None = None,
                 retriever_options: dict | None = None, log: Log = _stderr):
        self.requested = list(metrics) if metrics else None  # None: each dataset kind's defaults
        self.depth = depth
        for m in self.requested or ():  # fail fast on a bad metric or depth, before any work
            self._check_depth(m, None)
        self.output_dir = Path(output_dir)
        self.force = force
        self.device = device
        self.options = retriever_options or {}
        self.log = log
        self._loaded: dict[str, object] = {}

    def _retriever(self, spec: RetrieverSpec):
        if spec.name not in self._loaded:
            self._loaded[spec.name] = spec.load(device=self.device, **self.options)
        return self._loaded[spec.name]

    def _model_revision(self, spec: RetrieverSpec) -> dict | None:
        """Weights revision, tokenizer files, encoder config and precision: changing any of them
        invalidates the run."""
        if spec.kind != "dense" or spec.model is None:
            return None
        from harness.distributed import local_device
        from harness.retrievers.config import read_encoder_config
        from harness.retrievers.encoder import plan_compute
        from harness.retrievers.hub import resolve_model, tokenizer_fingerprint

        files = resolve_model(spec.model, spec.revision)
        encoder = spec.encoder or read_encoder_config(files.path)
        compute = plan_compute(files.path, local_device(self.device), self.options.get("precision", "auto"),
                               self.options.get("forward", "auto"))
        return {"weights": files.revision, "tokenizer": tokenizer_fingerprint(files.path),
                "encoder": encoder.to_dict(), "precision": compute.precision}

    def _check_depth(self, metric: str, kind: str | None) -> int:
        if kind == "odqa" or (kind is None and _is_accuracy(metric)):
            from harness.odqa.evaluate import parse_accuracy

            k = parse_accuracy(metric)
        else:
            k = parse_measure(metric).k or 0
        if self.depth is not None and self.depth < k:
            raise HarnessError(f"--depth {self.depth} is below the deepest metric cut-off ({k})")
        return k

    def metrics_for(self, ds) -> tuple[list[str], int]:
        """The metric names used on ``ds`` (requested, or its kind's defaults) and the deepest cut-off."""
        if _kind(ds) == "odqa":
            from harness.odqa.evaluate import DEFAULT_METRICS as ODQA_METRICS
            from harness.odqa.evaluate import canonical

            names = [canonical(m) for m in (self.requested or ODQA_METRICS)]
        else:
            names = [str(parse_measure(m)) for m in (self.requested or DEFAULT_METRICS)]
        return names, max(self._check_depth(m, _kind(ds)) for m in names)

    def run_one(self, spec: RetrieverSpec, ds: BeirDataset) -> dict:
        names, deepest = self.metrics_for(ds)
        depth = self.depth or max(ds.protocol.depth, deepest)
        rec_path, run_path = record_paths(self.output_dir, ds.id, ds.split, spec.slug)
        qrels = ds.qrels() if _kind(ds) == "beir" else {}
        fingerprint_src = {"retriever": spec.to_dict(), "model_revision": self._model_revision(spec),
                           "dataset": dataset_fingerprint(ds)["sha256"], "protocol": ds.protocol.to_dict(),
                           "depth": depth, "embed_dtype": self.options.get("embed_dtype", "float32")}
        fingerprint = hashlib.sha256(json.dumps(fingerprint_src, sort_keys=True).encode()).hexdigest()
        old = _read_if_exists(rec_path)
        if old and not self.force and old.get("fingerprint") == fingerprint and run_path.is_file():
            if all(m in old["metrics"] for m in names):
                self.log(f"{ds.id} | {spec.name}: reused record and run file {run_path} (--force recomputes)")
                return old
            self.log(f"{ds.id} | {spec.name}: reused run file {run_path}; evaluating new metrics")
            return self._evaluate_and_write(spec, ds, qrels, read_run(run_path), run_path, rec_path,
                                            fingerprint, {**old, "reused_run": True}, names)
        queries = ds.queries()
        stats = corpus_stats(ds, qrels)
        retriever = self._retriever(spec)
        t0 = time.perf_counter()
        index_info = retriever.index(ds)
        t1 = time.perf_counter()
        self.log(f"{ds.id} | {spec.name}: " + ", ".join(f"{k} {v}" for k, v in index_info.items()
                                                         if k in {"index", "embeddings", "path"}))
        if world()[0] != 0:  # under torchrun the other ranks only help encoding; rank 0 searches and writes
            return {}
        # as Pyserini's --remove-query: retrieve `depth` hits, then drop the query's own id
        run = retriever.search(queries, depth)
        run = _protocol_cut(run, depth, ds.protocol.drop_self_hits)
        t2 = time.perf_counter()
        run = quantize(run, retriever.score_format)
        write_run(run_path, run, tag=spec.slug, score_format=retriever.score_format)
        base = {"index": index_info, "corpus": stats, "retriever_provenance": retriever.provenance(),
                "timings": {"index_s": round(t1 - t0, 3), "search_s": round(t2 - t1, 3)}}
        return self._evaluate_and_write(spec, ds, qrels, run, run_path, rec_path, fingerprint, base, names)

    def _evaluate_and_write(self, spec, ds, qrels, run, run_path, rec_path, fingerprint, base, names) -> dict:
        per_query, extra = _score(ds, qrels, run, names)
        metrics = {m: mean(v) for m, v in per_query.items()}
        judged = per_query[names[0]]
        record = {
            "schema": SCHEMA, "retriever": spec.name, "dataset": ds.id, "split": ds.split,
            "metrics": metrics, "num_queries": len(judged), "queries_answered": sum(1 for q in judged if run.get(q)),
            "per_query": per_query, **extra, "run_file": run_path.name, "fingerprint": fingerprint,
            "retriever_spec": spec.to_dict(), "protocol": ds.protocol.to_dict(),
            "dataset_provenance": dataset_fingerprint(ds), "environment": environment(),
            "device": (base.get("retriever_provenance") or {}).get("device") or self.device, "harness_version": __version__,
            **{k: v for k, v in base.items() if k in {"index", "corpus", "retriever_provenance", "timings", "reused_run"}},
        }
        atomic_write_json(rec_path, record)
        shown = "  ".join(f"{m}={v:.4f}" for m, v in metrics.items())
        self.log(f"{ds.id} | {spec.name}: {shown}")
        return record


def _is_accuracy(metric: str) -> bool:
    return metric.strip().lower().startswith(("accuracy", "acc@", "top@"))


def _score(ds, qrels: dict, run: dict, names: list[str]) -> tuple[dict, dict]:
    """Per-query values for ``names`` and extra record fields: qrels for BEIR, answer matching for ODQA."""
    if _kind(ds) == "odqa":
        from harness.odqa.evaluate import evaluate_dataset

        per_query, first_hit = evaluate_dataset(ds, run, names)
        return per_query, {"first_hit_rank": first_hit}
    return evaluate(qrels, run, names), {}


def _protocol_cut(run: dict, depth: int, drop_self_hits: bool) -> dict:
    from harness.trec import ranked

    out = {}
    for qid, docs in run.items():
        kept = [(d, s) for d, s in ranked(docs) if not (drop_self_hits and d == qid)]
        out[qid] = dict(kept[:depth])
    return out


def _read_if_exists(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return read_record(path)
    except HarnessError:
        return None


def run(retrievers: Sequence[str], datasets: Sequence[str], metrics: Sequence[str] | None = None,
        output_dir: Path = Path("results"), *, suites: Sequence[str] = (), force: bool = False,
        device: str = "auto", depth: int | None = None, log: Log = _stderr, **retriever_options) -> list[dict]:
    """Evaluate every retriever on every dataset; returns the result records (also written to disk).

    ``metrics`` None uses each dataset kind's defaults (BEIR: ``DEFAULT_METRICS``; ODQA: accuracy@1,5,20,100).
    """
    specs = [resolve_retriever(r) for r in retrievers]
    ids = dataset_ids(datasets, suites)
    if not specs or not ids:
        raise HarnessError("name at least one retriever and one dataset (or --suite)")
    runner = Runner(metrics, output_dir, force=force, device=device, depth=depth,
                    retriever_options=retriever_options, log=log)
    records = []
    try:
        for ds_id in ids:
            ds = resolve_dataset(ds_id)
            for spec in specs:
                records.append(runner.run_one(spec, ds))
    finally:
        if world()[0] == 0:
            rebuild(output_dir)
    return [r for r in records if r]
