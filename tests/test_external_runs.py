"""``run:<TREC run file>`` (issue 30): a run computed elsewhere as a system: a row of its own named by its
content, a fusion stage (equal to ranx's fusion of the two files), a first stage for reranking; a changed
file is a new row, never a reused one; documents outside the corpus are refused."""

from __future__ import annotations

import json
import random

import pytest

from harness.cli import main
from harness.metrics import evaluate, mean
from harness.runner import run
from harness.settings import Execution
from harness.trec import read_qrels, read_run

CPU = Execution(device="cpu", progress=False)


def write_trec(path, run: dict) -> None:
    lines = []
    for q, docs in run.items():
        for rank, (d, s) in enumerate(sorted(docs.items(), key=lambda x: -x[1]), start=1):
            lines.append(f"{q} Q0 {d} {rank} {s!r} elsewhere\n")
    path.write_text("".join(lines))


def random_file(folder, name: str, seed: int, hits: int = 20):
    rng = random.Random(seed)
    queries = [json.loads(x)["_id"] for x in (folder / "queries.jsonl").read_text().splitlines()]
    docs = [json.loads(x)["_id"] for x in (folder / "corpus.jsonl").read_text().splitlines()]
    scores = {q: {d: rng.random() * 10 for d in rng.sample(docs, hits)} for q in queries}
    path = folder.parent / name
    write_trec(path, scores)
    return path


