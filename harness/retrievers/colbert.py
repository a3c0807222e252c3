"""Late interaction (ColBERT, Khattab and Zaharia 2020; ColBERTv2, Santhanam et al. 2022): every token of a
document and of a query is a vector; a document's score is the sum over the query's tokens of the largest dot
product with one of its tokens (MaxSim), searched exactly.

A :class:`ColbertRetriever` is the three sides of ``harness.retrievers.vectors``: the encoder side
(:class:`ColbertEncoders`: the model files, their ColBERT settings from ``harness.retrievers.colbert_config``,
the compute planned before the model loads, and :class:`~harness.retrievers.colbert_model.ColbertEncoder`),
the store side (the corpus-encoding loop of :class:`~harness.retrievers.vectors.CorpusVectors` writing a
:class:`~harness.embeddings.TokenStore`: flat token vectors and per-document offsets, sharded and resumable)
and :class:`MaxSimSearcher` (``harness.search.topk_maxsim``: chunked, memory-bounded, on the encoder's device).
As a rescorer (``rerank:colbert:...(FIRST;top=N)``) it is :class:`ColbertRescorer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from harness.data.corpus import Doc, doc_text
from harness.devices import device_name
from harness.embeddings import EmbeddingStore, TokenStore
from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.paths import cache_root, offline
from harness.resources import check_plan, count_lines, embedding_plan
from harness.retrievers.base import SearchContext, Text
from harness.retrievers.colbert_config import COLBERT_FORMAT, ColbertConfig, check_positions, read_colbert_config
from harness.retrievers.hub import (
    ModelFiles,
    ModelProvenance,
    model_digest,
    spec_model_files,
    weights_file,
)
from harness.retrievers.spec import RetrieverSpec
from harness.retrievers.vectors import DTYPES, CorpusVectors, Encoded, StoreRescorer, VectorRetriever
from harness.searchers import Hits
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.version import __version__

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.retrievers.colbert_model import ColbertEncoder

#: the settings a ColBERT retriever reads (the rest of EncodeSettings would change nothing and is refused)
SETTINGS_TAKEN = {"precision", "forward", "batch_tokens", "embed_dtype"}
#: documents per shard at most: a shard is encoded into a padded documents x width x dim array
MAX_SHARD_DOCS = 4096
TEXT_RULE = "title + ' ' + text"
QUERY_ONLY = ("query_marker", "query_length", "attend_to_masks", "query_expansion")


class ColbertEncoders:
    """A ColBERT model under its own settings (a :class:`~harness.retrievers.vectors.CorpusEncoding`)."""

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings, execution: Execution,
                 checksums: Checksums = TRUSTED):
        from harness.retrievers.compute import plan_compute

        self.settings, self.execution, self.checksums = settings, execution, checksums
        self.files = spec_model_files(spec.name, spec.model, spec.revision, execution.trust_remote_code, checksums)
        fetch_metadata(self.files)
        self.model_config = read_colbert_config(self.files.path)
        self.config: ColbertConfig = self.model_config.with_overrides(dict(spec.params), spec.name)
        check_positions(self.config, self.files.path)
        self.device = device_name(execution.device)
        self.compute = plan_compute(self.files.path / self.config.transformer_path, self.device, settings.precision,
                                    settings.forward)
        self._encoder: ColbertEncoder | None = None
        self._digest: str | None = None

    @property
    def encoder(self) -> ColbertEncoder:
        if self._encoder is None:
            from harness.retrievers.colbert_model import ColbertEncoder

            self._encoder = ColbertEncoder(self.files.path, self.config, device=self.device, compute=self.compute,
                                           batch_tokens=self.settings.batch_tokens,
                                           trust_remote_code=self.execution.trust_remote_code,
                                           progress=self.execution.progress, threads=self.execution.threads)
        return self._encoder

    def digest(self) -> str:
        """Content digest of every file that can change the token vectors (weights, config, tokenizer,
        artifact.metadata, the Dense module folders)."""
        if self._digest is None:
            self._digest = model_digest(self.files.path, self.checksums)
        return self._digest

    def compute_key(self) -> dict[str, Any]:
        return {"precision": self.compute.precision, "forward": self.settings.forward,
                "batch_tokens": self.settings.batch_tokens}

    def store_key(self, dataset: Dataset) -> dict[str, Any]:
        # what decides the documents' token vectors (the query settings do not)
        colbert = {k: v for k, v in self.config.recipe().items() if k not in QUERY_ONLY}
        return {"v": COLBERT_FORMAT, "what": "colbert corpus tokens", "model_files": self.digest(),
                "colbert": colbert, "compute": self.compute_key(), "dtype": self.settings.embed_dtype,
                "text_rule": TEXT_RULE, "checksum": dataset.corpus_digest}

    def computed_with(self) -> dict[str, Any]:
        return {**self.compute.to_dict(), "harness": __version__}

    def doc_input(self, doc: Doc) -> Text:
        return doc_text(doc)

    def encode_documents(self, texts: list[Text], context: SearchContext, desc: str) -> np.ndarray:
        return self.encoder.encode_documents([_joined(t) for t in texts], desc)

    def encode_queries(self, texts: list[str], context: SearchContext) -> np.ndarray:
        return self.encoder.encode_queries(texts)

    def prepare_queries(self) -> None:
        self.encoder  # noqa: B018 (loads it)

    def check_resources(self, dataset: Dataset, store: EmbeddingStore) -> None:
        """The embedding store's plan, a document counted at the document length (an upper bound)."""
        weights = weights_file(self.files.path / self.config.transformer_path)
        plan = embedding_plan(count_lines(dataset.corpus_path), self.config.doc_length * self.config.dim,
                              np.dtype(DTYPES[self.settings.embed_dtype]).itemsize,
                              min(self.execution.shard_size, MAX_SHARD_DOCS),
                              weights.stat().st_size if weights else 0, n_queries=1_000, depth=1000)
        on_disk = sum(p.stat().st_size for p in store.dir.glob("shard-*.npy")) if store.dir.exists() else 0
        check_plan(plan, cache_root(), already_on_disk=on_disk)

    @property
    def device_used(self) -> str | None:
        return str(self._encoder.device) if self._encoder is not None else None


