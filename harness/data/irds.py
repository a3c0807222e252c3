"""Any ir_datasets collection as a dataset: ``irds:<id>`` (one with docs, queries and qrels), read through
ir_datasets' own download and cache, written once into the harness's cache in BEIR's layout (the corpus once
per document collection, topics and graded qrels per id), so that every retriever, the digests, the counts
and the records treat it like any other folder.

ir_datasets names splits in the id (``beir/scifact/test``, ``msmarco-passage/dev/small``); ``--split S`` on
``irds:<id>`` reads ``<id>/S``. The split recorded is S, or the id's last part when it names one (train,
dev, test, validation), else ``test``.

The export is sealed by a manifest (counts, the ir_datasets version, the fields read); an unsealed one is
written again from the start. Nothing is reused by path alone: the exported files are hashed by content like
every dataset file (``harness.io.cached_sha256``) and the records carry those digests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from harness.data.beir import BeirDataset
from harness.data.registry import EvalProtocol
from harness.errors import HarnessError

#: the id prefix of any ir_datasets id (owned by ``harness.datasets.IrdsSource``)
PREFIX = "irds:"
SPLIT_NAMES = ("train", "dev", "test", "validation", "eval")
MANIFEST = ".irds-export.json"
FORMAT = "harness-irds-export/1"


class Export(NamedTuple):
    """Where an id's export lies: the corpus.jsonl of its document collection (shared by every id of that
    collection) and the folder with its queries.jsonl and qrels/<split>.tsv."""

    corpus: Path
    topics: Path


def _module() -> Any:
    try:
        import ir_datasets
    except ImportError:
        raise HarnessError(f"{PREFIX} ids need the ir_datasets package (pip install ir_datasets)") from None
    return ir_datasets


def home() -> str:
    """Where ir_datasets keeps its downloads (``IR_DATASETS_HOME``, default ``~/.ir_datasets``)."""
    try:
        return str(_module().util.home_path())
    except Exception:  # an old ir_datasets: its documented default
        return os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")


def resolve_id(irds_id: str, split: str | None) -> tuple[str, str]:
    """(the ir_datasets id to load, the split to record) for ``irds:<irds_id>`` with ``--split``."""
    ir_datasets = _module()
    if split is not None:
        candidate = f"{irds_id}/{split}"
        if _exists(ir_datasets, candidate):
            return candidate, split
        if irds_id.rsplit("/", 1)[-1] == split and _exists(ir_datasets, irds_id):
            return irds_id, split
        raise HarnessError(f"ir_datasets has no {candidate}; name the split in the id ({PREFIX}<id>/<split>) or "
                           "see https://ir-datasets.com for the ids")
    if not _exists(ir_datasets, irds_id):
        raise HarnessError(f"ir_datasets has no dataset {irds_id!r} (ids: https://ir-datasets.com)")
    last = irds_id.rsplit("/", 1)[-1]
    return irds_id, last if last in SPLIT_NAMES else "test"


def _exists(ir_datasets: Any, irds_id: str) -> bool:
    try:
        ir_datasets.load(irds_id)
    except KeyError:
        return False
    return True


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") + "-" + hashlib.sha256(text.encode()).hexdigest()[:8]


def _unavailable(irds_id: str, what: str, error: BaseException) -> HarnessError:
    return HarnessError(f"{PREFIX}{irds_id}: ir_datasets could not provide its {what} ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:200] if str(error) else 'no detail'}); offline, put its files "
                        f"where ir_datasets looks for them ({home()}, or IR_DATASETS_HOME), or run once where "
                        "there is internet")


def export(irds_id: str, split: str, root: Path) -> Export:
    """The id's files in BEIR's layout (:class:`Export`), written under ``root`` when not sealed there yet."""
    ir_datasets = _module()
    dataset = ir_datasets.load(irds_id)
    missing = [what for what, has in (("documents", dataset.has_docs()), ("queries", dataset.has_queries()),
                                      ("relevance judgements (qrels)", dataset.has_qrels())) if not has]
    if missing:
        raise HarnessError(f"{PREFIX}{irds_id} has no {' and no '.join(missing)}; `harness run` needs a dataset with "
                           "documents, queries and qrels (https://ir-datasets.com lists what each id provides)")
    parent = ir_datasets.docs_parent_id(irds_id) or irds_id
    corpus_dir = root / _slug(parent)
    topics_dir = corpus_dir / "topics" / _slug(irds_id)
    # an export is reused only as written by this ir_datasets version (its dataset definitions may change)
    version = str(ir_datasets.__version__)
    with _network_as_configured():
        _once(corpus_dir, lambda staging: _write_corpus(dataset, irds_id, staging),
              {"docs_of": parent, "ir_datasets": version})
        _once(topics_dir, lambda staging: _write_topics(dataset, irds_id, split, staging),
              {"id": irds_id, "split": split, "ir_datasets": version})
    return Export(corpus_dir / "corpus.jsonl", topics_dir)


@contextlib.contextmanager
def _network_as_configured() -> Iterator[None]:
    """Under HARNESS_OFFLINE=1 ir_datasets may read what it has on disk but opens no connection: its
    downloaders refuse (and the harness says what is missing and where ir_datasets looks)."""
    from harness.paths import offline

    if not offline():
        yield
        return
    from ir_datasets.util import download

    classes = [c for c in (getattr(download, n, None) for n in ("RequestsDownload", "GoogleDriveDownload",
                                                                 "GoogleCloudBucketStream")) if c is not None]
    saved = [(c, c.__dict__["stream"]) for c in classes if "stream" in c.__dict__]

    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError(f"HARNESS_OFFLINE=1: not downloading {getattr(self, 'url', '') or self!r}")

    for cls, _ in saved:
        cls.stream = refuse
    try:
        yield
    finally:
        for cls, original in saved:
            cls.stream = original


def _once(target: Path, write: Callable[[Path], dict[str, Any]], identity: dict[str, str]) -> None:
    """Run ``write(staging)`` and move the staging folder to ``target`` unless a sealed export is there."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        manifest = target / MANIFEST
        if manifest.is_file():
            try:
                sealed = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                sealed = {}
            if isinstance(sealed, dict) and sealed.get("format") == FORMAT and \
                    all(sealed.get(k) == v for k, v in identity.items()):
                return
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            counts = write(staging)
            (staging / MANIFEST).write_text(json.dumps({"format": FORMAT, **identity, **counts}, indent=2))
            # a sealed folder is replaced whole; the topics folder inside a corpus folder is kept
            kept = target / "topics"
            if kept.is_dir() and not (staging / "topics").exists():
                kept.rename(staging / "topics")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def _text_fields(record: Any, skip: tuple[str, ...]) -> str:
    """A record's text: its ``text`` field, else ``body``, else ir_datasets' default_text()."""
    for name in ("text", "body"):
        value = getattr(record, name, None)
        if isinstance(value, str):
            return value
    default = getattr(record, "default_text", None)
    if callable(default):
        return str(default())
    return " ".join(str(getattr(record, f)) for f in record._fields
                    if f not in skip and isinstance(getattr(record, f), str))


