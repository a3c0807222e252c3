"""Run retrievers over datasets: retrieve (or reuse), write the run file, evaluate, write the record.

Each (retriever, settings, dataset) triple is independent: its run file and record are written atomically
as soon as it finishes, so an interrupted suite keeps every finished one, and a rerun skips them. Reuse is
keyed by a fingerprint of everything that determines the run: the retriever's own content identity
(``retriever.fingerprint()``: model files, recipe, compute settings; BM25 parameters and Lucene build), the
dataset files' checksums, the protocol and the depth. ``force=True`` recomputes, hashing every file again
(the runner's :class:`~harness.io.Checksums`, passed to where files are hashed: for this runner only).

The runner and a retriever exchange typed values (``harness.retrievers.base``): it loads the retriever under
its ``LoadOptions``, reads what ``index()`` did (an ``IndexReport``) and what ``search()`` returned
(``Searched``), and tells the search what it is for (a ``SearchContext``, with every call). A composition is
handed its stages' results as ``StageRun`` values.

Before any work, every retriever is loaded (models found, settings and device checked), every dataset is
resolved (all missing ones are listed at once) and every metric is checked against every dataset. A record
is written only when the whole corpus was read, indexed and searched: the three counts must be equal.
How a dataset is scored is the dataset's own business (``dataset.evaluate``): BEIR by qrels, open-domain QA
by answer matching; the runner never asks which kind it has.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict, cast

from harness.data.registry import EvalProtocol
from harness.datasets import at_split, dataset_ids, resolve_all
from harness.distributed import compute_on, world
from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums, atomic_copy, atomic_write_json, check_output_file, sha256_file
from harness.metrics import mean
from harness.metrics.measures import MAX_DEPTH
from harness.paths import cache_root
from harness.provenance import environment
from harness.results.efficiency import measure, reset_peaks
from harness.results.leaderboard import rebuild
from harness.results.records import ResultRecord, read_record, record_paths, row_of_label, run_file_of, write_record
from harness.retrievers.base import Composition, Retriever, SearchContext, StageRun, Tuned, settings_taken
from harness.retrievers.names import look_in
from harness.retrievers.registry import RetrieverSpec, resolve_retriever
from harness.retrievers.spec import LoadOptions, ModelObjects
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.trec import AnyRun, RunArrays, answered, cut_run, read_run_arrays, write_run
from harness.version import __version__

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

RUN_FORMAT = 3  # bump when the way runs are cut, ordered or written changes
Log = Callable[[str], None]

__all__ = ["Runner", "corpus_stats", "dataset_fingerprint", "dataset_ids", "run"]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class DatasetFingerprint(TypedDict):
    id: str
    split: str
    path: str
    sha256: dict[str, str]  # file name -> content checksum
    opened_as: NotRequired[str]  # the name that opens the dataset again, where its id does not (files:)


class CorpusStats(TypedDict):
    documents: int
    empty_documents: int
    judged_documents_not_in_corpus: int


def dataset_fingerprint(ds: Dataset, checksums: Checksums = TRUSTED) -> DatasetFingerprint:
    out: DatasetFingerprint = {"id": ds.id, "split": ds.split, "path": str(ds.root),
                               "sha256": checksums.digests(ds.files())}
    opened_as = getattr(ds, "opened_as", None)
    if opened_as:
        out["opened_as"] = str(opened_as)
    return out


def corpus_stats(ds: Dataset) -> CorpusStats:
    """Validate the whole corpus with the harness reader: counts for the record. Remembered under the
    corpus checksum and the digest of the judged document ids (the missing-judged count depends on both)."""
    digest = ds.corpus_digest
    judged = ds.judgements().judged_documents()
    judged_digest = hashlib.sha256(json.dumps(sorted(judged)).encode()).hexdigest()[:16]
    memo = cache_root() / "corpus-stats" / f"{digest[:32]}-{judged_digest}.json"
    try:
        remembered: CorpusStats = json.loads(memo.read_text())
        return remembered
    except (OSError, json.JSONDecodeError):
        pass
    found: set[str] = set()
    docs = empty = 0
    for doc in ds.corpus():
        docs += 1
        empty += not (doc.title.strip() or doc.text.strip())
        if doc.doc_id in judged:
            found.add(doc.doc_id)
    if docs == 0:
        raise HarnessError(f"{ds.corpus_path}: the corpus is empty")
    stats: CorpusStats = {"documents": docs, "empty_documents": empty,
                          "judged_documents_not_in_corpus": len(judged - found)}
    try:
        atomic_write_json(memo, stats)
    except OSError:
        pass
    return stats


class Runner:
    """Holds loaded retrievers across datasets so a model is loaded once per run. ``declared``: the model objects
    the caller declared (``harness.retrievers.declared.DeclaredModels``), loaded by their names."""

    def __init__(self, metrics: Sequence[str] | None = None, output_dir: Path = Path("results"), *,
                 settings: EncodeSettings = REFERENCE, execution: Execution = DEFAULT_EXECUTION, force: bool = False,
                 depth: int | None = None, drop_self_hits: bool = False, log: Log = _stderr,
                 declared: ModelObjects | None = None):
        self.requested = list(metrics) if metrics else None  # None: each dataset's defaults
        if depth is not None and depth < 1:
            raise HarnessError(f"--depth must be at least 1, not {depth}")
        if depth is not None and depth > MAX_DEPTH:
            raise HarnessError(f"--depth must be at most {MAX_DEPTH:,} (what a search takes), not {depth}")
        self.depth = depth
        self.output_dir = Path(output_dir)
        self.settings = settings
        self.execution = execution
        compute_on(execution.device)  # under torchrun: the group's backend follows --device (gloo for cpu)
        self.force = force
        self.drop_self_hits = drop_self_hits  # --drop-self-hits: BEIR's identical-id rule where no protocol has it
        self.log = log
        self.checksums = Checksums(trust_memo=not force)  # --force trusts no remembered checksum
        self.options = LoadOptions(settings, execution, self.checksums, declared)
        self._loaded: dict[str, Retriever] = {}
        self._announced: set[str] = set()

    def retriever(self, spec: RetrieverSpec) -> Retriever:
        """The retriever object of ``spec`` under this runner's settings (models are found, settings and
        device checked; weights load only when something is encoded)."""
        if spec.name not in self._loaded:
            stages = [self.retriever(s) for s in spec.stages] if spec.stages else None
            self._loaded[spec.name] = spec.load_under(self.options, stages)
        return self._loaded[spec.name]

    def metrics_for(self, ds: Dataset) -> tuple[list[str], int]:
        """The metric names used on ``ds`` (requested, or its defaults), canonical, and the deepest cut-off."""
        parsed = [ds.judgements().measure(m) for m in (self.requested or ds.default_metrics)]
        names = list(dict.fromkeys(name for name, _ in parsed))
        deepest = max(k for _, k in parsed)
        if self.depth is not None and self.depth < deepest:
            raise HarnessError(f"--depth {self.depth} is below the deepest metric cut-off ({deepest})")
        return names, deepest

    def protocol(self, ds: Dataset) -> EvalProtocol:
        """The protocol a run on ``ds`` follows: the dataset's own, with BEIR's identical-id rule added where
        ``--drop-self-hits`` asks for it (a setting of its own: recorded, and stored apart)."""
        if self.drop_self_hits and not ds.protocol.drop_self_hits:
            return replace(ds.protocol, drop_self_hits=True)
        return ds.protocol

    def _announce(self, ds: Dataset) -> None:
        """Say once per dataset which rule removes hits, and why (its protocol or the option)."""
        if self.protocol(ds).drop_self_hits and ds.id not in self._announced:
            self._announced.add(ds.id)
            why = "its protocol" if ds.protocol.drop_self_hits else "--drop-self-hits"
            self.log(f"{ds.id}: BEIR's identical-id rule ({why}): a hit whose document id equals its query id is "
                     "removed (Pyserini's --remove-query); each record counts what it removed (removed_by_protocol)")

    def fingerprint(self, retriever: Retriever, ds: Dataset, depth: int) -> str:
        src = {"retriever": retriever.fingerprint(), "dataset": dataset_fingerprint(ds, self.checksums)["sha256"],
               "protocol": self.protocol(ds).to_dict(), "depth": depth, "run_format": RUN_FORMAT}
        tuning = self.tuning_dataset(retriever, ds)
        if tuning is not None:  # what it chose on another split depends on that split's topics and judgements
            src["tuning"] = {"split": tuning.split, "sha256": dataset_fingerprint(tuning, self.checksums)["sha256"]}
        return hashlib.sha256(json.dumps(src, sort_keys=True).encode()).hexdigest()

    def check_tuning(self, retriever: Retriever, ds: Dataset) -> None:
        """Refuse, before any work, a tuning split that ``ds`` lacks or a measure its judgements do not read, in
        ``retriever`` or any composition among its stages."""
        tuning = self.tuning_dataset(retriever, ds)
        if tuning is not None:
            metric = getattr(retriever, "params", {}).get("metric")
            if metric:
                _, cutoff = tuning.judgements().measure(str(metric))
                depth = self.standard_depth(ds)
                if cutoff > depth:
                    raise HarnessError(f"optimise's metric={metric} needs {cutoff} hits a query; the fused runs are "
                                       f"{depth} deep (--depth): choose a measure within them or a deeper --depth")
        for stage in getattr(retriever, "stages", None) or []:
            self.check_tuning(stage, ds)

    def check_trained_on(self, retriever: Retriever, ds: Dataset) -> None:
        """Refuse, before any work, a checkpoint fine-tuned on ``ds``'s own judgements (``harness finetune``
        records their checksum): its numbers there would score the queries it was trained on. Compared by
        content, so a copy of the folder is the same judgements; another split is another file."""
        for folder in _model_folders(retriever):
            try:
                meta = json.loads((folder / "harness_checkpoint.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(meta, dict) and meta.get("split") and meta.get("data_checksum"):
                refuse_trained_on(str(meta["data_checksum"]), ds, str(folder), self.checksums)

    def tuning_dataset(self, retriever: Retriever, ds: Dataset) -> Dataset | None:
        """The split of ``ds`` a composition tunes on (``optimise=``), None when it tunes on none. Tuning on
        the split it is evaluated on is refused: its numbers would be chosen on the queries they report."""
        split = retriever.tuning_split() if isinstance(retriever, Tuned) else None
        if split is None:
            return None
        if split == ds.split:
            other = "train" if split == "dev" else "dev"
            raise HarnessError(f"{ds.id} ({ds.split}): optimise={split} would choose the weights on the very queries "
                               f"they are evaluated on; name another split (e.g. optimise={other})")
        return at_split(ds, split, self.output_dir)

    def standard_depth(self, ds: Dataset) -> int:
        return self.depth or max(ds.protocol.depth, self.metrics_for(ds)[1])

    def paths(self, spec: RetrieverSpec, ds: Dataset, depth: int | None = None
              ) -> tuple[dict[str, Any], Path, Path]:
        """(non-reference settings, record path, run path) of ``spec`` on ``ds``; a run deeper or shallower
        than the dataset's standard depth (a fusion stage's ``hits``) is a setting of its own."""
        changed = self.retriever(spec).changed_settings()
        if depth is not None and depth != self.standard_depth(ds):
            changed = {**changed, "depth": depth}
        if self.protocol(ds) != ds.protocol:
            changed = {**changed, "drop_self_hits": True}
        return (changed, *record_paths(self.output_dir, ds.id, ds.split, spec.slug, changed))

    def run_one(self, spec: RetrieverSpec, ds: Dataset, depth: int | None = None) -> ResultRecord | None:
        """Reuse or compute one (retriever, dataset) result; None on a helper rank under torchrun. ``depth``
        overrides the dataset's standard depth (a composition's stages). A composition first runs or reuses
        each of its stages as the retriever it is (its own record and run file), then computes only itself."""
        names, _ = self.metrics_for(ds)
        self._announce(ds)
        changed, rec_path, run_path = self.paths(spec, ds, depth)
        depth = depth or self.standard_depth(ds)
        retriever = self.retriever(spec)
        fingerprint = self.fingerprint(retriever, ds, depth)
        old = _read_if_exists(rec_path)
        reusable = bool(old and not self.force and old.fingerprint == fingerprint and run_path.is_file())
        if old and reusable and not _run_matches(old, run_path):
            self.log(f"{ds.id} | {spec.name}: {run_path} is not the run file its record was computed from "
                     "(its content changed, or the record predates run digests); computing it again")
            reusable = False
        if old and reusable:
            if self.execution.latency:
                self.log(f"{ds.id} | {spec.name}: --latency measures nothing on a reused record (--force runs it "
                         "again, timing it)")
            if all(m in old.metrics for m in names):
                self.log(f"{ds.id} | {spec.name}: reused record and run file {run_path} (--force recomputes)")
                return old
            self.log(f"{ds.id} | {spec.name}: reused run file {run_path}; evaluating new metrics")
            every = list(dict.fromkeys([*old.metrics, *names]))  # a record keeps every metric it had
            old.reused_run = True
            return self._evaluate_and_write(ds, read_run_arrays(run_path), rec_path, old, every)
        if spec.stages and not self._run_stages(spec, cast(Composition, retriever), ds, depth):
            cast(Composition, retriever).help_index(ds)  # a helper rank: its share of index()'s encoding
            return None
        shown = ", ".join(f"{k}={v}" for k, v in changed.items())
        label = f"{ds.id} | {spec.name}" + (f" [{shown}]" if changed else "")
        queries = ds.queries()
        stats = corpus_stats(ds)
        reset_peaks()
        t0 = time.perf_counter()
        indexed = retriever.index(ds)
        t1 = time.perf_counter()
        self.log(f"{label}: {indexed.summary()}")
        _same_count(ds, "indexed", indexed.documents, stats["documents"])
        if world()[0] != 0:  # under torchrun the other ranks only help encoding; rank 0 searches and writes
            return None
        # as Pyserini's --remove-query: retrieve `depth` hits, then drop the query's own id
        context = SearchContext(ds)
        searched = retriever.search(queries, depth, context)
        if not searched.computed_elsewhere:  # a run file: its record says it was not searched here
            _same_count(ds, "searched", searched.documents, stats["documents"])
        protocol = self.protocol(ds)
        run, removed = _protocol_cut(searched.run, depth, protocol.drop_self_hits)
        if not answered(run):
            raise HarnessError(f"{ds.id} ({ds.split}) | {spec.name}: no document retrieved for any of the "
                               f"{len(queries)} queries of split {ds.split}; "
                               "nothing was written (an empty run scores nothing: check the corpus and the queries)")
        t2 = time.perf_counter()
        run = write_run(run_path, run, tag=spec.slug, score_format=retriever.score_format)  # as the file reads back
        provenance = dict(retriever.provenance(context))
        chosen = provenance.get("optimised")
        if isinstance(chosen, dict) and len({t["score"] for t in chosen["trials"]}) == 1:
            self.log(f"{label}: every weight tuple scores {chosen['score']:.4f} on {chosen['split']}: that split "
                     f"decides nothing; the weights are the last tuple tried, {chosen['weights']} (ranx's rule)")
        device = searched.device or self.execution.device
        record = ResultRecord(
            retriever=spec.name, dataset=ds.id, split=ds.split, metrics={}, per_query={}, fingerprint=fingerprint,
            run_file=run_path.name, run_sha256=sha256_file(run_path), settings=changed,
            documents_searched=searched.documents,
            retriever_spec=spec.to_dict(), retriever_fingerprint=dict(retriever.fingerprint()),
            protocol=protocol.to_dict(), removed_by_protocol=removed,
            dataset_provenance=dict(dataset_fingerprint(ds, self.checksums)), environment=environment(),
            device=device, harness_version=__version__,
            index=indexed.to_json(), corpus=dict(stats), retriever_provenance=provenance,
            timings={"index_s": round(t1 - t0, 3), "search_s": round(t2 - t1, 3),
                     **measure(indexed, len(queries), t1 - t0, searched.seconds, device, provenance,
                               searched.query_seconds, searched.query_timing)})
        if self.execution.latency and searched.query_seconds is None:
            self.log(f"{label}: --latency: this retriever times only its batch (no per-query times: the record "
                     "has no p50/p95)")
        return self._evaluate_and_write(ds, run, rec_path, record, names)

    def _run_stages(self, spec: RetrieverSpec, retriever: Composition, ds: Dataset, depth: int) -> bool:
        """Run or reuse the stages a composition reads, and hand it their records and runs (as written);
        False on a helper rank under torchrun."""
        stage_depth = retriever.stage_depth(depth)
        tuning = self.tuning_dataset(retriever, ds)
        helper = False  # under torchrun a helper rank takes part in every stage's encoding, then leaves
        for on in (ds, tuning):
            if on is None:
                continue
            stages = []
            for stage in spec.run_stages:
                record = self.run_one(stage, on, stage_depth)
                if record is None:
                    helper = True
                    continue
                _, _, run_path = self.paths(stage, on, stage_depth)
                if not _run_matches(record, run_path):
                    raise HarnessError(f"{run_path}: the run file changed while it was being read; rerun")
                stages.append(_stage_run(record, read_run_arrays(run_path)))
            if helper:
                continue
            if on is ds:
                retriever.use_stages(stages)
            elif isinstance(retriever, Tuned):
                retriever.use_tuning(stages, on.judgements())
        return not helper

    def _evaluate_and_write(self, ds: Dataset, run: AnyRun, rec_path: Path, record: ResultRecord,
                            names: list[str]) -> ResultRecord:
        per_query, extra = ds.judgements().evaluate(run, names)
        record.per_query = per_query
        record.metrics = {m: mean(v) for m, v in per_query.items()}
        record.first_hit_rank = extra.get("first_hit_rank")
        judged = per_query[names[0]]
        record.num_queries = len(judged)
        retrieved = answered(run)
        record.queries_answered = sum(1 for q in judged if q in retrieved)
        write_record(rec_path, record)
        shown = "  ".join(f"{m}={v:.4f}" for m, v in record.metrics.items())
        removed = sum(n for per_query in record.removed_by_protocol.values() for n in per_query.values())
        said = f"  ({removed} hits removed by the protocol)" if removed else ""
        unanswered = record.num_queries - record.queries_answered
        if unanswered:  # scored 0, as trec_eval -c scores them: said, not only kept in the record
            said += f"  ({unanswered} of {record.num_queries} queries without a hit, each scored 0)"
        self.log(f"{ds.id} | {record.label}: {shown}{said}")
        return record


def _stage_run(record: ResultRecord, run: RunArrays) -> StageRun:
    """A stage's result as a composition reads it, from its record (as written) and its run file."""
    return StageRun(record.retriever, record.fingerprint, record.run_file, record.metrics, record.documents_searched,
                    record.index.get("documents"), bool(record.retriever_provenance.get("computed_elsewhere")), run)


