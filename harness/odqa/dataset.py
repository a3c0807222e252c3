"""``OdqaDataset``: a passage file plus a question file, evaluated by answer matching (DPR convention).

A dataset made of parts (``harness.data.parts``): a :class:`~harness.data.formats.DprCorpus` and an
:class:`AnswerFile`, which is both its topics (the questions) and its judgements (their answers, matched
against the text of the passages a run retrieves: top-k accuracy in the run's own rank order, with each
question's first-hit rank).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from harness.data.formats import DprCorpus
from harness.data.parts import CorpusReader, PartsDataset
from harness.data.registry import EvalProtocol, OdqaProtocol, OdqaSpec, RemoteFile
from harness.errors import DataError, HarnessError, OfflineError
from harness.io import shareable
from harness.odqa.evaluate import DEFAULT_METRICS, AnswerJudgements
from harness.odqa.formats import Question, find_questions_file, read_questions
from harness.paths import cache_root, data_roots, download_root

PASSAGE_NAMES = ("passages.tsv", "passages.tsv.gz", "psgs_w100.tsv", "psgs_w100.tsv.gz")
LAYOUT = "an ODQA dataset needs a passage TSV and a question file"


@dataclass
class AnswerFile:
    """A question file (DPR's ``*.qa.csv``, EntityQuestions' JSON, JSONL): the topics of an open-domain QA
    dataset, and its judgements (each question's answers). Read once when first asked."""

    path: Path
    _questions: list[Question] | None = field(default=None, init=False, repr=False, compare=False)

    def questions(self) -> list[Question]:
        if self._questions is None:
            self._questions = read_questions(self.path)
        return self._questions

    def topics(self) -> dict[str, str]:
        return {q.qid: q.text for q in self.questions()}

    def answers(self) -> dict[str, tuple[str, ...]]:
        return {q.qid: q.answers for q in self.questions()}

    def files(self) -> list[Path]:
        return [self.path]

    def judgements(self, dataset_id: str, corpus: CorpusReader, protocol: EvalProtocol) -> AnswerJudgements:
        """Answer matching against ``corpus``'s passages, under the protocol's match rule (DPR's ``string``,
        or ``regex`` for CuratedTREC)."""
        match = protocol.match if isinstance(protocol, OdqaProtocol) else "string"
        return AnswerJudgements(self.answers(), corpus.docs, match)


@dataclass
class OdqaDataset(PartsDataset):
    """Open-domain QA: DPR's passages and a question file (:meth:`files_at` makes one)."""

    @classmethod
    def files_at(cls, dataset_id: str, passages: Path, questions: Path, protocol: OdqaProtocol) -> OdqaDataset:
        answers = AnswerFile(questions)
        return cls(dataset_id, protocol, DprCorpus(passages), answers, answers, questions.parent,
                   tuple(DEFAULT_METRICS), LAYOUT)

    @property
    def passages_path(self) -> Path:
        return self.corpus_reader.path

    @property
    def questions_path(self) -> Path:
        return self.topics_reader.path

    def questions(self) -> list[Question]:
        return read_questions(self.questions_path)

    def answers(self) -> dict[str, tuple[str, ...]]:
        return {q.qid: q.answers for q in self.questions()}


def is_odqa_folder(folder: Path) -> bool:
    return any((folder / n).is_file() for n in PASSAGE_NAMES) and not (folder / "corpus.jsonl").is_file()


def from_folder(folder: Path, dataset_id: str, split: str | None = None, match: str = "string") -> OdqaDataset:
    """A local folder with ``passages.tsv`` (or ``psgs_w100.tsv``) and one question file."""
    passages = next((folder / n for n in PASSAGE_NAMES if (folder / n).is_file()), None)
    if passages is None:
        raise HarnessError(f"{folder}: no passages.tsv")
    questions = find_questions_file(folder)
    if questions is None:
        raise DataError(folder, "no question file", fix="add questions.qa.csv ('question<TAB>[answers]') "
                        "or questions.jsonl ({'question': ..., 'answers': [...]})")
    return OdqaDataset.files_at(dataset_id, passages, questions, OdqaProtocol(split=split or "test", match=match))


def _locate(rel: str) -> Path | None:
    for root in data_roots():
        if (root / rel).is_file() or (root / rel).is_dir():
            return root / rel
    return None


def find_local(spec: OdqaSpec, split: str | None = None) -> OdqaDataset | None:
    """The registered dataset when its files are in a data root (``split``: another name for its split)."""
    passages, questions = _locate(spec.passages), _locate(spec.questions)
    if passages is None or questions is None:
        return None
    protocol = spec.protocol if split is None else replace(spec.protocol, split=split)
    return OdqaDataset.files_at(spec.id, passages, questions, protocol)


def fetch(spec: OdqaSpec, split: str | None = None) -> OdqaDataset:
    """Download what is missing (checksummed, atomic), then return the dataset."""
    from filelock import FileLock

    found = find_local(spec, split)
    if found is not None:
        return found
    lock_dir = cache_root() / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    for remote in spec.downloads:
        if _locate(remote.target) is not None:
            continue
        with FileLock(str(lock_dir / f"fetch-{remote.target.replace('/', '_')}.lock")):
            if _locate(remote.target) is None:
                try:
                    fetch_file(remote, download_root())
                except OfflineError as e:
                    raise HarnessError(missing_message(spec, str(e))) from None
    found = find_local(spec, split)
    if found is None:
        raise HarnessError(f"{spec.id}: the downloads did not provide {spec.questions} and {spec.passages}")
    return found


def fetch_file(remote: RemoteFile, root: Path) -> Path:
    """Download ``remote`` (its checksum verified when one is pinned) and place it at ``root / remote.target``,
    through the one bounded unpacker (``harness.data.fetch.unpack``)."""
    from harness.data.fetch import download, unpack

    target = root / remote.target
    archive = download(remote.url, cache_root() / "downloads" / Path(remote.url).name, remote.md5)
    target.parent.mkdir(parents=True, exist_ok=True)
    if remote.unpack == "gunzip":
        unpack(archive, target, "gunzip")
    elif remote.unpack == "unzip":
        staging = target.parent / f".{target.name}.unpack"
        shutil.rmtree(staging, ignore_errors=True)
        unpack(archive, staging, "unzip")
        inner = staging / target.name
        (inner if inner.is_dir() else staging).rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    else:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            shutil.copyfile(archive, tmp)
            shareable(tmp)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return target


def missing_message(spec: OdqaSpec, reason: str) -> str:
    lines = [f"{spec.id} is not available locally and cannot be downloaded ({reason}).",
             f"It needs {spec.questions} and {spec.passages} under {' or '.join(str(r) for r in data_roots())}."]
    for r in spec.downloads:
        how = {"gunzip": "gunzip it to", "unzip": "unzip it; its folder goes to"}.get(r.unpack, "save it as")
        lines.append(f"  download {r.url}" + (f" (md5 {r.md5})" if r.md5 else "") + f", {how} {r.target}")
    return "\n".join(lines)
