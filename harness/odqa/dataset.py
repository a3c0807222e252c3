"""``OdqaDataset``: a passage file plus a question file, evaluated by answer matching (DPR convention).

It offers what the runner and retrievers use from any dataset (``id``, ``split``, ``protocol``,
``corpus_path``, ``corpus()``, ``queries()``, ``files()``, ``check_layout()``, ``default_metrics``,
``metric()``, ``judged_documents()``, ``evaluate()``) plus ``questions()`` with their answers. It scores a
run by answer matching: top-k accuracy in the run's own rank order, with each question's first-hit rank.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from harness.data.corpus import Doc, OneFileCorpus
from harness.data.registry import DatasetSpec, OdqaProtocol, RemoteFile
from harness.errors import DataError, HarnessError, OfflineError
from harness.io import shareable
from harness.odqa.evaluate import DEFAULT_METRICS, AnswerJudgements
from harness.odqa.formats import Question, find_questions_file, iter_passages, read_questions
from harness.paths import cache_root, data_roots, download_root

if TYPE_CHECKING:
    pass

PASSAGE_NAMES = ("passages.tsv", "passages.tsv.gz", "psgs_w100.tsv", "psgs_w100.tsv.gz")


@dataclass
class OdqaDataset(OneFileCorpus):
    id: str
    passages_path: Path
    questions_path: Path
    protocol: OdqaProtocol
    default_metrics: tuple[str, ...] = tuple(DEFAULT_METRICS)
    read_corpus: ClassVar[Callable[[Path], Iterator[Doc]]] = staticmethod(iter_passages)

    @property
    def root(self) -> Path:
        return self.questions_path.parent

    @property
    def corpus_path(self) -> Path:
        return self.passages_path

    @property
    def split(self) -> str:
        return self.protocol.split

    def files(self) -> list[Path]:
        return [self.passages_path, self.questions_path]

    def check_layout(self) -> None:
        missing = [str(p) for p in self.files() if not p.is_file()]
        if missing:
            raise HarnessError(f"{self.id}: missing {', '.join(missing)} (an ODQA dataset needs a passage TSV "
                               "and a question file)")

    def questions(self) -> list[Question]:
        return read_questions(self.questions_path)

    def queries(self) -> dict[str, str]:
        return {q.qid: q.text for q in self.questions()}

    def answers(self) -> dict[str, tuple[str, ...]]:
        return {q.qid: q.answers for q in self.questions()}

    def judgements(self) -> AnswerJudgements:
        """The questions' answers (accuracy@k in the run's rank order, ``first_hit_rank`` for the record)."""
        return AnswerJudgements(self)


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
    return OdqaDataset(dataset_id, passages, questions, OdqaProtocol(split=split or "test", match=match))


def _locate(rel: str) -> Path | None:
    for root in data_roots():
        if (root / rel).is_file() or (root / rel).is_dir():
            return root / rel
    return None


def find_local(spec: DatasetSpec) -> OdqaDataset | None:
    assert spec.passages and spec.questions
    passages, questions = _locate(spec.passages), _locate(spec.questions)
    if passages is None or questions is None:
        return None
    assert isinstance(spec.protocol, OdqaProtocol)
    return OdqaDataset(spec.id, passages, questions, spec.protocol)


def fetch(spec: DatasetSpec) -> OdqaDataset:
    """Download what is missing (checksummed, atomic), then return the dataset."""
    from filelock import FileLock

    found = find_local(spec)
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
    found = find_local(spec)
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


def missing_message(spec: DatasetSpec, reason: str) -> str:
    lines = [f"{spec.id} is not available locally and cannot be downloaded ({reason}).",
             f"It needs {spec.questions} and {spec.passages} under {' or '.join(str(r) for r in data_roots())}."]
    for r in spec.downloads:
        how = {"gunzip": "gunzip it to", "unzip": "unzip it; its folder goes to"}.get(r.unpack, "save it as")
        lines.append(f"  download {r.url}" + (f" (md5 {r.md5})" if r.md5 else "") + f", {how} {r.target}")
    return "\n".join(lines)
