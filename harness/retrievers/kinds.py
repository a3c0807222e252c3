"""The built-in retriever kinds: BM25 (Lucene), dense (any Hugging Face encoder), SPLADE (``sparse:``), and the
compositions fusion (``fuse:``) and reranking (``rerank:``). Each class owns its name syntax, its loading and
its ``harness list`` line (see :class:`harness.retrievers.spec.RetrieverKind`); importing this module
registers them. No torch here: each kind's ``load()`` imports its retriever's module when a spec is loaded."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.data.registry import check_split
from harness.errors import HarnessError
from harness.params import JAVA_INT_MAX, Param, parse_params
from harness.retrievers.names import CONTENT_NAME, find, remember
from harness.retrievers.spec import (
    RETRIEVERS,
    LoadOptions,
    Resolve,
    RetrieverKind,
    RetrieverSpec,
    folder_name,
    kind_of,
    register_kind,
)
from harness.settings import REFERENCE

if TYPE_CHECKING:
    from harness.retrievers.base import Retriever

#: SPLADE++ EnsembleDistil as Pyserini's 2CR BEIR runs (splade-pp-ed): documents 512 tokens, queries 256,
#: weights quantised round(w / 5 * 256), a Lucene impact index
SPLADE: dict[str, Any] = {"doc_max_length": 512, "query_max_length": 256, "weight_range": 5, "quant_range": 256}


#: BM25's parameters, declared once; a registered BM25 name takes them as ``bm25(k1=1.2;b=0.75)``. The defaults
#: are Pyserini's (its BEIR runs: k1=0.9, b=0.4). Lucene refuses a k1 below 0 or not finite as a float32 and a
#: b outside [0, 1]; k1 stops at 1e6, far past where BM25 still saturates term frequency.
BM25_PARAMS: tuple[Param, ...] = (
    Param("k1", float, 0.9, "term-frequency saturation", low=0, high=1e6),
    Param("b", float, 0.4, "document-length normalisation", low=0, high=1))
BM25_EXAMPLE = "bm25(k1=1.2;b=0.75)"


class BM25Kind(RetrieverKind):
    """Lucene BM25 through pyserini: the registered names (``bm25``, ``bm25-multifield``), with their
    parameters when they differ from Pyserini's (``bm25(k1=1.2;b=0.75)``)."""

    name = "bm25"

    def with_params(self, spec: RetrieverSpec, name: str) -> RetrieverSpec:
        """``spec`` with k1 and b as ``name`` writes them (either may be left out: the registered spec's value).
        The name is canonical: the registered name when the values are its own (so a published reproduction
        keeps its row), else both values written out, ``bm25(k1=1.2;b=0.75)``."""
        fix = f"write {spec.name}(k1=X;b=Y), e.g. {BM25_EXAMPLE.replace('bm25', spec.name, 1)}"
        body = name[len(spec.name) + 1:]
        if not body.endswith(")") or not body[:-1].strip():
            raise HarnessError(f"{name!r}: expected {spec.name}(key=value;...) with "
                               f"{', '.join(p.name for p in BM25_PARAMS)}; {fix}")
        given: dict[str, str] = {}
        for part in split_top(body[:-1]):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or not key:
                raise HarnessError(f"{name!r}: {part!r} is not key=value; {fix}")
            if key in given:
                raise HarnessError(f"{name!r}: {key} is given twice; {fix}")
            given[key] = value
        declared = tuple(replace(p, default=spec.params[p.name]) for p in BM25_PARAMS)
        try:
            params = {k: v + 0.0 for k, v in parse_params(declared, given, name).items()}  # -0.0 is 0.0
        except HarnessError as e:
            raise HarnessError(f"{e}; {fix}") from None
        if all(params[k] == spec.params[k] for k in params):
            return spec
        canonical = f"{spec.name}({_param_text(params)[1:]})"
        what = f"{spec.description.partition(',')[0]}, as {spec.name} but k1={params['k1']} b={params['b']}"
        return RetrieverSpec(canonical, self.name, what, params={**spec.params, **params})

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.lucene import BM25Retriever

        if options.settings.index != REFERENCE.index:
            raise HarnessError(f"{spec.name} searches its Lucene index; --index {options.settings.index} applies to "
                               "dense retrievers (run it without, or in a separate harness run)")
        return BM25Retriever(spec, options.execution)  # BM25 computes the same under the dense settings

    def recipe(self, spec: RetrieverSpec) -> str:
        return f"k1={spec.params['k1']} b={spec.params['b']}, {spec.params['collection']}"

    def syntax(self) -> list[tuple[str, str]]:
        ranges = "; ".join(f"{p.name}, {p.help}: {p.expects()}" for p in BM25_PARAMS)
        defaults = " ".join(f"{p.name}={p.default}" for p in BM25_PARAMS)
        return [(BM25_EXAMPLE, f"bm25 or bm25-multifield with other parameters ({ranges}; either may be left "
                               f"out); at Pyserini's {defaults} the name is bm25 (bm25-multifield)")]


