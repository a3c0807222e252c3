"""The registered retrievers (names -> frozen specs) and :func:`resolve_retriever`, which turns any retriever
name into a spec: a registered name, a kind's own syntax (``hf:``, ``sparse:``, ``fuse:``, ``rerank:``; each
parsed by its :class:`~harness.retrievers.spec.RetrieverKind`), or a model folder. ``load()`` imports torch or
starts a JVM lazily."""

from __future__ import annotations

import re
from pathlib import Path

from harness.errors import HarnessError
from harness.retrievers.config import CONTRIEVER, EncoderConfig
from harness.retrievers.kinds import BM25_PARAMS, FUSE_PARAMS, RERANK_PARAMS, SPLADE, DenseKind, split_top
from harness.retrievers.spec import (
    CANONICAL,
    RETRIEVER_KINDS,
    RETRIEVERS,
    ModelObjects,
    RetrieverKind,
    RetrieverSpec,
    composition_prefixes,
    folder_name,
    kind_of,
    name_prefixes,
    register_kind,
    slug_of,
)

__all__ = ["BM25_PARAMS", "CANONICAL", "FUSE_PARAMS", "RERANK_PARAMS", "RETRIEVERS", "RETRIEVER_KINDS", "SPLADE",
           "RetrieverKind", "RetrieverSpec", "compose", "composition_prefixes", "composition_syntax", "folder_name",
           "kind_of", "name_prefixes", "register_kind", "resolve_retriever", "slug_of", "split_top"]

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
                    # 2CR leaves the instruction off for ArguAna and Quora, whose queries are passages themselves
                    # (pyserini/2cr/beir.py: query_prefix "" when dataset in ['quora', 'arguana'])
                    query_prefix_by_dataset=(("beir/arguana", ""), ("beir/quora", "")),
                    source="BAAI/bge-base-en-v1.5 as Pyserini 2CR runs it (beir.yaml bge-base-en-v1.5.faiss; "
                           "pyserini/2cr/beir.py for the per-dataset instruction)")
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

RETRIEVERS.register("splade-pp-ed", RetrieverSpec(
    "splade-pp-ed", "sparse", "SPLADE++ EnsembleDistil (Formal et al. 2022), Lucene impact index via pyserini",
    model="naver/splade-cocondenser-ensembledistil", params=SPLADE))

# ColBERT checkpoints under their own settings, as their artifact.metadata states them. A recipe only fills what the
# checkpoint's files leave unstated (a download without artifact.metadata); where a file states another value the
# run is refused, naming the file and both values (ColbertConfig.with_overrides): the checkpoint's files decide.
COLBERTV2 = {"query_marker": "[unused0]", "doc_marker": "[unused1]", "query_length": 32, "doc_length": 180,
             "attend_to_masks": False}
RETRIEVERS.register("colbertv2", RetrieverSpec(
    "colbertv2", "colbert", "ColBERTv2 (Santhanam et al. 2022), late interaction, exact MaxSim",
    model="colbert-ir/colbertv2.0", params=COLBERTV2))
RETRIEVERS.register("answerai-colbert-small-v1", RetrieverSpec(
    "answerai-colbert-small-v1", "colbert", "answerai-colbert-small-v1 (Clavié 2024), a small ColBERT, exact MaxSim",
    model="answerdotai/answerai-colbert-small-v1", params={**COLBERTV2, "doc_length": 300}))


def resolve_retriever(name: str, declared: ModelObjects | None = None) -> RetrieverSpec:
    """A model object the caller declared (``declared``: its row name), a registered name (with parameters when
    its kind takes them: ``bm25(k1=1.2;b=0.75)``), a name in a kind's syntax (``hf:<model id or folder>``,
    ``sparse:...``, a composition ``fuse:...``/``rerank:...``, whose stages resolve the same way), or a
    model/checkpoint folder path. A folder is named canonically
    (:func:`folder_name`), not by the path as typed."""
    found = declared.spec(name) if declared is not None else None
    if found is not None:
        return found
    if name in RETRIEVERS:
        return RETRIEVERS.get(name)
    head, paren, _ = name.partition("(")
    if paren and head in RETRIEVERS:  # a registered name with parameters: bm25(k1=1.2;b=0.75)
        base = RETRIEVERS.get(head)
        return kind_of(base).with_params(base, name)
    for _, kind in RETRIEVER_KINDS.items():
        if kind.prefix and name.startswith(kind.prefix):
            return kind.parse(name, lambda stage: resolve_retriever(stage, declared))
    if Path(name).expanduser().is_dir():
        dense = RETRIEVER_KINDS.get(DenseKind.name)
        assert isinstance(dense, DenseKind)
        return dense.folder(name, "checkpoint")
    if CANONICAL.match(name):  # a model folder by the name a table printed: the folder with that content
        dense = RETRIEVER_KINDS.get(DenseKind.name)
        assert isinstance(dense, DenseKind)
        return dense.printed(name)
    if re.fullmatch(r"[^@#()]+@[^#()\s]+#[0-9a-f]{8}", name):  # name@revision#probe: a declared model object
        raise HarnessError(f"{name} is a model object declared in a Python process (harness.evaluate(model, ..., "
                           "name=, revision=)); it runs only there: evaluate it from that process (its records "
                           "serve diff, report and the leaderboard here)")
    raise HarnessError(RETRIEVERS.unknown_message(name) +
                       "; any Hugging Face encoder works as hf:<model id or folder>")


def compose(name: str) -> RetrieverSpec:
    """A composition spec (``fuse:...`` or ``rerank:...``), parsed by its kind."""
    if not name.startswith(composition_prefixes()):
        raise HarnessError(f"{name!r} is not a composition; start it with {' or '.join(composition_prefixes())}")
    return resolve_retriever(name)


def composition_syntax() -> list[tuple[str, str]]:
    """(syntax, what it computes) of every kind's names, for ``harness list retrievers``."""
    return [row for _, kind in RETRIEVER_KINDS.items() for row in kind.syntax()]

