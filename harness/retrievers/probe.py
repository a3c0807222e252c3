"""What a declared model object returns, checked: vectors, or a one-line refusal naming the model's method and
the first offending row; and the probe that ties a declared name to what the object computes.

The harness cannot read a model object's weights. It can read what the object returns: every batch must be
a numeric array of one row per text (not text, not rows of different lengths), with no row of zeros or one
value repeated (a constant vector ranks by tie-break alone) and, over different texts, not one vector for all.
The probe encodes a few fixed texts (queries and documents, one of them past 512 tokens), rounds the vectors
to the model's precision (4 decimals of the largest value for 32-bit output, 2 for 16-bit) and hashes them: a
model changed under the same name and revision in a way these texts show (its weights, its pooling, its
truncation) has another probe digest, so another identity (:mod:`harness.retrievers.declared`). A change they
do not show keeps the name: that is what the declared revision is for, and ``--force`` (``force=True``)
encodes the corpus again rather than trust the store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from harness.errors import HarnessError

PROBE_QUERIES = ("what causes cancer in cells", "dense retrieval of documents", "protein expression in tumors",
                 "how is relevance judged")
PROBE_DOCS = (("Gene expression", "The study measured protein expression in tumor cells of patients."),
              ("Retrieval", "A dense model encodes each query and document as a vector and ranks by score."),
              ("", "Training with a contrastive loss pulls each pair together in the embedding space."),
              ("Relevance", "Assessors judge each pair of query and document on a graded scale."),
              ("", " ".join(
                  ["Cells of the immune system recognise antigens on infected tissue and signal to each other "
                   "through cytokines, which regulate inflammation, repair and the growth of new vessels."] * 12
                  + ["Telescopes measure the light of distant galaxies, whose spectra shift toward the red as the "
                     "universe expands, telling astronomers their distance and the age of their stars."] * 12)))
#: the last document runs to 648 words (758 tokens in BERT's uncased vocabulary: beyond 512),
#: its second half on another subject: a model whose truncation changed encodes it differently


def checked_vectors(out: Any, method: str, texts: Sequence[str], kind: str) -> np.ndarray:
    """``out`` as float32 vectors, one row per text, or a HarnessError naming ``method`` and the first row
    that is not a vector (``texts`` say which text it was)."""
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().float().cpu().numpy()
    try:
        raw = np.asarray(out)
    except ValueError:  # rows of different lengths
        raw = np.asarray(out, dtype=object)
    if raw.dtype == object and raw.ndim == 1:
        lengths = [len(r) if hasattr(r, "__len__") else -1 for r in raw]
        row = next((i for i, n in enumerate(lengths) if n != lengths[0]), 0)
        raise HarnessError(f"{method} returned rows of different lengths (row {row}: {lengths[row]} values, row 0: "
                           f"{lengths[0]}); expected an array of shape ({len(texts)}, dim)")
    if raw.dtype.kind not in "biuf":
        flat = raw.reshape(len(raw), -1) if raw.ndim >= 1 and len(raw) else raw.reshape(1, -1)
        row = next((i for i, r in enumerate(flat) if not all(_number(v) for v in r)), 0)
        value = next((v for v in flat[row] if not _number(v)), None) if len(flat) else None
        raise HarnessError(f"{method} returned values that are not numbers (row {row}: {value!r}); it must return "
                           "float vectors")
    if raw.ndim != 2 or raw.shape[0] != len(texts):
        raise HarnessError(f"{method} returned an array of shape {raw.shape} for {len(texts)} {kind} texts; "
                           f"expected ({len(texts)}, dim), one row per text (row 0 is the first text)")
    vectors = raw.astype(np.float32)
    for i, row in enumerate(vectors):
        if not texts[i].strip():
            continue  # an empty text may encode as anything, zeros included
        if not row.any():
            raise HarnessError(f"{method} returned a vector of all zeros for row {i} ({kind} {texts[i][:40]!r}); "
                               "a zero vector scores 0 against every text: fix the model")
        if row.shape[0] > 1 and np.all(row == row[0]) and np.isfinite(row[0]):
            raise HarnessError(f"{method} returned a constant vector (every value {row[0]:g}) for row {i} ({kind} "
                               f"{texts[i][:40]!r}); it cannot tell texts apart: fix the model")
    filled = [i for i, t in enumerate(texts) if t.strip()]
    others = [i for i in filled[1:] if texts[i] != texts[filled[0]]]
    if others and all(np.array_equal(vectors[i], vectors[filled[0]]) for i in others):
        raise HarnessError(f"{method} returned the same vector for every {kind} text (row {others[0]} equals row "
                           f"{filled[0]}, for another text); it ranks by tie-break alone: fix the model")
    return vectors


def probe(encode: Callable[[Sequence[Any], str], tuple[np.ndarray, bool]]) -> dict[str, Any]:
    """The probe of a model: ``encode(texts, kind)`` gives its vectors and whether its output was 16-bit.
    Returns the digest of the rounded vectors, the texts encoded and the decimals kept."""
    queries, low_q = encode(list(PROBE_QUERIES), "query")
    docs, low_d = encode(list(PROBE_DOCS), "doc")
    decimals = 2 if (low_q or low_d) else 4
    digest = hashlib.sha256()
    for vectors in (queries, docs):
        scale = float(np.max(np.abs(vectors))) or 1.0
        rounded = np.round(vectors.astype(np.float64) / scale, decimals) + 0.0  # -0.0 hashes as 0.0
        digest.update(repr(rounded.shape).encode())
        digest.update(rounded.tobytes())
    return {"sha256": digest.hexdigest(), "texts": len(PROBE_QUERIES) + len(PROBE_DOCS), "decimals": decimals}


def low_precision(out: Any) -> bool:
    """Whether a model's output is 16-bit (float16 or bfloat16), whose probe keeps fewer decimals."""
    return str(getattr(out, "dtype", "")).replace("torch.", "") in {"float16", "bfloat16", "half"}


def _number(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