class DenseKind(RetrieverKind):
    """A bi-encoder: ``hf:<model id or folder>[@revision]``, a checkpoint folder, or a registered recipe."""

    name = "dense"
    prefix = "hf:"
    encodes_corpus = True

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.dense import DenseRetriever  # torch, when a dense model runs

        return DenseRetriever(spec, options.settings, options.execution, checksums=options.checksums)

    def parse(self, name: str, resolve: Resolve) -> RetrieverSpec:
        target, _, revision = name[len("hf:"):].partition("@")
        if not target:
            raise HarnessError("hf: needs a model id or folder, e.g. hf:sentence-transformers/all-MiniLM-L6-v2")
        if not Path(target).expanduser().is_dir():
            return RetrieverSpec(name, self.name, f"Hugging Face encoder {target}", model=target,
                                 revision=revision or None)
        if revision:
            raise HarnessError(f"{name}: a local model folder has no revision (its content is its identity); "
                               f"drop @{revision}")
        return self.folder(target, "Hugging Face encoder")

    def folder(self, target: str, what: str) -> RetrieverSpec:
        """A model folder (``hf:`` or a checkpoint path), named canonically by its content."""
        path = Path(target).expanduser().resolve()
        name = folder_name(path)
        remember(name, path)
        return RetrieverSpec(name, self.name, f"{what} {path}", model=str(path))

    def printed(self, name: str) -> RetrieverSpec:
        """A model folder by the name a table printed (``<folder name>#<8 hex>``), found by its content."""
        path = find(name, lambda p: folder_name(p) if p.is_dir() else None)
        return self.folder(str(path), "Hugging Face encoder")

    def recipe(self, spec: RetrieverSpec) -> str:
        text = spec.encoder.describe() if spec.encoder else "as the model's own files say"
        return text + (f"; queries: {spec.query_model}" if spec.query_model else "")


class SparseKind(RetrieverKind):
    """Learned sparse retrieval (SPLADE) in a Lucene impact index: ``sparse:<model id or folder>``."""

    name = "sparse"
    prefix = "sparse:"

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.sparse import SparseRetriever

        return SparseRetriever(spec, options.settings, options.execution, checksums=options.checksums)

    def parse(self, name: str, resolve: Resolve) -> RetrieverSpec:
        target = name[len(self.prefix or ""):]
        if not target:
            raise HarnessError("sparse: needs a SPLADE model id or folder, e.g. "
                               "sparse:naver/splade-cocondenser-ensembledistil")
        path = Path(target).expanduser()
        if not path.is_dir() and CONTENT_NAME.match(name):  # a printed name: the folder with that content
            path = find(name, lambda p: f"sparse:{folder_name(p)}" if p.is_dir() else None)
        if path.is_dir():
            shown = f"sparse:{folder_name(path)}"
            remember(shown, path)
            return RetrieverSpec(shown, self.name, f"SPLADE model {path.resolve()}",
                                 model=str(path.resolve()), params=SPLADE)
        return RetrieverSpec(name, self.name, f"SPLADE model {target}", model=target, params=SPLADE)

    def recipe(self, spec: RetrieverSpec) -> str:
        p = spec.params
        return (f"SPLADE max pooling; documents {p['doc_max_length']}, queries {p['query_max_length']} "
                f"tokens; weights round(w / {p['weight_range']} x {p['quant_range']}); impact index")


