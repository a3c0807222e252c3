"""Reranking by a cross-encoder: a Hugging Face sequence-classification model with one output reads (query,
title + " " + text) pairs, truncated together to ``max_length`` tokens (longest first; default 512 as BEIR's
reranker, or the model's positions when fewer; the length used is in the fingerprint), in fp32; the score is
its logit (the sigmoid that sentence-transformers applies by default does not change the order, and would tie
saturated scores). Pairs are batched by length under a token budget, and every score is cached by content
(model files, max length, query text, document text) in an SQLite file (:class:`ScoreCache`), so a second
first stage over the same documents, or a rerun after an interruption, scores only the pairs it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

import numpy as np

from harness.data.corpus import doc_text
from harness.embeddings import refuse_nonfinite
from harness.errors import HarnessError
from harness.io import TRUSTED, Checksums
from harness.paths import cache_root
from harness.retrievers.base import SearchContext
from harness.retrievers.compute.batching import TokenBudget, run_batches
from harness.retrievers.hub import ModelProvenance, widened_from
from harness.retrievers.spec import RetrieverSpec
from harness.settings import Execution

if TYPE_CHECKING:
    from harness.data.dataset import Dataset

TEXT_RULE = "query, title + ' ' + text (stripped); truncation longest_first"


class CrossEncoderFingerprint(TypedDict):
    widened_from: NotRequired[str]  # the model's saved dtype, where not float32 (loaded widened)
    cross_encoder: str
    max_length: int
    precision: str
    batch_tokens: int | None
    text: str


class CrossEncoderFiles(ModelProvenance):
    model_files_sha256: str


class CrossEncoderProvenance(TypedDict):
    cross_encoder: CrossEncoderFiles
    max_length: int
    pairs: dict[str, int]
    oom_backoffs: list[dict[str, int]]  # each out-of-memory halving of the token budget (float rounding only)


class CrossEncoderScorer:
    """A Hugging Face sequence-classification model with one output, on (query, title + " " + text) pairs,
    in fp32, scores cached by content (``ScoreCache``)."""

    def __init__(self, spec: RetrieverSpec, execution: Execution, checksums: Checksums = TRUSTED):
        from harness.retrievers.config import model_max_positions
        from harness.retrievers.hub import spec_model_files

        self.execution = execution
        self.batch_tokens = spec.params.get("batch_tokens")
        self.budget: TokenBudget | None = None  # made with the model (its device); out-of-memory halvings recorded
        self.checksums = checksums
        # the revision pinned in the name (rerank:ID@REV(...)) is the one fetched and recorded
        self.files = spec_model_files(spec.name, spec.model, spec.revision, execution.trust_remote_code, checksums)
        self._check_cross_encoder(self.files.path)
        limit = model_max_positions(self.files.path)
        asked = spec.params.get("max_length")
        if asked is not None and limit is not None and int(asked) > limit:
            raise HarnessError(f"{spec.name}: max_length={asked} is more than the model takes ({limit} "
                               f"positions); use at most {limit}")
        # BEIR's cross-encoder length, 512; a model with fewer positions: its own
        self.max_length = int(asked) if asked is not None else min(512, limit or 512)
        self._digest: str | None = None
        self._model: tuple[Any, Any, Any] | None = None
        self.scored = {"pairs": 0, "from_cache": 0}

    @staticmethod
    def _check_cross_encoder(folder: Path) -> None:
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise HarnessError(f"{folder / 'config.json'}: unreadable ({e})") from None
        archs = config.get("architectures") or []
        if not any(a.endswith("ForSequenceClassification") for a in archs):
            raise HarnessError(f"{folder}: not a cross-encoder (architectures {archs}; expected a "
                               "...ForSequenceClassification model); to rescore with a dense encoder write "
                               f"rerank:hf:{folder}(...)")
        labels = max(len(config.get("id2label") or {}), int(config.get("num_labels") or 1))
        if labels != 1:
            raise HarnessError(f"{folder}: a cross-encoder with {labels} outputs; rerank scores one relevance "
                               "logit (num_labels 1)")

    @property
    def model_digest(self) -> str:
        if self._digest is None:
            from harness.retrievers.hub import model_digest

            self._digest = model_digest(self.files.path, self.checksums)
        return self._digest

    @property
    def device(self) -> str | None:
        return self.execution.device

    def fingerprint(self) -> CrossEncoderFingerprint:
        return {"cross_encoder": self.model_digest, "max_length": self.max_length, "precision": "fp32",
                "batch_tokens": self.batch_tokens, "text": TEXT_RULE, **widened_from(self.files.path)}

    def changed_settings(self) -> dict[str, Any]:
        return {}

    def prepare(self, dataset: Dataset) -> None:
        return None  # nothing to build: pairs are scored (and cached) as they come

    def provenance(self, context: SearchContext) -> CrossEncoderProvenance:
        return {"cross_encoder": {**self.files.provenance(), "model_files_sha256": self.model_digest},
                "max_length": self.max_length, "pairs": self.scored,
                "oom_backoffs": list(self.budget.backoffs) if self.budget is not None else []}

    def scores(self, queries: Mapping[str, str], candidates: dict[str, list[str]],
               context: SearchContext) -> dict[str, np.ndarray]:
        texts = _texts(context.dataset, {d for docs in candidates.values() for d in docs})
        pairs = [(queries[q], texts[d]) for q, docs in candidates.items() for d in docs]
        keys = [_pair_key(a, b) for a, b in pairs]
        # keyed like the fingerprint: model files, length and batch policy (the device is rounding only)
        policy = (f"-bt{self.batch_tokens}" if self.batch_tokens else "") + \
            "".join(f"-w{v}" for v in widened_from(self.files.path).values())  # scores of the widened model
        cache = ScoreCache(cache_root() / "rerank" / f"{self.model_digest[:24]}-{self.max_length}{policy}-v2.sqlite")
        try:
            known = cache.get(keys)
            todo = [i for i, key in enumerate(keys) if key not in known]
            self.scored = {"pairs": len(pairs), "from_cache": len(pairs) - len(todo)}
            if todo:
                self._score_pairs([pairs[i] for i in todo], [keys[i] for i in todo], cache, known)
        finally:
            cache.close()
        out: dict[str, np.ndarray] = {}
        i = 0
        for q, docs in candidates.items():
            out[q] = np.array([known[keys[i + j]] for j in range(len(docs))], dtype=np.float32)
            i += len(docs)
        return out

    def _load(self) -> tuple[Any, Any, Any]:
        if self._model is None:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer

            from harness.devices import exact_float32, pick_device
            from harness.retrievers.hub import load_checked

            device = pick_device(self.execution.device)
            exact_float32(device)  # these models run in fp32 (their fingerprints say so)
            tokenizer = AutoTokenizer.from_pretrained(str(self.files.path))
            model = load_checked(AutoModelForSequenceClassification, self.files.path).to(device).eval()
            self._model = (tokenizer, model, device)
        return self._model

    def _score_pairs(self, pairs: list[tuple[str, str]], keys: list[str], cache: ScoreCache,
                     known: dict[str, float]) -> None:
        import torch

        from harness.progress import progress_bar

        tokenizer, model, device = self._load()
        if self.execution.threads:
            torch.set_num_threads(self.execution.threads)
        encoded = tokenizer([a for a, _ in pairs], [b for _, b in pairs], truncation="longest_first",
                            max_length=self.max_length)
        lengths = np.array([len(x) for x in encoded["input_ids"]])
        if self.budget is None:  # one budget for the scorer's life: an out-of-memory halving holds from then on
            self.budget = TokenBudget(int(self.batch_tokens or (16384 if device.type != "cpu" else 4096)), 256,
                                      device)
        bar = progress_bar(len(pairs), "rerank pairs", "pair") if self.execution.progress else None

        def step(batch: np.ndarray) -> None:
            features = tokenizer.pad({name: [encoded[name][i] for i in batch] for name in encoded},
                                     return_tensors="pt")
            logits = model(**{n: t.to(device) for n, t in features.items()}).logits
            if logits.shape[-1] != 1:
                raise HarnessError(f"{self.files.path}: the model gives {logits.shape[-1]} logits per pair; "
                                   "rerank scores one relevance logit (num_labels 1)")
            values = logits[:, 0].float().cpu().numpy()
            refuse_nonfinite(values, [pairs[i][1][:60] for i in batch], "(query, document) pair of document")
            rows = {keys[i]: float(v) for i, v in zip(batch, values, strict=True)}
            cache.put(rows)  # committed per batch: an interrupted rerank resumes
            known.update(rows)
            if bar is not None:
                bar.update(len(batch))

        with torch.inference_mode():
            run_batches(self.budget, lengths, step)
        if bar is not None:
            bar.close()


def _texts(dataset: Dataset, wanted: set[str]) -> dict[str, str]:
    texts = {}
    for doc in dataset.corpus():
        if doc.doc_id in wanted:
            texts[doc.doc_id] = doc_text(doc)
    missing = wanted - set(texts)
    if missing:
        raise HarnessError(f"{dataset.corpus_path}: the first stage ranked {len(missing)} documents that "
                           f"are not in the corpus (e.g. {sorted(missing)[0]!r}); rerun it with --force")
    return texts


def _pair_key(query: str, doc: str) -> str:
    return hashlib.sha256(json.dumps([query, doc], ensure_ascii=False).encode()).hexdigest()[:32]


SCORE_TABLE = "CREATE TABLE scores (key TEXT PRIMARY KEY, score REAL NOT NULL, seal TEXT NOT NULL)"


def _seal(key: str, score: float) -> str:
    """Ties a score to its pair: a score edited in the file no longer matches its seal."""
    return hashlib.sha256(f"{key}:{float(score).hex()}".encode()).hexdigest()[:16]


class ScoreCache:
    """(query, document) pair scores of one model under one max length, by content, in SQLite. Every read
    is checked: the table is the one this version writes, every score a finite number sealed with its pair.
    A cache that fails is refused with one line (delete it: it is rebuilt from the model); a write that
    fails (read-only, disk full) stops at once, naming the file."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(str(path), timeout=60)
            found = self.db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='scores'").fetchone()
            if found is None:
                self.db.execute(SCORE_TABLE)
                self.db.commit()
            elif " ".join(found[0].split()) != SCORE_TABLE:
                raise self._refused(f"its table is not this version's ({found[0]!r})")
        except sqlite3.DatabaseError as e:
            raise self._refused(str(e)) from None
        except OSError as e:
            raise HarnessError(f"{path}: the rerank score cache cannot be opened ({e.strerror or e})") from None

    def _refused(self, why: str) -> HarnessError:
        return HarnessError(f"{self.path}: the rerank score cache fails its check ({why}); delete it and rerun "
                            "(its scores are computed again from the model)")

    def get(self, keys: list[str]) -> dict[str, float]:
        found: dict[str, float] = {}
        unique = list(dict.fromkeys(keys))
        try:
            for i in range(0, len(unique), 500):
                chunk = unique[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for key, score, seal in self.db.execute(
                        f"SELECT key, score, seal FROM scores WHERE key IN ({marks})", chunk).fetchall():
                    if not isinstance(score, float) or not math.isfinite(score) or seal != _seal(key, score):
                        raise self._refused(f"pair {key} has score {score!r} that is not the one it was sealed with")
                    found[key] = score
        except sqlite3.DatabaseError as e:
            raise self._refused(str(e)) from None
        return found

    def put(self, rows: dict[str, float]) -> None:
        started = time.monotonic()
        while True:
            try:
                self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)",
                                    [(k, v, _seal(k, v)) for k, v in rows.items()])
                self.db.commit()
                return
            except sqlite3.OperationalError as e:
                locked = "locked" in str(e) or "busy" in str(e)
                if not locked or time.monotonic() - started > 300:  # read-only, disk full, I/O: at once
                    raise HarnessError(f"{self.path}: the rerank score cache cannot be written ({e}); free the "
                                       "disk or point HARNESS_CACHE at a writable one") from None

    def close(self) -> None:
        self.db.close()
