"""Dense retrieval: a Hugging Face encoder's vectors of the corpus in the embedding cache, searched by inner
product (exact by default; an approximate index with --index, see ``harness.searchers``).

A :class:`DenseRetriever` is the three sides of ``harness.retrievers.vectors``: the encoder side
(:class:`~harness.retrievers.dense_encoders.DenseEncoders`: model files, recipe, compute, encoders), the store
side (:class:`~harness.retrievers.vectors.CorpusVectors`) and a searcher. What it adds is what it computes:
its settings, its fingerprint and its provenance.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, NotRequired, TypedDict

from harness.io import TRUSTED, Checksums
from harness.retrievers.base import SearchContext
from harness.retrievers.dense_encoders import DenseEncoders
from harness.retrievers.hub import ModelProvenance
from harness.retrievers.spec import RetrieverSpec
from harness.retrievers.vectors import EMBED_VERSION, CorpusVectors, VectorRetriever
from harness.searchers import searcher_for
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.version import __version__

#: recipe fields an EncodeSettings may set; set to the model's own value, they are not a change
RECIPE_FIELDS = ("max_length", "pooling", "normalize", "query_prefix", "doc_prefix")


class DenseFingerprint(TypedDict):
    kind: str
    model_files: str | None
    query_model_files: str | None
    encoder: dict[str, Any]  # the recipe that runs (EncoderConfig.recipe())
    compute: dict[str, Any]
    embed_dtype: str
    embed_version: int
    text_rule: str
    search: NotRequired[dict[str, Any]]  # an approximate searcher's configuration


class QueryModelProvenance(ModelProvenance):
    model_files_sha256: str | None


class WithQueryModel(TypedDict, total=False):
    query_model: QueryModelProvenance


class DenseProvenance(ModelProvenance):
    model_files_sha256: str | None
    query_model: NotRequired[QueryModelProvenance]
    encoder: dict[str, Any]
    model_encoder: dict[str, Any]
    query_instruction: str  # the query prefix used on the dataset (the record's name for it)
    settings: dict[str, Any]
    search: str | dict[str, Any]
    embed_dtype: str
    shard_size: int
    embed_version: int
    compute: dict[str, Any]
    oom_backoffs: list[dict[str, int]]
    gpu_budget_fit: dict[str, int] | None
    device: str | None
    parameters: int | None  # the models' parameters (safetensors headers; None for another weight format)
    dim: int  # the embedding dimension
    harness: str


class DenseRetriever(VectorRetriever[DenseEncoders]):
    """Exact (or ``--index``) inner-product retrieval over the corpus embeddings of a Hugging Face encoder."""

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION, *, checksums: Checksums = TRUSTED):
        encoders = DenseEncoders(spec, settings, execution, checksums)
        super().__init__(encoders, CorpusVectors(encoders, execution.shard_size, settings.embed_dtype),
                         searcher_for(settings.index, encoders.device))
        self.spec, self.settings, self.execution = spec, settings, execution
        # what a shard job reads (harness.odqa.shards)
        self.files, self.compute, self.shard_size = encoders.files, encoders.compute, execution.shard_size

    def settings_taken(self) -> set[str]:
        """Every ``EncodeSettings`` field: a dense encoder reads them all (``harness.retrievers.base``)."""
        return {f.name for f in fields(EncodeSettings)}

    def changed_settings(self) -> dict[str, Any]:
        """The settings of this run that differ from the reference computation of this model: the
        speed modes and storage choices, and recipe fields set to something other than the model's own."""
        changed = self.settings.changed()
        config, model_config = self.encoders.config, self.encoders.model_config
        for name in RECIPE_FIELDS:
            if name in changed and getattr(config, name) == getattr(model_config, name):
                del changed[name]
        return changed

    def fingerprint(self) -> DenseFingerprint:
        """The content identity of what this retriever computes: model files, the recipe that runs (pooling,
        normalisation, max length, prefixes), the compute, the stored dtype and the code version."""
        enc = self.encoders
        return {"kind": "dense", "model_files": enc.digest(enc.files), "query_model_files": enc.digest(enc.query_files),
                "encoder": enc.config.recipe(), "compute": enc.compute_key(), "embed_dtype": self.settings.embed_dtype,
                "embed_version": EMBED_VERSION, "text_rule": enc.text_rule, **self.search_note()}

    def provenance(self, context: SearchContext) -> DenseProvenance:
        enc = self.encoders
        query: WithQueryModel = {} if enc.query_files is None else {"query_model": {
            **enc.query_files.provenance(), "model_files_sha256": enc.digest(enc.query_files)}}
        return {**enc.files.provenance(), "model_files_sha256": enc.digest(enc.files), **query,
                "encoder": enc.config.to_dict(), "model_encoder": enc.model_config.to_dict(),
                "query_instruction": enc.query_prefix(context), "settings": self.settings.to_dict(),
                "search": self.searcher.describe(), "embed_dtype": self.settings.embed_dtype,
                "shard_size": self.vectors.shard_size, "embed_version": EMBED_VERSION,
                "compute": enc.compute.to_dict(), **enc.encoding_report(), "parameters": enc.parameters(),
                "dim": enc.dim, "harness": __version__}
