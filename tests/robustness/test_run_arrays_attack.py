"""Adversarial checks of the arrays path of runs (``RunArrays.from_hits`` / ``from_lists``, ``_protocol_cut``,
``write_run``, ``evaluate``) against the dict path it must equal: same file bytes, same returned run (order
included), same removed counts, same refusals.

The dict path of a searcher's hits is ``{q: {d: float(s) for d, s in zip(docs[i], scores[i])}}``.

The second part holds the defects an attack round found (2026-12-07), each with the behaviour decided: where
the dict path did something silent or accidental (a NaN kept or dropped by where a sort put it, a bare
StopIteration, a duplicate query id's rows merged), the arrays path refuses and the dict path is mended."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics import evaluate
from harness.runner import _protocol_cut
from harness.trec import FLOAT32_SCORE_FORMAT, FLOAT64_SCORE_FORMAT, PYSERINI_SCORE_FORMAT, RunArrays, write_run


def _ref(qids, docs, scores) -> dict[str, dict[str, float]]:
    return {q: {d: float(s) for d, s in zip(docs[i], scores[i])} for i, q in enumerate(qids)}  # noqa: B905


def _items(run):
    as_dict = run.to_dict() if isinstance(run, RunArrays) else run
    return [(q, list(d.items())) for q, d in as_dict.items()]


def _outcome(tmp_path, name, run, depth, drop, fmt, tag="t", measures=None, qrels=None):
    """Everything the runner produces from ``run``: the cut (order included), the removed counts, the written
    file's bytes, the run as written, and the per-query measures; or the refusal (type and message, the file's
    name taken out)."""
    path = tmp_path / f"{name}.trec"
    try:
        cut, removed = _protocol_cut(run, depth, drop)
        cut_items = _items(cut)
        written = write_run(path, cut, tag, fmt)
        values = evaluate(qrels, written, measures) if measures and qrels else None
        return ("ok", cut_items, removed, _items(written), path.read_bytes(), values)
    except Exception as e:  # noqa: BLE001 - the refusal is part of what must agree
        return ("refused", type(e).__name__, str(e).replace(str(path), "<run>"))


def _both(tmp_path, qids, docs, scores, depth=1000, drop=True, fmt=FLOAT32_SCORE_FORMAT, **kw):
    d = _outcome(tmp_path, "d", _ref(qids, docs, scores), depth, drop, fmt, **kw)
    a = _outcome(tmp_path, "a", RunArrays.from_hits(qids, docs, scores), depth, drop, fmt, **kw)
    return d, a


# --- properties that hold (worth keeping) ------------------------------------------------------------------------

_IDS = ["a", "ab", "abc", "é", "ü", "日本", "😀", "%", "%s", "q%d", "x" * 100, "a" * 8, "a" * 9, "a" * 16, "a" * 17,
        "z", "0", "-", "", "1", "2", "3"]
_VALUES = [0.0, -0.0, 1.0, 1.0 + 1e-7, 1.0000001, 1e-300, -1e-300, 5e-324, 1e300, 1.7976931348623157e308,
           0.1234565, 0.1234575, 0.12345650000000001, 123456789.0, 1e16, 2.0**53 + 1, 3.4028235e38, 1.1754944e-38,
           1e-7, 1e-6, 5e-7, 4.9999999e-7]


def _random_hits(seed):
    rng = np.random.default_rng(seed)
    qids = list(dict.fromkeys(rng.choice(_IDS, size=int(rng.integers(0, 5))).tolist()))
    k = int(rng.integers(0, 7))
    docs = [rng.choice(_IDS, size=int(rng.integers(0, k + 1)), replace=False).tolist() for _ in qids]
    dtype = np.float32 if seed % 2 else np.float64
    scores = np.full((len(qids), k + int(rng.integers(0, 3))), -np.inf, dtype=dtype)  # rows longer than docs
    for i, row in enumerate(docs):
        v = rng.choice(_VALUES, size=len(row)) * rng.choice([1.0, 1.0, -1.0], size=len(row))
        if dtype is np.float32:
            v = np.clip(v, -3.4e38, 3.4e38)  # finite in float32 (non-finite scores: see the defects below)
        if rng.random() < 0.5:
            v = np.sort(v)[::-1]
        scores[i, :len(row)] = v
    return rng, qids, docs, scores


@pytest.mark.parametrize("seed", range(200))
def test_random_hits_agree_with_the_dict_path(tmp_path, seed):
    """Multibyte ids, ids 0 to 100 bytes, prefixes of each other, a qid among its hits, '%' in ids, -0.0 and 0.0,
    ties only after formatting, huge/tiny magnitudes, empty queries, no queries, depth 0/1, float32 and float64,
    score rows longer than the docs; from_hits and from_lists; ndcg@10, recall@100 and map per query."""
    rng, qids, docs, scores = _random_hits(seed)
    depth = int(rng.choice([0, 1, 2, 3, 1000]))
    drop = bool(rng.integers(0, 2))
    fmt = str(rng.choice([FLOAT32_SCORE_FORMAT, PYSERINI_SCORE_FORMAT, FLOAT64_SCORE_FORMAT]))
    qrels = {q: {d: j % 3 for j, d in enumerate(_IDS[::2])} for q in qids}
    kw = {"tag": "t%s%%", "measures": ["ndcg@10", "recall@100", "map"], "qrels": qrels}
    d = _outcome(tmp_path, "d", _ref(qids, docs, scores), depth, drop, fmt, **kw)
    a = _outcome(tmp_path, "a", RunArrays.from_hits(qids, docs, scores), depth, drop, fmt, **kw)
    lists = RunArrays.from_lists(qids, docs, [scores[i, :len(row)].tolist() for i, row in enumerate(docs)])
    a2 = _outcome(tmp_path, "l", lists, depth, drop, fmt, **kw)
    assert d[0] == "ok"
    assert a == d
    assert a2 == d


@pytest.mark.parametrize("fmt", [FLOAT32_SCORE_FORMAT, PYSERINI_SCORE_FORMAT, FLOAT64_SCORE_FORMAT])
def test_every_hit_a_self_hit_and_padding_lookalikes(tmp_path, fmt):
    qids = ["q", "r" * 20, "ab", "é" * 9, "a\x00"]
    docs = [["q"], ["r" * 20], ["ab\x00", "ab", "a", "abc"], ["é" * 9, "é" * 8, "é" * 10], ["a"]]
    scores = np.full((5, 6), -np.inf, dtype=np.float32)
    for i, row in enumerate(docs):
        scores[i, :len(row)] = 1.0
    for depth in (0, 1, 2, 1000):
        d, a = _both(tmp_path, qids, docs, scores, depth=depth, fmt=fmt)
        assert a == d


# --- defects an attack round found, mended -------------------------------------------------------------------------


def test_a_nan_score_is_refused_before_any_order_is_made():
    """A NaN among a query's scores: no order holds it (the dict's sort left it where it was, lexsort put it last
    and the cut dropped it: a broken score matrix would have been written). Refused where the run is made."""
    for make in (lambda: RunArrays.from_hits(["q"], [["a", "b", "c", "d"]], np.array([[np.nan, 1.0, 3.0, 2.0]])),
                 lambda: RunArrays.from_lists(["p", "q"], [["x"], ["a", "b"]], [[1.0], [2.0, float("nan")]])):
        with pytest.raises(HarnessError, match=r"query '.', document '.' has score nan"):
            make()


def test_nonfinite_refusal_names_the_same_query(tmp_path):
    """Non-finite scores in two queries: both paths name the first in the file's order (queries sorted)."""
    d = _outcome(tmp_path, "d", _ref(["b", "a"], [["x", "y"], ["z", "w"]], [[1.0, np.inf], [-np.inf, 1.0]]),
                 1000, False, FLOAT32_SCORE_FORMAT)
    a = _outcome(tmp_path, "a", RunArrays.from_hits(["b", "a"], [["x", "y"], ["z", "w"]],
                                                    np.array([[1.0, np.inf], [-np.inf, 1.0]])),
                 1000, False, FLOAT32_SCORE_FORMAT)
    assert d[0] == "refused" and "query 'a', document 'z' has score -inf" in d[2]
    assert a == d