class ColbertKind(RetrieverKind):
    """Late interaction: ``colbert:<model id or folder>`` (a PyLate or Stanford ColBERT checkpoint), token vectors
    in the embedding store, searched exactly by MaxSim; or a registered recipe."""

    name = "colbert"
    prefix = "colbert:"
    encodes_corpus = True

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.colbert import ColbertRetriever  # torch, when a ColBERT model runs

        return ColbertRetriever(spec, options.settings, options.execution, checksums=options.checksums)

    def parse(self, name: str, resolve: Resolve) -> RetrieverSpec:
        target, _, revision = name[len(self.prefix):].partition("@")
        if not target:
            raise HarnessError("colbert: needs a ColBERT model id or folder, e.g. colbert:colbert-ir/colbertv2.0")
        path = Path(target).expanduser()
        if not path.is_dir() and CONTENT_NAME.match(name):  # a printed name: the folder with that content
            path = find(name, lambda p: f"colbert:{folder_name(p)}" if p.is_dir() else None)
        if not path.is_dir():
            return RetrieverSpec(name, self.name, f"ColBERT model {target}", model=target, revision=revision or None)
        if revision:
            raise HarnessError(f"{name}: a local model folder has no revision (its content is its identity); "
                               f"drop @{revision}")
        shown = f"colbert:{folder_name(path)}"
        remember(shown, path)
        return RetrieverSpec(shown, self.name, f"ColBERT model {path.resolve()}", model=str(path.resolve()))

    def recipe(self, spec: RetrieverSpec) -> str:
        own = ", ".join(f"{k}={v}" for k, v in spec.params.items() if k != "source")
        return f"MaxSim over token vectors; {own or 'markers, lengths and skiplist as the model files say'}"

    def syntax(self) -> list[tuple[str, str]]:
        return [("colbert:<model id or folder>", "late interaction (ColBERT): token vectors, exact MaxSim; a PyLate "
                                                 "or Stanford ColBERT checkpoint under its own settings")]


class DeclaredKind(RetrieverKind):
    """A model object of the user's, declared by name and revision (``harness.api.evaluate``); not a name
    that can be typed: it lives in the Python process that declared it."""

    name = "declared"
    encodes_corpus = True

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.declared import DeclaredModelRetriever

        model = options.declared.model(spec.name) if options.declared is not None else None
        if model is None:
            raise HarnessError(f"{spec.name}: no model object of that name was declared to this run; declare it "
                               "with harness.api.evaluate(model, datasets, name=..., revision=...)")
        return DeclaredModelRetriever(spec, model, options.settings, options.execution, options.checksums)

    def recipe(self, spec: RetrieverSpec) -> str:
        return f"declared by the user: {spec.description} (not content-checked; revision {spec.revision})"


