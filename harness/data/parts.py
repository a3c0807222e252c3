"""A dataset made of parts, as ir_datasets builds one from its docs, queries and qrels handlers: a corpus
reader, a topics reader and a judgements reader, under an evaluation protocol (the split, the identical-id
rule, the text rule, the depth: data, recorded with every result).

The readers are small and reusable: ``harness.data.formats`` reads files (BEIR's corpus.jsonl and
queries.jsonl, TSV corpora such as DPR's psgs_w100 and MS MARCO's collection.tsv, TSV and TREC tagged topics,
BEIR and TREC qrels), ``harness.odqa.dataset.AnswerFile`` reads open-domain QA questions with their answers,
``harness.data.memory`` holds Python objects. A source (``harness.datasets``) picks the parts and the
protocol; :class:`PartsDataset` is the ``Dataset`` they make.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.data.corpus import Doc
from harness.data.judgements import Judgements
from harness.data.readers import CorpusReader, TopicsReader
from harness.data.registry import EvalProtocol
from harness.errors import HarnessError

__all__ = ["BEIR_METRICS", "CorpusReader", "JudgementsReader", "PartsDataset", "TopicsReader"]

#: the measures a dataset judged by qrels reports unless told otherwise (BEIR's)
BEIR_METRICS = ("ndcg@10", "recall@100", "recall@1000")


class JudgementsReader(Protocol):
    """What judges a dataset's split: made into :class:`~harness.data.judgements.Judgements` with the context
    they need passed in (answers are matched against the corpus's text, under the protocol's match rule)."""

    def files(self) -> list[Path]: ...

    def judgements(self, dataset_id: str, corpus: CorpusReader, protocol: EvalProtocol) -> Judgements: ...


@dataclass
class PartsDataset:
    """A ``Dataset`` made of a corpus reader, a topics reader and a judgements reader under ``protocol``.
    ``root`` is the folder records name as its place; ``layout`` says what a complete one holds (said when a
    file is missing); ``opened_as`` the name that opens it again where its id does not (records keep it)."""

    id: str
    protocol: EvalProtocol
    corpus_reader: CorpusReader
    topics_reader: TopicsReader
    judgements_reader: JudgementsReader
    root: Path
    default_metrics: tuple[str, ...] = BEIR_METRICS
    layout: str = ""
    opened_as: str | None = None  # the name that opens it again, where its id does not (a files: dataset)
    _judgements: Judgements | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def split(self) -> str:
        return self.protocol.split

    @property
    def corpus_path(self) -> Path:
        return self.corpus_reader.path

    @property
    def corpus_digest(self) -> str:
        return self.corpus_reader.digest

    def files(self) -> list[Path]:
        """Every file the dataset reads, each once: the corpus's, the topics', the judgements'."""
        found = [*self.corpus_reader.files(), *self.topics_reader.files(), *self.judgements_reader.files()]
        return list(dict.fromkeys(found))

    def check_layout(self) -> None:
        missing = [p for p in self.files() if not p.is_file()]
        if missing:
            raise HarnessError(f"{self.id}: missing {', '.join(str(p) for p in missing)}"
                               + (f" ({self.layout})" if self.layout else ""))

    def corpus(self) -> Iterator[Doc]:
        return self.corpus_reader.docs()

    def judgements(self) -> Judgements:
        """The split's judgements, made once."""
        if self._judgements is None:
            self._judgements = self.judgements_reader.judgements(self.id, self.corpus_reader, self.protocol)
        return self._judgements

    def queries(self) -> dict[str, str]:
        """The split's topics that its judgements judge."""
        return self.judgements().judged_topics(self.topics_reader)