def _run_matches(record: ResultRecord, run_path: Path) -> bool:
    """Whether the run file is the one its record was computed from (the sha256 the record holds; a record
    older than the digest never matches). Otherwise it is computed again, never reused or fused."""
    return bool(record.run_sha256) and sha256_file(run_path) == record.run_sha256


def _same_count(ds: Dataset, what: str, got: int | None, expected: int) -> None:
    """Refuse a result computed on part of the corpus (or on something else)."""
    if got != expected:
        raise HarnessError(f"{ds.id}: {got if got is not None else 'an unknown number of'} documents were {what}, "
                           f"the corpus {ds.corpus_path} has {expected}; nothing was written for this run "
                           "(rerun with --force to rebuild the index or embeddings)")


def _protocol_cut(run: AnyRun, depth: int, drop_self_hits: bool) -> tuple[AnyRun, dict[str, dict[str, int]]]:
    """The first ``depth`` hits of each query in the order its run file will read back in
    (``harness.trec.in_score_order``), without the query's own id where the protocol says so; and what each
    rule removed, per query (``{"drop_self_hits": {qid: n}}``; no key for a rule that does not apply). A run
    as arrays is cut as arrays (:func:`harness.trec.cut_run`: the same hits)."""
    out, dropped = cut_run(run, depth, drop_self_hits)
    return out, ({"drop_self_hits": dropped} if drop_self_hits else {})