def test_a_run_file_is_a_row_named_by_its_content(tiny_beir, tmp_path):
    path = random_file(tiny_beir, "mine.trec", 0)
    out = tmp_path / "results"
    (rec,) = run([f"run:{path}"], [str(tiny_beir)], ["ndcg@10", "recall@5"], out, execution=CPU, log=lambda m: None)
    assert rec.retriever.startswith("run:mine.trec#") and len(rec.retriever) == len("run:mine.trec#") + 8
    assert rec.retriever_provenance["computed_elsewhere"] is True and rec.documents_searched is None
    per_query = evaluate(read_qrels(tiny_beir / "qrels" / "test.tsv"), read_run(path), ["ndcg@10", "recall@5"])
    assert rec.metrics["ndcg@10"] == pytest.approx(mean(per_query["ndcg@10"]), abs=1e-12)
    assert rec.per_query["recall@5"] == per_query["recall@5"]
    # a changed file is another system: a new row; the first is kept, never reused for the new content
    lines = path.read_text().splitlines()
    q, q0, d, rank, score, tag = lines[0].split()
    path.write_text("\n".join([f"{q} {q0} {d} {rank} {float(score) + 100} {tag}"] + lines[1:]) + "\n")
    (again,) = run([f"run:{path}"], [str(tiny_beir)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    assert again.retriever != rec.retriever and again.fingerprint != rec.fingerprint
    board = (out / "leaderboard.csv").read_text()
    assert rec.retriever in board and again.retriever in board


def test_depth_cuts_the_file_explicitly(tiny_beir, tmp_path):
    path = random_file(tiny_beir, "deep.trec", 1, hits=20)
    (rec,) = run([f"run:{path}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", execution=CPU, depth=10,
                 log=lambda m: None)
    served = rec.retriever_provenance["served"]
    assert served["depth"] == 10 and served["queries_cut_to_depth"] == 8 and served["queries_without_hits"] == 0
    written = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    assert all(len(docs) == 10 for docs in written.values())


def test_two_run_files_fuse_as_ranx_fuses_them(tiny_beir, tmp_path):
    pytest.importorskip("ranx")
    from ranx import Run, fuse

    a, b = random_file(tiny_beir, "a.trec", 2), random_file(tiny_beir, "b.trec", 3)
    (rec,) = run([f"fuse:rrf(run:{a},run:{b})"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", execution=CPU,
                 log=lambda m: None)
    assert rec.retriever_provenance["computed_elsewhere"].startswith("in part")
    ours = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    theirs = fuse([Run(read_run(a)), Run(read_run(b))], norm=None, method="rrf", params={"k": 60}).to_dict()
    assert ours.keys() == theirs.keys()
    for q in ours:
        assert ours[q].keys() == theirs[q].keys()
        for d in ours[q]:
            assert ours[q][d] == pytest.approx(theirs[q][d], rel=1e-12, abs=0)


@pytest.mark.java
def test_a_run_file_fuses_with_bm25_as_ranx_fuses_the_two_files(tiny_beir, tmp_path):
    pytest.importorskip("ranx")
    from ranx import Run, fuse

    a = random_file(tiny_beir, "a.trec", 4)
    out = tmp_path / "r"
    (rec,) = run([f"fuse:rrf(run:{a},bm25)"], [str(tiny_beir)], ["ndcg@10"], out, execution=CPU, log=lambda m: None)
    bm25_file = next((out / rec.dataset / "test").glob("bm25*.trec"))
    ours = read_run(out / rec.dataset / "test" / rec.run_file)
    theirs = fuse([Run(read_run(a)), Run(read_run(bm25_file))], norm=None, method="rrf", params={"k": 60}).to_dict()
    for q in ours:
        assert ours[q].keys() == theirs[q].keys()
        for d in ours[q]:
            assert ours[q][d] == pytest.approx(theirs[q][d], rel=1e-12, abs=0)


def test_a_run_file_is_a_first_stage_for_reranking(tiny_beir, tiny_bert_dir, tmp_path):
    a = random_file(tiny_beir, "first.trec", 5)
    (rec,) = run([f"rerank:hf:{tiny_bert_dir}(run:{a};top=10)"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r",
                 execution=CPU, log=lambda m: None)
    assert rec.retriever_provenance["computed_elsewhere"].startswith("in part")
    reranked = read_run(tmp_path / "r" / rec.dataset / "test" / rec.run_file)
    first = read_run(a)
    assert all(set(reranked[q]) == set(list(first[q])[:10]) for q in reranked)


def test_documents_outside_the_corpus_and_a_missing_file_are_one_line(tiny_beir, tmp_path, capsys):
    path = tmp_path / "other.trec"
    path.write_text("q0 Q0 not-a-doc 1 3.5 x\n")
    assert main(["run", "-r", f"run:{path}", "-d", str(tiny_beir), "--output-dir", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not in the corpus" in err and "'not-a-doc'" in err
    assert main(["run", "-r", f"run:{tmp_path / 'missing.trec'}", "-d", str(tiny_beir)]) == 2
    assert "is not a file" in capsys.readouterr().err


def test_run_files_in_diff_and_check(tiny_beir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = random_file(tiny_beir, "a.trec", 6), random_file(tiny_beir, "b.trec", 7)
    assert main(["run", "-r", f"run:{a}", "-r", f"run:{b}", "-d", str(tiny_beir)]) == 0
    capsys.readouterr()
    assert main(["diff", "-r", f"run:{a}", "-r", f"run:{b}", "-d", "local/tiny"]) == 0
    assert "queries that moved most" in capsys.readouterr().out
    (got,) = run([f"run:{a}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "results", log=lambda m: None)
    (tmp_path / "b.csv").write_text("retriever,dataset,split,metric,expected,tolerance\n"
                                    f"run:{a},{tiny_beir},test,ndcg@10,{got.metrics['ndcg@10']:.6f},0.000001\n")
    assert main(["check", str(tmp_path / "b.csv")]) == 0


def test_a_run_answering_some_queries_says_how_many_score_zero(tiny_beir, tmp_path):
    """A run file that answers 2 of the 8 queries is scored (the others 0, as trec_eval -c), and the result
    line says so, not only the record's queries_answered."""
    path = random_file(tiny_beir, "few.trec", 2)
    lines = path.read_text().splitlines()
    kept = sorted({line.split()[0] for line in lines})[:2]
    path.write_text("\n".join(x for x in lines if x.split()[0] in kept) + "\n")
    said: list[str] = []
    (rec,) = run([f"run:{path}"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", execution=CPU, log=said.append)
    assert rec.queries_answered == 2 and rec.num_queries == 8
    assert any("6 of 8 queries without a hit, each scored 0" in line for line in said)
