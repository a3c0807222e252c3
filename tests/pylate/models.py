"""Tiny random ColBERT models in both folder layouts, made on the spot (never downloaded): a Stanford ColBERT
checkpoint (``HF_ColBERT`` config, ``bert.*`` and ``linear.weight`` in one weights file, ``artifact.metadata``)
and a PyLate folder (the transformer at the root with ``[Q] ``/``[D] `` added to its tokenizer, ``1_Dense/``
holding the projection, ``config_sentence_transformers.json``). Shared by tests/test_colbert.py and the PyLate
comparison (tests/pylate/test_pylate_equal.py, run by ``nox -s pylate``)."""

from __future__ import annotations

import json
import string
from pathlib import Path

from tests.conftest import VOCAB_WORDS, word_tokenizer

PUNCTUATION = list(string.punctuation)
VOCAB = ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *PUNCTUATION, *VOCAB_WORDS,
         *[f"w{i}" for i in range(40)]]
HIDDEN, DIM = 16, 8


def _bert(folder: Path, seed: int):
    import torch
    from transformers import BertConfig, BertModel

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tok = word_tokenizer(folder / "vocab.txt")
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=2 * HIDDEN, max_position_embeddings=64)
    return BertModel(config).eval(), tok, torch.randn(DIM, HIDDEN)


def make_stanford_colbert(folder: Path, *, seed: int = 0, query_maxlen: int = 12, doc_maxlen: int = 20,
                          attend_to_mask_tokens: bool = False, metadata: bool = True) -> Path:
    """A Stanford ColBERT checkpoint: one safetensors file with ``bert.*`` and ``linear.weight``."""
    from safetensors.torch import save_file

    model, tok, linear = _bert(folder, seed)
    model.config.architectures = ["HF_ColBERT"]
    model.config.save_pretrained(folder)
    tok.save_pretrained(folder)
    state = {f"bert.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file({**state, "linear.weight": linear.contiguous()}, str(folder / "model.safetensors"))
    if metadata:
        (folder / "artifact.metadata").write_text(json.dumps({
            "query_token_id": "[unused0]", "doc_token_id": "[unused1]", "query_maxlen": query_maxlen,
            "doc_maxlen": doc_maxlen, "dim": DIM, "mask_punctuation": True,
            "attend_to_mask_tokens": attend_to_mask_tokens, "similarity": "cosine"}))
    return folder


def make_pylate_colbert(folder: Path, *, seed: int = 1, query_length: int = 12, document_length: int = 20,
                        attend_to_expansion_tokens: bool = False) -> Path:
    """A PyLate folder as ``ColBERT.save`` writes it."""
    from safetensors.torch import save_file

    model, tok, linear = _bert(folder, seed)
    tok.add_tokens(["[Q] ", "[D] "])
    model.resize_token_embeddings(len(tok))
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": document_length - 1,
                                                                  "do_lower_case": False}))
    (folder / "1_Dense").mkdir(exist_ok=True)
    (folder / "1_Dense" / "config.json").write_text(json.dumps({
        "in_features": HIDDEN, "out_features": DIM, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}))
    save_file({"linear.weight": linear.contiguous()}, str(folder / "1_Dense" / "model.safetensors"))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({
        "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": query_length,
        "document_length": document_length, "attend_to_expansion_tokens": attend_to_expansion_tokens,
        "skiplist_words": PUNCTUATION, "do_query_expansion": True, "similarity_fn_name": "MaxSim",
        "prompts": {}, "default_prompt_name": None, "model_type": "ColBERT"}))
    return folder