def _docs(dataset: Any, irds_id: str) -> Iterator[dict[str, str]]:
    try:
        for doc in dataset.docs_iter():
            title = getattr(doc, "title", "")
            yield {"_id": str(doc.doc_id), "title": title if isinstance(title, str) else "",
                   "text": _text_fields(doc, ("doc_id", "title"))}
    except HarnessError:
        raise
    except Exception as e:  # ir_datasets' download or parse error, of any type
        raise _unavailable(irds_id, "documents", e) from None


def _write_corpus(dataset: Any, irds_id: str, staging: Path) -> dict[str, Any]:
    n = 0
    with open(staging / "corpus.jsonl", "w", encoding="utf-8") as f:
        for doc in _docs(dataset, irds_id):
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
            n += 1
    if n == 0:
        raise HarnessError(f"{PREFIX}{irds_id}: ir_datasets gave no documents")
    return {"documents": n, "fields": list(dataset.docs_cls()._fields)}


def _write_topics(dataset: Any, irds_id: str, split: str, staging: Path) -> dict[str, Any]:
    try:
        queries = [(str(q.query_id), _text_fields(q, ("query_id",))) for q in dataset.queries_iter()]
        qrels = [(str(r.query_id), str(r.doc_id), int(r.relevance)) for r in dataset.qrels_iter()]
    except Exception as e:
        raise _unavailable(irds_id, "queries or qrels", e) from None
    with open(staging / "queries.jsonl", "w", encoding="utf-8") as f:
        for qid, text in queries:
            f.write(json.dumps({"_id": qid, "text": text}, ensure_ascii=False) + "\n")
    (staging / "qrels").mkdir()
    with open(staging / "qrels" / f"{split}.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qid, did, grade in qrels:
            f.write(f"{qid}\t{did}\t{grade}\n")
    return {"queries": len(queries), "qrels": len(qrels), "grades": dict(sorted(
        (str(k), str(v)) for k, v in (dataset.qrels_defs() or {}).items()))}


def open_dataset(dataset_id: str, irds_id: str, split: str | None, *, drop_self_hits: bool | None = None,
                 metrics: tuple[str, ...] = (), protocol: EvalProtocol | None = None) -> BeirDataset:
    """The dataset of an ir_datasets id (exported on first use): BEIR's readers over the export, whose corpus
    is the collection's one file. ``dataset_id`` is how records name it (``irds:<id>`` or a registered id)."""
    from dataclasses import replace

    from harness.paths import cache_root

    load_id, recorded = resolve_id(irds_id, split)
    files = export(load_id, recorded, cache_root() / "irds")
    if protocol is None:
        # BEIR's own collections keep BEIR's self-hit rule; elsewhere query and document ids are unrelated
        protocol = EvalProtocol(split=recorded, drop_self_hits=irds_id.startswith("beir/")
                                if drop_self_hits is None else drop_self_hits)
    else:
        protocol = replace(protocol, split=recorded)
    ds = BeirDataset.folder(dataset_id, files.topics, protocol, corpus=files.corpus)
    if metrics:
        ds.default_metrics = metrics
    ds.check_layout()
    return ds


def exported(irds_id: str) -> Path | None:
    """The folder of an id's sealed topics export (no download needed to open it), or None; asks
    ir_datasets nothing."""
    from harness.paths import cache_root

    return next((p for p in (cache_root() / "irds").glob(f"*/topics/{_slug(irds_id)}") if (p / MANIFEST).is_file()),
                None)
