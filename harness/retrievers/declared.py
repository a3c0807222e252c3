"""A user's own model object as a retriever (``harness.api.evaluate(model, datasets, name=..., revision=...)``).

The object follows one of the protocols of ``harness.retrievers.model_protocols`` (BEIR's
``encode_queries``/``encode_corpus``, MTEB's encoder protocol, sentence-transformers' ``encode``). It runs
through the same corpus-encoding loop, embedding store, searcher, records, leaderboard, check and diff as any
dense retriever (``harness.retrievers.vectors``): the object is the encoder side.

The harness cannot read such a model's weights, so its identity is what the user declares, the name and the
revision, checked by what the object computes: a probe (``harness.retrievers.probe``: fixed texts encoded,
rounded to the model's precision, hashed) whose first 8 hex digits end the row's name
(``name@revision#1a2b3c4d``). The probe keys the embedding cache and the record, so a model changed under the
same revision in a way the probe's texts show is another row (said in one line), never the first one's
record; a different revision is another computation too. A change the probe does not show keeps the key, so
``--force`` does not trust this store: it encodes the corpus again. Every batch the object returns is
checked (``probe.checked_vectors``): numbers, one row per text, no zero or constant vectors.

The declared objects belong to a :class:`DeclaredModels` the caller holds and hands to the runner, which
resolves and loads those names through it: nothing is left in the process for another caller to find.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from harness.data.corpus import Doc, doc_text
from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.retrievers.base import SearchContext, Text
from harness.retrievers.model_protocols import MODEL_PROTOCOLS, QUERY, ModelProtocol, protocol_of
from harness.retrievers.probe import PROBE_DOCS, PROBE_QUERIES, checked_vectors, low_precision, probe
from harness.retrievers.spec import RetrieverSpec
from harness.retrievers.vectors import EMBED_VERSION, CorpusVectors, VectorRetriever
from harness.searchers import searcher_for
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.version import __version__

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.embeddings import EmbeddingStore

#: settings that apply to a declared model (how its vectors are stored and searched); the others belong to
#: a recipe the harness runs itself
APPLICABLE = {"index", "embed_dtype"}
#: the dataset a probe is encoded for (MTEB's protocol is told a task: SciFact's)
PROBE_DATASET = ("beir/scifact", "test")


class DeclaredModels:
    """The model objects a caller declared, by row name (``name@revision#probe``), with their specs. The caller
    holds it and hands it to the runner (``harness.runner.run(..., declared=)``)."""

    def __init__(self) -> None:
        self._declared: dict[str, tuple[RetrieverSpec, Any]] = {}

    def declare(self, model: Any, name: str, revision: str, *, batch_size: int = 128) -> RetrieverSpec:
        """Declare ``model`` as the retriever ``name@revision#<probe>``; returns its spec."""
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "()/,;:@# \t"):
            raise HarnessError(f"name {name!r}: give the model a plain name (letters, digits, - _ .), e.g. "
                               "my-encoder")
        if not isinstance(revision, str) or not revision.strip() or any(c.isspace() or c == "#" for c in revision):
            raise HarnessError(f"{name}: give a revision (a version, a commit, a date): it keys the cache and the "
                               "record, since the harness cannot read this model's weights to tell versions apart")
        protocol = protocol_of(model)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise HarnessError(f"batch_size must be a positive integer, not {batch_size!r}")
        calls = ModelCalls(model, protocol, batch_size)
        try:
            checked = probe(lambda texts, kind: calls.encode_raw(texts, kind, *PROBE_DATASET))
        except HarnessError:
            raise
        except Exception as e:  # the model's own failure on the probe's texts: named, in one line
            words = len(PROBE_DOCS[-1][1].split())
            raise HarnessError(f"{name}: {type(e).__name__} while encoding the identity probe ({len(PROBE_QUERIES)} "
                               f"queries, {len(PROBE_DOCS)} documents, the longest {words} words): "
                               f"{' '.join(str(e).split())[:300]}; the model must encode any text, long ones "
                               "included (truncate inside it, e.g. the tokenizer's truncation=True)") from None
        full = f"{name}@{revision}#{checked['sha256'][:8]}"
        spec = RetrieverSpec(full, "declared", f"{type(model).__name__} declared by the user ({protocol.name} "
                             "interface)", model=name, revision=revision,
                             params={"batch_size": batch_size, "interface": protocol.name, "probe": checked})
        self._declared[full] = (spec, model)
        return spec

    def spec(self, name: str) -> RetrieverSpec | None:
        return self._declared[name][0] if name in self._declared else None

    def model(self, name: str) -> Any:
        """The object declared under ``name`` (None when there is none)."""
        return self._declared[name][1] if name in self._declared else None