class RunKind(RetrieverKind):
    """A TREC run file computed elsewhere: ``run:<file>``, named by the file's name and its content digest."""

    name = "run"
    prefix = "run:"

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.external import ExternalRun

        return ExternalRun(spec)  # a file: no setting changes what it holds

    def parse(self, name: str, resolve: Resolve) -> RetrieverSpec:
        from harness.io import sha256_file

        target = name[len("run:"):]
        path = Path(target).expanduser()
        if target and not path.is_file() and CONTENT_NAME.match(name):  # a printed name: the file with that content
            path = find(name, lambda p: f"run:{p.name}#{sha256_file(p)[:8]}" if p.is_file() else None)
        if not target or not path.is_file():
            raise HarnessError(f"{name!r}: run: needs a TREC run file ('qid Q0 docid rank score tag' lines), "
                               f"e.g. run:runs/my-system.trec" + ("" if not target else f"; {path} is not a file"))
        digest = sha256_file(path)
        shown = f"run:{path.name}#{digest[:8]}"
        remember(shown, path)
        return RetrieverSpec(shown, self.name, f"run file {path.resolve()}", model=str(path.resolve()),
                             params={"sha256": digest})

    def recipe(self, spec: RetrieverSpec) -> str:
        return "a TREC run computed elsewhere (its content is its identity)"

    def syntax(self) -> list[tuple[str, str]]:
        return [("run:<TREC run file>", "a run computed elsewhere, as a row, a fusion stage or a first stage")]


# --- compositions: fusion and reranking as retriever specs --------------------------------------------------

#: a composition's parameters, declared once (type, default, range): ``harness.params.Param`` parses and checks
#: them. Depths are handed to Lucene (a Java int); weights and alpha stay where float64 sums stay finite; RRF's
#: k stays where 1/(k + rank) still tells ranks apart.
_HITS = Param("hits", int, None, "run every stage this deep", low=1, high=JAVA_INT_MAX)
FUSE_PARAMS: dict[str, tuple[Param, ...]] = {
    "rrf": (Param("k", int, 60, "RRF's constant", low=1, high=1e9), _HITS),
    "hybrid": (Param("alpha", float, 0.1, "weight of the sparse run", low=-1e6, high=1e6),
               Param("normalization", bool, False), Param("weight_on_dense", bool, False), _HITS),
    "wsum": (Param("weights", float, None, "one weight per run", low=-1e6, high=1e6, many=True),
             Param("norm", str, "none", choices=("none", "min-max", "max", "sum")), _HITS,
             Param("optimise", str, None, "choose the weights on this split (as ranx's optimize_fusion)"),
             Param("metric", str, None, "what optimise= maximises (default ndcg@10)"),
             Param("step", float, None, "optimise='s weight grid (default 0.1)", low=0, low_open=True, high=1)),
}
#: what ``optimise=`` uses when ``metric=`` and ``step=`` are left out (ranx's grid step; the BEIR measure)
OPTIMISE_DEFAULTS = {"metric": "ndcg@10", "step": 0.1}
RERANK_PARAMS: tuple[Param, ...] = (
    Param("top", int, 100, "hits of the first stage rescored", low=1, high=JAVA_INT_MAX),
    Param("max_length", int, None, "cross-encoder tokens (None: 512 or the model's fewer)", low=1),
    Param("batch_tokens", int, None, "padded tokens per batch", low=1))
MAX_NESTING = 16  # compositions of compositions deeper than this are refused, not recursed into


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
        if depth > MAX_NESTING:
            raise HarnessError(f"{text[:60]!r}...: compositions nested more than {MAX_NESTING} deep are not taken")
    if depth:
        raise HarnessError(f"unbalanced parentheses in {text!r}")
    parts.append(cur.strip())
    return parts


