"""``--backend sentence-transformers``: encode with sentence-transformers itself, as a cross-check of the
harness's own reading of a sentence-transformers folder (pooling, Dense, Normalize, prompts, lowercasing,
max length). Its records are labelled ``[backend=sentence-transformers]`` and its vectors cached apart; the two
backends give the same vectors to float rounding (tests/test_recipes.py, tests/test_st_backend.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.corpus import Doc, doc_text
from harness.errors import HarnessError
from harness.retrievers.base import Text


def check_applicable(folder: Path, *, text_pair: bool, changed: dict[str, Any], query_model: bool) -> None:
    """Refuse what sentence-transformers cannot run as the harness would (one line naming why)."""
    if not (folder / "modules.json").is_file():
        raise HarnessError(f"--backend sentence-transformers reads a sentence-transformers folder (modules.json); "
                           f"{folder} has none, so its recipe is the harness's own: run it without --backend")
    if text_pair or query_model:
        raise HarnessError("--backend sentence-transformers encodes one text per document with one model; this "
                           "recipe has (title, text) pairs or a separate query model: run it without --backend")
    recipe = sorted(set(changed) & {"pooling", "normalize", "max_length", "doc_prefix", "precision", "forward",
                                    "batch_tokens"})
    if recipe:
        raise HarnessError(f"--backend sentence-transformers runs the folder as it is, in fp32; "
                           f"{', '.join('--' + k.replace('_', '-') for k in recipe)} does not apply to it")


class SentenceTransformersEncoder:
    """A :class:`~harness.retrievers.base.TextEncoder`: ``encode_query`` / ``encode_document`` of
    sentence-transformers, fp32, the folder's own prompts unless another query prefix (``--query-prefix``, ""
    included, or a dataset's own) replaces the query prompt; ``query_prefix`` is the folder's own."""

    def __init__(self, folder: Path, device: str, query_prefix: str, batch_size: int = 32, progress: bool = False):
        from sentence_transformers import SentenceTransformer

        from harness.devices import exact_float32, pick_device

        dev = pick_device(device)
        exact_float32(dev)
        # float32 whatever the folder's config.json says (transformers 5 loads its dtype): the weights widened
        # exactly, as hub.load_checked loads the harness's own models
        self.model = SentenceTransformer(str(folder), device=str(dev), local_files_only=True).float()
        self.device = dev
        self.query_prefix = query_prefix
        self.batch_size = batch_size
        self.progress = progress
        self.backoffs: list[dict[str, int]] = []
        self.budget_fit: dict[str, int] | None = None
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)

    def encode(self, texts: Sequence[Text], kind: str = "doc", desc: str | None = None, *,
               query_prefix: str | None = None) -> np.ndarray:
        items = [t if isinstance(t, str) else doc_text(Doc("", t[0], t[1])) for t in texts]
        options: dict[str, Any] = {"batch_size": self.batch_size, "convert_to_numpy": True,
                                   "show_progress_bar": self.progress}
        if kind == "query":
            if query_prefix is not None and query_prefix != self.query_prefix:  # not the folder's own prompt
                options["prompt"] = query_prefix
            out = self.model.encode_query(items, **options)
        else:
            out = self.model.encode_document(items, **options)
        return np.asarray(out, dtype=np.float32)
