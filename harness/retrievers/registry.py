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
    kind: str  # "bm25", "dense", or a composition: "fuse", "rerank"
    description: str = ""
    model: str | None = None  # Hugging Face id or local folder (dense)
    revision: str | None = None
    encoder: EncoderConfig | None = None  # None: read from the model's files
    params: dict = field(default_factory=dict)  # e.g. BM25 k1, b, fields
    query_model: str | None = None  # asymmetric retrievers (DPR): the model that encodes queries
    query_revision: str | None = None
    stages: tuple[RetrieverSpec, ...] = ()  # a composition's input retrievers, in order

    def to_dict(self) -> dict:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict() if self.encoder else None
        d["stages"] = [s.to_dict() for s in self.stages]
        return d

    @property
    def run_stages(self) -> tuple[RetrieverSpec, ...]:
        """The stages whose runs a composition reads (a fusion: all; a rerank: the first stage; a dense
        rescorer of a rerank is loaded, not run)."""
        return self.stages if self.kind == "fuse" else self.stages[:1]

    @property
    def slug(self) -> str:
        """A file-system-safe, collision-free name for result files."""
        return slug_of(self.name)

    def load(self, settings: EncodeSettings = REFERENCE, execution: Execution = DEFAULT_EXECUTION,
             stages: list | None = None):
        """The retriever object (imports torch only now; the JVM starts in a worker when BM25 runs).
        ``settings`` apply to dense retrievers; BM25 computes the same with any of them. A composition is
        given its stages' retriever objects (``stages``, loaded by the caller so that each is loaded once).
        The class is named by a "module:attr" string (``LOADERS``), so the registry imports no retriever
        module."""
        import importlib

        module, _, attr = LOADERS[self.kind].partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if self.kind == "bm25":
            return cls(self, execution)
        if self.stages:
            if stages is None:
                stages = [s.load(settings, execution) for s in self.stages]
            return cls(self, settings, execution, stages)
        return cls(self, settings, execution)


#: what ``RetrieverSpec.load`` builds for each kind
LOADERS = {"bm25": "harness.retrievers.lucene:BM25Retriever", "dense": "harness.retrievers.dense:DenseRetriever",
           "sparse": "harness.retrievers.sparse:SparseRetriever",
           "fuse": "harness.retrievers.fusion:FusionRetriever", "rerank": "harness.retrievers.rerank:RerankRetriever"}

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

# SPLADE++ EnsembleDistil as Pyserini's 2CR BEIR runs (splade-pp-ed): documents 512 tokens, queries 256,
# weights quantised round(w / 5 * 256), a Lucene impact index
SPLADE = {"doc_max_length": 512, "query_max_length": 256, "weight_range": 5, "quant_range": 256}
RETRIEVERS.register("splade-pp-ed", RetrieverSpec(
    "splade-pp-ed", "sparse", "SPLADE++ EnsembleDistil (Formal et al. 2022), Lucene impact index via pyserini",
    model="naver/splade-cocondenser-ensembledistil", params=SPLADE))


def slug_of(name: str) -> str:
    """A file-system-safe, collision-free file name for a retriever name (``#`` of a folder's canonical name
    becomes ``@``)."""
    if CANONICAL.match(name):
        return name.replace("/", "__").replace("#", "@")
    composed = name.startswith(COMPOSITIONS)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name.split("/")[-1] if ":" in name and not composed else name)
    if composed:
        safe = safe.strip("-")[:96]
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
    """A registered name, ``hf:<model id or folder>``, a model/checkpoint folder path, or a composition
    (``fuse:...``, ``rerank:...``, see :func:`compose`). A folder is named canonically (:func:`folder_name`),
    not by the path as typed."""
    if name in RETRIEVERS:
        return RETRIEVERS.get(name)
    if name.startswith(COMPOSITIONS):
        return compose(name)
    if name.startswith("sparse:"):
        target = name[len("sparse:"):]
        if not target:
            raise HarnessError("sparse: needs a SPLADE model id or folder, e.g. "
                               "sparse:naver/splade-cocondenser-ensembledistil")
        path = Path(target).expanduser()
        if path.is_dir():
            return RetrieverSpec(f"sparse:{folder_name(path)}", "sparse", f"SPLADE model {path.resolve()}",
                                 model=str(path.resolve()), params=SPLADE)
        return RetrieverSpec(name, "sparse", f"SPLADE model {target}", model=target, params=SPLADE)
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


# --- compositions: fusion and reranking as retriever specs --------------------------------------------------

#: fusion methods, their parameters and defaults (None: required or unset); see harness.retrievers.fusion
FUSE_PARAMS: dict[str, dict[str, object]] = {
    "rrf": {"k": 60, "hits": None},
    "hybrid": {"alpha": 0.1, "normalization": False, "weight_on_dense": False, "hits": None},
    "wsum": {"weights": None, "norm": "none", "hits": None},
}
RERANK_PARAMS: dict[str, object] = {"top": 100, "max_length": None, "batch_tokens": None}  # None: 512 or fewer
COMPOSITIONS = ("fuse:", "rerank:")
COMPOSITION_SYNTAX = (
    ("fuse:rrf(A,B,...;k=60)", "reciprocal rank fusion of the runs of A, B, ... (Cormack et al. 2009; k=60)"),
    ("fuse:hybrid(DENSE,SPARSE;alpha=1.3)", "dense + alpha x sparse score fusion as Pyserini's hybrid search "
                                            "(a document missing from one run takes that run's lowest score)"),
    ("fuse:wsum(A,B;weights=1:0.5;norm=min-max)", "weighted sum of per-run normalised scores (as ranx's wsum)"),
    ("rerank:MODEL(FIRST;top=100)", "the top hits of FIRST rescored by MODEL: a cross-encoder (Hugging Face id or "
                                    "folder), or a dense retriever of ours (a name or hf:...)"),
)


