"""TREC formats: topics (TSV or TREC's tagged topic files), qrels (TREC 4-column or BEIR 3-column TSV) and
run files.

In memory a run is ``dict[qid, dict[docid, score]]`` whose documents are in rank order, and qrels
``dict[qid, dict[docid, relevance]]``.

One reading of a run file, for every stage (a ``run:`` row, a fusion or rerank stage, ``harness evaluate``,
``check``, ``diff``, the harness's own files read back): each query's documents by score descending, the
rank column ignored, as trec_eval reads a run (:func:`read_run`, :func:`in_score_order`). Documents with
equal scores keep the file's line order: the retriever's order in the files the harness writes (Lucene's
float32 order under Pyserini's six printed decimals, which open-domain QA scores as DPR and Pyserini do).
trec_eval's measures then break the remaining ties by document id descending (strcmp order,
:func:`ranked`), as trec_eval does. The runner puts every run in this order before it cuts, writes and
scores it, so what is scored is what the file reads back as.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, NoReturn, overload

from harness.errors import DataError, HarnessError
from harness.io import atomic_write
from harness.lines import check_id, iter_lines, plain_float, plain_int

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]

#: score formats; "%.6f" is what Pyserini and trec_eval tooling write, "%.9g" round-trips float32.
PYSERINI_SCORE_FORMAT = "%.6f"
FLOAT32_SCORE_FORMAT = "%.9g"
#: fused scores (sums of float64 terms): 17 significant digits read back exactly
FLOAT64_SCORE_FORMAT = "%.17g"

#: what an empty input is told (a mean over no queries is not a number)
NO_TOPICS = "no topics: the file holds no query"
NO_TOPICS_FIX = "give the topics file of the judgements (one query a line)"
NO_JUDGEMENTS = "no relevance judgements"
NO_JUDGEMENTS_FIX = "the qrels file has no judgement line ('qid 0 docid rel' or BEIR's 'query-id corpus-id score')"


def read_topics(path: Path, field: str = "title") -> dict[str, str]:
    """Topics (qid -> text): Anserini's TSV (:func:`read_tsv_topics`) or TREC's tagged file
    (:func:`read_tagged_topics`, whose ``field`` is the query text), whichever the file is."""
    lines = list(iter_lines(path))  # bad bytes or an over-long line: DataError with the file and line
    if any("<top>" in line for _, line in lines):
        return _tagged(path, lines, field)
    return _tsv(path, lines)


#: the largest relevance grade trec_eval's C int holds (a grade past it is refused, not wrapped)
MAX_GRADE = 2**31 - 1


def grade_of(text: str) -> int:
    """A relevance grade as trec_eval reads it: ASCII digits with an optional sign, within a C int. Python's
    int() also takes '1_0' (10) and other scripts' digits, which trec_eval's atol reads otherwise: refused
    (ValueError with the reason), so one file never scores two ways."""
    if text.isdigit() and text.isascii() and len(text) < 10:  # the common grade (0, 1, 2): read at int()'s cost
        return int(text)
    try:
        value = plain_int(text) if text == text.strip() else int("x")
    except ValueError:
        raise ValueError(f"relevance {text!r} is not an integer") from None
    if abs(value) > MAX_GRADE:
        raise ValueError(f"relevance {text!r} is out of range (at most {MAX_GRADE:,} either way)")
    return value


def score_of(text: str) -> float:
    """A run score as trec_eval's atof reads it: Python's float() less what atof reads otherwise ('1_0',
    other scripts' digits). A non-finite value is the caller's to refuse."""
    return plain_float(text)


def read_tsv_topics(path: Path) -> dict[str, str]:
    """Anserini's TSV topics: ``qid<TAB>text``, one a line."""
    return _tsv(path, list(iter_lines(path)))


def read_tagged_topics(path: Path, field: str = "title") -> dict[str, str]:
    """TREC's tagged topic file (``<top> <num> Number: 301 <title> ... </top>``); ``field`` (title, desc or
    narr) is the query text."""
    return _tagged(path, list(iter_lines(path)), field)


def _tagged(path: Path, lines: list[tuple[int, str]], field: str) -> dict[str, str]:
    import re

    text = "\n".join(line for _, line in lines)
    topics: dict[str, str] = {}
    for n, block in enumerate(re.findall(r"<top>(.*?)</top>", text, flags=re.S), start=1):
        num = re.search(r"<num>\s*(?:Number:)?\s*(\S+)", block)
        body = re.search(rf"<{field}>\s*(?:(?:Description|Narrative|Topic):)?(.*?)(?=<\w+>|\Z)", block, flags=re.S)
        if num is None or body is None or not body.group(1).strip():
            raise DataError(path, f"topic {n} has no <num> or no <{field}> text",
                            fix=f"every <top> needs <num> and <{field}>")
        qid = num.group(1).strip()
        if qid in topics:
            raise DataError(path, f"duplicate topic {qid!r}", fix="topic numbers must be unique")
        topics[qid] = " ".join(body.group(1).split())
    if not topics:
        raise DataError(path, NO_TOPICS, fix=NO_TOPICS_FIX)
    return topics


def _tsv(path: Path, lines: list[tuple[int, str]]) -> dict[str, str]:
    topics: dict[str, str] = {}
    for lineno, line in lines:
        qid, sep, query = line.partition("\t")
        if not sep or not query.strip():
            raise DataError(path, "expected 'qid<TAB>text'", line=lineno, fix="one topic a line, tab-separated")
        if "\t" in query.strip():
            raise DataError(path, f"expected 2 tab-separated columns (qid, text), got {line.count(chr(9)) + 1}",
                            line=lineno, fix="a topics TSV holds the query id and its text only")
        check_id(qid.strip(), path, lineno, "query id")
        if qid.strip() in topics:
            raise DataError(path, f"duplicate topic {qid.strip()!r}", line=lineno, fix="topic ids must be unique")
        topics[qid.strip()] = query.strip()
    if not topics:
        raise DataError(path, NO_TOPICS, fix=NO_TOPICS_FIX)
    return topics


def ranked(scores: Mapping[str, float]) -> list[tuple[str, float]]:
    """(docid, score) in trec_eval order: score descending, then docid descending."""
    return sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)


