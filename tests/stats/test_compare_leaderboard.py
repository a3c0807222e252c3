"""harness compare, leaderboard --baseline / --against / --plot, and the plots (on fake records)."""

from __future__ import annotations

import json

import pytest

import harness.runner
from harness.cli import main
from harness.results.leaderboard import against_published, fold, render, significance_marks, table
from harness.results.records import load_records

from .conftest import fake_record, scores

PNG = b"\x89PNG\r\n\x1a\n"


def _records(folder):
    return [r for _, r in load_records(folder)[0]]


def test_significance_marks_better_worse_and_holm(fake_results):
    records = _records(fake_results)
    pivot, _, _ = table(fold(records), "ndcg@10")
    marks, base, notes = significance_marks(records, pivot, "ndcg@10", "base")
    assert base == "base"
    assert marks == {("good", "beir/scifact"): "▲", ("good", "beir/nfcorpus"): "▲"}
    assert "Holm-corrected over 4 comparisons" in notes[-1]
    marks, _, _ = significance_marks(records, pivot, "ndcg@10", "good", test="randomization", seed=1)
    assert marks[("base", "beir/scifact")] == "▼" and ("same", "beir/scifact") in marks
    text = render(pivot, "ndcg@10", ["beir/nfcorpus", "beir/scifact"], notes, marks=marks, baseline="good")
    assert "good (baseline)" in text and "▼" in text
    with pytest.raises(Exception, match="not in the table"):
        significance_marks(records, pivot, "ndcg@10", "nobody")


@pytest.mark.parametrize("test", ["t", "wilcoxon", "randomization"])
def test_the_leaderboards_marks_are_the_full_comparisons(fake_results, test):
    """The leaderboard computes only the p-value of its test (issue 38: 27 ms a cell with every statistic);
    its marks are those of compare_records + Holm, which harness compare prints."""
    from harness.results.stats import apply_holm, compare_records

    records = _records(fake_results)
    pivot, _, _ = table(fold(records), "ndcg@10")
    marks, base, _ = significance_marks(records, pivot, "ndcg@10", "same", test=test, resamples=500, seed=3)
    ref = {r.dataset: r for r in records if r.label == base}
    cells, comparisons = [], []
    for r in records:
        if r.label != base and r.dataset in ref:
            cells.append((r.label, r.dataset))
            comparisons.append(compare_records(ref[r.dataset], r, "ndcg@10", resamples=500, seed=3))
    apply_holm(comparisons)
    want = {cell: ("▲" if c.mean_diff > 0 else "▼") for cell, c in zip(cells, comparisons, strict=True)
            if c.holm and c.holm[test] <= 0.05 and c.mean_diff != 0}
    assert marks == want and want  # the fixture has significant cells under every test


def test_render_without_marks_is_unchanged(fake_results):
    pivot, averaged, notes = table(fold(_records(fake_results)), "ndcg@10")
    assert render(pivot, "ndcg@10", averaged, notes) == render(pivot, "ndcg@10", averaged, notes, "text",
                                                               marks=None, baseline=None)
    assert "▲" not in render(pivot, "ndcg@10", averaged, notes)


def test_against_published_puts_scores_side_by_side():
    from harness.results.baselines import Published

    df = fold([fake_record("bm25", "beir/scifact", {"ndcg@10": {"q1": 0.7, "q2": 0.6}}),
               fake_record("mine", "beir/scifact", {"ndcg@10": {"q1": 0.1, "q2": 0.2}})])
    pub = [Published("pyserini", "bm25-flat", "beir/scifact", "test", "ndcg@10", 0.6789, "p.csv", 2),
           Published("paper", "bm25-flat", "beir/scifact", "test", "recall@100", 0.9, "p.csv", 3),
           Published("pyserini", "other", "beir/scifact", "test", "ndcg@10", 0.5, "p.csv", 4)]
    side = against_published(df, "ndcg@10", pub, {"bm25-flat": ["bm25"]})
    got = {r.retriever: (r.published, r.system) for r in side.itertuples()}
    assert got["bm25"] == (0.6789, "bm25-flat")
    assert side.loc[side.retriever == "bm25", "delta"].item() == pytest.approx(0.65 - 0.6789)
    assert side.loc[side.retriever == "mine", "published"].isna().all()


