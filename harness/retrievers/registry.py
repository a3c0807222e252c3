"""The retriever registry. Specs are frozen data; ``load()`` imports torch or starts a JVM lazily."""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.errors import HarnessError
from harness.registry import Registry
from harness.retrievers.config import CONTRIEVER, EncoderConfig
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution


@dataclass(frozen=True)
class RetrieverSpec:
    name: str
    kind: str  # "bm25" or "dense"
    description: str = ""
    model: str | None = None  # Hugging Face id or local folder (dense)
    revision: str | None = None
    encoder: EncoderConfig | None = None  # None: read from the model's files
    params: dict = field(default_factory=dict)  # e.g. BM25 k1, b, fields
    query_model: str | None = None  # asymmetric retrievers (DPR): the model that encodes queries
    query_revision: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict() if self.encoder else None
        return d

    @property
    def slug(self) -> str:
        """A file-system-safe, collision-free name for result files."""
        return slug_of(self.name)

    def load(self, settings: EncodeSettings = REFERENCE, execution: Execution = DEFAULT_EXECUTION):
        """The retriever object (imports torch only now; the JVM starts in a worker when BM25 runs).
        ``settings`` apply to dense retrievers; BM25 computes the same with any of them. The class is named
        by a "module:attr" string (``LOADERS``), so the registry imports no retriever module."""
        import importlib

        module, _, attr = LOADERS[self.kind].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        return cls(self, execution) if self.kind == "bm25" else cls(self, settings, execution)


#: what ``RetrieverSpec.load`` builds for each kind
LOADERS = {"bm25": "harness.retrievers.lucene:BM25Retriever", "dense": "harness.retrievers.dense:DenseRetriever"}

RETRIEVERS: Registry[RetrieverSpec] = Registry("retriever")

RETRIEVERS.register("bm25", RetrieverSpec(
    "bm25", "bm25", "Lucene BM25 via pyserini, title + text in one field, k1=0.9 b=0.4 (Pyserini bm25-flat)",
    params={"k1": 0.9, "b": 0.4, "collection": "BeirFlatCollection", "fields": None}))
RETRIEVERS.register("bm25-multifield", RetrieverSpec(
    "bm25-multifield", "bm25", "Lucene BM25 via pyserini, title and text as fields (Pyserini bm25-multifield)",
    params={"k1": 0.9, "b": 0.4, "collection": "BeirMultifieldCollection",
            "fields": {"contents": 1.0, "title": 1.0}}))
for _name, _model, _desc in [
    ("contriever", "facebook/contriever", "Contriever, unsupervised (Izacard et al. 2022)"),
    ("contriever-msmarco", "facebook/contriever-msmarco", "Contriever fine-tuned on MS MARCO"),
    ("recontriever", "Yibin-Lei/ReContriever", "ReContriever, relevance-aware contrastive (Lei et al. 2023)"),
    ("contriever-reproduced", "Yibin-Lei/Contriever-Reproduced", "Contriever as reproduced by Lei et al. 2023"),
]:
    RETRIEVERS.register(_name, RetrieverSpec(_name, "dense", _desc, model=_model, encoder=CONTRIEVER))

# Recipes as their authors (and Pyserini's 2CR runs) encode: bge with its query instruction (Pyserini joins the
# instruction and the query with a space), CLS pooling and L2 normalisation; e5 with "query: " / "passage: "
# and mean pooling; DPR with separate question and context encoders, the first token's state (DPR's pooler
# output), passages as (title, text) pairs with token types all zero and 256 tokens, as DPR's own
# generate_dense_embeddings encoded Pyserini's wikipedia-dpr-100w indexes.
BGE = EncoderConfig(pooling="cls", normalize=True, similarity="cos", max_length=512,
                    query_prefix="Represent this sentence for searching relevant passages: ",
                    source="BAAI/bge-base-en-v1.5 as Pyserini 2CR runs it (beir.yaml bge-base-en-v1.5.faiss)")
E5 = EncoderConfig(pooling="mean", normalize=True, similarity="cos", max_length=512, query_prefix="query: ",
                   doc_prefix="passage: ", source="intfloat/e5-base-v2 model card (prefixes, mean pooling)")
DPR = EncoderConfig(pooling="cls", normalize=False, similarity="dot", max_length=256, text_pair=True,
                    source="DPR (Karpukhin et al. 2020) as Pyserini's odqa 2CR runs it")