def split_top(text: str) -> list[str]:
    """``text`` split at the commas and semicolons outside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise HarnessError(f"unbalanced parentheses in {text!r}")
        if ch in ",;" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if depth:
        raise HarnessError(f"unbalanced parentheses in {text!r}")
    parts.append(cur.strip())
    return parts


def _parse_value(key: str, text: str, default: object, where: str) -> object:
    try:
        if key == "weights":
            return [float(w) for w in text.split(":")]
        if isinstance(default, bool) or key in {"normalization", "weight_on_dense"}:
            if text.lower() not in {"true", "false", "1", "0"}:
                raise ValueError(text)
            return text.lower() in {"true", "1"}
        if key in {"k", "hits", "top", "max_length", "batch_tokens"}:
            value = int(text)
            if value < 1:
                raise ValueError(text)
            return value
        if key == "alpha":
            return float(text)
        return text
    except ValueError:
        raise HarnessError(f"{where}: {key}={text!r} is not a valid value") from None


def _params(parts: list[str], allowed: dict[str, object], where: str) -> tuple[list[str], dict]:
    stages, params = [], dict(allowed)
    for part in parts:
        key, eq, value = part.partition("=")
        if eq and "(" not in key and ":" not in key and "/" not in key:
            key = key.strip()
            if key not in allowed:
                raise HarnessError(f"{where}: unknown parameter {key!r}; known: {', '.join(allowed)}")
            params[key] = _parse_value(key, value.strip(), allowed[key], where)
        elif part:
            stages.append(part)
        else:
            raise HarnessError(f"{where}: an empty name between separators")
    return stages, params


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ":".join(_show(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _param_text(params: dict) -> str:
    return "".join(f";{k}={_show(v)}" for k, v in params.items() if v is not None)


def compose(name: str) -> RetrieverSpec:
    """A composition spec. ``fuse:METHOD(A,B,...;key=value...)`` fuses the runs of retrievers A, B, ...;
    ``rerank:MODEL(FIRST;top=N)`` rescores FIRST's top N hits with MODEL. Stages are any retriever names,
    compositions included. The spec's name is canonical: stage names resolved (folders by content), every
    parameter written out, so two spellings of one composition are one row."""
    prefix, _, rest = name.partition(":")
    head, paren, tail = rest.partition("(")
    if not paren or not tail.endswith(")") or not head:
        raise HarnessError(f"{name!r}: expected {prefix}:NAME(STAGE,...;key=value), e.g. "
                           + ("fuse:rrf(bm25,contriever)" if prefix == "fuse" else "rerank:MODEL(bm25;top=100)"))
    parts = split_top(tail[:-1])
    if prefix == "fuse":
        if head not in FUSE_PARAMS:
            raise HarnessError(f"{name!r}: unknown fusion method {head!r}; known: {', '.join(FUSE_PARAMS)}")
        names, params = _params(parts, FUSE_PARAMS[head], name)
        stages: tuple[RetrieverSpec, ...]
        if len(names) < 2:
            raise HarnessError(f"{name!r}: fusion needs at least two retrievers")
        if head == "hybrid" and len(names) != 2:
            raise HarnessError(f"{name!r}: hybrid fuses exactly two runs (dense, sparse)")
        if head == "wsum":
            weights = params["weights"] or [1.0] * len(names)
            if len(weights) != len(names):
                raise HarnessError(f"{name!r}: {len(weights)} weights for {len(names)} retrievers")
            params["weights"] = weights
            if params["norm"] not in {"none", "min-max", "max", "sum"}:
                raise HarnessError(f"{name!r}: norm must be none, min-max, max or sum, not {params['norm']!r}")
        stages = tuple(resolve_retriever(n) for n in names)
        canonical = f"fuse:{head}({','.join(s.name for s in stages)}{_param_text(params)})"
        what = ", ".join(s.name for s in stages)
        return RetrieverSpec(canonical, "fuse", f"{head} fusion of {what}", params={"method": head, **params},
                             stages=stages)
    names, params = _params(parts, RERANK_PARAMS, name)
    if len(names) != 1:
        raise HarnessError(f"{name!r}: rerank takes one first-stage retriever, e.g. rerank:MODEL(bm25;top=100)")
    first = resolve_retriever(names[0])
    if head in RETRIEVERS or head.startswith("hf:"):  # a dense retriever of ours rescoring the candidates
        scorer = resolve_retriever(head)
        if scorer.kind != "dense":
            raise HarnessError(f"{name!r}: {scorer.name} is not a dense retriever; rerank with a cross-encoder "
                               "(a Hugging Face id or folder) or a dense retriever")
        model = scorer.name
        stages = (first, scorer)
        how = "bi-encoder"
        params = {"top": params["top"]}  # the dense retriever's own recipe decides the rest
    else:
        path = Path(head).expanduser()
        model = folder_name(path) if path.is_dir() else head
        stages = (first,)
        how = "cross-encoder"
    canonical = f"rerank:{model}({first.name}{_param_text(params)})"
    return RetrieverSpec(canonical, "rerank", f"{first.name} reranked by {how} {model}",
                         model=str(path.resolve()) if how == "cross-encoder" and path.is_dir() else
                         (head if how == "cross-encoder" else None),
                         params={"scorer": how, **params}, stages=stages)
