"""Run files read as arrays (issue 38): the vectorised reader gives exactly the line reader's run (the one reading:
by score descending, equal scores in line order, the rank column ignored) and, for a file it does not take, the
line reader's own error with the file and line; scores parse to exactly ``float()``'s values."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness import trec
from harness.errors import DataError
from harness.trec import RunArrays, _read_lines, read_run, read_run_arrays

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])

ID_CHARS = "abcxyz0189_-.:/#" + "üé長"
#: how scores are written in the wild: Pyserini's and the harness's formats, and what else float() reads
FORMATS = ["%.6f", "%.9g", "%.17g", "%r", "%e", "%.3E", "%+.4f", "%010.4f", "%.0f", "%d"]


def _score(rng: random.Random) -> str:
    value = rng.choice([rng.gauss(10, 3), rng.uniform(-1, 1), rng.uniform(-1e6, 1e6), float(rng.randint(-3, 3)),
                        rng.uniform(0, 1e-6), 0.0, -0.0])
    fmt = rng.choice(FORMATS)
    text = fmt % (int(value) if fmt == "%d" else value)
    return rng.choice([text, text, text, ".5", "-.25", "5.", "+7", "1_000.5", "007.50", "9007199254740993",
                       "123456789.123456789", "1e5", "-0"])


def _file(rng: random.Random, bad: bool) -> bytes:
    queries = ["".join(rng.choice(ID_CHARS) for _ in range(rng.randint(1, 12))) for _ in range(rng.randint(1, 5))]
    lines = []
    for q in queries:
        docs = list(dict.fromkeys("".join(rng.choice(ID_CHARS) for _ in range(rng.choice([1, 5, 20, 90])))
                                  for _ in range(rng.randint(1, 12))))
        scores = [_score(rng) for _ in docs] if rng.random() < 0.5 else [rng.choice(["1.5", "2.000000", "-1"])
                                                                          for _ in docs]  # many ties
        lines += [[q, "Q0", d, str(r), s, "tag"] for r, (d, s) in enumerate(zip(docs, scores, strict=True), 1)]
    if rng.random() < 0.5:
        rng.shuffle(lines)  # queries interleaved, hits in any order
    if bad:
        i = rng.randrange(len(lines))
        kind = rng.randrange(5)
        if kind == 0:
            lines.insert(rng.randrange(len(lines) + 1), list(lines[i]))  # a document twice for its query
        elif kind == 1:
            lines[i] = lines[i][:rng.randint(1, 5)]  # too few columns
        elif kind == 2:
            lines[i][2] += " extra"  # too many
        elif kind == 3:
            lines[i][4] = rng.choice(["abc", "nan", "-inf", "1e999", "", "1.2.3", "--1", "0x10", "١٢"])
        else:
            lines[i][2] = lines[i][2] + rng.choice(["\x00", "\x01", "\x1c", "\u2003", "\x85"]) + "d"
    seps = rng.choice([[" "], ["\t"], [" ", "\t", "  ", " \t "]])
    end = rng.choice(["\n", "\r\n"])
    text = ""
    for parts in lines:
        text += rng.choice(seps).join(p for p in parts if p) + rng.choice(["", "", " "]) + end
        if rng.random() < 0.05:
            text += rng.choice(["", "  ", "\t"]) + end  # a blank line
    if rng.random() < 0.2:
        text = text.rstrip("\r\n")  # no line end at the end
    raw = text.encode("utf-8")
    return (b"\xef\xbb\xbf" + raw) if rng.random() < 0.1 else raw


def _reading(path):
    try:
        return _read_lines(path), None
    except DataError as e:
        return None, str(e)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), bad=st.booleans(), chunk=st.sampled_from([7, 64, 1 << 20]))
def test_the_array_reader_reads_every_file_as_the_line_reader_does(tmp_path, monkeypatch, seed, bad, chunk):
    """Equal runs (the same queries, hits, order and float values), or the same error, file and line."""
    monkeypatch.setattr(trec, "CHUNK_BYTES", chunk)
    path = tmp_path / "r.trec"
    path.write_bytes(_file(random.Random(seed), bad))
    expected, error = _reading(path)
    if error is not None:
        for reader in (read_run, read_run_arrays):
            with pytest.raises(DataError) as e:
                reader(path)
            assert str(e.value) == error
        return
    got = read_run(path)
    assert got == expected and list(got) == list(expected)
    assert all(list(got[q].items()) == list(expected[q].items()) for q in expected)  # order, and -0.0 kept
    assert all(str(v) == str(expected[q][d]) for q in expected for d, v in got[q].items())
    arrays = read_run_arrays(path)
    assert arrays.to_dict() == expected and list(arrays.to_dict()) == list(expected)


@pytest.mark.parametrize("fmt", FORMATS[:-1])
def test_scores_parse_to_floats_values_exactly(tmp_path, fmt):
    """100,000 scores of each format, from every range a score takes, read as float() reads them."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(10, 3, 30_000), rng.uniform(-1, 1, 30_000), rng.uniform(-1e9, 1e9, 20_000),
                             rng.exponential(1e-3, 10_000), np.round(rng.normal(0, 50, 10_000), 2)])
    texts = [fmt % v for v in values.tolist()]
    path = tmp_path / "r.trec"
    path.write_text("".join(f"q{i % 7} Q0 d{i} 1 {t} x\n" for i, t in enumerate(texts)))
    arrays = read_run_arrays(path)
    by_doc = dict(zip(arrays.doc_ids(), arrays.scores.tolist(), strict=True))
    assert all(by_doc[f"d{i}"] == float(t) and str(by_doc[f"d{i}"]) == str(float(t)) for i, t in enumerate(texts))