def _params(parts: list[str], declared: tuple[Param, ...], where: str) -> tuple[list[str], dict[str, Any]]:
    """The stage names and the declared parameters (defaults, or the ``key=value`` parts parsed)."""
    stages, given = [], {}
    for part in parts:
        key, eq, value = part.partition("=")
        if eq and "(" not in key and ":" not in key and "/" not in key:
            if key.strip() in given:
                raise HarnessError(f"{where}: {key.strip()}= is given twice; give it once")
            given[key.strip()] = value
        elif part:
            stages.append(part)
        else:
            raise HarnessError(f"{where}: an empty name between separators")
    return stages, parse_params(declared, given, where)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ":".join(_show(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _param_text(params: dict[str, Any]) -> str:
    return "".join(f";{k}={_show(v)}" for k, v in params.items() if v is not None)



def _split_call(name: str, prefix: str, example: str) -> tuple[str, list[str]]:
    """``prefix:HEAD(a,b;k=v)`` -> (HEAD, its top-level parts)."""
    rest = name[len(prefix):]
    head, paren, tail = rest.partition("(")
    if not paren or not tail.endswith(")") or not head:
        raise HarnessError(f"{name!r}: expected {prefix}NAME(STAGE,...;key=value), e.g. {example}")
    return head, split_top(tail[:-1])


class FuseKind(RetrieverKind):
    """``fuse:METHOD(A,B,...;key=value...)``: fuses the runs of retrievers A, B, ... (compositions included)."""

    name = "fuse"
    prefix = "fuse:"
    composes = True

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.fusion import FusionRetriever

        return FusionRetriever(spec, stages)

    def parse(self, name: str, resolve: Resolve) -> RetrieverSpec:
        """The spec's name is canonical: stage names resolved (folders by content), every parameter written
        out, so two spellings of one composition are one row."""
        head, parts = _split_call(name, "fuse:", "fuse:rrf(bm25,contriever)")
        if head not in FUSE_PARAMS:
            raise HarnessError(f"{name!r}: unknown fusion method {head!r}; known: {', '.join(FUSE_PARAMS)}")
        names, params = _params(parts, FUSE_PARAMS[head], name)
        if len(names) < 2:
            raise HarnessError(f"{name!r}: fusion needs at least two retrievers")
        if head == "hybrid" and len(names) != 2:
            raise HarnessError(f"{name!r}: hybrid fuses exactly two runs (dense, sparse)")
        if head == "wsum" and params["optimise"] is not None:
            if params["weights"] is not None:
                raise HarnessError(f"{name!r}: weights= and optimise= both given; optimise= chooses the weights "
                                   "on its split: drop one")
            check_split(params["optimise"], f"{name!r}: optimise=")
            for key, default in OPTIMISE_DEFAULTS.items():
                params[key] = default if params[key] is None else params[key]
            from harness.metrics.measures import parse_measure

            params["metric"] = str(parse_measure(str(params["metric"])))  # one spelling: one row
            from harness.retrievers.fusion import weight_grid

            weight_grid(len(names), float(params["step"]))  # a step that does not divide 1 is refused here
        elif head == "wsum":
            given = [key for key in OPTIMISE_DEFAULTS if params[key] is not None]
            if given:
                raise HarnessError(f"{name!r}: {' and '.join(k + '=' for k in given)} apply to optimised weights; "
                                   "add optimise=SPLIT (e.g. optimise=dev) or drop them")
            weights = params["weights"] or [1.0] * len(names)
            if not isinstance(weights, list) or len(weights) != len(names):
                raise HarnessError(f"{name!r}: {len(weights)} weights for {len(names)} retrievers")
            params["weights"] = weights
        stages = tuple(resolve(n) for n in names)
        canonical = f"fuse:{head}({','.join(s.name for s in stages)}{_param_text(params)})"
        what = ", ".join(s.name for s in stages)
        return RetrieverSpec(canonical, self.name, f"{head} fusion of {what}", params={"method": head, **params},
                             stages=stages)

    def run_stages(self, spec: RetrieverSpec) -> tuple[RetrieverSpec, ...]:
        return spec.stages

    def recipe(self, spec: RetrieverSpec) -> str:
        return f"{spec.params.get('method')} fusion of {len(spec.stages)} runs"

    def syntax(self) -> list[tuple[str, str]]:
        return [
            ("fuse:rrf(A,B,...;k=60)", "reciprocal rank fusion of the runs of A, B, ... (Cormack et al. 2009; k=60)"),
            ("fuse:hybrid(DENSE,SPARSE;alpha=1.3)", "dense + alpha x sparse score fusion as Pyserini's hybrid "
                                                    "search (a document missing from one run takes that run's "
                                                    "lowest score)"),
            ("fuse:wsum(A,B;weights=1:0.5;norm=min-max)", "weighted sum of per-run normalised scores (as ranx's "
                                                          "wsum)"),
            ("fuse:wsum(A,B;norm=min-max;optimise=dev)", "wsum with the weights chosen on another split (ranx's "
                                                         "optimize_fusion grid; metric=ndcg@10, step=0.1)"),
        ]


class RerankKind(RetrieverKind):
    """``rerank:MODEL(FIRST;top=N)``: FIRST's top N hits rescored by a cross-encoder (a Hugging Face id, pinned
    with ``ID@REVISION``, or a folder) or by a dense retriever of ours (a registered name or ``hf:...``)."""

    name = "rerank"
    prefix = "rerank:"
    composes = True

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        from harness.retrievers.rerank import RerankRetriever  # torch, when a cross-encoder runs

        return RerankRetriever(spec, options.settings, options.execution, stages, checksums=options.checksums)

    def parse(self, name: str, resolve: Resolve) -> RetrieverSpec:
        head, parts = _split_call(name, "rerank:", "rerank:MODEL(bm25;top=100)")
        names, params = _params(parts, RERANK_PARAMS, name)
        if len(names) != 1:
            raise HarnessError(f"{name!r}: rerank takes one first-stage retriever, e.g. rerank:MODEL(bm25;top=100)")
        first = resolve(names[0])
        stages: tuple[RetrieverSpec, ...]
        model: str | None
        if head in RETRIEVERS or head.startswith(("hf:", ColbertKind.prefix)):  # a retriever of ours rescoring
            scorer = resolve(head)
            if not kind_of(scorer).encodes_corpus:
                raise HarnessError(f"{name!r}: {scorer.name} is not a dense retriever; rerank with a cross-encoder "
                                   "(a Hugging Face id or folder) or a dense retriever")
            shown, stages, how, model = scorer.name, (first, scorer), "bi-encoder", None
            ignored = [k for k in ("max_length", "batch_tokens") if params[k] is not None]
            if ignored:
                flags = ", ".join("--" + k.replace("_", "-") for k in ignored)
                raise HarnessError(f"{name!r}: {', '.join(ignored)} is a cross-encoder parameter; a dense rescorer "
                                   f"runs its own recipe (set it with {flags})")
            params = {"top": params["top"]}  # the dense retriever's own recipe decides the rest
        else:
            target, _, revision = head.partition("@")
            path = Path(target).expanduser()
            local = path.is_dir()
            if local and revision:
                raise HarnessError(f"{name}: a local model folder has no revision (its content is its identity); "
                                   f"drop @{revision}")
            shown = folder_name(path) if local else head
            stages, how, model = (first,), "cross-encoder", str(path.resolve()) if local else target
        canonical = f"rerank:{shown}({first.name}{_param_text(params)})"
        return RetrieverSpec(canonical, self.name, f"{first.name} reranked by {how} {shown}", model=model,
                             params={"scorer": how, **params}, stages=stages,
                             revision=(revision or None) if how == "cross-encoder" else None)

    def run_stages(self, spec: RetrieverSpec) -> tuple[RetrieverSpec, ...]:
        return spec.stages[:1]  # a dense rescorer (the second stage) is loaded, not run

    def recipe(self, spec: RetrieverSpec) -> str:
        return f"top {spec.params.get('top')} of {spec.stages[0].name} rescored by a {spec.params.get('scorer')}"

    def syntax(self) -> list[tuple[str, str]]:
        return [("rerank:MODEL(FIRST;top=100)", "the top hits of FIRST rescored by MODEL: a cross-encoder (Hugging "
                                                "Face id[@revision] or folder), or a dense retriever of ours (a name "
                                                "or hf:...)")]


for _kind in (BM25Kind(), DenseKind(), SparseKind(), ColbertKind(), DeclaredKind(), RunKind(), FuseKind(),
              RerankKind()):
    register_kind(_kind)
