"""The ways a user's model object encodes texts, each a class: BEIR's two methods, MTEB's encoder protocol,
and sentence-transformers' ``encode``. A declared model follows the first that accepts it
(:func:`protocol_of`); its spec and record name it (``interface``), and loading finds it by that name.
No torch here: MTEB's protocol imports mteb, datasets and torch only when it encodes."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

from harness.errors import HarnessError
from harness.registry import Registry
from harness.retrievers.base import Text
from harness.retrievers.mteb import MTEB_TASKS

QUERY = "query"  # the kind of text an encoder is asked for; anything else is a document


class ModelProtocol:
    """One way a model object encodes texts. Subclasses set ``name``, say whether a model follows them
    (``accepts``) and call it (``encode``)."""

    name: ClassVar[str] = ""

    def accepts(self, model: Any) -> bool:
        raise NotImplementedError

    def method(self, model: Any, kind: str) -> str:
        """The object's method that encodes ``kind`` texts, as error messages name it."""
        return f"{type(model).__name__}.encode"

    def encode(self, model: Any, texts: Sequence[Text], strings: list[str], kind: str, batch_size: int, *,
               dataset_id: str, split: str) -> Any:
        """The object's output for ``texts`` (queries as strings, documents as (title, text) pairs; ``strings``
        are the same texts as one string each) on the dataset ``dataset_id`` (split ``split``)."""
        raise NotImplementedError


class TwoMethods(ModelProtocol):
    """BEIR's convention: ``encode_queries(texts, batch_size)`` and ``encode_corpus(docs, batch_size)``,
    documents as ``{"title", "text"}`` dicts."""

    name = "encode_queries+encode_corpus"

    def accepts(self, model: Any) -> bool:
        return callable(getattr(model, "encode_queries", None)) and callable(getattr(model, "encode_corpus", None))

    def method(self, model: Any, kind: str) -> str:
        return f"{type(model).__name__}.{'encode_queries' if kind == QUERY else 'encode_corpus'}"

    def encode(self, model: Any, texts: Sequence[Text], strings: list[str], kind: str, batch_size: int, *,
               dataset_id: str, split: str) -> Any:
        if kind == QUERY:
            return model.encode_queries(strings, batch_size=batch_size)
        docs = [{"title": t[0], "text": t[1]} if isinstance(t, tuple) else {"title": "", "text": t} for t in texts]
        return model.encode_corpus(docs, batch_size=batch_size)


class MtebEncoder(ModelProtocol):
    """MTEB's encoder protocol, told the MTEB task of the dataset (BEIR's datasets have one): ``encode(inputs,
    *, task_metadata, hf_split, hf_subset, prompt_type)`` over a DataLoader (2.x), or ``encode(sentences, *,
    task_name, prompt_type)`` (1.x)."""

    name = "mteb"

    def accepts(self, model: Any) -> bool:
        return callable(getattr(model, "encode", None)) and bool({"task_metadata", "task_name"} & _parameters(model))

    def encode(self, model: Any, texts: Sequence[Text], strings: list[str], kind: str, batch_size: int, *,
               dataset_id: str, split: str) -> Any:
        task_name = MTEB_TASKS.get(dataset_id)
        if task_name is None:
            raise HarnessError(f"{type(model).__name__} follows MTEB's encoder protocol, which needs an MTEB "
                               f"task; {dataset_id or 'this dataset'} has none (MTEB's BEIR tasks do): wrap it with "
                               "encode_queries/encode_corpus instead")
        try:
            import mteb
            from mteb.types import PromptType
        except ImportError:
            raise HarnessError(f"{type(model).__name__} follows MTEB's encoder protocol: install mteb") from None
        prompt_type = PromptType.query if kind == QUERY else PromptType.document
        if "task_metadata" not in _parameters(model):  # MTEB 1.x: a list of sentences and the task's name
            return model.encode(strings, task_name=task_name, prompt_type=prompt_type, batch_size=batch_size)
        from datasets import Dataset as HFDataset  # what MTEB's encoders read their inputs' features from
        from torch.utils.data import DataLoader

        rows: Any = HFDataset.from_dict({"text": strings})
        loader: DataLoader[Any] = DataLoader(rows, batch_size=batch_size, shuffle=False,
                                             collate_fn=lambda batch: {"text": [b["text"] for b in batch]})
        return model.encode(loader, task_metadata=mteb.get_task(task_name).metadata, hf_split=split,
                            hf_subset="default", prompt_type=prompt_type, batch_size=batch_size)


class PlainEncode(ModelProtocol):
    """sentence-transformers' ``encode(texts, batch_size, ...)``, told ``prompt_type="query"`` or
    ``"document"`` when it takes it."""

    name = "encode"

    def accepts(self, model: Any) -> bool:
        return callable(getattr(model, "encode", None))

    def encode(self, model: Any, texts: Sequence[Text], strings: list[str], kind: str, batch_size: int, *,
               dataset_id: str, split: str) -> Any:
        accepts = inspect.signature(model.encode).parameters
        takes_prompt = "prompt_type" in accepts or any(p.kind is p.VAR_KEYWORD for p in accepts.values())
        extra = {"prompt_type": QUERY if kind == QUERY else "document"} if takes_prompt else {}
        return model.encode(strings, batch_size=batch_size, **extra)


#: the protocols a model object may follow, in the order they are tried
MODEL_PROTOCOLS: Registry[ModelProtocol] = Registry("model protocol")
for _protocol in (TwoMethods(), MtebEncoder(), PlainEncode()):
    MODEL_PROTOCOLS.register(_protocol.name, _protocol)


def protocol_of(model: Any) -> ModelProtocol:
    """The first protocol ``model`` follows, or one line saying it follows none."""
    for _, protocol in MODEL_PROTOCOLS.items():
        if protocol.accepts(model):
            return protocol
    raise HarnessError(f"{type(model).__name__} has neither encode_queries/encode_corpus (BEIR's convention) nor "
                       "encode (sentence-transformers' and MTEB's): the harness cannot call it")


def _parameters(model: Any) -> set[str]:
    return set(inspect.signature(model.encode).parameters)