def test_leaderboard_cli_baseline_against_and_plot(fake_results, tmp_path, capsys):
    ref = tmp_path / "ref.csv"
    ref.write_text("source,system,dataset,split,metric,value\nsome paper,base,beir/scifact,test,ndcg@10,0.5\n")
    plot = tmp_path / "lb.png"
    assert main(["leaderboard", "--output-dir", str(fake_results), "--baseline", "base", "--against", str(ref),
                 "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "base (baseline)" in out and "▲" in out
    assert "some paper" in out and "0.5000" in out
    assert plot.read_bytes().startswith(PNG) and plot.stat().st_size > 10_000


def test_compare_cli_table_json_plot(fake_results, tmp_path, monkeypatch, capsys):
    records = {(r.retriever, r.dataset): r for r in _records(fake_results)}

    def run(retrievers, datasets, metrics, output_dir, **kw):
        return [records[(r, d)] for d in datasets for r in retrievers]

    monkeypatch.setattr(harness.runner, "run", run)
    plot, out_json = tmp_path / "diff.png", tmp_path / "cmp.json"
    argv = ["compare", "-r", "base", "-r", "good", "-d", "beir/scifact", "-d", "beir/nfcorpus", "--plot", str(plot),
            "--json", str(out_json), "--resamples", "2000"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "B better" in text and "A = base" in text and "W/T/L" in text
    data = json.loads(out_json.read_text())
    assert [c["dataset"] for c in data["comparisons"]] == ["beir/scifact", "beir/nfcorpus"]
    first = data["comparisons"][0]
    assert first["holm"]["t"] >= first["t"]["pvalue"] and first["wins"] > first["losses"]
    # what the comparison could have detected: the paired t-test's 80%-power difference from these queries
    from harness.results.power import detectable_difference

    assert "detectable" in text and first["detectable"] == detectable_difference(first["sd_diff"], first["queries"])
    assert f"{first['detectable']:.4f}" in text
    assert plot.read_bytes().startswith(PNG)
    assert main(argv) == 0 and json.loads(out_json.read_text()) == data  # seeded: same numbers again
    assert main(["compare", "-r", "base", "-d", "beir/scifact"]) == 2


def test_difference_chart_many_panels(tmp_path):
    from harness.results.plots import difference_chart
    from harness.results.stats import apply_holm, compare_records

    comps = [compare_records(fake_record("A", f"beir/d{i}", {"ndcg@10": scores(i, 30)}),
                             fake_record("B", f"beir/d{i}", {"ndcg@10": scores(i + 50, 30)}), "ndcg@10",
                             resamples=500) for i in range(5)]
    apply_holm(comps)
    path = difference_chart(comps, tmp_path / "d.png", test="wilcoxon")
    assert path.read_bytes().startswith(PNG)
    with pytest.raises(Exception, match=".png"):
        difference_chart(comps, tmp_path / "d.txt")


def test_leaderboard_shows_judged_at_k_beside_each_dataset(tmp_path, capsys):
    """--judged puts Judged@10 after each dataset's column; a record without it is named in a note."""
    from .conftest import write_records

    base, sparse = scores(1), scores(2)
    recs = [fake_record("dense", "beir/scifact", {"ndcg@10": base, "judged@10": {q: 0.9 for q in base}}),
            fake_record("dense", "beir/nfcorpus", {"ndcg@10": base, "judged@10": {q: 0.3 for q in base}}),
            fake_record("bm25", "beir/scifact", {"ndcg@10": sparse})]
    folder = write_records(tmp_path / "results", recs)
    assert main(["leaderboard", "--output-dir", str(folder), "--judged"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "beir/scifact" in line)
    assert header.split() == ["retriever", "beir/nfcorpus", "beir/nfcorpus", "judged@10", "beir/scifact",
                              "beir/scifact", "judged@10", "avg", "(2)"]
    dense = next(line for line in out.splitlines() if line.startswith("dense"))
    assert dense.split()[2] == "0.3000" and dense.split()[4] == "0.9000"
    assert "bm25: no judged@10 on beir/scifact (harness run --metric Judged@10 adds it" in out
    assert main(["leaderboard", "--output-dir", str(folder), "--judged", "0"]) == 2


def test_leaderboard_csv_keeps_every_digit_of_the_records(fake_results):
    """Once rounded to 4 decimals: a CSV read back could not tell 0.64508 from 0.6451."""
    import pandas as pd

    from harness.results.leaderboard import rebuild

    rebuild(fake_results)
    board = pd.read_csv(fake_results / "leaderboard.csv")
    for r in _records(fake_results):
        row = board[(board["retriever"] == r.retriever) & (board["dataset"] == r.dataset)]
        assert float(row["ndcg@10"].iloc[0]) == r.metrics["ndcg@10"]  # exactly, not to 1e-4


def test_compare_reads_the_records_it_has_without_the_dataset_or_a_run(fake_results, tmp_path, monkeypatch,
                                                                      capsys):
    """Issue 36: `harness compare -r A -r B -d beir/scifact` exited 2 ("not available ... offline") in a shell
    without the data, though both records were there and `harness diff` read them. A comparison reads
    records; it runs only what is missing."""
    def no_run(*args, **kwargs):
        raise AssertionError("compare ran a retriever whose records it has")

    monkeypatch.setattr(harness.runner, "run", no_run)
    monkeypatch.setenv("HARNESS_DATA", str(tmp_path / "no-data-here"))
    monkeypatch.setenv("HARNESS_OFFLINE", "1")
    assert main(["compare", "-r", "base", "-r", "good", "-d", "beir/scifact", "--output-dir", str(fake_results),
                 "--resamples", "500"]) == 0
    assert "B better" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(harness.runner, "run", lambda *a, **k: calls.append(a) or [])
    main(["compare", "-r", "base", "-r", "good", "-d", "beir/scifact", "--output-dir", str(fake_results),
          "--metric", "recall@100"])  # a metric the records lack: the runner is asked for it
    assert calls


def test_compare_as_a_latex_table_with_significance_marks(fake_results, capsys):
    """ranx's habit: a comparison as a LaTeX (booktabs) table, B marked where it differs significantly."""
    assert main(["compare", "-r", "base", "-r", "good", "-d", "beir/scifact", "-d", "beir/nfcorpus",
                 "--output-dir", str(fake_results), "--format", "latex", "--resamples", "500"]) == 0
    tex = capsys.readouterr().out
    assert tex.startswith("\\begin{table}") and "\\toprule" in tex and tex.rstrip().endswith("\\end{table}")
    rows = [x for x in tex.splitlines() if x.startswith("beir/")]
    assert len(rows) == 2 and all("$^{\\dagger}$" in r for r in rows)  # 'good' is clearly better on both
    assert main(["compare", "-r", "base", "-r", "same", "-d", "beir/scifact", "--output-dir", str(fake_results),
                 "--format", "latex", "--resamples", "500"]) == 0
    same = [x for x in capsys.readouterr().out.splitlines() if x.startswith("beir/")]
    assert same and "dagger" not in same[0] and "95\\% CI" not in same[0]  # no mark where nothing differs


def test_the_published_score_of_a_content_named_model_is_found_by_every_command(tmp_path, capsys):
    """Issue 36: reproduce --model-path found beir's 0.64508 for all-MiniLM-L6-v2 run from a local folder,
    while leaderboard --against published and diff --against published said there was none. The local copy
    is named by its content (all-MiniLM-L6-v2#c006c948), and systems.csv maps that content to the published
    system, so every command finds it."""
    from .conftest import write_records

    rec = fake_record("all-MiniLM-L6-v2#c006c948", "beir/scifact", {"ndcg@10": scores(1)})
    folder = write_records(tmp_path / "results", [rec])
    assert main(["leaderboard", "--output-dir", str(folder), "--against", "published"]) == 0
    board = capsys.readouterr().out
    assert "0.6451" in board and "sentence-transformers/all-MiniLM-L6-v2" in board  # beir's 0.64508, printed
    assert main(["diff", "--output-dir", str(folder), "-r", "all-MiniLM-L6-v2#c006c948", "-d", "beir/scifact",
                 "--against", "published"]) == 0
    assert "0.6451" in capsys.readouterr().out


def test_the_leaderboard_scores_a_measure_its_records_lack_from_their_run_files(tmp_path, capsys):
    """Issue 36: `leaderboard --metric map` said "no results" and exited 0, and --judged showed dashes, though
    the run files hold what both need. They are scored from the stored run files (the retriever is not run)
    and recorded; where the dataset is not here, one line says how to get them."""
    import shutil

    from tests.conftest import make_tiny_beir

    folder = make_tiny_beir(tmp_path / "tiny")
    run_file = tmp_path / "mine.trec"
    run_file.write_text("".join(f"q{i} Q0 d{j} {j + 1} {10.0 - j} mine\n" for i in range(8) for j in range(10)))
    out = tmp_path / "results"
    assert main(["run", "-r", f"run:{run_file}", "-d", str(folder), "--metric", "ndcg@10", "--output-dir",
                 str(out)]) == 0
    capsys.readouterr()
    assert main(["leaderboard", "--output-dir", str(out), "--metric", "map", "--judged", "5"]) == 0
    shown = capsys.readouterr()
    assert "scored map, judged@5 from the stored run files of 1 record(s)" in shown.err
    assert "—" not in shown.out.split("avg")[0]  # a value, not a dash, for map and judged@5
    record = json.loads(next(p for p in out.rglob("*.json") if p.parent.name == "test").read_text())
    assert {"ndcg@10", "map", "judged@5"} <= set(record["metrics"]) and "map" in record["per_query"]
    shutil.rmtree(folder)  # the dataset gone: nothing to score P@5 against
    assert main(["leaderboard", "--output-dir", str(out), "--metric", "P@5"]) == 2
    err = capsys.readouterr().err
    assert "holds p@5" in err.lower() and "--metric" in err
