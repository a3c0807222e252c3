"""Efficiency beside effectiveness: what each record's run cost, measured where it ran, and `harness
leaderboard --efficiency` (with its plot) over the records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.results.efficiency import pareto_front
from harness.results.records import ResultRecord, load_records


@pytest.fixture(autouse=True)
def _own_cache(monkeypatch, tmp_path):
    """A cache of each test's own: whether a run built its index is what these tests look at (the session's
    cache may hold the tiny corpus's vectors from another test)."""
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))


def _records(out: Path) -> list[tuple[Path, ResultRecord]]:
    found, problems = load_records(out)
    assert not problems
    return found


def _run(model: Path, data: Path, out: Path) -> int:
    return main(["run", "-r", f"hf:{model}", "-d", str(data), "--output-dir", str(out), "--device", "cpu",
                 "--metric", "ndcg@10"])


def test_a_record_says_what_its_run_cost(tiny_beir, tiny_bert_dir, tmp_path):
    from transformers import AutoModel

    assert _run(tiny_bert_dir, tiny_beir, tmp_path / "a") == 0
    ((_, rec),) = _records(tmp_path / "a")
    t = rec.timings
    assert t["device"] == "cpu" and t["queries"] == rec.num_queries and t["index_computed"] is True
    assert t["docs_per_s"] > 0 and t["search_ms_per_query"] > 0 and t["peak_rss_mb"] > 0
    store = Path(rec.index["path"])
    assert t["index_bytes"] == sum(f.stat().st_size for f in store.rglob("*") if f.is_file())
    model = AutoModel.from_pretrained(tiny_bert_dir)
    assert t["parameters"] == sum(p.numel() for p in model.state_dict().values())  # from the header alone
    assert t["dim"] == model.config.hidden_size
    assert _run(tiny_bert_dir, tiny_beir, tmp_path / "b") == 0  # the vectors are in the cache: reused
    ((_, again),) = _records(tmp_path / "b")
    assert again.timings["index_computed"] is False and "docs_per_s" not in again.timings


def test_leaderboard_efficiency_prints_and_draws_what_the_records_measured(tiny_beir, tiny_bert_dir, tmp_path,
                                                                           capsys):
    out = tmp_path / "out"
    assert _run(tiny_bert_dir, tiny_beir, out) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(out), "--efficiency", "--plot", str(tmp_path / "e.png")]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].split()[:5] == ["dataset", "retriever", "ndcg@10", "device", "docs/s"]
    ((path, rec),) = _records(out)
    row = text[2].split()
    assert row[0] == "local/tiny" and row[2] == f"{rec.metrics['ndcg@10']:.4f}" and row[3] == "cpu"
    assert row[-1] == str(rec.timings["dim"])
    assert not any("devices" in line for line in text)
    assert (tmp_path / "e.png").stat().st_size > 0 and text[-1] == f"plot: {tmp_path / 'e.png'}"
    # a record from another device: the table says so
    other = json.loads(path.read_text())
    other["retriever"], other["timings"]["device"] = "gpu-copy", "cuda"
    path.with_name("gpu-copy.json").write_text(json.dumps(other))
    assert main(["leaderboard", "--output-dir", str(out), "--efficiency"]) == 0
    assert "measured on 2 devices (cpu, cuda): compare times only between rows of one device" in \
        capsys.readouterr().out


def test_an_older_record_shows_dashes_not_guesses(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(tiny_bert_dir, tiny_beir, out) == 0
    ((path, _),) = _records(out)
    obj = json.loads(path.read_text())
    obj["timings"] = {"index_s": 1.0, "search_s": 0.1}  # as records were before efficiency was measured
    path.write_text(json.dumps(obj))
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(out), "--efficiency"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[3] == "cpu" and row[4:] == ["—"] * 9


def test_the_pareto_front_is_what_nothing_beats():
    cost = [1.0, 2.0, 3.0, 2.5, 0.5]
    score = [0.5, 0.7, 0.72, 0.6, 0.2]
    assert pareto_front(cost, score) == [4, 0, 1, 2]
    assert pareto_front([1.0, 1.0], [0.3, 0.5]) == [1]  # same cost: the better one only


def test_figures_that_are_not_measurements_are_shown_as_such(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    """An edited record's timings (a string, a negative or infinite number, a bool, no device) are shown as "?"
    with a line naming each, never printed as numbers or ended in a traceback; the plot is still drawn."""
    out = tmp_path / "out"
    assert _run(tiny_bert_dir, tiny_beir, out) == 0
    ((path, _),) = _records(out)
    obj = json.loads(path.read_text())
    obj["timings"].update(search_ms_per_query="fast", index_bytes=-1e9, peak_rss_mb=float("inf"), parameters=True)
    del obj["timings"]["device"]
    obj["device"] = None
    path.write_text(json.dumps(obj))
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(out), "--efficiency", "--plot", str(tmp_path / "e.png")]) == 0
    text = capsys.readouterr().out
    row = text.splitlines()[2].split()
    assert row[3] == "—" and row[5] == "?" and row[8:10] == ["?", "?"] and row[11] == "?"
    for field in ("search_ms_per_query = 'fast'", "index_bytes = -1000000000.0", "peak_rss_mb = inf",
                  "parameters = True"):
        assert f"timings.{field} is not a measurement" in text
    assert "nan" not in text and (tmp_path / "e.png").is_file()