def fetch_metadata(files: ModelFiles) -> None:
    """A Stanford checkpoint's ``artifact.metadata`` (its markers and lengths) beside the hub download of its
    other files, at the same commit, where the hub has one (the download keeps weights, config and tokenizer)."""
    if files.source != "hub" or (files.path / "artifact.metadata").exists() or offline():
        return
    try:
        from huggingface_hub import hf_hub_download

        hf_hub_download(files.model_id, "artifact.metadata", revision=files.revision, etag_timeout=10)
    except (OSError, ValueError):  # none published (a PyLate repository), or not reachable: its own files decide
        return


class TokenVectors(CorpusVectors):
    """The corpus's token vectors in a :class:`TokenStore` (the corpus-encoding loop is CorpusVectors')."""

    def __init__(self, encoding: ColbertEncoders, shard_size: int, embed_dtype: str):
        super().__init__(encoding, min(shard_size, MAX_SHARD_DOCS), embed_dtype, encoding.checksums)
        self.dim = encoding.config.dim

    def store(self, dataset: Dataset) -> TokenStore:
        return TokenStore(cache_root() / "embeddings", self.encoding.store_key(dataset), self.dim, self.checksums)

    def encode(self, dataset: Dataset, store: EmbeddingStore, part: int = 0, parts: int = 1, *,
               verify: bool = True) -> Encoded:
        """CorpusVectors' loop; a document left without a token vector stops it, named by its id (the encoder
        sees texts: the first document with that text, which gives the same tokens, is named)."""
        from harness.retrievers.colbert_model import NoTokenVectors

        try:
            return super().encode(dataset, store, part, parts, verify=verify)
        except NoTokenVectors as e:
            doc = next((d.doc_id for d in dataset.corpus() if _joined(self.encoding.doc_input(d)) == e.text), "?")
            raise HarnessError(f"{dataset.corpus_path}: document {doc!r} has no token vector: {e.cause}; its shard "
                               "was not stored") from None


def _joined(text: Text) -> str:
    return text if isinstance(text, str) else " ".join(text)


class MaxSimSearcher:
    """Exact late-interaction search over a :class:`TokenStore` (``harness.search.topk_maxsim``)."""

    approximate = False

    def __init__(self, device: str = "cpu"):
        self.device = device

    def fingerprint(self) -> dict[str, Any]:
        return {}

    def describe(self) -> str:
        return f"exact MaxSim (sum over query tokens of the best document token), torch on {self.device}"

    def search(self, queries: np.ndarray, store: EmbeddingStore, k: int) -> Hits:
        from harness.search import topk_maxsim

        if not isinstance(store, TokenStore):
            raise HarnessError(f"embedding store {store.dir} holds one vector per document, not token vectors")
        scores, docs, searched = topk_maxsim(queries, store.token_shards(), k, self.device)
        return Hits(scores, docs, searched)