def quantize(run: Run, score_format: str) -> Run:
    """The run exactly as it reads back from a file written with ``score_format``."""
    return {q: {d: float(score_format % s) for d, s in docs.items()} for q, docs in run.items()}


@overload
def write_run(path: Path, run: Mapping[str, Mapping[str, float]], tag: str,
              score_format: str = FLOAT32_SCORE_FORMAT) -> Run: ...


@overload
def write_run(path: Path, run: RunArrays, tag: str, score_format: str = FLOAT32_SCORE_FORMAT) -> RunArrays: ...


def write_run(path: Path, run: AnyRun, tag: str, score_format: str = FLOAT32_SCORE_FORMAT) -> AnyRun:
    """Write a TREC run file atomically: queries in sorted order, each query's documents in the order
    :func:`read_run` reads them back in (:func:`in_score_order` of the written scores: equal ones keep the
    order given; ranks from 1). Ids must be free of whitespace (the readers check them), or the file would not
    read back. Returns the run as the file reads back (:func:`quantize`'s values, in that order), each score
    formatted once, in the form it was given (a dict, or :class:`RunArrays`: the same file)."""
    if isinstance(run, RunArrays):
        return _write_arrays(path, run, tag, score_format)
    written: Run = {}
    parts: list[str] = []
    for qid in sorted(run):
        docs = list(run[qid])
        texts = [score_format % score for score in run[qid].values()]
        values = [float(text) for text in texts]
        if not all(map(math.isfinite, values)):
            i = next(i for i, v in enumerate(values) if not math.isfinite(v))
            _refuse_nonfinite(path, qid, docs[i], values[i])
        order = sorted(range(len(values)), key=values.__getitem__, reverse=True)  # stable: in_score_order's rule
        written[qid] = {docs[i]: values[i] for i in order}
        parts.append("".join([f"{qid} Q0 {docs[i]} {rank} {texts[i]} {tag}\n" for rank, i in enumerate(order, 1)]))
    atomic_write(path, "".join(parts))
    return {q: written[q] for q in run}


def _refuse_nonfinite(path: Path | None, qid: str, doc: str, score: float) -> NoReturn:
    """The one refusal of a run holding a non-finite score (``path``: the run file it would have been)."""
    where = f"{path}: " if path is not None else ""
    raise HarnessError(f"{where}query {qid!r}, document {doc!r} has score {score!r}; a run with "
                       "non-finite scores is not written (the scores it was computed from are broken)")


def _write_arrays(path: Path, run: RunArrays, tag: str, score_format: str) -> RunArrays:
    """:func:`write_run` of a run as arrays: the same file, each score formatted once and the values read back
    from the text in one pass, each query put in the written scores' order by one stable sort."""
    import numpy as np

    if run.source is not None:  # an id the keys cannot hold: the dict's writing
        return RunArrays.from_dict(write_run(path, run.to_dict(), tag, score_format))
    texts = _formatted(run.scores, score_format)
    values = np.array(texts, dtype=np.float64) if texts else np.zeros(0, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):  # the first in the file's order (queries sorted), as the dict's writer finds it
        query_of = (np.searchsorted(run.bounds, bad, side="right") - 1).tolist()
        first = min(range(len(bad)), key=lambda i: (run.qids[query_of[i]], int(bad[i])))
        row = int(bad[first])
        _refuse_nonfinite(path, run.qids[query_of[first]], run.doc_ids()[row], float(values[row]))
    order = _score_order(run.bounds, values)
    if order is not None:
        run = RunArrays(run.qids, run.bounds, run.scores, run.keys[order])
        texts = [texts[i] for i in order.tolist()]
        values = values[order]
    docs, b, tail = run.doc_ids(), run.bounds.tolist(), f" {tag.replace('%', '%%')}\n"
    parts: list[str] = []
    for i in sorted(range(len(run.qids)), key=run.qids.__getitem__):  # each query's lines by one format call
        lo, hi = b[i], b[i + 1]
        fields: list[object] = [None] * (3 * (hi - lo))
        fields[0::3], fields[1::3], fields[2::3] = docs[lo:hi], range(1, hi - lo + 1), texts[lo:hi]
        parts.append((f"{run.qids[i].replace('%', '%%')} Q0 %s %d %s{tail}" * (hi - lo)) % tuple(fields))
    atomic_write(path, "".join(parts))
    return RunArrays(run.qids, run.bounds, values, run.keys)


def _formatted(scores: NDArray[np.float64], score_format: str) -> list[str]:
    """Each score as ``score_format`` writes it (one format call for all: the same text as one call each)."""
    if not len(scores):
        return []
    texts = ((score_format + "\n") * len(scores) % tuple(scores.tolist())).split("\n")
    texts.pop()  # after the last line end
    return texts


def in_score_order(docs: Mapping[str, float]) -> dict[str, float]:
    """One query's hits as every stage reads them: score descending; equal scores keep the order given (a
    file's line order). The one ordering rule of runs (see the module's docstring)."""
    return dict(sorted(docs.items(), key=lambda item: -item[1]))


def read_run(path: Path) -> Run:
    """Read a TREC run (``qid Q0 docid rank score tag``): each query's documents by score descending, equal
    scores in the file's line order, the rank column ignored (as trec_eval ignores it). Duplicate (qid, docid)
    pairs and an empty file are errors. Read as arrays (:func:`read_run_arrays`), then made the dict."""
    arrays = _read_arrays(path)
    return _read_lines(path) if arrays is None else arrays.to_dict()


def read_run_arrays(path: Path) -> RunArrays:
    """The run :func:`read_run` reads, as arrays (:class:`RunArrays`): no Python object per hit. A file the
    vectorised reader does not take (a malformed line, a control character, Unicode whitespace, a score that
    does not parse) is read by the line reader, which names the file and line of what is wrong."""
    arrays = _read_arrays(path)
    return RunArrays.from_dict(_read_lines(path)) if arrays is None else arrays