def test_search_time_leaves_out_loading_the_query_model(tiny_beir, tiny_bert_dir, tmp_path, monkeypatch):
    """With the corpus vectors reused, the model loads in the search step: its loading is not search time."""
    import time

    from harness.retrievers.dense_encoders import DenseEncoders

    assert _run(tiny_bert_dir, tiny_beir, tmp_path / "a") == 0  # the vectors cached
    real = DenseEncoders._load

    def slow(self, folder, *, documents):
        time.sleep(2.0)
        return real(self, folder, documents=documents)

    monkeypatch.setattr(DenseEncoders, "_load", slow)
    assert _run(tiny_bert_dir, tiny_beir, tmp_path / "b") == 0
    ((_, rec),) = _records(tmp_path / "b")
    t = rec.timings
    assert t["index_computed"] is False and t["search_s"] >= 2.0
    assert t["search_ms_per_query"] * t["queries"] < 1000 * (t["search_s"] - 1.9)


def test_latency_times_queries_one_at_a_time_and_leaves_the_run_as_it_was(tiny_beir, tiny_bert_dir, tmp_path,
                                                                          monkeypatch, capsys):
    """`harness run --latency N`: after the batch search, N queries encoded and searched alone, their p50 and p95
    in the record with how they were measured; the run file and the scores are the batch's, and without the flag
    the queries are encoded once, as before."""
    from harness.retrievers.dense_encoders import DenseEncoders

    calls: list[int] = []
    real = DenseEncoders.encode_queries

    def counted(self, texts, context):
        calls.append(len(texts))
        return real(self, texts, context)

    monkeypatch.setattr(DenseEncoders, "encode_queries", counted)
    assert _run(tiny_bert_dir, tiny_beir, tmp_path / "a") == 0
    ((_, plain),) = _records(tmp_path / "a")
    assert calls == [plain.num_queries]  # the default: one batch, nothing more
    assert "search_ms_p50" not in plain.timings and plain.timings["latency_method"] == "batch mean only"
    calls.clear()
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "b"),
                 "--device", "cpu", "--metric", "ndcg@10", "--latency", "3"]) == 0
    ((_, timed),) = _records(tmp_path / "b")
    assert calls == [timed.num_queries, 1, 1, 1]
    t = timed.timings
    assert t["latency_queries"] == 3 and 0 < t["search_ms_p50"] <= t["search_ms_p95"]
    assert t["latency_method"] == "3 queries one at a time after the batch run (each encoded and searched alone)"
    assert (tmp_path / "b" / timed.dataset / timed.split / timed.run_file).read_bytes() == \
        (tmp_path / "a" / plain.dataset / plain.split / plain.run_file).read_bytes()
    assert timed.per_query == plain.per_query and timed.fingerprint == plain.fingerprint
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(tmp_path / "b"), "--efficiency"]) == 0
    text = capsys.readouterr().out
    row = text.splitlines()[2].split()
    assert row[6:8] == [f"{t['search_ms_p50']:.2f}", f"{t['search_ms_p95']:.2f}"]
    assert "(3 queries)" in text and "batch mean only" not in text
    # more queries asked than there are: each one timed once
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "c"),
                 "--device", "cpu", "--metric", "ndcg@10", "--latency", "1000"]) == 0
    ((_, every),) = _records(tmp_path / "c")
    assert every.timings["latency_queries"] == every.num_queries


def test_latency_is_refused_where_it_would_not_be_one_query_search(tiny_beir, tiny_bert_dir, tmp_path, capsys):
    from harness.errors import HarnessError
    from harness.settings import Execution

    for bad in (0, -1, True, 2.5):
        with pytest.raises(HarnessError, match="--latency must be a positive number of queries"):
            Execution(latency=bad)
    assert main(["run", "-r", f"hf:{tiny_bert_dir}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "o"),
                 "--device", "cpu", "--index", "hnsw", "--latency", "5"]) == 2
    assert "--latency times exact search one query at a time" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.json"))
