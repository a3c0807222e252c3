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
from collections.abc import Iterable, Mapping
from pathlib import Path

from harness.errors import DataError, HarnessError
from harness.io import atomic_write
from harness.lines import check_id, iter_lines

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


def write_run(path: Path, run: Run, tag: str, score_format: str = FLOAT32_SCORE_FORMAT) -> None:
    """Write a TREC run file atomically: queries in sorted order, each query's documents in the order
    :func:`read_run` reads them back in (:func:`in_score_order`; ranks from 1). Ids must be free of whitespace
    (the readers check them), or the file would not read back."""
    for qid, docs in run.items():
        for doc, score in docs.items():
            if not math.isfinite(score):
                raise HarnessError(f"{path}: query {qid!r}, document {doc!r} has score {score!r}; a run with "
                                   "non-finite scores is not written (the scores it was computed from are broken)")

    def lines() -> Iterable[str]:
        for qid in sorted(run):
            for rank, (doc, score) in enumerate(in_score_order(run[qid]).items(), start=1):
                yield f"{qid} Q0 {doc} {rank} {score_format % score} {tag}\n"
    atomic_write(path, "".join(lines()))


def in_score_order(docs: Mapping[str, float]) -> dict[str, float]:
    """One query's hits as every stage reads them: score descending; equal scores keep the order given (a
    file's line order). The one ordering rule of runs (see the module's docstring)."""
    return dict(sorted(docs.items(), key=lambda item: -item[1]))


def read_run(path: Path) -> Run:
    """Read a TREC run (``qid Q0 docid rank score tag``): each query's documents by score descending, equal
    scores in the file's line order, the rank column ignored (as trec_eval ignores it). Duplicate (qid, docid)
    pairs and an empty file are errors."""
    run: Run = {}
    for lineno, text in iter_lines(path):
        parts = text.split()
        if len(parts) != 6:
            raise DataError(path, f"expected 6 columns 'qid Q0 docid rank score tag', got {len(parts)}",
                            line=lineno, fix="ids may not contain spaces or tabs" if len(parts) > 6 else None)
        qid, _, doc, _, score, _ = parts
        try:
            value = float(score)
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


QRELS_HEADER_NAMES = {"score", "relevance", "rel", "label", "grade"}


#: the qrels formats by their number of columns (:func:`read_qrels`)
QRELS_COLUMNS = {3: "BEIR's 'query-id corpus-id score'", 4: "TREC's 'qid 0 docid rel'"}


def read_qrels(path: Path, columns: int | None = None) -> Qrels:
    """Read qrels: BEIR TSV (``query-id corpus-id score`` with a header; ``columns=3``) or TREC (``qid 0 docid
    rel``; ``columns=4``); either, line by line, when ``columns`` is None."""
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
            value = int(rel)
        except ValueError:
            if is_first and rel.lower() in QRELS_HEADER_NAMES:  # BEIR's "query-id corpus-id score"
                continue
            raise DataError(path, f"relevance {rel!r} is not an integer", line=lineno,
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


__all__ = ["Run", "Qrels", "in_score_order", "ranked", "quantize", "write_run", "read_run", "read_qrels", "read_topics",
           "read_tsv_topics", "read_tagged_topics"]
