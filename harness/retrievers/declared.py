"""A user's own model object as a retriever (``harness.api.evaluate(model, datasets, name=..., revision=...)``).

The object follows BEIR's convention (``encode_queries(texts, batch_size)`` and ``encode_corpus(docs,
batch_size)`` with docs as ``{"title", "text"}`` dicts) or the sentence-transformers / MTEB one
(``encode(texts, prompt_type="query" | "document", ...)``). It runs through the same corpus-encoding loop,
embedding store, searcher, records, leaderboard, check and diff as any dense retriever.

The harness cannot read such a model's weights, so its identity is what the user declares, the name and the
revision, checked by what the object computes: a probe (``harness.retrievers.probe``: fixed texts encoded,
rounded to the model's precision, hashed) whose first 8 hex digits end the row's name
(``name@revision#1a2b3c4d``). The probe keys the embedding cache and the record, so a model changed under the
same revision is another row (said in one line), never the first one's record; a different revision is
another computation too. Every batch the object returns is checked (``probe.checked_vectors``): numbers, one
row per text, no zero or constant vectors.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.data.corpus import Doc, doc_text
from harness.data.dataset import Dataset
from harness.embeddings import EmbeddingStore
from harness.errors import HarnessError
from harness.paths import cache_root
from harness.retrievers.config import EncoderConfig
from harness.retrievers.dense import EMBED_VERSION, DenseRetriever
from harness.retrievers.probe import checked_vectors, low_precision, probe
from harness.retrievers.spec import RETRIEVERS, RetrieverSpec
from harness.searchers import searcher_for
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.version import __version__

#: the model objects of this process, by retriever name (``name@revision``)
DECLARED: dict[str, Any] = {}
#: settings that apply to a declared model (how its vectors are stored and searched); the others belong to
#: a recipe the harness runs itself
APPLICABLE = {"index", "embed_dtype"}
#: BEIR's model convention: encode_queries(texts, batch_size) and encode_corpus(docs, batch_size)
TWO_METHODS = "encode_queries+encode_corpus"


def interface(model: Any) -> str:
    """"encode_queries+encode_corpus" (BEIR's convention), "mteb" (MTEB's encoder protocol: ``encode(inputs,
    *, task_metadata, hf_split, hf_subset, prompt_type)`` over a DataLoader, or MTEB 1.x's ``encode(sentences,
    *, task_name, prompt_type)``) or "encode" (sentence-transformers')."""
    if callable(getattr(model, "encode_queries", None)) and callable(getattr(model, "encode_corpus", None)):
        return TWO_METHODS
    if callable(getattr(model, "encode", None)):
        params = inspect.signature(model.encode).parameters
        return "mteb" if "task_metadata" in params or "task_name" in params else "encode"
    raise HarnessError(f"{type(model).__name__} has neither encode_queries/encode_corpus (BEIR's convention) nor "
                       "encode (sentence-transformers' and MTEB's): the harness cannot call it")


def declare(model: Any, name: str, revision: str, *, batch_size: int = 128) -> RetrieverSpec:
    """Register ``model`` as the retriever ``name@revision`` for this process; returns its spec."""
    if not isinstance(name, str) or not name.strip() or any(c in name for c in "()/,;:@# \t"):
        raise HarnessError(f"name {name!r}: give the model a plain name (letters, digits, - _ .), e.g. my-encoder")
    if not isinstance(revision, str) or not revision.strip() or any(c.isspace() or c == "#" for c in revision):
        raise HarnessError(f"{name}: give a revision (a version, a commit, a date): it keys the cache and the "
                           "record, since the harness cannot read this model's weights to tell versions apart")
    kind = interface(model)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise HarnessError(f"batch_size must be a positive integer, not {batch_size!r}")
    encoder = ModelEncoder(model, kind, batch_size)
    encoder.dataset = ("beir/scifact", "test")  # MTEB's protocol is told a task; the probe's is SciFact's
    checked = probe(encoder.encode_raw)
    full = f"{name}@{revision}#{checked['sha256'][:8]}"
    spec = RetrieverSpec(full, "declared", f"{type(model).__name__} declared by the user ({kind} interface)",
                         model=name, revision=revision,
                         params={"batch_size": batch_size, "interface": kind, "probe": checked})
    if full in RETRIEVERS:
        RETRIEVERS.remove(full)
    RETRIEVERS.register(full, spec)
    DECLARED[full] = model
    return spec


class ModelEncoder:
    """A ``TextEncoder`` over the user's object: queries as strings, documents as (title, text) pairs."""

    def __init__(self, model: Any, kind: str, batch_size: int):
        self.model, self.kind, self.batch_size = model, kind, batch_size
        self.dim: int = 0
        accepts = inspect.signature(model.encode).parameters if kind != TWO_METHODS else {}
        self._prompt_type = "prompt_type" in accepts or any(p.kind is p.VAR_KEYWORD for p in accepts.values())
        self._v2 = "task_metadata" in accepts
        #: the dataset being encoded (id, split): MTEB's protocol is told its task
        self.dataset: tuple[str, str] | None = None

    def _mteb(self, strings: list[str], kind: str) -> Any:
        """MTEB's encoder protocol, told the MTEB task of the dataset (BEIR's datasets have one)."""
        from harness.results.exchange import MTEB_TASKS

        dataset_id, split = self.dataset or ("", "test")
        task_name = MTEB_TASKS.get(dataset_id)
        if task_name is None:
            raise HarnessError(f"{type(self.model).__name__} follows MTEB's encoder protocol, which needs an MTEB "
                               f"task; {dataset_id or 'this dataset'} has none (MTEB's BEIR tasks do): wrap it with "
                               "encode_queries/encode_corpus instead")
        try:
            import mteb
            from mteb.types import PromptType
        except ImportError:
            raise HarnessError(f"{type(self.model).__name__} follows MTEB's encoder protocol: install mteb") from None
        prompt_type = PromptType.query if kind == "query" else PromptType.document
        if not self._v2:  # MTEB 1.x: a list of sentences and the task's name
            return self.model.encode(strings, task_name=task_name, prompt_type=prompt_type, batch_size=self.batch_size)
        from datasets import Dataset as HFDataset  # what MTEB's encoders read their inputs' features from
        from torch.utils.data import DataLoader

        rows: Any = HFDataset.from_dict({"text": strings})
        loader: DataLoader[Any] = DataLoader(rows, batch_size=self.batch_size, shuffle=False,
                                             collate_fn=lambda batch: {"text": [b["text"] for b in batch]})
        return self.model.encode(loader, task_metadata=mteb.get_task(task_name).metadata, hf_split=split,
                                 hf_subset="default", prompt_type=prompt_type, batch_size=self.batch_size)

    def method(self, kind: str) -> str:
        """The object's method that encodes ``kind`` texts, as error messages name it."""
        name = ("encode_queries" if kind == "query" else "encode_corpus") if self.kind == TWO_METHODS else "encode"
        return f"{type(self.model).__name__}.{name}"

    def encode_raw(self, texts: Sequence[Any], kind: str = "doc") -> tuple[np.ndarray, bool]:
        """Checked vectors (``probe.checked_vectors``) and whether the object returned 16-bit floats."""
        items = list(texts)
        strings = items if kind == "query" else [doc_text(Doc("", t, x)) for t, x in items]
        if self.kind == TWO_METHODS:
            if kind == "query":
                out = self.model.encode_queries(items, batch_size=self.batch_size)
            else:
                out = self.model.encode_corpus([{"title": t, "text": x} for t, x in items], batch_size=self.batch_size)
        elif self.kind == "mteb":
            out = self._mteb(strings, kind)
        else:
            extra = {"prompt_type": "query" if kind == "query" else "document"} if self._prompt_type else {}
            out = self.model.encode(strings, batch_size=self.batch_size, **extra)
        return checked_vectors(out, self.method(kind), strings, kind), low_precision(out)

    def encode(self, texts: Sequence[Any], kind: str = "doc", desc: str | None = None, *,
               prefix: str | None = None) -> np.ndarray:
        vectors, _ = self.encode_raw(texts, kind)
        if self.dim and vectors.shape[1] != self.dim:
            raise HarnessError(f"{self.method(kind)} returned {vectors.shape[1]}-dimensional vectors (row 0) after "
                               f"{self.dim}-dimensional ones")
        self.dim = vectors.shape[1]
        return vectors


class DeclaredModelRetriever(DenseRetriever):
    """Exact (or ``--index``) inner-product search over a declared model's vectors."""

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION):
        if spec.name not in DECLARED:
            raise HarnessError(f"{spec.name}: no model object of that name in this process; declare it with "
                               "harness.api.evaluate(model, datasets, name=..., revision=...)")
        other = set(settings.changed()) - APPLICABLE
        if other:
            raise HarnessError(f"{spec.name} is a model object that computes its own vectors; "
                               f"{', '.join('--' + k.replace('_', '-') for k in sorted(other))} does not apply to it")
        self.spec, self.settings, self.execution = spec, settings, execution
        self.model = DECLARED[spec.name]
        self.config = self.model_config = EncoderConfig(text_pair=True, source="declared by the user")
        self.query_instruction = ""
        self.device = "cpu"
        self.shard_size = execution.shard_size
        self.embed_dtype = settings.embed_dtype
        self.searcher = searcher_for(settings.index, "cpu")
        self.searched_documents: int | None = None
        self._store: EmbeddingStore | None = None
        self._adapter = ModelEncoder(self.model, str(spec.params["interface"]), int(spec.params["batch_size"]))

    @property
    def encoder(self) -> Any:
        return self._adapter

    @property
    def query_encoder(self) -> Any:
        return self._adapter

    def doc_input(self, doc: Doc) -> tuple[str, str]:
        return (doc.title, doc.text)

    def index(self, dataset: Dataset) -> dict:
        self._adapter.dataset = (dataset.id, dataset.split)
        return super().index(dataset)

    def changed_settings(self) -> dict:
        return self.settings.changed()

    def settings_taken(self) -> set[str]:
        return set(APPLICABLE)

    def fingerprint(self) -> dict:
        search = {"search": self.searcher.fingerprint()} if self.searcher.approximate else {}
        return {"kind": "declared", "name": self.spec.model, "revision": self.spec.revision,
                "interface": self.spec.params["interface"], "batch_size": self.spec.params["batch_size"],
                "probe": self.spec.params["probe"]["sha256"], "embed_dtype": self.embed_dtype,
                "embed_version": EMBED_VERSION, "text_rule": "(title, text) as the model reads them", **search}

    def _key(self, what: str, checksum: str) -> dict:
        # the batch size groups texts into the object's batches: float rounding, but the object's own choice
        return {"v": EMBED_VERSION, "declared": self.spec.model, "revision": self.spec.revision,
                "interface": self.spec.params["interface"], "batch_size": self.spec.params["batch_size"],
                "probe": self.spec.params["probe"]["sha256"], "dtype": self.embed_dtype, "what": what,
                "checksum": checksum}

    @property
    def computed_with(self) -> dict:
        return {"declared": self.spec.name, "model_class": _qualname(self.model), "harness": __version__}

    def corpus_store(self, dataset: Dataset) -> EmbeddingStore:
        return EmbeddingStore(cache_root() / "embeddings", self._key("corpus", dataset.corpus_digest))

    def _check_resources(self, dataset: Dataset, store: EmbeddingStore) -> None:
        return None  # the model's memory is the user's; the store's disk is checked as it is written

    def provenance(self) -> dict:
        return {"declared_by_user": True, "content_checked": False, "probe": self.spec.params["probe"],
                "name": self.spec.model, "revision": self.spec.revision, "model_class": _qualname(self.model),
                "interface": self.spec.params["interface"], "batch_size": self.spec.params["batch_size"],
                "search": self.searcher.describe(), "embed_dtype": self.embed_dtype, "device": None,
                "harness": __version__}


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