def test_the_rank_column_and_line_order_decide_nothing_but_equal_scores(tmp_path):
    path = tmp_path / "r.trec"
    path.write_text("q Q0 a 1 0.5 x\nq Q0 b 2 3.0 x\nq Q0 c 3 1.0 x\nq Q0 e 9 1.0 x\nq Q0 d 4 1.0 x\n")
    assert list(read_run(path)["q"]) == ["b", "c", "e", "d", "a"]  # equal scores in the file's line order
    arrays = read_run_arrays(path)
    assert arrays.doc_ids() == ["b", "c", "e", "d", "a"] and arrays.scores.tolist() == [3.0, 1.0, 1.0, 1.0, 0.5]


def test_queries_apart_in_the_file_come_together_in_first_appearance_order(tmp_path, monkeypatch):
    monkeypatch.setattr(trec, "CHUNK_BYTES", 16)  # every line its own chunk
    path = tmp_path / "r.trec"
    path.write_text("b Q0 d1 1 1 x\na Q0 d1 1 2 x\nb Q0 d2 2 3 x\na Q0 d2 2 1 x\n")
    arrays = read_run_arrays(path)
    assert arrays.qids == ("b", "a") and arrays.bounds.tolist() == [0, 2, 4]
    assert arrays.to_dict() == {"b": {"d2": 3.0, "d1": 1.0}, "a": {"d1": 2.0, "d2": 1.0}}


@pytest.mark.parametrize("content,message", [
    ("q Q0 d 1 1.0 x\nq Q0 d 2 0.5 x\n", "r.trec:2: document 'd' appears twice for query 'q'"),
    ("q Q0 d 1 1.0\n", "r.trec:1: expected 6 columns"),
    ("q Q0 d 1 abc x\n", "r.trec:1: score 'abc' is not a number"),
    ("q Q0 d 1 1.0 x\nq Q0 e 1 inf x\n", "r.trec:2: score 'inf' is not a finite number"),
    ("", "the run file is empty"), ("\n\n", "the run file is empty")])
def test_bad_files_are_refused_with_the_line_readers_words(tmp_path, content, message):
    path = tmp_path / "r.trec"
    path.write_text(content)
    for reader in (read_run, read_run_arrays):
        with pytest.raises(DataError, match=message):
            reader(path)


def test_a_missing_file_and_an_over_long_line_are_the_line_readers_errors(tmp_path, monkeypatch):
    from harness import lines

    with pytest.raises(DataError, match="file not found"):
        read_run_arrays(tmp_path / "none.trec")
    path = tmp_path / "r.trec"
    path.write_text("q Q0 d 1 1.0 x\nq Q0 " + "e" * 200 + " 2 0.5 x\n")
    monkeypatch.setattr(lines, "MAX_LINE_BYTES", 100)
    with pytest.raises(DataError, match="r.trec:2: line longer than 100 bytes"):
        read_run_arrays(path)


