"""Learned sparse retrieval (SPLADE) with a Lucene impact index through pyserini, as Pyserini's 2CR runs it.

A document's weights are SPLADE's: for each vocabulary term j, w_j = max over the document's tokens i of
log(1 + relu(logit_ij)) from the model's masked-language-model head (padding masked out), on
``title + " " + text`` truncated to 512 tokens; a query's the same on its text truncated to 256 tokens.
Both are quantised as Pyserini's SPLADE encoders do: round(w / 5 * 256), Python's round; terms whose
weight rounds to 0 carry nothing and are left out. Documents are written as Anserini's
``JsonVectorCollection`` and indexed with ``-impact -pretokenized``; queries are searched with Anserini's
``SimpleImpactSearcher`` (the engine of pyserini's ``LuceneImpactSearcher``): a document's score is the
sum over shared terms of query weight x document weight, an integer, so the run equals a brute-force dot
product of the quantised vectors exactly. Queries are encoded one at a time, without padding, as
pyserini's query encoder does; documents in length-sorted batches under a token budget (padding is
masked; it can move a float weight by an ulp, which the quantisation almost always absorbs).

The index is built once per (corpus content, model files, recipe, Anserini build) in the cache, through a
staging folder, and must hold every document that has a weight (a document whose weights all round to 0
has no term to match and is not indexed, as in Anserini). The JVM runs in the Lucene worker process.
SPLADE runs in fp32 whatever ``--precision`` says (like BM25, it has no speed modes); dense recipe
settings (``--max-length``, ``--pooling``, prefixes) are refused rather than ignored.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from harness.data.corpus import doc_text
from harness.embeddings import refuse_nonfinite
from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.paths import cache_root
from harness.retrievers.base import SearchContext, Searched
from harness.retrievers.lucene_index import (
    Collection,
    LuceneIndexed,
    anserini_jar_name,
    build_index,
    ensure_index,
    package_version,
    search_index,
)
from harness.retrievers.spec import RetrieverSpec
from harness.settings import DEFAULT_EXECUTION, REFERENCE, EncodeSettings, Execution
from harness.trec import PYSERINI_SCORE_FORMAT

if TYPE_CHECKING:
    from harness.data.dataset import Dataset
    from harness.retrievers.compute.batching import TokenBudget

SPARSE_FORMAT = 1  # bump when the weights, their quantisation or the way they reach Lucene change
TEXT_RULE = "title + ' ' + text (stripped); query text"


def quantise(weights: dict[str, float], weight_range: float, quant_range: int) -> dict[str, int]:
    """Pyserini's SPLADE quantisation, zeros dropped."""
    out = {}
    for term, w in weights.items():
        q = round(w / weight_range * quant_range)
        if q:
            out[term] = int(q)
    return out


