"""Dense retrieval: a Hugging Face encoder's vectors of the corpus in the embedding cache, searched by inner
product (exact by default; an approximate index with --index, see ``harness.searchers``).

A :class:`DenseRetriever` is the three sides of ``harness.retrievers.vectors``: the encoder side
(:class:`~harness.retrievers.dense_encoders.DenseEncoders`: model files, recipe, compute, encoders), the store
side (:class:`~harness.retrievers.vectors.CorpusVectors`) and a searcher. What it adds is what it computes:
its settings, its fingerprint and its provenance.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any, NotRequired, TypedDict

from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.retrievers.base import SearchContext, Searched
from harness.retrievers.compute.threads import ThreadsUsed
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
    query_prompt: NotRequired[int]  # --backend sentence-transformers: its rule for the query prompt (version)


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
    cpu_threads: ThreadsUsed | None
    parameters: int | None  # the models' parameters (safetensors headers; None for another weight format)
    dim: int  # the embedding dimension
    harness: str


class DenseRetriever(VectorRetriever[DenseEncoders]):
    """Exact (or ``--index``) inner-product retrieval over the corpus embeddings of a Hugging Face encoder."""

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION, *, checksums: Checksums = TRUSTED):
        if execution.latency and settings.index != REFERENCE.index:
            raise HarnessError(f"{spec.name}: --latency times exact search one query at a time; an approximate "
                               f"index (--index {settings.index}) also searches exactly for its recall on every "
                               "call, which its latency would include: drop --latency or --index")
        encoders = DenseEncoders(spec, settings, execution, checksums)
        super().__init__(encoders, CorpusVectors(encoders, execution.shard_size, settings.embed_dtype, checksums),
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
                "embed_version": EMBED_VERSION, "text_rule": enc.text_rule, **self.search_note(),
                **enc.query_rule()}

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

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        """The batch search (``VectorRetriever.search``: its run and its seconds), and, under ``--latency N``,
        the first N queries (in the topics' order) timed again one at a time, each encoded and searched alone
        (:meth:`time_queries`); the run is the batch's either way."""
        searched = super().search(queries, k, context)
        n = self.execution.latency
        if not n or not queries:
            return searched
        timed = self.time_queries(list(queries.values())[:n], k, context)
        return replace(searched, query_seconds=timed, query_timing=f"{len(timed)} queries one at a time after the "
                       "batch run (each encoded and searched alone)")

    def time_queries(self, texts: list[str], k: int, context: SearchContext) -> tuple[float, ...]:
        """Each query's wall time, encoded and searched alone (the model loaded and warmed by the batch before;
        the vectors and the top k come back to the host, so a GPU's work is finished inside each time); their
        hits are not kept. The encoder's progress bar is off meanwhile (a bar a query is not what is timed)."""
        encoder = self.encoders.query_encoder
        shown = getattr(encoder, "progress", None)
        if shown is not None:
            encoder.progress = False  # type: ignore[attr-defined]
        store = self.corpus_store(context.dataset)
        seconds = []
        try:
            for text in texts:
                start = time.perf_counter()
                vector = self.encoders.encode_queries([text], context)
                self.searcher.search(vector, store, k)
                seconds.append(time.perf_counter() - start)
        finally:
            if shown is not None:
                encoder.progress = shown  # type: ignore[attr-defined]
        return tuple(seconds)
