"""Property tests (hypothesis) for the readers and the metrics."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.data.beir import iter_corpus, read_queries
from harness.errors import DataError
from harness.metrics import evaluate
from harness.trec import FLOAT32_SCORE_FORMAT, quantize, read_qrels, read_run, write_run

pytrec_eval = pytest.importorskip("pytrec_eval")

MEASURES = [f"{m}@{k}" for m in ("ndcg", "recall", "p", "map", "mrr") for k in (1, 3, 10)]
TREC = {"ndcg": "ndcg_cut_{k}", "recall": "recall_{k}", "p": "P_{k}", "map": "map_cut_{k}"}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=6)


@st.composite
def cases(draw, distinct_scores: bool = False):
    """(qrels, run) over a small pool of documents, with frequent score ties unless ``distinct_scores``."""
    docs = draw(st.lists(ids, min_size=1, max_size=15, unique=True))
    qids = draw(st.lists(ids, min_size=1, max_size=6, unique=True))
    qrels, run = {}, {}
    for q in qids:
        judged = draw(st.lists(st.sampled_from(docs), min_size=1, max_size=len(docs), unique=True))
        qrels[q] = {d: draw(st.integers(0, 3)) for d in judged}
        retrieved = draw(st.lists(st.sampled_from(docs), max_size=len(docs), unique=True))
        if distinct_scores:
            run[q] = {d: float(len(retrieved) - i) for i, d in enumerate(retrieved)}
        else:
            run[q] = {d: draw(st.integers(0, 4)) / 2 for d in retrieved}
    return qrels, run


_SCRATCH = Path(tempfile.mkdtemp(prefix="harness-prop-"))


@pytest.fixture(scope="module", autouse=True)
def _scratch():
    yield
    shutil.rmtree(_SCRATCH, ignore_errors=True)


def _tmp(data: bytes, name: str = "f") -> Path:
    """A scratch file (one per name, rewritten by each example)."""
    path = _SCRATCH / name
    path.write_bytes(data)
    return path


# ---- metrics ------------------------------------------------------------------------------------------

@SETTINGS
@given(cases())
def test_metric_values_are_within_0_and_1(case):
    qrels, run = case
    for name, values in evaluate(qrels, run, MEASURES).items():
        assert set(values) == set(qrels)
        assert all(0.0 <= v <= 1.0 for v in values.values()), name


@SETTINGS
@given(cases(), st.randoms(use_true_random=False))
def test_metrics_do_not_depend_on_query_or_document_order(case, rnd):
    qrels, run = case

    def shuffled(d: dict) -> dict:
        items = list(d.items())
        rnd.shuffle(items)
        return dict(items)

    again = evaluate(shuffled({q: shuffled(r) for q, r in qrels.items()}),
                     shuffled({q: shuffled(r) for q, r in run.items()}), MEASURES)
    assert again == evaluate(qrels, run, MEASURES)


@SETTINGS
@given(cases())
def test_metrics_are_invariant_to_order_preserving_document_renaming(case):
    """With ties, trec_eval orders by document id, so a renaming must keep the id order."""
    qrels, run = case
    rename = {d: f"doc:{d}" for r in (*qrels.values(), *run.values()) for d in r}
    renamed = ({q: {rename[d]: v for d, v in r.items()} for q, r in qrels.items()},
               {q: {rename[d]: v for d, v in r.items()} for q, r in run.items()})
    assert evaluate(*renamed, MEASURES) == evaluate(qrels, run, MEASURES)


@SETTINGS
@given(cases(distinct_scores=True), st.randoms(use_true_random=False))
def test_metrics_are_invariant_to_any_document_renaming_without_ties(case, rnd):
    qrels, run = case
    names = sorted({d for r in (*qrels.values(), *run.values()) for d in r})
    targets = [f"x{i}" for i in range(len(names))]
    rnd.shuffle(targets)
    rename = dict(zip(names, targets, strict=True))
    renamed = ({q: {rename[d]: v for d, v in r.items()} for q, r in qrels.items()},
               {q: {rename[d]: v for d, v in r.items()} for q, r in run.items()})
    assert evaluate(*renamed, MEASURES) == evaluate(qrels, run, MEASURES)


@SETTINGS
@given(cases())
def test_metrics_agree_with_pytrec_eval(case):
    qrels, run = case
    wanted = {"ndcg_cut.1,3,10", "recall.1,3,10", "P.1,3,10", "map_cut.1,3,10", "recip_rank"}
    expected = pytrec_eval.RelevanceEvaluator(qrels, wanted).evaluate(run)
    ours = evaluate(qrels, run, MEASURES + ["mrr"])
    for qid, values in expected.items():
        for name, pattern in TREC.items():
            for k in (1, 3, 10):
                assert ours[f"{name}@{k}"][qid] == pytest.approx(values[pattern.format(k=k)], abs=1e-12), (qid, name, k)
        assert ours["mrr"][qid] == pytest.approx(values["recip_rank"], abs=1e-12)
    for qid in set(qrels) - set(expected):  # not answered: zero, as trec_eval -c
        assert all(ours[m][qid] == 0.0 for m in ours)


# ---- readers --------------------------------------------------------------------------------------------

@SETTINGS
@given(cases(), st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=1))
def test_run_files_round_trip(case, scores):
    _, run = case
    run = {q: {d: scores[i % len(scores)] for i, d in enumerate(docs)} for q, docs in run.items()}
    path = _tmp(b"", "run.trec")
    write_run(path, run, tag="t", score_format=FLOAT32_SCORE_FORMAT)
    expected = {q: d for q, d in quantize(run, FLOAT32_SCORE_FORMAT).items() if d}
    if not expected:  # no hit at all: an empty file, refused (issue 35: a mean over no queries is no number)
        with pytest.raises(DataError, match="empty"):
            read_run(path)
        return
    got = read_run(path)
    assert got == expected
    assert all(list(d.values()) == sorted(d.values(), reverse=True) for d in got.values())  # by score


@SETTINGS
@given(cases(), st.booleans(), st.booleans(), st.booleans())
def test_qrels_round_trip_in_any_dialect(case, trec, crlf, bom):
    qrels, _ = case
    lines = [] if trec else ["query-id\tcorpus-id\tscore"]
    lines += [f"{q} 0 {d} {r}" if trec else f"{q}\t{d}\t{r}" for q, docs in qrels.items() for d, r in docs.items()]
    text = ("\r\n" if crlf else "\n").join(lines) + "\n"
    path = _tmp((b"\xef\xbb\xbf" if bom else b"") + text.encode(), "qrels.tsv")
    assert read_qrels(path) == qrels


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@SETTINGS
@given(st.lists(st.tuples(ids, texts, texts), max_size=8, unique_by=lambda t: t[0]), st.booleans())
def test_corpus_round_trips_any_unicode(docs, crlf):
    end = "\r\n" if crlf else "\n"
    data = "".join(json.dumps({"_id": i, "title": t, "text": x}, ensure_ascii=False) + end for i, t, x in docs)
    got = list(iter_corpus(_tmp(data.encode("utf-8"), "corpus.jsonl")))
    assert [(d.doc_id, d.title, d.text) for d in got] == docs


@SETTINGS
@given(st.binary(max_size=300))
def test_readers_answer_any_bytes_with_data_or_a_data_error(data):
    """Never a traceback: arbitrary bytes give records or a DataError naming the file."""
    for reader, name in ((lambda p: list(iter_corpus(p)), "corpus.jsonl"), (read_queries, "queries.jsonl"),
                         (read_qrels, "qrels.tsv"), (read_run, "run.trec")):
        path = _tmp(data, name)
        try:
            reader(path)
        except DataError as e:
            assert e.path == str(path)


@SETTINGS
@given(st.lists(st.sampled_from([b'{"_id": "a", "text": "x"}', b'{"_id": 1, "text": ""}', b"", b"  ", b"\x00",
                                 b'{"_id": "', b"[1]", b"\xff", b'{"text": "no id"}', b"\xef\xbb\xbf{}",
                                 b'{"_id": "a", "title": 3, "text": "x"}']), max_size=6), st.booleans())
def test_corpus_reader_on_mixed_good_and_bad_lines(lines, crlf):
    data = (b"\r\n" if crlf else b"\n").join(lines)
    path = _tmp(data, "corpus.jsonl")
    try:
        docs = list(iter_corpus(path))
    except DataError as e:
        assert e.path == str(path) and e.line is not None and 1 <= e.line <= max(1, len(lines))
    else:
        assert len({d.doc_id for d in docs}) == len(docs)


def test_tie_order_matters_for_renaming_so_the_property_above_is_not_vacuous():
    qrels = {"q": {"a": 1}}
    run = {"q": {"a": 1.0, "b": 1.0}}
    flipped = {"q": {"z": 1}}, {"q": {"z": 1.0, "b": 1.0}}
    assert evaluate(qrels, run, ["mrr@1"]) != evaluate(*flipped, ["mrr@1"])