RETRIEVERS.register("bge-base-en-v1.5", RetrieverSpec(
    "bge-base-en-v1.5", "dense", "BGE base v1.5 (Xiao et al. 2023), with its query instruction",
    model="BAAI/bge-base-en-v1.5", encoder=BGE))
RETRIEVERS.register("e5-base-v2", RetrieverSpec(
    "e5-base-v2", "dense", "E5 base v2 (Wang et al. 2022), query: / passage: prefixes", model="intfloat/e5-base-v2",
    encoder=E5))
RETRIEVERS.register("dpr-nq", RetrieverSpec(
    "dpr-nq", "dense", "DPR trained on NQ (single-nq), question and context encoders",
    model="facebook/dpr-ctx_encoder-single-nq-base", query_model="facebook/dpr-question_encoder-single-nq-base",
    encoder=DPR))
RETRIEVERS.register("dpr-multi", RetrieverSpec(
    "dpr-multi", "dense", "DPR trained on NQ, TriviaQA, WebQ and CuratedTREC (multiset)",
    model="facebook/dpr-ctx_encoder-multiset-base", query_model="facebook/dpr-question_encoder-multiset-base",
    encoder=DPR))


def slug_of(name: str) -> str:
    """A file-system-safe, collision-free file name for a retriever name (``#`` of a folder's canonical name
    becomes ``@``)."""
    if CANONICAL.match(name):
        return name.replace("/", "__").replace("#", "@")
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name.split("/")[-1] if ":" in name else name)
    if safe == name:
        return safe
    return f"{safe.strip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


#: the canonical name of a model folder: ``<folder>#<8 hex>``, a checkpoint ``<run>/checkpoint-<step>#<8 hex>``
CANONICAL = re.compile(r"^[A-Za-z0-9._-]+(/checkpoint-\d+)?#[0-9a-f]{8}$")
CHECKPOINT_FOLDER = re.compile(r"^checkpoint-\d+$")


def folder_name(folder: str | Path) -> str:
    """The canonical name of a model folder, the same from any working directory and for any copy: the
    folder's own name (a trainer checkpoint with its run's: ``run/checkpoint-0000100``) and the first 8 hex
    digits of its content digest (``hub.model_digest``: weights, config, tokenizer, modules). Two different
    models behind the same relative path get two names; one model reached by two paths gets one."""
    from harness.retrievers.hub import model_digest

    path = Path(folder).expanduser().resolve()
    own = f"{path.parent.name}/{path.name}" if CHECKPOINT_FOLDER.match(path.name) and path.parent.name \
        else path.name
    own = re.sub(r"[^A-Za-z0-9._/-]+", "-", own)
    return f"{own}#{model_digest(path)[:8]}"


def resolve_retriever(name: str) -> RetrieverSpec:
    """A registered name, ``hf:<model id or folder>``, or a model/checkpoint folder path. A folder is named
    canonically (:func:`folder_name`), not by the path as typed."""
    if name in RETRIEVERS:
        return RETRIEVERS.get(name)
    if name.startswith("hf:"):
        target, _, revision = name[3:].partition("@")
        if not target:
            raise HarnessError("hf: needs a model id or folder, e.g. hf:sentence-transformers/all-MiniLM-L6-v2")
        if not Path(target).expanduser().is_dir():
            return RetrieverSpec(name, "dense", f"Hugging Face encoder {target}", model=target,
                                 revision=revision or None)
        if revision:
            raise HarnessError(f"{name}: a local model folder has no revision (its content is its identity); "
                               f"drop @{revision}")
        return _folder_spec(target, "Hugging Face encoder")
    if Path(name).expanduser().is_dir():
        return _folder_spec(name, "checkpoint")
    if CANONICAL.match(name):
        raise HarnessError(f"{name} is the canonical name of a model folder in some results; run it by its path "
                           "(hf:/path/to/folder), which resolves to this name again if the content is the same")
    raise HarnessError(RETRIEVERS.unknown_message(name) +
                       "; any Hugging Face encoder works as hf:<model id or folder>")


def _folder_spec(target: str, what: str) -> RetrieverSpec:
    path = Path(target).expanduser().resolve()
    return RetrieverSpec(folder_name(path), "dense", f"{what} {path}", model=str(path))