def _read_if_exists(path: Path) -> ResultRecord | None:
    if not path.is_file():
        return None
    try:
        return read_record(path)
    except HarnessError:
        return None


def check_writable(folder: Path, what: str) -> None:
    """Refuse before any work when ``folder`` cannot be written (read-only disk, permissions)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _write_probe(folder)
    except OSError as e:
        raise HarnessError(f"{folder}: the {what} is not writable ({e.strerror or e}); "
                           f"choose another with {'--output-dir' if what == 'output folder' else 'HARNESS_CACHE'}"
                           ) from None


def run(retrievers: Sequence[str], datasets: Sequence[str], metrics: Sequence[str] | None = None,
        output_dir: Path = Path("results"), *, suites: Sequence[str] = (), settings: EncodeSettings = REFERENCE,
        execution: Execution = DEFAULT_EXECUTION, force: bool = False, depth: int | None = None,
        split: str | None = None, drop_self_hits: bool = False, log: Log = _stderr,
        declared: ModelObjects | None = None, run_file: Path | None = None) -> list[ResultRecord]:
    """Evaluate every retriever on every dataset; returns the result records (also written to disk).

    ``metrics`` None uses each dataset's defaults (BEIR: ndcg@10 recall@100 recall@1000; ODQA:
    accuracy@1,5,20,100). ``settings`` apply to every dense retriever (BM25 has none). ``split`` None: each
    dataset's evaluation split. ``drop_self_hits`` applies BEIR's identical-id rule where a dataset's protocol
    does not (a folder, an ir_datasets id), as a setting of its own. ``declared`` holds the model objects the
    caller declared (``harness.retrievers.declared.DeclaredModels``): their names resolve and load through it.
    ``run_file``: a copy of the one run (one retriever on one dataset) written there too, checked first.
    """
    if run_file is not None:
        _check_run_file(Path(run_file), retrievers, datasets, suites)
    look_in(Path(output_dir))  # a name a table printed (content-named files and folders) is found again
    names, settings, depth, drop_self_hits = _rows(retrievers, Path(output_dir), settings, depth, drop_self_hits)
    specs = [resolve_retriever(r, declared) for r in names]
    ids = dataset_ids(datasets, suites)
    if not specs or not ids:
        raise HarnessError("name at least one retriever and one dataset (or --suite)")
    runner = Runner(metrics, output_dir, settings=settings, execution=execution, force=force, depth=depth,
                    drop_self_hits=drop_self_hits, log=log, declared=declared)
    check_writable(Path(output_dir), "output folder")
    check_writable(cache_root(), "cache")
    resolved = resolve_all(ids, split=split, output_dir=Path(output_dir))
    if run_file is not None:  # never over a file this run reads, or a record's
        check_output_file(Path(run_file), "--run-file", inputs=[f for ds in resolved for f in ds.files()])
    for ds in resolved:  # a bad metric or depth fails before any work
        runner.metrics_for(ds)
    for spec in specs:
        runner.retriever(spec)
        for ds in resolved:  # and so does a composition's tuning split or measure (optimise=), or a checkpoint
            runner.check_tuning(runner.retriever(spec), ds)  # fine-tuned on the split it would be evaluated on
            runner.check_trained_on(runner.retriever(spec), ds)
    _refuse_unused(settings, [runner.retriever(s) for s in specs], [s.name for s in specs])
    if drop_self_hits and all(ds.protocol.drop_self_hits for ds in resolved):
        ids = [ds.id for ds in resolved]
        raise HarnessError(f"--drop-self-hits changes nothing here: {', '.join(ids)} "
                           f"{'applies' if len(ids) == 1 else 'apply'} BEIR's identical-id rule by "
                           f"{'its' if len(ids) == 1 else 'their'} protocol already; drop the option")
    records: list[ResultRecord] = []
    try:
        for ds in resolved:
            for spec in specs:
                record = runner.run_one(spec, ds)
                if record is not None:
                    records.append(record)
    except BaseException:
        if world()[0] == 0:
            _rebuild_quietly(Path(output_dir), log)  # never hides the error that ended the run
        raise
    if world()[0] == 0:
        rebuild(output_dir)
        if run_file is not None and records:
            (record,) = records
            source = run_file_of(Path(output_dir), record)
            if not (Path(run_file).exists() and source.resolve() == Path(run_file).resolve()):
                atomic_copy(source, Path(run_file))
    return records


def _write_probe(folder: Path) -> None:
    """Create and remove a file in ``folder``: OSError where it cannot be written."""
    fd, probe = tempfile.mkstemp(prefix=".harness-probe-", dir=folder)
    os.close(fd)
    os.unlink(probe)


def refuse_trained_on(trained: str, ds: Dataset, what: str, checksums: Checksums = TRUSTED) -> None:
    """Refuse evaluating ``what`` (a checkpoint, or the checkpoints of a fine-tuning run) on ``ds`` when its
    judgements are those it was fine-tuned on (``trained``: their sha256): compared by content, so a copy of
    the folder is the same judgements and another split another file."""
    path = getattr(ds.judgements(), "path", None)
    if path is None or not Path(path).is_file() or checksums.sha256(Path(path)) != trained:
        return
    raise HarnessError(f"{what} was fine-tuned on the judgements of {ds.id} ({ds.split}: {path}); its numbers "
                       "there would score the queries it was trained on: evaluate it on another split or dataset")


def _model_folders(retriever: object) -> list[Path]:
    """The local model folders a retriever (and every stage of a composition) reads."""
    found = []
    files = getattr(retriever, "files", None)
    if isinstance(getattr(files, "path", None), Path):
        found.append(files.path)  # type: ignore[union-attr]
    for stage in getattr(retriever, "stages", None) or []:
        found += _model_folders(stage)
    return found


def _check_run_file(path: Path, retrievers: Sequence[str], datasets: Sequence[str], suites: Sequence[str]) -> None:
    """One file for one run: refused before anything runs where it would be ambiguous or unwritable."""
    if len(retrievers) != 1 or len(datasets) != 1 or suites:
        raise HarnessError("--run-file PATH names one run: give one --retriever and one --dataset (no --suite), "
                           "or leave it out and take each run from OUTPUT/<dataset>/<split>/<retriever>.trec")
    if path.is_dir():
        raise HarnessError(f"--run-file {path} is a folder; name a file, e.g. {path / 'run.trec'}")
    if path.parent.exists() and not path.parent.is_dir():
        raise HarnessError(f"--run-file {path}: {path.parent} is a file, not a folder; name a file in a folder")
    if not path.parent.is_dir():
        raise HarnessError(f"--run-file {path}: its folder {path.parent} does not exist; create it first")
    try:
        _write_probe(path.parent)
    except OSError as e:
        raise HarnessError(f"--run-file {path}: its folder {path.parent} is not writable ({e.strerror or e}); "
                           "name a file in a folder you can write") from None


def _rows(labels: Sequence[str], output_dir: Path, settings: EncodeSettings, depth: int | None,
          drop_self_hits: bool) -> tuple[list[str], EncodeSettings, int | None, bool]:
    """Retriever names as tables print them (``name [precision=bf16]``): the names, and the settings the
    labels carry (read from their records) merged with the options; labels of other settings than the
    options' are refused, never run under the wrong ones."""
    names, rows = [], []
    for label in labels:
        name, changed = row_of_label(label, output_dir)
        names.append(name)
        rows.append(changed)
    if not any(rows):
        return names, settings, depth, drop_self_hits
    if any(r != rows[0] for r in rows):
        raise HarnessError(f"{', '.join(labels)}: rows of different settings; name them in separate commands")
    row = dict(rows[0])
    if row.pop("drop_self_hits", False):
        drop_self_hits = True
    if "depth" in row:
        depth = depth or int(row.pop("depth"))
    encode = {**settings.to_dict(), **row}
    if settings != REFERENCE and EncodeSettings.from_dict(encode) != settings:
        raise HarnessError(f"{labels[0]!r} was computed with {row}, the options ask for {settings.changed()}; "
                           "give one or the other")
    return names, EncodeSettings.from_dict(encode), depth, drop_self_hits


def _refuse_unused(settings: EncodeSettings, retrievers: Sequence[Retriever], names: Sequence[str]) -> None:
    """Refuse a setting that no retriever of the run reads (``--backend`` with BM25 alone): it would change
    nothing, silently, and the record would not say so."""
    taken = set().union(*(settings_taken(r) for r in retrievers))
    unused = {k: v for k, v in settings.changed().items() if k not in taken}
    if unused:
        flags = ", ".join(f"--{'index' if k == 'index' else k.replace('_', '-')} {v}" for k, v in unused.items())
        raise HarnessError(f"{flags} applies to no retriever of this run ({', '.join(names)} "
                           f"{'computes' if len(names) == 1 else 'compute'} the same without it); drop it, or name "
                           "a retriever it applies to (a dense model)")


def _rebuild_quietly(output_dir: Path, log: Log) -> None:
    try:
        rebuild(output_dir)
    except (HarnessError, OSError) as e:
        log(f"harness: warning: the leaderboard was not rebuilt ({e})")
