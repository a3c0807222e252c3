"""BM25 with Lucene through pyserini, as Pyserini's BEIR reproductions (``bm25-flat``, ``bm25-multifield``).

Indexing runs Anserini's ``IndexCollection`` on the dataset's own ``corpus.jsonl`` with
``BeirFlatCollection`` (contents = title + " " + text) or ``BeirMultifieldCollection`` (title and text
as fields), the settings of Pyserini's prebuilt BEIR indexes. Search is ``LuceneSearcher`` with
BM25(k1, b). Scores are written as Pyserini writes them (six decimals), so run files match its own.
The JVM runs in a worker process (``harness.retrievers.lucene_worker``), never beside torch.

Corpora that are not a BEIR ``corpus.jsonl`` (open-domain QA passage files) are streamed from
``dataset.corpus()`` into a ``JsonCollection`` folder in the cache and indexed from there, with the contents
Pyserini's ``wikipedia-dpr`` index uses: ``title + "\n" + text`` (bm25), or ``text`` with the title as its
own field (bm25-multifield).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from harness.data.beir import BeirDataset
from harness.errors import HarnessError
from harness.io import atomic_write_json, cached_sha256
from harness.paths import cache_root
from harness.retrievers.registry import RetrieverSpec
from harness.trec import PYSERINI_SCORE_FORMAT, Run

INDEX_MARK = "harness-index.json"


class BM25Retriever:
    score_format = PYSERINI_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, *, threads: int | None = None, **_: object):
        self.spec = spec
        self.k1 = float(spec.params["k1"])
        self.b = float(spec.params["b"])
        self.collection = spec.params["collection"]
        self.fields = spec.params.get("fields")
        self.threads = threads or max(1, os.cpu_count() or 1)
        self.jvm_info: dict = {}
        self.index_dir: Path | None = None

    def index(self, dataset: BeirDataset) -> dict:
        start = time.perf_counter()
        digest = cached_sha256(dataset.corpus_path)
        name = self.collection if _is_beir(dataset) else f"JsonCollection-{'multifield' if self.fields else 'flat'}"
        target = cache_root() / "indexes" / "lucene" / f"{name}-{digest[:20]}"
        self.index_dir = target
        what = "reused"
        if not (target / INDEX_MARK).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(target) + ".lock"):
                if not (target / INDEX_MARK).is_file():
                    self._build(dataset, target, digest)
                    what = "built"
        return {"index": what, "path": str(target), "seconds": time.perf_counter() - start}

    def _build(self, dataset: BeirDataset, target: Path, digest: str) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        try:
            source = staging / "input"
            source.mkdir()
            collection = self.collection
            if _is_beir(dataset):
                # the collection reads every file of its input folder: give it the corpus alone
                os.symlink(dataset.corpus_path.resolve(), source / "corpus.jsonl")
            else:
                collection = "JsonCollection"
                _write_json_collection(dataset, source, multifield=bool(self.fields))
            args = ["-collection", collection, "-input", str(source), "-index", str(staging / "index"),
                    "-generator", "DefaultLuceneDocumentGenerator", "-threads", "1",
                    "-storePositions", "-storeDocvectors", "-storeRaw"]
            if self.fields:
                args += ["-fields", *[f for f in self.fields if f != "contents"]]
            self.jvm_info = _worker({"op": "index", "args": args}, staging)
            atomic_write_json(staging / "index" / INDEX_MARK, {"collection": collection, "corpus_sha256": digest,
                                                               "args": args[:2] + args[6:]})
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "index", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def search(self, queries: Mapping[str, str], k: int) -> Run:
        if self.index_dir is None:
            raise RuntimeError("index() must run before search()")
        with tempfile.TemporaryDirectory(prefix="harness-bm25-") as tmp:
            qfile, out = Path(tmp) / "queries.jsonl", Path(tmp) / "hits.tsv"
            with open(qfile, "w", encoding="utf-8") as f:
                for qid, text in queries.items():
                    f.write(json.dumps({"id": qid, "text": text}, ensure_ascii=False) + "\n")
            self.jvm_info = _worker({"op": "search", "index": str(self.index_dir), "k1": self.k1, "b": self.b,
                                     "fields": self.fields, "k": k, "threads": self.threads,
                                     "queries": str(qfile), "output": str(out)}, Path(tmp))
            run: Run = {q: {} for q in queries}
            with open(out, encoding="utf-8") as f:
                for line in f:
                    qid, doc, score = line.rstrip("\n").split("\t")
                    run[qid][doc] = float(score)
        return run

    def provenance(self) -> dict:
        return {"engine": "Lucene (Anserini) via pyserini", "k1": self.k1, "b": self.b,
                "collection": self.collection, "fields": self.fields, "index": str(self.index_dir),
                **self.jvm_info, "pyserini": _version("pyserini"), "device": "cpu (JVM)", "threads": self.threads}


def _worker(request: dict, workdir: Path) -> dict:
    """Run one request in a fresh ``lucene_worker`` process; its JVM chatter is shown only on failure."""
    req = workdir / f"request-{request['op']}.json"
    req.write_text(json.dumps(request), encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "harness.retrievers.lucene_worker", str(req)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        reason = next((ln for ln in reversed(lines) if ln.startswith("lucene worker failed")),
                      lines[-1] if lines else f"exit status {proc.returncode}")
        raise HarnessError(f"BM25 ({request['op']}) failed: {reason}")
    return json.loads(req.with_suffix(".done.json").read_text(encoding="utf-8"))


def _is_beir(dataset) -> bool:
    return getattr(dataset, "kind", "beir") == "beir"


def _write_json_collection(dataset, folder: Path, *, multifield: bool, per_file: int = 1_000_000) -> None:
    """Stream the corpus into JsonCollection files (``{"id", "contents"[, "title"]}`` per line)."""
    import json

    out, n = None, 0
    try:
        for doc in dataset.corpus():
            if n % per_file == 0:
                if out is not None:
                    out.close()
                out = open(folder / f"docs{n // per_file:05d}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
            assert out is not None
            obj = ({"id": doc.doc_id, "contents": doc.text, "title": doc.title} if multifield
                   else {"id": doc.doc_id, "contents": f"{doc.title}\n{doc.text}" if doc.title else doc.text})
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
            n += 1
    finally:
        if out is not None:
            out.close()


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None