def _read_lines(path: Path) -> Run:
    """The line reader: the reference reading of a run file, and the one that reports what is wrong with it."""
    run: Run = {}
    for lineno, text in iter_lines(path):
        parts = text.split()
        if len(parts) != 6:
            raise DataError(path, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}",
                            line=lineno, fix="ids may not contain spaces or tabs" if len(parts) > 6 else None)
        qid, _, doc, _, score, _ = parts
        try:
            value = score_of(score)
        except ValueError:
            raise DataError(path, f"score {score!r} is not a number", line=lineno) from None
        if not math.isfinite(value):
            raise DataError(path, f"score {score!r} is not a finite number (NaN or infinity)", line=lineno)
        docs = run.setdefault(qid, {})
        if doc in docs:
            raise DataError(path, f"document {doc!r} appears twice for query {qid!r}", line=lineno,
                            fix="each document may be retrieved once per query")
        docs[doc] = value
    if not run:
        raise DataError(path, "the run file is empty (no 'qid Q0 docid rank score tag' line)",
                        fix="give the run file that holds the system's hits")
    return {qid: in_score_order(docs) for qid, docs in run.items()}


# --- a run as arrays: the same reading, without a Python object per hit -----------------------------------------

#: bytes the array reader reads at a time (whole lines; a longer line is read whole)
CHUNK_BYTES = 1 << 20
#: rows hashed at a time
_BLOCK = 1 << 20
_BOM = b"\xef\xbb\xbf"
_HEAD, _TAIL = 16, 64  # zero bytes around a chunk: scores are loaded end-aligned, ids start-aligned, 8 bytes at a time


@dataclass(frozen=True, eq=False)
class RunArrays:
    """A run as arrays, one row per hit, in the order :func:`read_run`'s dict holds: queries in the order they
    first appear, each query's hits by score descending, equal scores in the file's line order.

    ``bounds`` (int64, one more than there are queries): query i's hits are rows ``bounds[i]:bounds[i + 1]``;
    ``scores`` (float64); ``keys`` (uint64, hits x words): each document id's UTF-8 bytes as big-endian words,
    zero-padded, so that ids compare as their rows compare word by word, as trec_eval (strcmp) and Python order
    them. ``source`` is the dict a run made from one came from (:meth:`from_dict`), which measures read instead
    when its ids hold a NUL (which the keys cannot tell from the padding)."""

    qids: tuple[str, ...]
    bounds: NDArray[np.int64]
    scores: NDArray[np.float64]
    keys: NDArray[np.uint64]
    source: Mapping[str, Mapping[str, float]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.scores)

    @cached_property
    def join_index(self) -> JoinIndex:
        """The hits' (query, document) hashes, sorted with their rows (:class:`JoinIndex`), for joining judgements."""
        import numpy as np

        queries = np.repeat(np.arange(len(self.qids), dtype=np.int32), np.diff(self.bounds))
        return _join_index(queries, self.keys)

    def doc_ids(self) -> list[str]:
        """Every hit's document id, row by row."""
        import numpy as np

        if self.source is not None:
            return [d for docs in self.to_dict().values() for d in docs]
        if not len(self):
            return []
        raw = self.keys.astype(">u8").view(np.uint8).reshape(len(self), -1)
        text = np.concatenate([raw, np.full((len(self), 1), 10, np.uint8)], axis=1).ravel()
        ids: list[str] = text[text != 0].tobytes().decode("utf-8").split("\n")[:-1]
        return ids

    def to_dict(self) -> Run:
        """The run as :func:`read_run` returns it."""
        if self.source is not None:
            return {q: in_score_order(docs) for q, docs in self.source.items()}
        docs, scores, b = self.doc_ids(), self.scores.tolist(), self.bounds.tolist()
        return {q: dict(zip(docs[b[i]:b[i + 1]], scores[b[i]:b[i + 1]], strict=True)) for i, q in enumerate(self.qids)}

    @classmethod
    def from_hits(cls, qids: Sequence[str], docs: Sequence[Sequence[str]], scores: NDArray[np.floating]
                  ) -> RunArrays:
        """A searcher's top-k as arrays, without a dict per hit: query ``qids[i]`` retrieved ``docs[i]`` with
        the scores ``scores[i, :len(docs[i])]`` (the rest of a row is padding); see :meth:`from_lists`."""
        import numpy as np

        counts = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        width = scores.shape[1] if scores.ndim == 2 else 0
        if (scores.shape[0] if scores.ndim == 2 else 0) != len(counts) or counts.max(initial=0) > width:
            raise ValueError("each query needs a row of scores, at least as long as its documents")
        taken = np.arange(width)[None, :] < counts[:, None]
        values = np.asarray(scores, dtype=np.float64)[taken] if counts.sum() else np.zeros(0, dtype=np.float64)
        return cls._from_rows(qids, docs, counts, values)

    @classmethod
    def from_lists(cls, qids: Sequence[str], docs: Sequence[Sequence[str]], scores: Sequence[Sequence[float]]
                   ) -> RunArrays:
        """A retriever's hits as arrays, without a dict per hit: query ``qids[i]`` retrieved ``docs[i]`` with
        the scores ``scores[i]``, put in the one order (score descending, equal scores in the order given:
        :func:`in_score_order`'s rule). The ids of a query are a corpus's (unique); an id with a NUL makes the
        run from its dict (:meth:`from_dict`)."""
        import numpy as np

        counts = np.fromiter(map(len, docs), dtype=np.int64, count=len(docs))
        if [len(row) for row in scores] != counts.tolist():
            raise ValueError("each query needs as many scores as documents")
        values = np.fromiter((s for row in scores for s in row), dtype=np.float64, count=int(counts.sum()))
        return cls._from_rows(qids, docs, counts, values)

    @classmethod
    def _from_rows(cls, qids: Sequence[str], docs: Sequence[Sequence[str]], counts: NDArray[np.int64],
                   values: NDArray[np.float64]) -> RunArrays:
        import numpy as np

        if len(set(qids)) != len(qids):
            raise ValueError("a query id is given twice")
        flat = [d for row in docs for d in row]
        bad = np.flatnonzero(np.isnan(values))
        if len(bad):  # no order holds a NaN (a sort would put it anywhere): refused, as the run file refuses it
            row = int(bad[0])
            query = int(np.searchsorted(np.cumsum(counts), row, side="right"))
            _refuse_nonfinite(None, qids[query], flat[row], float("nan"))
        keys, fits = pack_ids(flat)
        bounds = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        if not fits.all():
            b = bounds.tolist()
            return cls.from_dict({q: dict(zip(flat[b[i]:b[i + 1]], values[b[i]:b[i + 1]].tolist(), strict=True))
                                  for i, q in enumerate(qids)})
        order = _score_order(bounds, values)
        return cls(tuple(qids), bounds, values, keys) if order is None else cls(tuple(qids), bounds, values[order],
                                                                                keys[order])

    def query_rows(self) -> NDArray[np.int64]:
        """Each hit's query, as an index into :attr:`qids`."""
        import numpy as np

        return np.repeat(np.arange(len(self.qids), dtype=np.int64), np.diff(self.bounds))

    def cut(self, depth: int, drop_self_hits: bool) -> tuple[RunArrays, dict[str, int]]:
        """The first ``depth`` hits of each query (rows are in the run's one order already), without the query's
        own id where ``drop_self_hits``; and how many hits that removed, per query that lost any. A run made
        from a dict with a NUL in an id (:attr:`source`) is cut as that dict."""
        import numpy as np

        if self.source is not None:
            as_cut, lost_by = cut_dict(self.to_dict(), depth, drop_self_hits)
            return RunArrays.from_dict(as_cut), lost_by
        rows = self.query_rows()
        keep = np.ones(len(self), dtype=bool)
        dropped: dict[str, int] = {}
        if drop_self_hits and len(self):
            qkeys, qfits = pack_ids(list(self.qids), words=self.keys.shape[1])  # a longer query id matches nothing
            keep = ~((self.keys == qkeys[rows]).all(axis=1) & qfits[rows])
            lost = np.bincount(rows[~keep], minlength=len(self.qids))
            dropped = {self.qids[i]: int(lost[i]) for i in np.flatnonzero(lost).tolist()}
        kept = np.flatnonzero(keep)
        bounds = np.zeros_like(self.bounds)
        np.cumsum(np.bincount(rows[kept], minlength=len(self.qids)), out=bounds[1:])
        kept = kept[np.arange(len(kept)) - bounds[rows[kept]] < depth]
        np.cumsum(np.bincount(rows[kept], minlength=len(self.qids)), out=bounds[1:])
        return RunArrays(self.qids, bounds, self.scores[kept], self.keys[kept]), dropped

    @classmethod
    def from_dict(cls, run: Mapping[str, Mapping[str, float]]) -> RunArrays:
        """The arrays of a run held as a dict, each query's hits put in the one order (:func:`in_score_order`)."""
        import numpy as np

        ordered = {q: in_score_order(docs) for q, docs in run.items()}
        docs = [d for hits in ordered.values() for d in hits]
        keys, _ = pack_ids(docs)
        bounds = np.cumsum([0, *map(len, ordered.values())], dtype=np.int64)
        scores = np.array([s for hits in ordered.values() for s in hits.values()], dtype=np.float64)
        odd = any("\x00" in d or "\n" in d for d in docs)
        return cls(tuple(ordered), bounds, scores, keys, source=run if odd else None)