def test_ids_of_any_length_and_nul_in_a_dict_run(tmp_path):
    long = "d" * 70 + "é"
    path = tmp_path / "r.trec"
    path.write_text(f"q Q0 {long} 1 1.0 x\nq Q0 {long}x 2 1.0 x\nq Q0 short 3 2.0 x\n")
    arrays = read_run_arrays(path)
    assert arrays.keys.shape[1] == 10 and arrays.doc_ids() == ["short", long, long + "x"]
    made = RunArrays.from_dict({"q": {"a\x00": 1.0, "a": 2.0}})
    assert made.source is not None and made.to_dict() == {"q": {"a": 2.0, "a\x00": 1.0}}


def test_hash_collisions_change_no_reading_and_no_number(tmp_path, monkeypatch):
    """The (query, document) hash only proposes candidates: with one that collides for every document of a query,
    the run reads the same, a duplicate is still found, and every measure is the same."""
    import harness.metrics.vectorised as vectorised
    from harness.metrics import evaluate

    def weak(queries, keys):
        return queries.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)

    path = tmp_path / "r.trec"
    path.write_text("q1 Q0 a 1 3 x\nq1 Q0 b 2 2 x\nq1 Q0 c 3 2 x\nq2 Q0 a 1 1 x\nq2 Q0 z 2 0.5 x\n")
    qrels = {"q1": {"c": 2, "a": 1, "x": 1}, "q2": {"z": 1}, "q3": {"a": 1}}
    names = ["nDCG@10", "AP", "RR", "P@2", "R@1", "Judged@2"]
    expected = evaluate(qrels, read_run_arrays(path), names)
    monkeypatch.setattr(trec, "_mix", weak)
    monkeypatch.setattr(vectorised, "_mix", weak)
    arrays = read_run_arrays(path)
    assert arrays.source is None and arrays.to_dict() == _read_lines(path)
    assert evaluate(qrels, arrays, names) == expected
    path.write_text("q1 Q0 a 1 3 x\nq1 Q0 b 2 2 x\nq1 Q0 a 3 1 x\n")
    with pytest.raises(DataError, match="r.trec:3: document 'a' appears twice"):
        read_run_arrays(path)


# qrels decoded at once: the line reader's reading, or its error


def _qrels_file(rng: random.Random) -> bytes:
    lines = []
    beir = rng.random() < 0.4
    if beir and rng.random() < 0.7:
        lines.append(["query-id", "corpus-id", rng.choice(["score", "Relevance"])])
    for _ in range(rng.randint(0, 30)):
        q = "".join(rng.choice(ID_CHARS) for _ in range(rng.randint(1, 6)))
        d = "".join(rng.choice(ID_CHARS) for _ in range(rng.randint(1, 10)))
        g = rng.choice(["0", "1", "2", "3", "-1", "+2", "1_0", " 1", "x", "1.5", "١"])
        lines.append([q, d, g] if beir else [q, "0", d, g])
    if lines and rng.random() < 0.3:
        lines.append(list(rng.choice(lines)))  # a judgement repeated
    if lines and rng.random() < 0.3:
        bad = list(rng.choice(lines))
        bad[-1] = rng.choice(["0", "3"])  # ... maybe with another grade
        lines.append(bad)
    if lines and rng.random() < 0.2:
        rng.choice(lines)[0] += rng.choice(["\u200b", "\x07", " x", "\u2003"])
    sep = "\t" if beir and rng.random() < 0.8 else rng.choice([" ", "\t", "  "])
    end = rng.choice(["\n", "\r\n"])
    text = "".join(sep.join(parts) + end + ("  " + end if rng.random() < 0.05 else "") for parts in lines)
    raw = text.encode("utf-8")
    return (b"\xef\xbb\xbf" + raw) if rng.random() < 0.1 else raw


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), columns=st.sampled_from([None, 3, 4]))
def test_qrels_read_at_once_as_the_line_reader_reads_them(tmp_path, seed, columns):
    from harness.trec import _read_qrels_lines, read_qrels

    path = tmp_path / "q.txt"
    path.write_bytes(_qrels_file(random.Random(seed)))
    try:
        expected, error = _read_qrels_lines(path, columns), None
    except DataError as e:
        expected, error = None, str(e)
    if error is not None:
        with pytest.raises(DataError) as e:
            read_qrels(path, columns)
        assert str(e.value) == error
        return
    got = read_qrels(path, columns)
    assert got == expected and list(got) == list(expected) and all(list(got[q]) == list(expected[q]) for q in got)