class ModelCalls:
    """Calls the user's object through its protocol: queries as strings, documents as (title, text) pairs;
    every output checked, every batch of one width."""

    def __init__(self, model: Any, protocol: ModelProtocol, batch_size: int):
        self.model, self.protocol, self.batch_size = model, protocol, batch_size
        self.dim = 0

    def encode_raw(self, texts: Sequence[Text], kind: str, dataset_id: str, split: str) -> tuple[np.ndarray, bool]:
        """Checked vectors (``probe.checked_vectors``) and whether the object returned 16-bit floats."""
        items = list(texts)
        strings = [t if isinstance(t, str) else doc_text(Doc("", t[0], t[1])) for t in items]
        out = self.protocol.encode(self.model, items, strings, kind, self.batch_size, dataset_id=dataset_id,
                                   split=split)
        return checked_vectors(out, self.protocol.method(self.model, kind), strings, kind), low_precision(out)

    def encode(self, texts: Sequence[Text], kind: str, context: SearchContext) -> np.ndarray:
        vectors, _ = self.encode_raw(texts, kind, context.dataset_id, context.split)
        if self.dim and vectors.shape[1] != self.dim:
            raise HarnessError(f"{self.protocol.method(self.model, kind)} returned {vectors.shape[1]}-dimensional "
                               f"vectors (row 0) after {self.dim}-dimensional ones")
        self.dim = vectors.shape[1]
        return vectors


class DeclaredEncoders:
    """The encoder side of a declared model (a :class:`~harness.retrievers.vectors.CorpusEncoding`): its
    store is keyed by the declared name, revision, protocol, batch size and probe."""

    def __init__(self, spec: RetrieverSpec, model: Any, settings: EncodeSettings):
        self.spec, self.model, self.settings = spec, model, settings
        self.calls = ModelCalls(model, MODEL_PROTOCOLS.get(str(spec.params["interface"])),
                                int(spec.params["batch_size"]))

    def identity(self) -> DeclaredIdentity:
        p = self.spec.params
        return {"interface": p["interface"], "batch_size": p["batch_size"], "probe": p["probe"]["sha256"]}

    def store_key(self, dataset: Dataset) -> dict[str, Any]:
        # the batch size groups texts into the object's batches: float rounding, but the object's own choice
        return {"v": EMBED_VERSION, "declared": self.spec.model, "revision": self.spec.revision, **self.identity(),
                "dtype": self.settings.embed_dtype, "what": "corpus", "checksum": dataset.corpus_digest}

    def computed_with(self) -> dict[str, Any]:
        return {"declared": self.spec.name, "model_class": _qualname(self.model), "harness": __version__}

    def doc_input(self, doc: Doc) -> Text:
        return (doc.title, doc.text)

    def encode_documents(self, texts: list[Text], context: SearchContext, desc: str) -> np.ndarray:
        return self.calls.encode(texts, "doc", context)

    def prepare_queries(self) -> None:
        """Nothing to load: the model object is the caller's, in memory."""

    def encode_queries(self, texts: list[str], context: SearchContext) -> np.ndarray:
        return self.calls.encode(texts, QUERY, context)

    def check_resources(self, dataset: Dataset, store: EmbeddingStore) -> None:
        return None  # the model's memory is the user's; the store's disk is checked as it is written

    @property
    def device_used(self) -> str | None:
        return None  # the object's own business


class DeclaredIdentity(TypedDict):
    interface: str
    batch_size: int
    probe: str


class DeclaredFingerprint(TypedDict):
    kind: str
    name: str | None
    revision: str | None
    interface: str
    batch_size: int
    probe: str
    embed_dtype: str
    embed_version: int
    text_rule: str
    search: NotRequired[dict[str, Any]]


class DeclaredProvenance(TypedDict):
    declared_by_user: bool
    content_checked: bool
    probe: dict[str, Any]
    name: str | None
    revision: str | None
    model_class: str
    interface: str
    batch_size: int
    search: str | dict[str, Any]
    embed_dtype: str
    device: str | None
    harness: str


class DeclaredModelRetriever(VectorRetriever[DeclaredEncoders]):
    """Exact (or ``--index``) inner-product search over a declared model's vectors."""

    def __init__(self, spec: RetrieverSpec, model: Any, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION, checksums: Checksums = TRUSTED):
        other = set(settings.changed()) - APPLICABLE
        if other:
            raise HarnessError(f"{spec.name} is a model object that computes its own vectors; "
                               f"{', '.join('--' + k.replace('_', '-') for k in sorted(other))} does not apply to it")
        encoders = DeclaredEncoders(spec, model, settings)
        # keyed by the declaration and the probe, not by content: --force encodes the corpus again
        vectors = CorpusVectors(encoders, execution.shard_size, settings.embed_dtype, checksums,
                                keyed_by_content=False)
        super().__init__(encoders, vectors,
                         searcher_for(settings.index, "cpu"))
        self.spec, self.settings = spec, settings

    def changed_settings(self) -> dict[str, Any]:
        return self.settings.changed()

    def settings_taken(self) -> set[str]:
        return set(APPLICABLE)

    def fingerprint(self) -> DeclaredFingerprint:
        return {"kind": "declared", "name": self.spec.model, "revision": self.spec.revision,
                **self.encoders.identity(), "embed_dtype": self.settings.embed_dtype, "embed_version": EMBED_VERSION,
                "text_rule": "(title, text) as the model reads them", **self.search_note()}

    def provenance(self, context: SearchContext) -> DeclaredProvenance:
        p = self.spec.params
        return {"declared_by_user": True, "content_checked": False, "probe": p["probe"], "name": self.spec.model,
                "revision": self.spec.revision, "model_class": _qualname(self.encoders.model),
                "interface": p["interface"], "batch_size": p["batch_size"], "search": self.searcher.describe(),
                "embed_dtype": self.settings.embed_dtype, "device": None, "harness": __version__}


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