#: a run either way: the dict (:data:`Run`), or the same run as arrays (:class:`RunArrays`)
AnyRun = Mapping[str, Mapping[str, float]] | RunArrays


def _score_order(bounds: NDArray[np.int64], scores: NDArray[np.float64]) -> NDArray[np.int64] | None:
    """The rows in the one order of runs: by query (rows ``bounds[i]:bounds[i + 1]``), each query's by score
    descending, equal scores in the order given (a stable sort, as :func:`in_score_order`); None when they are
    in it already (a searcher's top-k usually is)."""
    import numpy as np

    rows = np.repeat(np.arange(len(bounds) - 1, dtype=np.int64), np.diff(bounds))
    if not (scores[1:] > scores[:-1])[rows[1:] == rows[:-1]].any():
        return None
    return np.lexsort((np.arange(len(scores)), -scores, rows)).astype(np.int64)


def cut_dict(run: Mapping[str, Mapping[str, float]], depth: int, drop_self_hits: bool
             ) -> tuple[Run, dict[str, int]]:
    """:meth:`RunArrays.cut` of a run held as a dict: each query's hits in the one order (:func:`in_score_order`),
    without its own id where ``drop_self_hits``, the first ``depth`` kept; and what the rule removed per query."""
    out: Run = {}
    dropped: dict[str, int] = {}
    for qid, docs in run.items():
        kept = [(d, s) for d, s in in_score_order(docs).items() if not (drop_self_hits and d == qid)]
        if len(kept) < len(docs):
            dropped[qid] = len(docs) - len(kept)
        out[qid] = dict(kept[:depth])
    return out, dropped


def cut_run(run: AnyRun, depth: int, drop_self_hits: bool) -> tuple[AnyRun, dict[str, int]]:
    """A run's first ``depth`` hits per query, its own id dropped where ``drop_self_hits`` (:meth:`RunArrays.cut`
    for arrays, :func:`cut_dict` for a dict: the same hits)."""
    if depth < 0:
        raise ValueError(f"depth {depth} is negative")
    if isinstance(run, RunArrays):
        return run.cut(depth, drop_self_hits)
    return cut_dict(run, depth, drop_self_hits)


def answered(run: AnyRun) -> dict[str, None]:
    """The queries ``run`` retrieves a document for, in its order."""
    if isinstance(run, RunArrays):
        hits = run.bounds[1:] - run.bounds[:-1]
        return dict.fromkeys(q for q, n in zip(run.qids, hits.tolist(), strict=True) if n)
    return dict.fromkeys(q for q, docs in run.items() if docs)


def as_dict(run: AnyRun) -> Mapping[str, Mapping[str, float]]:
    """The run as a dict (:meth:`RunArrays.to_dict` for arrays), for what reads it query by query."""
    return run.to_dict() if isinstance(run, RunArrays) else run


