"""The encoder side of dense retrieval: a Hugging Face model's files (and an asymmetric retriever's query
model), the recipe that runs (the model's own with the settings' fields in their place), the compute planned
for it before the model loads (it keys the embedding store), and the document and query encoders, loaded
when first used. The query prefix of a dataset is the recipe's, chosen for the dataset each call names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from harness.data.corpus import Doc, doc_text
from harness.devices import device_name
from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.paths import cache_root
from harness.resources import check_plan, count_lines, embedding_plan
from harness.retrievers.base import SearchContext, Text, TextEncoder
from harness.retrievers.compute.threads import ThreadsUsed, ThreadTuner
from harness.retrievers.config import fit_max_length, model_max_positions, read_encoder_config
from harness.retrievers.hub import ModelFiles, model_digest, spec_model_files, weights_file, widened_from
from harness.retrievers.spec import RetrieverSpec
from harness.retrievers.vectors import DTYPES, EMBED_VERSION
from harness.settings import REFERENCE, EncodeSettings, Execution
from harness.version import __version__

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.embeddings import EmbeddingStore
    from harness.retrievers.encoder import HFEncoder
    from harness.retrievers.st_backend import SentenceTransformersEncoder


class QueryRule(TypedDict, total=False):
    query_prompt: int  # --backend sentence-transformers: how its query prompt is chosen (a version)


class EncodingReport(TypedDict):
    oom_backoffs: list[dict[str, int]]
    gpu_budget_fit: dict[str, int] | None
    device: str | None
    cpu_threads: ThreadsUsed | None  # the most threads, and the batches on each count (a speed setting only)


class DenseEncoders:
    """A Hugging Face encoder under its recipe (a :class:`~harness.retrievers.vectors.CorpusEncoding`)."""

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings, execution: Execution,
                 checksums: Checksums = TRUSTED):
        from harness.retrievers.compute import plan_compute

        self.settings, self.execution, self.checksums = settings, execution, checksums
        self.files = spec_model_files(spec.name, spec.model, spec.revision, execution.trust_remote_code, checksums)
        # the model's own recipe, and what runs
        self.model_config = fit_max_length(spec.encoder or read_encoder_config(self.files.path), self.files.path)
        self.config = self.model_config.with_settings(settings)
        limit = model_max_positions(self.files.path)
        if limit is not None and self.config.max_length > limit:
            raise HarnessError(f"--max-length {self.config.max_length} is more than {spec.name} can take "
                               f"({limit} positions); use at most {limit}")
        self.device = device_name(execution.device)
        # decided before the model loads: the compute is part of the cache key
        self.compute = plan_compute(self.files.path / self.config.transformer_path, self.device, settings.precision,
                                    settings.forward)
        # an asymmetric retriever (DPR) encodes queries with a model of their own, under the same recipe
        self.query_files: ModelFiles | None = None
        if spec.query_model:
            self.query_files = spec_model_files(spec.name, spec.query_model, spec.query_revision,
                                                execution.trust_remote_code, checksums)
        if settings.backend != REFERENCE.backend:
            from harness.retrievers.st_backend import check_applicable

            check_applicable(self.files.path, text_pair=self.config.text_pair, changed=settings.changed(),
                             query_model=self.query_files is not None)
        self._encoder: HFEncoder | SentenceTransformersEncoder | None = None
        self._query_encoder: HFEncoder | SentenceTransformersEncoder | None = None
        self._digests: dict[Path, str] = {}

    @property
    def encoder(self) -> TextEncoder:
        """The document encoder (and the query encoder, unless the retriever has a query model)."""
        if self._encoder is None:
            self._encoder = self._load(self.files.path, documents=True)
        return self._encoder

    @property
    def query_encoder(self) -> TextEncoder:
        """The encoder of queries: the document encoder, or the query model's own (asymmetric retrievers)."""
        if self.query_files is None:
            return self.encoder
        if self._query_encoder is None:
            self._query_encoder = self._load(self.query_files.path, documents=False)
        return self._query_encoder

    def _load(self, folder: Path, *, documents: bool) -> HFEncoder | SentenceTransformersEncoder:
        if self.settings.backend != REFERENCE.backend:
            from harness.retrievers.st_backend import SentenceTransformersEncoder

            # the folder's own query prompt is what sentence-transformers applies unasked; any other prefix
            # (--query-prefix, "" included, or a dataset's own) is passed to it as the prompt
            return SentenceTransformersEncoder(folder, self.device, self.model_config.query_prefix,
                                               progress=self.execution.progress)
        from harness.retrievers.encoder import HFEncoder

        # the document model runs the planned compute; a query model runs the same precision and forward
        plan = {"compute": self.compute} if documents else {"precision": self.compute.precision,
                                                            "forward": self.settings.forward}
        return HFEncoder(str(folder), self.config, device=self.device, batch_tokens=self.settings.batch_tokens,
                         progress=self.execution.progress, trust_remote_code=self.execution.trust_remote_code,
                         threads=self.execution.threads, **plan)

    def digest(self, files: ModelFiles | None) -> str | None:
        """Content digest of every file of a model that can change the vectors (``hub.model_files``)."""
        if files is None:
            return None
        if files.path not in self._digests:
            self._digests[files.path] = model_digest(files.path, self.checksums)
        return self._digests[files.path]

    @property
    def text_rule(self) -> str:
        return "(title, text) as a pair" if self.config.text_pair else "title + ' ' + text"

    def compute_key(self) -> dict[str, Any]:
        return {"precision": self.compute.precision, "forward": self.settings.forward,
                "batch_tokens": self.settings.batch_tokens, **self._backend(),
                **widened_from(self.files.path / self.config.transformer_path)}

    def store_key(self, dataset: Dataset) -> dict[str, Any]:
        # everything that decides the corpus vectors; the query prefix does not, so it is left out. The device
        # and the forward actually used (fused or not, oneDNN or addmm) change float32 rounding only, like the
        # thread count or the BLAS build: each shard's seal and the record's provenance name them.
        queries_only = ("query_prefix", "query_prefix_by_dataset")
        encoder = {k: v for k, v in self.config.recipe().items() if k not in queries_only}
        return {"v": EMBED_VERSION, "model_files": self.digest(self.files), "encoder": encoder,
                "compute": self.compute_key(), "dtype": self.settings.embed_dtype, "what": "corpus",
                "text_rule": self.text_rule, "checksum": dataset.corpus_digest}

    def computed_with(self) -> dict[str, Any]:
        return {**self.compute.to_dict(), **self._backend(), "harness": __version__}

    def query_rule(self) -> QueryRule:
        """For the record's fingerprint: the version of how sentence-transformers is given the query prompt
        (2: any prefix but the folder's own is passed to it; before, --query-prefix was dropped, so records
        made then are not reused). Nothing for the harness's own backend, whose keys stay as they were."""
        return {"query_prompt": 2} if self.settings.backend != REFERENCE.backend else {}

    def _backend(self) -> dict[str, str]:
        """Who encodes, when it is not the harness's own recipe reader (sentence-transformers itself)."""
        return {"backend": self.settings.backend} if self.settings.backend != REFERENCE.backend else {}

    def doc_input(self, doc: Doc) -> Text:
        """What the document encoder reads of a document: title + " " + text, or the (title, text) pair."""
        return (doc.title, doc.text) if self.config.text_pair else doc_text(doc)

    def encode_documents(self, texts: list[Text], context: SearchContext, desc: str) -> np.ndarray:
        return self.encoder.encode(texts, "doc", desc=desc)

    def query_prefix(self, context: SearchContext) -> str:
        """The recipe's query prefix on ``context``'s dataset (its own where the recipe gives one)."""
        return self.config.query_prefix_for(context.dataset_id)

    def prepare_queries(self) -> None:
        self.query_encoder  # noqa: B018 (loads it)

    def encode_queries(self, texts: list[str], context: SearchContext) -> np.ndarray:
        return self.query_encoder.encode(list(texts), "query", desc="encode queries",
                                         query_prefix=self.query_prefix(context))

    @property
    def device_used(self) -> str | None:
        return str(self._encoder.device) if self._encoder is not None else None

    def encoding_report(self) -> EncodingReport:
        """What the document encoder did that the record keeps: its out-of-memory back-offs, the token budget
        fitted to the GPU, its device (nothing before it is loaded), the threads it ran its batches on."""
        encoder = self._encoder
        tuner = getattr(encoder, "threads", None)
        return {"oom_backoffs": list(encoder.backoffs) if encoder is not None else [],
                "gpu_budget_fit": encoder.budget_fit if encoder is not None else None, "device": self.device_used,
                "cpu_threads": tuner.used() if isinstance(tuner, ThreadTuner) else None}

    def check_resources(self, dataset: Dataset, store: EmbeddingStore) -> None:
        weights = weights_file(self.files.path)
        model_bytes = weights.stat().st_size if weights else 0
        plan = embedding_plan(count_lines(dataset.corpus_path), self.dim,
                              np.dtype(DTYPES[self.settings.embed_dtype]).itemsize, self.execution.shard_size,
                              model_bytes, n_queries=10_000, depth=1000)
        on_disk = sum(p.stat().st_size for p in store.dir.glob("shard-*.npy")) if store.dir.exists() else 0
        check_plan(plan, cache_root(), already_on_disk=on_disk)
        hint = self.faster_mode_hint()
        if hint:
            import sys

            from harness.distributed import world

            if world()[0] == 0:
                print(f"harness: note: {hint}", file=sys.stderr)

    @property
    def dim(self) -> int:
        """The embedding dimension (``EncoderConfig.embedding_dim``), from config.json (nothing loaded)."""
        return self.config.embedding_dim(_hidden_size(self.files.path / self.config.transformer_path))

    def parameters(self) -> int | None:
        """The parameters of every model this retriever runs (the transformer, each Dense module, a query
        model), counted from the safetensors headers (nothing loaded); None where a weight file is another
        format."""
        from harness.retrievers.hub import safetensors_parameters

        folders = [self.files.path / self.config.transformer_path,
                   *(self.files.path / d.path for d in self.config.dense)]
        if self.query_files is not None:
            folders.append(self.query_files.path / self.config.transformer_path)
        total = 0
        for folder in folders:
            weights = weights_file(folder)
            count = safetensors_parameters(weights) if weights is not None and weights.suffix == ".safetensors" \
                else None
            if count is None:
                return None
            total += count
        return total

    def faster_mode_hint(self) -> str | None:
        """Said once before a corpus is encoded in fp32 on a CPU where bf16x3 would run this model (AMX, the
        fused BERT forward): the speed mode the user may ask for, never chosen for them."""
        if self.compute.device != "cpu" or self.compute.precision != "fp32" \
                or not self.compute.forward.startswith("fused-bert"):
            return None
        from harness.retrievers.compute import bf16x3_unavailable

        config = json.loads((self.files.path / self.config.transformer_path / "config.json").read_text())
        if bf16x3_unavailable(config, self.settings.forward) is not None:
            return None
        return ("this CPU has AMX: --precision bf16x3 encodes this model 1.7-1.9x faster (float32 matmuls as "
                "three bf16 products, vectors within about 1e-4 relative; a speed mode, stored and labelled apart)")


def _hidden_size(folder: Path) -> int:
    cfg = json.loads((folder / "config.json").read_text())
    for key in ("hidden_size", "d_model", "dim"):
        if cfg.get(key):
            return int(cfg[key])
    raise HarnessError(f"{folder / 'config.json'}: names no hidden size (hidden_size, d_model or dim)")