class ColbertFingerprint(TypedDict):
    kind: str
    model_files: str
    colbert: dict[str, Any]  # the settings that run (ColbertConfig.recipe())
    compute: dict[str, Any]
    embed_dtype: str
    colbert_format: int
    text_rule: str
    score: str


class ColbertProvenance(ModelProvenance):
    model_files_sha256: str
    colbert: dict[str, Any]
    model_colbert: dict[str, Any]
    settings: dict[str, Any]
    search: str | dict[str, Any]
    embed_dtype: str
    shard_size: int
    colbert_format: int
    compute: dict[str, Any]
    device: str | None
    dim: int
    harness: str


class ColbertRetriever(VectorRetriever[ColbertEncoders]):
    """Exact MaxSim retrieval over the corpus's ColBERT token vectors."""

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION, *, checksums: Checksums = TRUSTED):
        if settings.index != REFERENCE.index:
            raise HarnessError(f"{spec.name}: --index {settings.index} builds a one-vector index; ColBERT searches "
                               "its token vectors exactly (run it without --index)")
        if settings.backend != REFERENCE.backend:
            raise HarnessError(f"{spec.name}: --backend {settings.backend} does not compute token vectors; run it "
                               "without --backend")
        encoders = ColbertEncoders(spec, settings, execution, checksums)
        super().__init__(encoders, TokenVectors(encoders, execution.shard_size, settings.embed_dtype),
                         MaxSimSearcher(encoders.device))
        self.spec, self.settings, self.execution = spec, settings, execution

    def settings_taken(self) -> set[str]:
        return set(SETTINGS_TAKEN)

    def changed_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.changed().items() if k in SETTINGS_TAKEN}

    def fingerprint(self) -> ColbertFingerprint:
        enc = self.encoders
        return {"kind": "colbert", "model_files": enc.digest(), "colbert": enc.config.recipe(),
                "compute": enc.compute_key(), "embed_dtype": self.settings.embed_dtype,
                "colbert_format": COLBERT_FORMAT, "text_rule": TEXT_RULE, "score": "maxsim"}

    def provenance(self, context: SearchContext) -> ColbertProvenance:
        enc = self.encoders
        return {**enc.files.provenance(), "model_files_sha256": enc.digest(), "colbert": enc.config.to_dict(),
                "model_colbert": enc.model_config.to_dict(), "settings": self.settings.to_dict(),
                "search": self.searcher.describe(), "embed_dtype": self.settings.embed_dtype,
                "shard_size": self.vectors.shard_size, "colbert_format": COLBERT_FORMAT,
                "compute": enc.compute.to_dict(), "device": enc.device_used, "dim": enc.config.dim,
                "harness": __version__}

    def rescorer(self) -> ColbertRescorer:
        return ColbertRescorer(self)


class ColbertRescorer(StoreRescorer[ColbertEncoders]):
    """A ColBERT model rescoring a first stage's candidates (``rerank:colbert:...``): the candidates' token
    vectors from its corpus store (encoded once, as for a ColBERT run), the same MaxSim."""

    key = "colbert"

    def scores(self, queries: Mapping[str, str], candidates: dict[str, list[str]],
               context: SearchContext) -> dict[str, np.ndarray]:
        import torch

        from harness.search import maxsim_block

        wanted = {d for docs in candidates.values() for d in docs}
        tokens: dict[str, np.ndarray] = {}
        store = self.retriever.corpus_store(context.dataset)
        if not isinstance(store, TokenStore):
            raise HarnessError(f"embedding store {store.dir} holds one vector per document, not token vectors")
        for ids, flat, offsets in store.token_shards():
            for row, doc in enumerate(ids):
                if doc in wanted:
                    tokens[doc] = np.asarray(flat[offsets[row]:offsets[row + 1]], dtype=np.float32)
        qids = list(candidates)
        qvec = torch.as_tensor(self.retriever.encoders.encode_queries([queries[q] for q in qids], context))
        out = {}
        for row, q in enumerate(qids):
            docs = candidates[q]
            if not docs:
                out[q] = np.zeros(0, dtype=np.float32)
                continue
            lengths = [len(tokens[d]) for d in docs]
            offsets_t = torch.as_tensor(np.concatenate([[0], np.cumsum(lengths)]), dtype=torch.long)
            flat_t = torch.as_tensor(np.concatenate([tokens[d] for d in docs]))
            out[q] = maxsim_block(qvec[row:row + 1], flat_t, offsets_t)[0].numpy()
        return out