def test_a_format_that_overflows_a_finite_score_is_refused(tmp_path):
    """A finite score that the format rounds to infinity ('%.2g' of the largest double reads back as inf): both
    paths refuse in one line (the dict path raised a bare StopIteration)."""
    for run in (_ref(["q"], [["a"]], [[1.7976931348623157e308]]),
                RunArrays.from_hits(["q"], [["a"]], np.array([[1.7976931348623157e308]]))):
        with pytest.raises(HarnessError, match="has score inf"):
            write_run(tmp_path / "x.trec", run, "t", "%.2g")


def test_rows_that_do_not_match_their_scores_are_refused():
    """More ids than a row has scores, or a row of scores missing: a programming error, refused (numpy's
    IndexError before; the dict's zip silently dropped hits)."""
    with pytest.raises(ValueError, match="row of scores"):
        RunArrays.from_hits(["q"], [["a", "b", "c"]], np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="row of scores"):
        RunArrays.from_hits(["q", "r"], [["a"], ["b"]], np.array([[1.0]]))


def test_a_query_id_given_twice_is_refused():
    """A qid twice: the dict kept the last row, the arrays both (the file would hold the query twice)."""
    with pytest.raises(ValueError, match="twice"):
        RunArrays.from_hits(["q", "q"], [["a"], ["b"]], np.array([[1.0], [2.0]]))
    with pytest.raises(ValueError, match="twice"):
        RunArrays.from_lists(["q", "q"], [["a"], ["b"]], [[1.0], [2.0]])


def test_a_negative_depth_is_refused():
    arrays = RunArrays.from_hits(["q"], [["a", "b"]], np.array([[1.0, 2.0]]))
    for run in (_ref(["q"], [["a", "b"]], [[1.0, 2.0]]), arrays):
        with pytest.raises(ValueError, match="negative"):
            _protocol_cut(run, -1, False)


def test_an_id_with_a_line_end(tmp_path):
    """An id holding '\n' (outside write_run's id rule): the keys cannot hold it (their decoding splits on line
    ends), so the run keeps its dict (as for a NUL) and both paths write the same."""
    d, a = _both(tmp_path, ["q", "r"], [["a\nb", "c"], ["x", "y"]], np.array([[2.0, 1.0], [2.0, 1.0]]), drop=False)
    assert a == d
