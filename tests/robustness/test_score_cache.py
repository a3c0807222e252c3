"""The rerank score cache is checked on every read: a malformed file, another schema, a text, NULL, infinite or
edited score is refused in one line naming the file (delete it: it is rebuilt); a write that cannot happen
(read-only, disk full) stops at once instead of retrying for minutes."""

from __future__ import annotations

import sqlite3
import time

import pytest

from harness.errors import HarnessError
from harness.retrievers.cross_encoder import SCORE_TABLE, ScoreCache, _seal


def _cache(tmp_path, rows=None):
    c = ScoreCache(tmp_path / "c.sqlite")
    if rows:
        c.put(rows)
    return c


def test_scores_round_trip_and_are_sealed(tmp_path):
    c = _cache(tmp_path, {"k1": 1.5, "k2": -0.25})
    assert c.get(["k1", "k2", "k3"]) == {"k1": 1.5, "k2": -0.25}
    c.close()
    again = ScoreCache(tmp_path / "c.sqlite")
    assert again.get(["k2"]) == {"k2": -0.25}


def test_a_malformed_file_is_refused(tmp_path):
    (tmp_path / "c.sqlite").write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(HarnessError, match="c.sqlite: the rerank score cache fails its check"):
        ScoreCache(tmp_path / "c.sqlite")


def test_another_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "c.sqlite")
    db.execute("CREATE TABLE scores (key TEXT PRIMARY KEY, score TEXT)")
    db.execute("INSERT INTO scores VALUES ('k', 'high')")
    db.commit()
    db.close()
    with pytest.raises(HarnessError, match="its table is not this version's"):
        ScoreCache(tmp_path / "c.sqlite")


@pytest.mark.parametrize("value", ["abc", None, float("inf"), 9.75])  # SQLite stores NaN as NULL
def test_text_null_infinite_or_edited_scores_are_refused(tmp_path, value):
    c = _cache(tmp_path, {"k": 1.5})
    c.close()
    db = sqlite3.connect(tmp_path / "c.sqlite")
    if value is None:  # a NULL can only come from a table without NOT NULL: rebuild it so
        db.execute("ALTER TABLE scores RENAME TO old")
        db.execute(SCORE_TABLE.replace("score REAL NOT NULL", "score REAL"))
        db.execute("INSERT INTO scores VALUES ('k', NULL, ?)", (_seal("k", 1.5),))
        db.execute("DROP TABLE old")
    else:
        db.execute("UPDATE scores SET score = ? WHERE key = 'k'", (value,))
    db.commit()
    db.close()
    with pytest.raises(HarnessError, match="fails its check"):
        ScoreCache(tmp_path / "c.sqlite").get(["k"])


def test_a_write_that_cannot_happen_stops_at_once(tmp_path):
    _cache(tmp_path, {"k": 1.0}).close()
    c = ScoreCache(tmp_path / "c.sqlite")
    c.db.close()
    c.db = sqlite3.connect(f"file:{tmp_path / 'c.sqlite'}?mode=ro", uri=True)  # a read-only cache
    start = time.monotonic()
    with pytest.raises(HarnessError, match="cannot be written"):
        c.put({"k2": 2.0})
    assert time.monotonic() - start < 10