class SparseRetriever:
    score_format = PYSERINI_SCORE_FORMAT

    def __init__(self, spec: RetrieverSpec, settings: EncodeSettings = REFERENCE,
                 execution: Execution = DEFAULT_EXECUTION, *, checksums: Checksums = TRUSTED):
        from harness.retrievers.hub import check_custom_code, resolve_model

        if spec.model is None:
            raise HarnessError(f"retriever {spec.name} names no model")
        ignored = {k: v for k, v in settings.changed().items()
                   if k in {"max_length", "pooling", "normalize", "query_prefix", "doc_prefix", "index"}}
        if ignored:  # they would change a dense encoder's numbers; SPLADE runs its own recipe, so refuse them
            raise HarnessError(f"{spec.name} runs SPLADE's own recipe; "
                               f"{', '.join('--' + k.replace('_', '-') for k in ignored)} does not apply to it "
                               "(run it without, or in a separate harness run)")
        self.spec = spec
        self.execution = execution
        self.checksums = checksums
        self.files = resolve_model(spec.model, spec.revision, checksums)
        check_custom_code(self.files.path, execution.trust_remote_code)
        config = _read_config(self.files.path)
        if not any(a.endswith("ForMaskedLM") for a in config.get("architectures") or []):
            raise HarnessError(f"{self.files.path}: SPLADE needs a masked-language-model head (a ...ForMaskedLM "
                               f"model); this one is {config.get('architectures')}")
        p = spec.params
        self.doc_max_length = int(p.get("doc_max_length", 512))
        self.query_max_length = int(p.get("query_max_length", 256))
        self.weight_range = float(p.get("weight_range", 5))
        self.quant_range = int(p.get("quant_range", 256))
        self.threads = execution.threads or max(1, os.cpu_count() or 1)
        self._digest: str | None = None
        self._model: tuple[Any, Any, Any, list[str]] | None = None
        self.budget: TokenBudget | None = None  # made with the model (its device); out-of-memory halvings recorded
        self.jvm_info: dict[str, Any] = {}  # what the search worker reported

    @property
    def model_digest(self) -> str:
        if self._digest is None:
            from harness.retrievers.hub import model_digest

            self._digest = model_digest(self.files.path, self.checksums)
        return self._digest

    def changed_settings(self) -> dict[str, Any]:
        return {}

    def recipe(self) -> SparseRecipe:
        return {"doc_max_length": self.doc_max_length, "query_max_length": self.query_max_length,
                "weight_range": self.weight_range, "quant_range": self.quant_range, "text": TEXT_RULE,
                "pooling": "max log(1 + relu(logits)), masked", "precision": "fp32"}

    def fingerprint(self) -> SparseFingerprint:
        from harness.retrievers.hub import widened_from

        return {"kind": "sparse", "model": self.model_digest, **self.recipe(), "format": SPARSE_FORMAT,
                "pyserini": package_version("pyserini"), "anserini": anserini_jar_name(),
                **widened_from(self.files.path)}

    # --- encoding ---------------------------------------------------------------------------------------
    def _load(self) -> tuple[Any, Any, Any, list[str]]:
        if self._model is None:
            import torch
            from transformers import AutoModelForMaskedLM, AutoTokenizer

            from harness.devices import exact_float32, pick_device
            from harness.retrievers.hub import load_checked

            device = pick_device(self.execution.device)
            exact_float32(device)  # these models run in fp32 (their fingerprints say so)
            tokenizer = AutoTokenizer.from_pretrained(str(self.files.path))
            model = load_checked(AutoModelForMaskedLM, self.files.path).to(device).eval()
            if self.execution.threads:
                torch.set_num_threads(self.execution.threads)
            vocab: list[str] = list(tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))))
            self._model = (tokenizer, model, device, vocab)
        return self._model

    def encode(self, texts: list[str], max_length: int, *, batched: bool = True) -> list[dict[str, int]]:
        """Quantised SPLADE weights of ``texts`` (in input order)."""
        import numpy as np
        import torch

        from harness.retrievers.compute.batching import TokenBudget, run_batches

        tokenizer, model, device, vocab = self._load()
        ids = tokenizer(texts, truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]
        lengths = np.array([len(x) for x in ids])
        if self.budget is None:  # one budget for the retriever's life: an out-of-memory halving holds from then on
            self.budget = TokenBudget(16384 if device.type != "cpu" else 4096, 128, device)
        # one text a batch (queries, as Pyserini encodes them): a text that does not fit alone is refused
        budget = self.budget if batched else TokenBudget(self.budget.tokens, 1, device)
        out: list[dict[str, int]] = [{} for _ in texts]

        def step(batch: np.ndarray) -> None:
            features = tokenizer.pad({"input_ids": [ids[i] for i in batch]}, return_tensors="pt")
            mask = features["attention_mask"].to(device)
            logits = model(input_ids=features["input_ids"].to(device), attention_mask=mask).logits
            pooled, _ = torch.max(torch.log(1 + torch.relu(logits)) * mask.unsqueeze(-1), dim=1)
            weights = pooled.float().cpu().numpy()
            refuse_nonfinite(weights, [texts[i][:60] for i in batch], "text")
            for row, i in enumerate(batch):
                cols = np.nonzero(weights[row])[0]
                out[i] = quantise({vocab[c]: float(weights[row, c]) for c in cols}, self.weight_range,
                                  self.quant_range)

        with torch.inference_mode():
            run_batches(budget, lengths, step)
        return out

    # --- index and search -------------------------------------------------------------------------------
    def index_dir(self, dataset: Dataset) -> Path:
        """Where the impact index of ``dataset``'s corpus is (by the corpus's content and this retriever's)."""
        key = json.dumps({"corpus": dataset.corpus_digest, "retriever": self.fingerprint()}, sort_keys=True)
        return cache_root() / "indexes" / "impact" / f"splade-{hashlib.sha256(key.encode()).hexdigest()[:20]}"

    def index(self, dataset: Dataset) -> LuceneIndexed:
        return ensure_index(self.index_dir(dataset), "impact index", lambda target: self._build(dataset, target))

    def _build(self, dataset: Dataset, target: Path) -> None:
        collection = Collection("JsonVectorCollection", ("-impact", "-pretokenized"), "weights ({empty:,} without)",
                                request={"vectors": True},
                                mark={"format": SPARSE_FORMAT, "model": self.model_digest, "recipe": self.recipe()})
        build_index(target, dataset, collection, lambda path: self._write_vectors(dataset, path), "impact index")

    def _write_vectors(self, dataset: Dataset, path: Path) -> tuple[int, int]:
        """The corpus's quantised weights as Anserini's JsonVectorCollection: (documents written, documents
        without a weight, which Anserini does not index)."""
        from harness.progress import progress_bar

        written = empty = 0
        bar = progress_bar(None, "SPLADE encode corpus", "doc") if self.execution.progress else None
        docs = dataset.corpus()
        with open(path, "w", encoding="utf-8") as out:
            while chunk := list(itertools.islice(docs, 1024)):  # one chunk of text in memory at a time
                vectors = self.encode([doc_text(d) for d in chunk], self.doc_max_length)
                for d, vector in zip(chunk, vectors, strict=True):
                    out.write(json.dumps({"id": d.doc_id, "contents": "", "vector": vector}, ensure_ascii=False)
                              + "\n")
                    written += 1
                    empty += not vector
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        if written == 0:
            raise HarnessError(f"{dataset.corpus_path}: the corpus is empty")
        return written, empty

    def search(self, queries: Mapping[str, str], k: int, context: SearchContext) -> Searched:
        """Top-``k`` per query in Lucene's order; integer impact scores."""
        qids = list(queries)
        vectors = self.encode([queries[q] for q in qids], self.query_max_length, batched=False)
        rows = ({"id": q, "vector": v} for q, v in zip(qids, vectors, strict=True))
        run, searched, self.jvm_info = search_index(
            self.index_dir(context.dataset), "impact index", {"op": "impact_search", "k": k, "threads": self.threads},
            rows, qids, f"impact search ({len(qids):,} queries)")
        return Searched(run, searched, self.device)

    @property
    def device(self) -> str:
        """Where SPLADE encodes (the execution's device until the model is loaded)."""
        return str(self._model[2]) if self._model else self.execution.device

    def provenance(self, context: SearchContext) -> dict[str, Any]:
        return {**self.files.provenance(), "model_files_sha256": self.model_digest, "recipe": self.recipe(),
                "engine": "Lucene impact index (Anserini) via pyserini", "index": str(self.index_dir(context.dataset)),
                **self.jvm_info, "device": self.device, "threads": self.threads,
                "oom_backoffs": list(self.budget.backoffs) if self.budget is not None else []}


class SparseRecipe(TypedDict):
    doc_max_length: int
    query_max_length: int
    weight_range: float
    quant_range: int
    text: str
    pooling: str
    precision: str


class SparseFingerprint(SparseRecipe):
    widened_from: NotRequired[str]  # the model's saved dtype, where not float32 (loaded widened)
    kind: str
    model: str
    format: int
    pyserini: str | None
    anserini: str | None


def _read_config(folder: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return config
    except (OSError, ValueError) as e:
        raise HarnessError(f"{folder / 'config.json'}: unreadable ({e})") from None

