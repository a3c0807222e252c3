"""BEIR-format folders: ``corpus.jsonl``, ``queries.jsonl`` (or TREC topics), ``qrels/<split>.tsv``.

A folder is a dataset made of parts (``harness.data.parts``): a :class:`~harness.data.formats.JsonlCorpus`,
the topics file it holds (:func:`~harness.data.formats.topics_file`) and a
:class:`~harness.data.formats.QrelsFile`. The corpus is streamed, never held in memory by the reader.
Documents are ``Doc`` tuples; the text a retriever sees is ``doc_text(doc)`` = title + " " + text (just the
text when there is no title).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.data.corpus import Doc, doc_text
from harness.data.formats import JsonlCorpus, QrelsFile, iter_corpus, read_queries, topics_file
from harness.data.judgements import GradedJudgements
from harness.data.parts import PartsDataset
from harness.data.registry import EvalProtocol
from harness.errors import HarnessError
from harness.trec import Qrels

#: the topics files a folder may hold besides queries.jsonl: Anserini's TSV, TREC's tagged file
TOPIC_FILES = ("topics.tsv", "queries.tsv", "topics.txt")

__all__ = ["BeirDataset", "Doc", "default_split", "doc_text", "folder_splits", "iter_corpus", "read_queries"]


def folder_splits(root: Path) -> list[str]:
    """The splits a BEIR folder judges (``qrels/<split>.tsv``), test first, then by name."""
    names = sorted(p.stem for p in (root / "qrels").glob("*.tsv")) if (root / "qrels").is_dir() else []
    return sorted(names, key=lambda n: (n != "test", n))


def default_split(root: Path) -> str:
    """A folder's evaluation split: ``test`` (BEIR's), else its one judged split; with several and no test,
    ``test`` all the same, refused by :meth:`BeirDataset.check_layout` with the splits to choose from."""
    splits = folder_splits(root)
    return splits[0] if len(splits) == 1 else "test"


def queries_file(root: Path) -> Path:
    """``queries.jsonl`` (BEIR), else TREC topics: ``topics.tsv`` / ``queries.tsv`` (Anserini's TSV) or
    ``topics.txt`` (TREC's tagged file, titles)."""
    found = [root / name for name in ("queries.jsonl", *TOPIC_FILES) if (root / name).is_file()]
    if len(found) > 1:  # which queries a run reads is never a guess
        raise HarnessError(f"{root} holds {len(found)} topic files ({', '.join(p.name for p in found)}); keep the "
                           "one to evaluate (or name it: --corpus/--topics/--qrels)")
    return found[0] if found else root / "queries.jsonl"


@dataclass
class BeirDataset(PartsDataset):
    """A BEIR-layout dataset: a corpus, the split's topics (the queries its qrels judge) and its graded
    judgements. :meth:`folder` makes one of a folder."""

    @classmethod
    def folder(cls, dataset_id: str, root: Path, protocol: EvalProtocol, corpus: Path | None = None) -> BeirDataset:
        """The dataset of a BEIR folder (``corpus``: a corpus.jsonl kept elsewhere, as the ir_datasets export
        shares one per document collection)."""
        return cls(dataset_id, protocol, JsonlCorpus(corpus or root / "corpus.jsonl"), topics_file(queries_file(root)),
                   QrelsFile(root / "qrels" / f"{protocol.split}.tsv"), root)

    @property
    def queries_path(self) -> Path:
        return self.topics_reader.path

    @property
    def qrels_path(self) -> Path:
        return self.root / "qrels" / f"{self.split}.tsv"

    def check_layout(self) -> None:
        missing = [p for p in self.files() if not p.is_file()]
        splits = folder_splits(self.root)
        if missing == [self.qrels_path] and splits:
            raise HarnessError(f"{self.root}: no qrels/{self.split}.tsv; this folder has the split(s) "
                               f"{', '.join(splits)}: pass --split {splits[0]}")
        if missing:
            names = ", ".join(str(p.relative_to(self.root)) if p.is_relative_to(self.root) else str(p)
                              for p in missing)
            raise HarnessError(f"{self.root} is not a complete BEIR folder: missing {names} "
                               "(expected corpus.jsonl, queries.jsonl (or TREC topics: topics.tsv, topics.txt) "
                               "and qrels/<split>.tsv (BEIR TSV or TREC qrels))")

    def qrels(self) -> Qrels:
        judgements = self.judgements()
        assert isinstance(judgements, GradedJudgements)
        return judgements.qrels()
