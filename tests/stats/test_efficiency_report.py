"""Efficiency from records alone (no model runs): the latency percentiles and how a record keeps them, the
"—" where a retriever measured only a batch mean, the devices named wherever rows from several are shown,
and the efficiency table and plot of `harness report`."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from harness.cli import main
from harness.results import plots
from harness.results.efficiency import (
    PERCENTILE_METHOD,
    efficiency_frame,
    latency_percentiles,
    measure,
)
from harness.retrievers.base import Indexed

from .conftest import fake_record, scores, write_records

PNG = b"\x89PNG\r\n\x1a\n"


def test_latency_percentiles_are_numpys_linear_method():
    """p50 and p95 of per-query times, in ms, by numpy's 'linear' method (type 7: rank p/100 * (n - 1),
    interpolated): over 1, 2, ..., 100 ms, p50 = 50.5 and p95 = 95.05 (ranks 49.5 and 94.05)."""
    assert PERCENTILE_METHOD == "linear"
    seconds = [i / 1000 for i in range(100, 0, -1)]  # any order
    assert latency_percentiles(seconds) == {"search_ms_p50": 50.5, "search_ms_p95": 95.05}
    assert latency_percentiles((0.004,)) == {"search_ms_p50": 4.0, "search_ms_p95": 4.0}
    ten = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008, 0.009, 0.1]  # one slow query
    got = latency_percentiles(ten)
    assert got == {"search_ms_p50": 5.5, "search_ms_p95": pytest.approx(
        float(np.percentile(np.array(ten) * 1000, 95, method="linear")), abs=1e-3)}
    assert got["search_ms_p95"] == pytest.approx(9 + 0.55 * 91, abs=1e-3)  # rank 8.55: between 9 and 100 ms
    for bad in ([], [0.1, float("nan")], [0.1, float("inf")], [0.1, -0.001]):
        assert latency_percentiles(bad) is None  # never a guess


def test_a_record_keeps_percentiles_only_from_per_query_times():
    indexed = Indexed("in memory", 10, computed=True)
    timed = measure(indexed, 4, 1.0, 0.4, "cpu", {}, (0.1, 0.2, 0.3, 0.4), "4 queries one at a time")
    assert timed["search_ms_per_query"] == 100.0  # the batch mean stays what it is
    assert (timed["search_ms_p50"], timed["search_ms_p95"]) == (250.0, 385.0)
    assert timed["latency_queries"] == 4 and timed["latency_method"] == "4 queries one at a time"
    said_nothing = measure(indexed, 4, 1.0, 0.4, "cpu", {}, (0.1, 0.2, 0.3, 0.4))
    assert said_nothing["latency_method"] == "each query timed as it was searched"
    batch = measure(indexed, 4, 1.0, 0.4, "cpu", {})
    assert "search_ms_p50" not in batch and "search_ms_p95" not in batch and "latency_queries" not in batch
    assert batch["latency_method"] == "batch mean only"
    untimed = measure(indexed, 4, 1.0, None, "cpu", {})  # the runner's wall time only: nothing said
    assert not {"search_ms_per_query", "search_ms_p50", "latency_method"} & set(untimed)
    bad = measure(indexed, 4, 1.0, 0.4, "cpu", {}, (0.1, float("nan")))
    assert "search_ms_p50" not in bad and bad["latency_method"] == "batch mean only"


def _timed(retriever, dataset, device, seed, **timings):
    rec = fake_record(retriever, dataset, {"ndcg@10": scores(seed)})
    rec.device = device
    rec.timings = {"device": device, "queries": rec.num_queries, "index_computed": True, "docs_per_s": 300.0,
                   "index_bytes": 8 * 2**20, "peak_rss_mb": 1200.0, **timings}
    return rec


@pytest.fixture
def efficiency_results(tmp_path):
    """BM25 on the CPU with its JVM (each query timed), a dense model on the CPU (a batch mean only) and the
    same model on a GPU (timed one at a time)."""
    recs = [
        _timed("bm25", "beir/scifact", "cpu (JVM)", 1, search_ms_per_query=2.1, search_ms_p50=1.8,
               search_ms_p95=4.4, latency_queries=300, latency_method="each query timed as it was searched"),
        _timed("minilm", "beir/scifact", "cpu", 2, search_ms_per_query=6.5, latency_method="batch mean only",
               parameters=22_700_000, dim=384, index_bytes=7 * 2**20),
        _timed("minilm-gpu", "beir/scifact", "cuda:0", 3, search_ms_per_query=0.4, search_ms_p50=3.2,
               search_ms_p95=3.9, latency_queries=100, peak_gpu_mb=300.0, parameters=22_700_000, dim=384,
               latency_method="100 queries one at a time after the batch run (each encoded and searched alone)"),
    ]
    return write_records(tmp_path / "results", recs)


def test_leaderboard_efficiency_shows_percentiles_and_dashes_for_a_batch_mean(efficiency_results, capsys):
    assert main(["leaderboard", "--output-dir", str(efficiency_results), "--efficiency"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[3:8] == ["device", "docs/s", "ms/query", "p50", "ms"]
    rows = {line.split()[1]: line.split() for line in lines[2:5]}
    assert rows["bm25"][3:5] == ["cpu", "(JVM)"] and rows["bm25"][6:9] == ["2.10", "1.80", "4.40"]
    assert rows["minilm"][3] == "cpu" and rows["minilm"][5:8] == ["6.50", "—", "—"]  # the mean is not a p50
    assert rows["minilm-gpu"][3] == "cuda:0" and rows["minilm-gpu"][5:8] == ["0.40", "3.20", "3.90"]
    text = "\n".join(lines)
    assert "p50/p95 ms: one query's latency, percentiles (numpy 'linear') of per-query times" in text
    assert "p50/p95 ms, each query timed as it was searched: bm25 (300 queries)" in text
    assert ("p50/p95 ms, 100 queries one at a time after the batch run (each encoded and searched alone): "
            "minilm-gpu (100 queries)") in text
    assert "p50/p95 —: 1 row measured only a batch mean" in text and "--latency N" in text
    assert "measured on 2 devices (cpu, cuda:0): compare times only between rows of one device" in text


def test_one_device_is_named_and_not_called_several(efficiency_results, capsys):
    assert main(["leaderboard", "--output-dir", str(efficiency_results), "--efficiency", "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "measured on 2 devices" in text  # cpu (JVM) and cpu are one device, cuda:0 another
    # only the CPU rows: cpu and its JVM worker are one device, so nothing is said of several
    for path in efficiency_results.rglob("minilm-gpu*.json"):
        path.unlink()
    assert main(["leaderboard", "--output-dir", str(efficiency_results), "--efficiency"]) == 0
    assert "devices" not in capsys.readouterr().out


def test_the_plot_names_its_devices_and_draws_a_front_per_device(efficiency_results, monkeypatch, tmp_path):
    """Three panels (batch mean, latency p50 where measured, index size); a marker and a Pareto front per
    (dataset, device), the devices in the titles: GPU and CPU times never on one front."""
    from harness.results.records import load_records

    drawn = []
    real = plots._save

    def keep(fig, path, dpi=150):
        drawn.append(fig)
        return real(fig, path, dpi)

    monkeypatch.setattr(plots, "_save", keep)
    records = [r for _, r in load_records(efficiency_results)[0]]
    frame, problems = efficiency_frame(records, "ndcg@10")
    assert not problems
    assert plots.efficiency_chart(frame, "ndcg@10", tmp_path / "e.png").read_bytes().startswith(PNG)
    (fig,) = drawn
    bm25, gpu = (float(frame.loc[frame["retriever"] == name, "ndcg@10"].iloc[0]) for name in ("bm25", "minilm-gpu"))
    batch, p50, size = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["search ms/query (batch mean)",
                                                   "query latency p50 (ms, queries timed one by one)",
                                                   "index size (MB)"]
    assert all(ax.get_title().endswith("(by device)") for ax in fig.axes)
    assert "measured on cpu, cuda:0: a marker and a front per device" in fig._suptitle.get_text()
    assert batch.get_legend_handles_labels()[1] == ["beir/scifact · cpu", "beir/scifact · cuda:0"]
    assert len(batch.lines) == 2 and len(size.lines) == 2  # a front per device, not one over both
    # bm25 (cpu) and minilm-gpu, each the front of its device (ringed): no p50 for minilm, its mean not drawn
    assert len(p50.lines) == 2 and len(p50.collections) == 4
    assert sorted(len(c.get_offsets()) for c in p50.collections) == [1, 1, 1, 1]
    assert sorted(tuple(c.get_offsets()[0]) for c in p50.collections) == [(1.8, bm25), (1.8, bm25), (3.2, gpu),
                                                                        (3.2, gpu)]
    # one device: its name in every title, two panels where no record timed its queries one by one
    cpu = frame[frame["retriever"] == "minilm"]
    drawn.clear()
    plots.efficiency_chart(cpu, "ndcg@10", tmp_path / "cpu.png")
    assert [ax.get_title() for ax in drawn[0].axes] == ["ndcg@10 against search ms/query (cpu)",
                                                       "ndcg@10 against index size (cpu)"]
    assert drawn[0]._suptitle.get_text().endswith("measured on cpu")


def _efficiency_html(page: str) -> str:
    match = re.search(r"<h2>Efficiency: .*?</figure>|<h2>Efficiency: .*?no plot[^<]*</p>", page, re.S)
    assert match, "no efficiency section"
    return match.group(0)


def test_report_shows_the_efficiency_table_and_plot_with_the_devices(efficiency_results):
    from harness.results.report import report

    page = report(efficiency_results)
    section = _efficiency_html(page)
    assert section.startswith("<h2>Efficiency: ndcg@10 beside what it cost</h2>")
    head = re.findall(r"<th[^>]*>([^<]*)</th>", section.split("</thead>")[0])
    assert head == ["retriever", "dataset", "ndcg@10", "device", "docs/s", "ms/query", "p50 ms", "p95 ms",
                    "index MB", "peak RSS MB", "peak GPU MB", "params M", "dim"]
    rows = {re.findall(r"<td[^>]*>([^<]*)</td>", r)[0]: re.findall(r"<td[^>]*>([^<]*)</td>", r)
            for r in section.split("<tbody>")[1].split("</tbody>")[0].split("<tr>")[1:]}
    assert rows["bm25"][3] == "cpu (JVM)" and rows["bm25"][5:8] == ["2.10", "1.80", "4.40"]
    assert rows["minilm"][3] == "cpu" and rows["minilm"][6:8] == ["—", "—"]
    assert rows["minilm-gpu"][3] == "cuda:0" and rows["minilm-gpu"][6:8] == ["3.20", "3.90"]
    assert "p50/p95 —: 1 row measured only a batch mean" in section
    assert "measured on 2 devices (cpu, cuda:0): compare times only between rows of one device" in section
    (img,) = re.findall(r"<img [^>]*>", section)
    alt = re.search(r'alt="([^"]*)"', img).group(1)
    assert alt.startswith("ndcg@10 against query time and index size, Pareto front marked; measured on 2 devices "
                          "(cpu, cuda:0): a marker and a Pareto front per device")
    data = re.search(r'src="data:image/png;base64,([^"]+)"', img).group(1)
    assert base64.b64decode(data).startswith(PNG)  # inline: the page stays one file
    assert "<figcaption>ndcg@10 against search ms/query (batch mean), query latency p50" in section


def test_report_of_one_device_names_it_and_older_records_get_no_section(efficiency_results, tmp_path):
    from harness.results.report import report

    for path in efficiency_results.rglob("minilm-gpu*.json"):
        path.unlink()
    section = _efficiency_html(report(efficiency_results))
    assert "measured on cpu</figcaption>" in section and "devices" not in section
    # records from before efficiency was measured: no efficiency section, no plot of nothing
    older = write_records(tmp_path / "older", [fake_record("bm25", "beir/scifact", {"ndcg@10": scores(1)})])
    page = report(older)
    assert "<h2>Efficiency" not in page and "<img" not in page
    # a record with a peak RSS but no time or size: the table, and a line instead of a plot
    rec = fake_record("bm25", "beir/scifact", {"ndcg@10": scores(1)})
    rec.timings = {"device": "cpu", "peak_rss_mb": 900.0}
    section = _efficiency_html(report(write_records(tmp_path / "rss", [rec])))
    assert "no plot: no record here measured its query time or index size" in section and "<img" not in section
