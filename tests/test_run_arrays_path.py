"""A retriever's run as arrays (``RunArrays.from_hits``), cut by the protocol and written, is the run the dict path
gives: the same file byte for byte, the same run read back (order included), the same hits removed."""

from __future__ import annotations

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.runner import _protocol_cut
from harness.trec import FLOAT32_SCORE_FORMAT, PYSERINI_SCORE_FORMAT, RunArrays, answered, read_run, write_run


def _hits(seed: int, queries: int = 40, k: int = 30, docs: int = 60, nul: bool = False
          ) -> tuple[list[str], list[list[str]], np.ndarray]:
    """A searcher's output: each query's top-k ids (some rows short, padded with -inf), float32 scores with ties
    and near-ties that six printed decimals make equal, ids of mixed lengths and scripts, self hits."""
    rng = np.random.default_rng(seed)
    ids = [f"d{i}" if i % 3 else f"doc-ü{i}-{'x' * (i % 17)}" for i in range(docs)]
    if nul:
        ids[5] = "a\x00b"
    qids = [ids[i] if i % 4 == 0 else f"q{i}" for i in range(queries)]  # every fourth query is a document id
    qids[1] = "q%s%d%"  # format characters are text
    rows, scores = [], np.full((queries, k), -np.inf, dtype=np.float32)
    for i in range(queries):
        n = k if i % 5 else int(rng.integers(0, k))
        chosen = rng.choice(docs, size=n, replace=False)
        if i % 4 == 0 and n and i not in chosen:
            chosen[int(rng.integers(0, n))] = i  # the query's own id among its hits
        base = rng.choice([0.5, 0.25, 1.0 + 1e-7, 1.0], size=n) + rng.choice([0.0, 1e-9, 3e-8], size=n)
        values = np.sort(base.astype(np.float32))[::-1]
        rows.append([ids[j] for j in chosen])
        scores[i, :n] = values
    return qids, rows, scores


def _as_dicts(qids: list[str], rows: list[list[str]], scores: np.ndarray) -> dict[str, dict[str, float]]:
    """The dict the dense retriever built before runs were arrays."""
    return {q: {d: float(s) for d, s in zip(rows[i], scores[i], strict=False)} for i, q in enumerate(qids)}


def _items(run) -> list[tuple[str, list[tuple[str, float]]]]:
    as_dict = run.to_dict() if isinstance(run, RunArrays) else run
    return [(q, list(docs.items())) for q, docs in as_dict.items()]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("depth", [1, 7, 1000])
@pytest.mark.parametrize("drop", [False, True])
@pytest.mark.parametrize("fmt", [FLOAT32_SCORE_FORMAT, PYSERINI_SCORE_FORMAT])
def test_arrays_cut_and_write_as_the_dict_path(tmp_path, seed, depth, drop, fmt):
    qids, rows, scores = _hits(seed)
    arrays = RunArrays.from_hits(qids, rows, scores)
    assert arrays.source is None
    cut_d, removed_d = _protocol_cut(_as_dicts(qids, rows, scores), depth, drop)
    cut_a, removed_a = _protocol_cut(arrays, depth, drop)
    assert isinstance(cut_a, RunArrays)
    assert removed_a == removed_d and (not drop or removed_d["drop_self_hits"])
    assert _items(cut_a) == _items(cut_d)
    assert answered(cut_a) == answered(cut_d)
    written_d = write_run(tmp_path / "d.trec", cut_d, tag="t%s", score_format=fmt)
    written_a = write_run(tmp_path / "a.trec", cut_a, tag="t%s", score_format=fmt)
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "d.trec").read_bytes()
    assert _items(written_a) == _items(written_d)
    back = read_run(tmp_path / "a.trec")
    assert {q: list(d.items()) for q, d in back.items()} == {q: d for q, d in _items(written_a) if d}


def test_an_id_with_a_nul_takes_the_dict_path(tmp_path):
    qids, rows, scores = _hits(1, nul=True)
    arrays = RunArrays.from_hits(qids, rows, scores)
    cut_d, removed_d = _protocol_cut(_as_dicts(qids, rows, scores), 5, True)
    cut_a, removed_a = _protocol_cut(arrays, 5, True)
    assert removed_a == removed_d and _items(cut_a) == _items(cut_d)
    written_a = write_run(tmp_path / "a.trec", cut_a, tag="t")
    written_d = write_run(tmp_path / "d.trec", cut_d, tag="t")
    assert (tmp_path / "a.trec").read_bytes() == (tmp_path / "d.trec").read_bytes()
    assert _items(written_a) == _items(written_d)


def test_a_nonfinite_score_is_refused_as_the_dict_path_refuses_it(tmp_path):
    qids, rows, scores = _hits(2)
    scores[3, 2] = np.inf  # a NaN is refused before (tests/robustness/test_run_arrays_attack.py)
    messages = []
    for run in (_as_dicts(qids, rows, scores), RunArrays.from_hits(qids, rows, scores)):
        with pytest.raises(HarnessError) as e:
            write_run(tmp_path / "x.trec", run, tag="t")
        messages.append(str(e.value))
    assert messages[0] == messages[1] and "inf" in messages[0] and not (tmp_path / "x.trec").exists()


def test_queries_without_hits_are_kept_and_not_answered():
    run = RunArrays.from_hits(["a", "b", "c"], [["x"], [], ["y", "z"]],
                              np.array([[1.0, -np.inf], [-np.inf, -np.inf], [2.0, 2.0]], dtype=np.float32))
    assert run.qids == ("a", "b", "c") and list(answered(run)) == ["a", "c"]
    assert run.to_dict() == {"a": {"x": 1.0}, "b": {}, "c": {"y": 2.0, "z": 2.0}}
    empty = RunArrays.from_hits(["a"], [[]], np.zeros((1, 0), dtype=np.float32))
    assert not answered(empty) and empty.cut(10, True)[0].to_dict() == {"a": {}}


def test_lists_of_hits_are_put_in_the_one_order():
    run = RunArrays.from_lists(["q", "r"], [["a", "b", "c"], ["x"]], [[1.0, 2.0, 1.0], [0.5]])
    assert [(q, list(d.items())) for q, d in run.to_dict().items()] == [
        ("q", [("b", 2.0), ("a", 1.0), ("c", 1.0)]), ("r", [("x", 0.5)])]
    with pytest.raises(ValueError):
        RunArrays.from_lists(["q"], [["a", "b"]], [[1.0]])
