"""Retriever specs and retriever kinds: the data a retriever is made from, and the class that owns each kind.

A :class:`RetrieverSpec` is frozen data (name, kind, model, recipe, parameters, stages). Its ``kind`` names a
:class:`RetrieverKind` in :data:`RETRIEVER_KINDS`; the kind owns everything that differs between kinds: the
name syntax it parses (``sparse:...``, ``fuse:...``), how a spec becomes a retriever object (its ``load()``,
which imports the retriever's module only when called, so listing imports neither torch nor a JVM), which
stages it runs, its line in ``harness list``, and what it can do (``encodes_corpus``). Nothing outside a
kind's class compares kind strings: code asks the kind (:func:`kind_of`).

A new kind is one class and one call, :func:`register_kind` (docs/ARCHITECTURE.md, "Add a retriever kind").
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.registry import Registry
from harness.retrievers.config import EncoderConfig
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution

if TYPE_CHECKING:
    from harness.retrievers.base import Retriever

#: resolves a retriever name to its spec (handed to kinds that parse stage names, so they need no import of it)
Resolve = Callable[[str], "RetrieverSpec"]


@dataclass(frozen=True)
class RetrieverSpec:
    name: str
    kind: str  # the name of its RetrieverKind in RETRIEVER_KINDS
    description: str = ""
    model: str | None = None  # Hugging Face id or local folder (dense)
    revision: str | None = None
    encoder: EncoderConfig | None = None  # None: read from the model's files
    params: dict[str, Any] = field(default_factory=dict)  # the kind's own parameters (BM25 k1, b; fusion ...)
    query_model: str | None = None  # asymmetric retrievers (DPR): the model that encodes queries
    query_revision: str | None = None
    stages: tuple[RetrieverSpec, ...] = ()  # a composition's input retrievers, in order

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["encoder"] = self.encoder.to_dict() if self.encoder else None
        d["stages"] = [s.to_dict() for s in self.stages]
        return d

    @property
    def run_stages(self) -> tuple[RetrieverSpec, ...]:
        """The stages whose runs a composition reads (its kind decides)."""
        return kind_of(self).run_stages(self)

    @property
    def slug(self) -> str:
        """A file-system-safe, collision-free name for result files."""
        return slug_of(self.name)

    def load(self, settings: EncodeSettings = REFERENCE, execution: Execution = DEFAULT_EXECUTION,
             stages: Sequence[Retriever] | None = None) -> Retriever:
        """The retriever object (imports torch only now; the JVM starts in a worker when Lucene runs)."""
        return self.load_under(LoadOptions(settings, execution), stages)

    def load_under(self, options: LoadOptions, stages: Sequence[Retriever] | None = None) -> Retriever:
        """The retriever object under ``options``. A composition is given its stages' retriever objects
        (``stages``, loaded by the caller so that each is loaded once), or loads them."""
        if stages is None:
            stages = [s.load_under(options) for s in self.stages]
        return kind_of(self).load(self, options, stages)


class ModelObjects(Protocol):
    """The model objects a caller declared, with their specs, by retriever name: a
    :class:`harness.retrievers.declared.DeclaredModels` the caller holds and passes in."""

    def spec(self, name: str) -> RetrieverSpec | None: ...

    def model(self, name: str) -> Any:
        """The object declared under ``name`` (None when there is none)."""
        ...


@dataclass(frozen=True)
class LoadOptions:
    """What a retriever is loaded under, passed to its kind's ``load()``: the settings (what it computes), the
    execution (how), the checksums it may trust (``--force``: none remembered before) and the model objects
    the caller declared (``harness.api.evaluate``)."""

    settings: EncodeSettings = REFERENCE
    execution: Execution = DEFAULT_EXECUTION
    checksums: Checksums = TRUSTED
    declared: ModelObjects | None = None


class RetrieverKind:
    """One kind of retriever. Subclasses set ``name``, write ``load()`` and override what differs."""

    #: the kind's name, stored in specs and records
    name: ClassVar[str] = ""
    #: the name syntax this kind parses (``"sparse:"``), or None when it has registered names only
    prefix: ClassVar[str | None] = None
    #: a composition of other retrievers (its names are shortened differently in file names)
    composes: ClassVar[bool] = False
    #: a bi-encoder whose corpus vectors go to the embedding store (``harness encode``, dense rescoring)
    encodes_corpus: ClassVar[bool] = False

    def load(self, spec: RetrieverSpec, options: LoadOptions, stages: Sequence[Retriever]) -> Retriever:
        """The retriever object of ``spec`` under ``options`` (``stages``: its stages' objects, in order).
        Import the retriever's module here, not at the top: listing must not import torch or a JVM."""
        raise NotImplementedError(f"retriever kind {self.name!r} has no load()")

    def parse(self, name: str, resolve: Resolve) -> RetrieverSpec:
        """The spec of a name written in this kind's syntax (``prefix`` + ...); ``resolve`` resolves stages."""
        raise NotImplementedError(f"retriever kind {self.name!r} has no name syntax")

    def with_params(self, spec: RetrieverSpec, name: str) -> RetrieverSpec:
        """``spec`` (a registered name) with the parameters ``name`` writes after it, ``NAME(key=value;...)``
        (``bm25(k1=1.2;b=0.75)``); a kind whose registered names take none refuses."""
        raise HarnessError(f"{name!r}: {spec.name} takes no parameters in its name; run it as {spec.name} "
                           f"(`harness list retrievers` shows which names take them)")

    def run_stages(self, spec: RetrieverSpec) -> tuple[RetrieverSpec, ...]:
        """The stages whose runs this kind reads (none unless it composes)."""
        return ()

    def recipe(self, spec: RetrieverSpec) -> str:
        """One line of ``harness list retrievers``: how it computes."""
        return spec.description

    def syntax(self) -> list[tuple[str, str]]:
        """(syntax, what it computes) rows that ``harness list retrievers`` shows for this kind's names."""
        return []


RETRIEVER_KINDS: Registry[RetrieverKind] = Registry("retriever kind")
#: retrievers by registered name (``harness.retrievers.registry`` registers the built-in ones)
RETRIEVERS: Registry[RetrieverSpec] = Registry("retriever")


def register_kind(kind: RetrieverKind) -> RetrieverKind:
    """Add a retriever kind (the public API: a test or a plug-in registers its own); duplicates raise."""
    if not kind.name or type(kind).load is RetrieverKind.load:
        raise ValueError(f"{type(kind).__name__}: a retriever kind needs a name and a load()")
    return RETRIEVER_KINDS.register(kind.name, kind)


def kind_of(spec: RetrieverSpec) -> RetrieverKind:
    """The kind that owns ``spec``."""
    return RETRIEVER_KINDS.get(spec.kind)


def composition_prefixes() -> tuple[str, ...]:
    """The name prefixes of the kinds that compose others (``fuse:``, ``rerank:``)."""
    return tuple(k.prefix for _, k in RETRIEVER_KINDS.items() if k.composes and k.prefix)


def name_prefixes() -> tuple[str, ...]:
    """Every kind's name prefix (``sparse:``, ``fuse:``, ...)."""
    return tuple(k.prefix for _, k in RETRIEVER_KINDS.items() if k.prefix)


#: the canonical name of a model folder: ``<folder>#<8 hex>``, a checkpoint ``<run>/checkpoint-<step>#<8 hex>``
CANONICAL = re.compile(r"^[A-Za-z0-9._-]+(/checkpoint-\d+)?#[0-9a-f]{8}$")
CHECKPOINT_FOLDER = re.compile(r"^checkpoint-\d+$")


def slug_of(name: str) -> str:
    """A file-system-safe, collision-free file name for a retriever name (``#`` of a folder's canonical name
    becomes ``@``)."""
    if CANONICAL.match(name):
        return name.replace("/", "__").replace("#", "@")
    composed = name.startswith(composition_prefixes())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name.split("/")[-1] if ":" in name and not composed else name)
    if composed:
        safe = safe.strip("-")[:96]
    if safe == name:
        return safe
    return f"{safe.strip('-')}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


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