def pack_ids(ids: Sequence[str], words: int | None = None) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
    """Ids as :class:`RunArrays` keys (``words`` words each; None: as many as the longest needs), and which of
    them are what their key says (not longer than the key, no NUL)."""
    import numpy as np

    if not ids:
        return np.zeros((0, words or 1), dtype=np.uint64), np.zeros(0, dtype=bool)
    text = "".join(ids)
    if text.isascii():  # one byte a character: numpy encodes them all at once
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        width = 8 * (words if words is not None else max(1, (int(lengths.max()) + 7) // 8))
        keys = np.array(ids, dtype=f"S{width}").view(">u8").astype(np.uint64).reshape(len(ids), width // 8)
        fits = lengths <= width
        if "\x00" in text or "\n" in text:
            fits &= np.array(["\x00" not in i and "\n" not in i for i in ids], dtype=bool)
        return keys, fits
    encoded = [i.encode("utf-8") for i in ids]
    width = 8 * (words if words is not None else max(1, *((len(e) + 7) // 8 for e in encoded)))
    fits = np.array([len(e) <= width and b"\x00" not in e and b"\n" not in e for e in encoded], dtype=bool)
    raw = b"".join(e[:width].ljust(width, b"\x00") for e in encoded)
    return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(len(encoded), width // 8), fits


def _read_arrays(path: Path) -> RunArrays | None:
    """The vectorised reader: the same reading as the line reader (:func:`_read_lines`), or None for a file it
    leaves to it (anything malformed, which the line reader then names with its line)."""
    try:
        f = open(path, "rb")
    except OSError:
        return None
    parts: list[_Part] = []
    with f:
        for n, chunk in enumerate(_chunks(f)):
            part = _parse_chunk(chunk, first=n == 0)
            if part is None:
                return None
            parts.append(part)
    return _assemble(parts)


def _chunks(f: BinaryIO) -> Iterator[bytes]:
    """The file in pieces of whole lines, each ending with a line end."""
    rest = b""
    while block := f.read(CHUNK_BYTES):
        block = rest + block
        cut = block.rfind(b"\n") + 1
        if cut:
            yield block[:cut]
        rest = block[cut:]
    if rest:
        yield rest + b"\n"


class _Part(NamedTuple):
    """One chunk's hits in line order: the query of each run of equal query ids (``segments``: its first row)."""

    segments: NDArray[np.int64]
    qids: list[str]
    keys: NDArray[np.uint64]
    scores: NDArray[np.float64]


def _parse_chunk(chunk: bytes, first: bool) -> _Part | None:
    import numpy as np

    from harness import lines

    if not chunk.isascii() and not _plain_utf8(chunk):
        return None
    c = np.frombuffer(bytes(_HEAD) + chunk + bytes(_TAIL), np.uint8)
    lo = _HEAD + (len(_BOM) if first and chunk.startswith(_BOM) else 0)
    columns = _columns(c, lo, _HEAD + len(chunk))
    if columns is None or (len(chunk) > lines.MAX_LINE_BYTES and _longest_line(chunk) > lines.MAX_LINE_BYTES):
        return None
    starts, ends = columns
    if not starts.shape[1]:
        return _Part(np.zeros(0, np.int64), [], np.zeros((0, 1), np.uint64), np.zeros(0))
    longest = int(max((ends[0] - starts[0]).max(), (ends[1] - starts[1]).max()))
    if longest + 8 > _TAIL:  # an id's last word is loaded from any id's start: pad by the longest
        c = np.frombuffer(bytes(_HEAD) + chunk + bytes(longest + 8), np.uint8)
    scores = _scores(c, starts[2], ends[2])
    if scores is None:
        return None
    qkeys = _pack(c, starts[0], ends[0])
    new = np.ones(len(qkeys), dtype=bool)
    new[1:] = (qkeys[1:] != qkeys[:-1]).any(axis=1)
    segments = np.flatnonzero(new)
    qids = [chunk[s - _HEAD:e - _HEAD].decode("utf-8") for s, e in zip(starts[0, segments].tolist(),
                                                                     ends[0, segments].tolist(), strict=True)]
    return _Part(segments, qids, _pack(c, starts[1], ends[1]), scores)


def _longest_line(chunk: bytes) -> int:
    """The length of the longest line, in bytes, without its line end (as ``harness.lines`` bounds it)."""
    return max(len(line) for line in chunk.split(b"\n"))


def _plain_utf8(chunk: bytes) -> bool:
    """Valid UTF-8 with no whitespace beyond ASCII (which ``str.split`` splits at too): the bytes split into the
    columns the line reader finds."""
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ch.isspace() for ch in set(text) if ch > "\x7f")


def _columns(c: NDArray[np.uint8], lo: int, hi: int) -> tuple[NDArray[np.int64], NDArray[np.int64]] | None:
    """Where the query id, the document id and the score of each line of ``c[lo:hi]`` (whole lines) start and
    end: two (3, lines) arrays, or None when a line has another number of columns than 6 or a byte below 32
    other than ASCII whitespace (blank lines are skipped, as the line reader skips them)."""
    import numpy as np

    body = c[lo:hi]
    space = body <= 32
    pos = np.flatnonzero(space)
    found = body[pos]
    if np.count_nonzero(found == 32) + np.count_nonzero((found >= 9) & (found <= 13)) != len(found):
        return None  # a control character (or one that str.split takes for whitespace): the line reader decides
    newline = found == 10
    lines = np.count_nonzero(newline)
    if len(pos) == 6 * lines and pos[0] > 0 and newline[5::6].all() and not (space[1:] & space[:-1]).any():
        cut = pos.reshape(-1, 6)  # one space or tab between columns, no blank line: the common case
        starts, ends = np.empty((3, lines), np.int64), np.empty((3, lines), np.int64)
        starts[0, 0] = 0
        starts[0, 1:] = cut[:-1, 5] + 1
        starts[1:] = cut[:, 1:4:2].T + 1
        ends[:] = cut[:, 0:5:2].T
    else:
        bounds = np.concatenate([[-1], pos, [len(body)]])
        token = np.flatnonzero(np.diff(bounds) > 1)
        line = np.concatenate([[0], np.cumsum(newline), [0]])[token]
        if len(token) % 6:
            return None
        rows = line.reshape(-1, 6)
        if not (rows[:, 0] == rows[:, 5]).all() or not (rows[1:, 0] > rows[:-1, 5]).all():
            return None
        starts = (bounds[token] + 1).reshape(-1, 6)[:, 0:5:2].T.copy()
        ends = bounds[token + 1].reshape(-1, 6)[:, 0:5:2].T.copy()
    starts += lo
    ends += lo
    return starts, ends


def _words(c: NDArray[np.uint8]) -> NDArray[np.uint64]:
    """Every 8 bytes of ``c`` from each offset, as a big-endian number (overlapping, unaligned loads)."""
    import numpy as np

    return np.ndarray((len(c) - 7,), dtype=">u8", buffer=c, strides=(1,))


class _Consts(NamedTuple):
    """The array reader's constants, made once (numpy is imported only when a run is read as arrays)."""

    first: NDArray[np.uint64]  # big-endian masks keeping the first k of 8 bytes
    last: NDArray[np.uint64]  # ... the last k
    tens: NDArray[np.uint64]  # 10**k, k < 17
    tens_f: NDArray[np.float64]  # the same as doubles (exact)
    b80: np.uint64  # per byte 0x80, 0x7f; the digit test's 0x76; '0' and '.' in every byte
    b7f: np.uint64
    b76: np.uint64
    b30: np.uint64
    b2e: np.uint64
    pairs: np.uint64  # SWAR lanes: 0x00ff..., 0x0000ffff...
    quads: np.uint64
    low32: np.uint64


@cache
def _consts() -> _Consts:
    import numpy as np

    u = np.uint64
    full = (1 << 64) - 1
    return _Consts(np.array([full ^ ((1 << (64 - 8 * k)) - 1) for k in range(9)], dtype=u),
                   np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=u),
                   np.array([10**k for k in range(17)], dtype=u), np.array([10.0**k for k in range(17)]),
                   u(0x8080808080808080), u(0x7F7F7F7F7F7F7F7F), u(0x7676767676767676), u(0x3030303030303030),
                   u(0x2E2E2E2E2E2E2E2E), u(0x00FF00FF00FF00FF), u(0x0000FFFF0000FFFF), u(0xFFFFFFFF))


def _pack(c: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64]) -> NDArray[np.uint64]:
    """The tokens ``c[start:end]`` as :class:`RunArrays` keys (as many words as the longest needs)."""
    import numpy as np

    first = _consts().first
    lengths = ends - starts
    words = max(1, (int(lengths.max()) + 7) // 8)
    view = _words(c)
    out = np.empty((len(starts), words), dtype=np.uint64)
    for j in range(words):
        out[:, j] = view[starts + 8 * j] & first[np.clip(lengths - 8 * j, 0, 8)]
    return out


def _scores(c: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64]) -> NDArray[np.float64] | None:
    """The score column as float64, exactly as ``float()`` reads it, or None when one is not a finite number.

    A score of at most 16 characters, an optional sign, digits and at most one dot (``-12.345678``, what
    Pyserini's and the harness's formats write) is read 8 bytes at a time (SWAR): its digits m and the count f
    after the dot give m / 10**f, one correctly rounded division of two exact doubles while m <= 2**53
    (Clinger's fast path), which is the value ``float()`` returns. Any other score is read by ``float()``."""
    import numpy as np

    lengths = ends - starts
    first_byte = c[starts]
    signs = (first_byte == 45) | (first_byte == 43)
    signed = bool(signs.any())
    fixed = _fixed_point(c, starts, ends, lengths, signs if signed else None)
    if fixed is not None:
        values, bad = fixed
    else:
        values, bad = _any_point(c, starts, ends, lengths, signs if signed else None)
    if signed:
        np.negative(values, out=values, where=first_byte == 45)
    for i in np.flatnonzero(bad).tolist():
        try:
            values[i] = score_of(c[starts[i]:ends[i]].tobytes().decode("utf-8"))
        except ValueError:
            return None
    return values if bool(np.isfinite(values).all()) else None


def _digits(word: NDArray[np.uint64], keep: NDArray[np.uint64] | np.uint64, sign_at: NDArray[np.uint64] | None,
            dots: bool = True) -> tuple[NDArray[np.uint64], NDArray[np.bool_], NDArray[np.uint64] | None]:
    """The bytes ``keep`` keeps of big-endian ``word`` read as decimal digits (SWAR, 8 at a time): their value,
    whether a kept byte is neither a digit nor the sign at ``sign_at`` (its high bit) nor (with ``dots``) a dot,
    and the dots' high bits (a dot reads as the digit 0; None without ``dots``)."""
    import numpy as np

    k = _consts()
    u = np.uint64
    t = word & keep
    high = keep & k.b80
    x = t ^ k.b30
    not_digit = (((x & k.b7f) + k.b76) | x) & high  # the high bit of every byte that is not a digit
    dot = None
    other = not_digit
    if dots:
        y = t ^ k.b2e
        dot = ~(((y & k.b7f) + k.b7f) | y) & high  # ... of every dot
        other = not_digit ^ dot
    if sign_at is not None:
        other = other & ~sign_at
    d = x & keep & ~((not_digit >> u(7)) * u(0xFF))
    d = ((d >> u(8)) & k.pairs) * u(10) + (d & k.pairs)
    d = ((d >> u(16)) & k.quads) * u(100) + (d & k.quads)
    return (d >> u(32)) * u(10000) + (d & k.low32), other != 0, dot


def _sign_bits(lengths: NDArray[np.int64], signs: NDArray[np.bool_] | None, shift: int) -> NDArray[np.uint64] | None:
    """The high bit of each token's first byte where it is a sign and falls in the word of bytes ``shift`` to
    ``shift + 8`` from the token's end (None: no token has a sign)."""
    import numpy as np

    if signs is None:
        return None
    u = np.uint64
    at = np.clip(8 * (lengths - 1 - shift) + 7, 0, 63).astype(u)
    return np.where(signs & (lengths - 1 - shift < 8) & (lengths - 1 >= shift), u(1) << at, u(0))


def _fixed_point(c: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64], lengths: NDArray[np.int64],
                 signs: NDArray[np.bool_] | None) -> tuple[NDArray[np.float64], NDArray[np.bool_]] | None:
    """Scores that all have the dot at the same place from their end, f digits after it (what one ``%.6f`` writes)
    and at most 8 characters before it: the integer and the fraction each one word. None when they do not."""
    import numpy as np

    k = _consts()
    first = c[starts[0]:ends[0]].tobytes()
    f = len(first) - 1 - first.rfind(b".")
    if not 1 <= f <= 8 or f >= len(first) or int(lengths.max()) - f - 1 > 8 or not (c[ends - f - 1] == 46).all():
        return None
    view = _words(c)
    fraction, bad, _ = _digits(view[ends - 8], k.last[f], None, dots=False)
    before = lengths - f - 1
    integer, other, _ = _digits(view[ends - f - 9], k.last[np.maximum(before, 0)], _sign_bits(before, signs, 0),
                                dots=False)
    bad |= other | (before < 0)  # a byte other than a digit (or the sign first), or the dot not inside the score
    mantissa = integer * k.tens[f] + fraction
    bad |= mantissa > np.uint64(2**53)
    return mantissa.astype(np.float64) / k.tens_f[f], bad


def _any_point(c: NDArray[np.uint8], starts: NDArray[np.int64], ends: NDArray[np.int64], lengths: NDArray[np.int64],
               signs: NDArray[np.bool_] | None) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Scores of at most 16 characters with at most one dot anywhere: two words, the dot found in them."""
    import numpy as np

    k = _consts()
    u = np.uint64
    view = _words(c)
    bad = (lengths > 16) | (lengths < 1)
    mantissa = np.zeros(len(starts), dtype=u)
    dots = np.zeros(len(starts), dtype=u)  # the dot's bit, in the word that holds it
    after = np.zeros(len(starts), dtype=np.int64)  # digits after the dot
    for back, shift in (((16, 8),) if int(lengths.max()) > 8 else ()) + ((8, 0),):
        keep = k.last[np.clip(lengths - shift, 0, 8) if shift else np.minimum(lengths, 8)]
        value, other, found = _digits(view[ends - back], keep, _sign_bits(lengths, signs, shift))
        dot = found if found is not None else np.zeros(len(starts), dtype=u)
        bad |= other | ((dot & (dot - u(1))) != 0)
        if shift:
            dots = dot
        else:
            bad |= (dot != 0) & (dots != 0)
            after = np.where(dots != 0, np.frexp(dots.astype(np.float64))[1] // 8 + 7, after)
            after = np.where(dot != 0, np.frexp(dot.astype(np.float64))[1] // 8 - 1, after)
            dots |= dot
        mantissa = mantissa * u(10**8) + value
    has_dot = dots != 0
    if has_dot.any():
        right = mantissa % k.tens[after]
        mantissa = np.where(has_dot, (mantissa - right) // u(10) + right, mantissa)
    bad |= (mantissa > u(2**53)) | (lengths - (signs if signs is not None else 0) - has_dot < 1)
    return mantissa.astype(np.float64) / k.tens_f[after], bad


def _mix(queries: NDArray[np.integer], keys: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """A 64-bit hash of each (query, key) row (multiply and xor-shift; in place, one temporary)."""
    import numpy as np

    u = np.uint64
    h = queries.astype(u)
    h *= u(0x9E3779B97F4A7C15)
    shifted = np.empty_like(h)
    for j in range(keys.shape[1]):
        h ^= keys[:, j]
        h *= u(0xBF58476D1CE4E5B9)
        np.right_shift(h, u(31), out=shifted)
        h ^= shifted
    return h


class JoinIndex(NamedTuple):
    """Every hit's (query, document) hash with its row number in the ``bits`` low bits, sorted: one sort of
    values (not an argsort) that lines the rows up by hash, so that a search finds the rows of a (query, document)
    pair (candidates whose high bits agree, to be checked against the keys)."""

    lined: NDArray[np.uint64]
    bits: int


def _join_index(queries: NDArray[np.integer], keys: NDArray[np.uint64]) -> JoinIndex:
    import numpy as np

    bits = max(1, len(keys).bit_length())
    high = np.uint64(~((1 << bits) - 1) & ((1 << 64) - 1))
    lined = np.empty(len(keys), dtype=np.uint64)
    for lo in range(0, len(keys), _BLOCK):  # a block at a time: no temporary as large as the run
        hi = min(lo + _BLOCK, len(keys))
        block = _mix(queries[lo:hi], keys[lo:hi])
        block &= high
        block |= np.arange(lo, hi, dtype=np.uint64)
        lined[lo:hi] = block
    lined.sort()
    return JoinIndex(lined, bits)


def _clashes(index: JoinIndex) -> NDArray[np.int64]:
    """The rows whose hash agrees with another row's in its high bits."""
    import numpy as np

    low = np.uint64((1 << index.bits) - 1)
    found = []
    for lo in range(0, max(len(index.lined) - 1, 0), _BLOCK):
        hi = min(lo + _BLOCK, len(index.lined) - 1)
        at = lo + np.flatnonzero((index.lined[lo + 1:hi + 1] ^ index.lined[lo:hi]) <= low)
        found += [index.lined[at] & low, index.lined[at + 1] & low]
    return np.unique(np.concatenate(found)).astype(np.int64) if found else np.zeros(0, dtype=np.int64)


def _same_rows(queries: NDArray[np.integer], keys: NDArray[np.uint64], rows: NDArray[np.int64]) -> bool:
    """Whether two of ``rows`` hold the same (query, key)."""
    import numpy as np

    q, k = queries[rows], keys[rows]
    order = np.lexsort((*(k[:, j] for j in reversed(range(k.shape[1]))), q))
    q, k = q[order], k[order]
    return bool(((q[1:] == q[:-1]) & (k[1:] == k[:-1]).all(axis=1)).any())


def _assemble(parts: list[_Part]) -> RunArrays | None:
    """The chunks' hits as one :class:`RunArrays`, or None when a query retrieves a document twice or there is
    no hit (the line reader names the line, or the empty file)."""
    import numpy as np

    index: dict[str, int] = {}
    seg_query: list[int] = []
    for part in parts:
        seg_query += [index.setdefault(q, len(index)) for q in part.qids]
    total = sum(len(p.scores) for p in parts)
    if not total:
        return None
    seg_length = np.concatenate([np.diff(p.segments, append=len(p.scores)) for p in parts])
    words = max(p.keys.shape[1] for p in parts)
    keys = np.concatenate([np.pad(p.keys, ((0, 0), (0, words - p.keys.shape[1]))) if p.keys.shape[1] < words
                           else p.keys for p in parts])
    scores = np.concatenate([p.scores for p in parts])
    queries = np.repeat(np.array(seg_query, dtype=np.int32), seg_length)
    runs = [q for i, q in enumerate(seg_query) if not i or q != seg_query[i - 1]]  # a query across chunks: one run
    if runs != list(range(len(index))):  # a query's lines are apart: put them together, in line order
        order = np.argsort(queries, kind="stable")
        queries, keys, scores = queries[order], keys[order], scores[order]
    bounds = np.zeros(len(index) + 1, dtype=np.int64)
    np.cumsum(np.bincount(queries, minlength=len(index)), out=bounds[1:])
    rising = np.flatnonzero(scores[1:] > scores[:-1])
    rising = rising[queries[rising] == queries[rising + 1]]
    if len(rising):  # each such query by score descending, equal scores in line order (a stable sort)
        order = np.arange(total)
        for q in np.unique(queries[rising]).tolist():
            lo, hi = int(bounds[q]), int(bounds[q + 1])
            order[lo:hi] = lo + np.argsort(-scores[lo:hi], kind="stable")
        keys, scores = keys[order], scores[order]
    join = _join_index(queries, keys)
    clash = _clashes(join)  # rows whose hashes agree: the same (query, document) twice, or a collision
    if len(clash) and _same_rows(queries, keys, clash):
        return None
    arrays = RunArrays(tuple(index), bounds, scores, keys)
    object.__setattr__(arrays, "join_index", join)  # computed here already (cached_property's place)
    return arrays


QRELS_HEADER_NAMES = {"score", "relevance", "rel", "label", "grade"}


#: the qrels formats by their number of columns (:func:`read_qrels`)
QRELS_COLUMNS = {3: "BEIR's 'query-id corpus-id score'", 4: "TREC's 'qid 0 docid rel'"}


def read_qrels(path: Path, columns: int | None = None) -> Qrels:
    """Read qrels: BEIR TSV (``query-id corpus-id score`` with a header; ``columns=3``) or TREC (``qid 0 docid
    rel``; ``columns=4``); either, line by line, when ``columns`` is None."""
    qrels = _read_qrels_fast(path, columns)
    return _read_qrels_lines(path, columns) if qrels is None else qrels


def _read_qrels_fast(path: Path, columns: int | None) -> Qrels | None:
    """:func:`_read_qrels_lines`' reading of a well-formed file, the whole file decoded at once; None for anything
    else (a bad line, a bad id, a conflicting judgement, a line too long), which the line reader then names."""
    from harness import lines

    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if len(raw) > lines.MAX_LINE_BYTES:
        return None
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        return None
    qrels: Qrels = {}
    first = True
    tabs = "\t" in text
    for line in text.split("\n"):
        if tabs and "\t" in line:
            if not line.strip():
                continue
            parts = [p.strip() for p in line.rstrip("\r").split("\t")]
        else:
            parts = line.split()  # the same columns: a line end's "\r" is whitespace
            if not parts:
                continue
        if (columns is not None and len(parts) != columns) or not 3 <= len(parts) <= 4:
            return None
        qid, doc, rel = parts[0], parts[-2], parts[-1]
        try:
            value = grade_of(rel)
        except ValueError:
            if first and rel.lower() in QRELS_HEADER_NAMES:
                first = False
                continue
            return None
        first = False
        if not (qid.isprintable() and doc.isprintable() and qid and doc) or " " in qid or " " in doc:
            return None
        docs = qrels.setdefault(qid, {})
        if docs.setdefault(doc, value) != value:
            return None
    return qrels or None


def _read_qrels_lines(path: Path, columns: int | None = None) -> Qrels:
    """The line reader of qrels: the reference reading, and the one that names what is wrong and where."""
    qrels: Qrels = {}
    first = True
    for lineno, text in iter_lines(path):
        is_first, first = first, False
        parts = text.split("\t") if "\t" in text else text.split()
        parts = [p.strip() for p in parts]
        if columns is not None and len(parts) != columns:
            raise DataError(path, f"expected {columns} columns ({QRELS_COLUMNS[columns]}), got {len(parts)}",
                            line=lineno)
        if len(parts) == 4:
            qid, _, doc, rel = parts
        elif len(parts) == 3:
            qid, doc, rel = parts
        else:
            raise DataError(path, f"expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}", line=lineno)
        try:
            value = grade_of(rel)
        except ValueError as e:
            if is_first and rel.lower() in QRELS_HEADER_NAMES:  # BEIR's "query-id corpus-id score"
                continue
            raise DataError(path, str(e), line=lineno,
                            fix="relevance grades must be integers (0, 1, 2, ...)") from None
        check_id(qid, path, lineno, "query id")
        check_id(doc, path, lineno, "document id")
        docs = qrels.setdefault(qid, {})
        if doc in docs and docs[doc] != value:
            raise DataError(path, f"query {qid!r} judges document {doc!r} twice, as {docs[doc]} and {value}",
                            line=lineno, fix="keep one judgement per (query, document)")
        docs[doc] = value
    if not qrels:
        raise DataError(path, NO_JUDGEMENTS, fix=NO_JUDGEMENTS_FIX)
    return qrels


__all__ = ["JoinIndex", "Qrels", "Run", "RunArrays", "in_score_order", "pack_ids", "quantize", "ranked", "read_qrels",
           "read_run", "read_run_arrays", "read_tagged_topics", "read_topics", "read_tsv_topics", "write_run"]
