"""Compositions as retrievers: fusion (against ranx and Pyserini on random runs with ties) and reranking
(a tiny random cross-encoder and a tiny dense rescorer), run end to end on a tiny BEIR folder."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.retrievers import fusion
from harness.retrievers.registry import resolve_retriever
from harness.runner import run
from harness.settings import EncodeSettings, Execution
from harness.trec import read_run
from tests.fusion_reference import hybrid_ref, rrf_ref


def random_runs(seed: int, n_runs: int = 2, queries: int = 6, ties: bool = True) -> list[dict]:
    """Random runs over overlapping document pools; scores drawn from few values make ties."""
    rng = random.Random(seed)
    runs = []
    for _ in range(n_runs):
        run = {}
        for q in range(queries):
            docs = rng.sample([f"d{i}" for i in range(30)], rng.randint(1, 20))
            scores = [rng.choice([0.5, 1.0, 1.5, 2.0]) if ties else rng.random() * 10 for _ in docs]
            order = sorted(zip(docs, scores, strict=True), key=lambda x: (-x[1], x[0]))
            run[f"q{q}"] = dict(order)
        runs.append(run)
    return runs


def ranx_run(run: dict):
    from ranx import Run

    return Run({q: dict(docs) for q, docs in run.items()})


def ranx_scores(fused) -> dict:
    return {q: dict(docs) for q, docs in fused.to_dict().items()}


@pytest.mark.parametrize("seed", range(5))
def test_rrf_equals_ranx_and_pyserini(seed):
    pytest.importorskip("ranx")
    from ranx import fuse

    runs = random_runs(seed, n_runs=3, ties=False)  # distinct input scores: one rank order for everyone
    ours = {q: fusion.rrf([r.get(q, {}) for r in runs], 60) for q in runs[0]}
    theirs = ranx_scores(fuse([ranx_run(r) for r in runs], norm=None, method="rrf", params={"k": 60}))
    for q in ours:
        assert ours[q].keys() == theirs[q].keys()
        for d in ours[q]:
            assert ours[q][d] == pytest.approx(theirs[q][d], rel=1e-12, abs=0)
    # the fused order, ties included (two documents swapping ranks tie), as Pyserini's TrecRun.merge; two
    # runs, whose sums are exact in any order (pandas sums three in an order of its own)
    two = runs[:2]
    ours = {q: fusion.rrf([r.get(q, {}) for r in two], 60) for q in two[0]}
    assert any(len(set(v.values())) < len(v) for v in ours.values()), "the fused runs should contain ties"
    theirs = pyserini_rrf(two, 60)
    assert {q: list(v.items()) for q, v in ours.items()} == {q: list(v.items()) for q, v in theirs.items()}


def pyserini_rrf(runs: list[dict], k: int) -> dict:
    pytest.importorskip("pyserini")
    import pandas as pd
    from pyserini.fusion import reciprocal_rank_fusion
    from pyserini.trectools import TrecRun

    trec_runs = []
    for one in runs:
        rows = [(q, "Q0", d, rank, s, "t") for q, docs in one.items() for rank, (d, s) in enumerate(docs.items(), 1)]
        tr = TrecRun()
        tr.run_data = pd.DataFrame(rows, columns=TrecRun.columns)
        trec_runs.append(tr)
    fused = reciprocal_rank_fusion(trec_runs, rrf_k=k)
    out: dict = {}
    for row in fused.run_data.itertuples():
        out.setdefault(row.topic, {})[row.docid] = row.score
    return out


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("norm", ["none", "min-max", "max", "sum"])
def test_weighted_sum_equals_ranx_with_ties(seed, norm):
    pytest.importorskip("ranx")
    from ranx import fuse

    runs = random_runs(100 + seed, n_runs=2, ties=True)
    weights = [1.0, 0.7]
    ours = {q: fusion.wsum([r.get(q, {}) for r in runs], weights, norm) for q in runs[0]}
    theirs = ranx_scores(fuse([ranx_run(r) for r in runs], norm=None if norm == "none" else norm, method="wsum",
                              params={"weights": weights}))
    for q in ours:
        assert ours[q].keys() == theirs[q].keys()
        for d in ours[q]:
            assert ours[q][d] == pytest.approx(theirs[q][d], rel=1e-12, abs=1e-15)
        values = list(ours[q].values())
        assert values == sorted(values, reverse=True)


PYSERINI_HYBRID = """
import json, sys
from harness.retrievers import jvm
jvm.lucene_searcher_class()  # the JVM as the harness starts it (pyserini.search imports need one)
from pyserini.search.faiss import DenseSearchResult
from pyserini.search.hybrid import HybridSearcher
out = []
for dense, sparse, alpha, normalization, weight_on_dense in json.load(sys.stdin):
    hits = HybridSearcher._hybrid_results([DenseSearchResult(d, s) for d, s in dense],
                                          [DenseSearchResult(d, s) for d, s in sparse],
                                          alpha, 1000, normalization, weight_on_dense)
    out.append({h.docid: h.score for h in hits})
print(json.dumps(out))
"""


@pytest.mark.java
def test_hybrid_equals_pyserini_hybrid_searcher():
    """Pyserini's own HybridSearcher._hybrid_results (run in a child process: importing it starts a JVM)."""
    import json
    import subprocess
    import sys

    pytest.importorskip("pyserini")
    cases, ours = [], []
    for seed in range(5):
        dense, sparse = random_runs(200 + seed, n_runs=2, ties=True)
        for normalization in (False, True):
            for weight_on_dense in (False, True):
                for q in dense:
                    one_valued = len(set(dense[q].values())) < 2 or len(set(sparse.get(q, {}).values())) < 2
                    if normalization and one_valued:
                        continue  # Pyserini divides by zero here (we count the run 0; tested below)
                    cases.append([list(dense[q].items()), list(sparse.get(q, {}).items()), 1.3, normalization,
                                  weight_on_dense])
                    ours.append(fusion.hybrid(dense[q], sparse.get(q, {}), 1.3, normalization, weight_on_dense))
    proc = subprocess.run([sys.executable, "-c", PYSERINI_HYBRID], input=json.dumps(cases), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(theirs) == len(ours)
    for mine, pyserini in zip(ours, theirs, strict=True):
        assert mine == pyserini  # the same scores, bit for bit (JSON round-trips floats)
        assert list(mine) == [d for d, _ in sorted(mine.items(), key=lambda x: (-x[1], x[0]))]


def test_hybrid_normalisation_of_a_one_valued_run_is_zero():
    assert fusion.hybrid({"a": 2.0, "b": 1.0}, {"c": 5.0}, 1.3, normalization=True) == {"a": 0.5, "b": -0.5, "c": -0.5}


def test_hybrid_min_max_normalised_equals_ranx_wsum():
    """Pyserini's centred normalisation shifts every fused score by one constant: the same order as ranx's
    min-max weighted sum (a missing document at the run's minimum is 0 after min-max)."""
    pytest.importorskip("ranx")
    dense, sparse = random_runs(7, ties=False)
    for q in dense:
        ours = fusion.hybrid(dense[q], sparse.get(q, {}), 0.5, normalization=True)
        wsum = fusion.wsum([dense[q], sparse.get(q, {})], [1.0, 0.5], "min-max")
        assert list(ours) == list(wsum)


# --- names -----------------------------------------------------------------------------------------------

def test_composition_names_are_canonical_and_errors_are_one_line():
    a = resolve_retriever("fuse:rrf(bm25,contriever)")
    b = resolve_retriever("fuse:rrf(bm25, contriever; k=60)")
    assert a.name == b.name == "fuse:rrf(bm25,contriever;k=60)"
    assert [s.name for s in a.stages] == ["bm25", "contriever"]
    h = resolve_retriever("fuse:hybrid(dpr-multi,bm25;alpha=1.3;hits=1000)")
    assert h.params["alpha"] == 1.3 and h.params["hits"] == 1000
    r = resolve_retriever("rerank:cross-encoder/ms-marco-MiniLM-L-6-v2(bm25,top=100)")
    assert r.kind == "rerank" and r.params["top"] == 100 and [s.name for s in r.stages] == ["bm25"]
    assert r.slug != resolve_retriever("rerank:cross-encoder/ms-marco-MiniLM-L-6-v2(bm25,top=10)").slug
    nested = resolve_retriever("fuse:rrf(bm25,rerank:contriever(bm25;top=50))")
    assert nested.stages[1].kind == "rerank"
    for bad, words in [("fuse:rrf(bm25)", "at least two"), ("fuse:nope(bm25,contriever)", "unknown fusion"),
                       ("fuse:rrf(bm25,contriever;q=1)", "unknown parameter"), ("fuse:rrf(bm25,contriever", "expected"),
                       ("fuse:rrf(bm25,contriever;k=zero)", "not a valid value"),
                       ("fuse:wsum(bm25,contriever;weights=1:2:3)", "3 weights"),
                       ("rerank:bm25(contriever)", "not a dense retriever"), ("fuse:rrf(bm25,nosuch)", "nosuch")]:
        with pytest.raises(HarnessError, match=words) as e:
            resolve_retriever(bad)
        assert "\n" not in str(e.value)


# --- end to end ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tests.conftest import make_tiny_bert, word_tokenizer

    root = tmp_path_factory.mktemp("compose-models")
    a, b = make_tiny_bert(root / "a", seed=11), make_tiny_bert(root / "b", seed=12)
    ce = root / "ce"
    ce.mkdir()
    shutil.copy(a / "vocab.txt", ce / "vocab.txt")
    tok = word_tokenizer(ce / "vocab.txt")
    torch.manual_seed(13)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=128, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(ce)
    tok.save_pretrained(ce)
    return a, b, ce


def test_fusion_of_two_reused_records_computes_nothing_but_the_fusion(models, tiny_beir, tmp_path, monkeypatch):
    a, b, _ = models
    out = tmp_path / "r"
    first = run([f"hf:{a}", f"hf:{b}"], [str(tiny_beir)], ["ndcg@10", "recall@100"], out, log=lambda m: None)
    from harness.retrievers.dense import DenseRetriever

    def refuse(*args, **kwargs):
        raise AssertionError("a stage was computed again")
    monkeypatch.setattr(DenseRetriever, "search", refuse)
    monkeypatch.setattr(DenseRetriever, "index", refuse)
    lines: list[str] = []
    (fused,) = run([f"fuse:rrf(hf:{a},hf:{b})"], [str(tiny_beir)], ["ndcg@10", "recall@100"], out, log=lines.append)
    assert sum("reused record" in line for line in lines) == 2
    stages = fused.retriever_spec["stages"]
    assert [s["name"] for s in stages] == [r.retriever for r in first]
    assert [s["fingerprint"] for s in fused.index["stages"]] == [r.fingerprint for r in first]
    assert fused.retriever_fingerprint["stages"] == [r.retriever_fingerprint for r in first]
    # the fused run is the fusion of the two run files as written
    runs = [read_run(out / r.dataset / r.split / r.run_file) for r in first]
    written = read_run(out / fused.dataset / fused.split / fused.run_file)
    for q, docs in written.items():
        assert docs == rrf_ref([r[q] for r in runs], 60, 1000)  # the per-query dict fusion, bit for bit
    assert fused.documents_searched == first[0].documents_searched == 40
    # the leaderboard has the fused row beside its stages
    board = (out / "leaderboard.csv").read_text()
    assert "fuse:rrf(" in board


def test_a_changed_stage_changes_the_fused_fingerprint(models, tiny_beir, tmp_path):
    a, b, _ = models
    out = tmp_path / "r"
    (one,) = run([f"fuse:rrf(hf:{a},hf:{b})"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    (other,) = run([f"fuse:rrf(hf:{a},hf:{b};k=10)"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    assert one.fingerprint != other.fingerprint and one.run_file != other.run_file


def cross_scores_by_hand(ce, pairs: list[tuple[str, str]]) -> list[float]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(ce))
    model = AutoModelForSequenceClassification.from_pretrained(str(ce)).eval()
    out = []
    with torch.inference_mode():
        for q, d in pairs:  # one pair at a time: no padding
            f = tok(q, d, truncation="longest_first", max_length=128, return_tensors="pt")
            out.append(float(model(**f).logits[0, 0]))
    return out


def test_cross_encoder_rerank_end_to_end_and_cached(models, tiny_beir, tmp_path):
    from harness.data.beir import doc_text
    from harness.datasets import resolve_dataset

    a, _, ce = models
    out = tmp_path / "r"
    (rec,) = run([f"rerank:{ce}(hf:{a};top=5)"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    assert rec.retriever.startswith("rerank:ce#") and "(a#" in rec.retriever
    assert rec.retriever_spec["stages"][0]["name"] == rec.index["first_stage"]["retriever"]
    assert rec.retriever_provenance["rerank"]["pairs"] == {"pairs": 40, "from_cache": 0}
    first = read_run(out / rec.dataset / rec.split / f"{resolve_retriever(f'hf:{a}').slug}.trec")
    got = read_run(out / rec.dataset / rec.split / rec.run_file)
    ds = resolve_dataset(str(tiny_beir), output_dir=out)
    texts = {d.doc_id: doc_text(d) for d in ds.corpus()}
    queries = ds.queries()
    for q, docs in got.items():
        top = list(first[q])[:5]
        assert sorted(docs) == sorted(top)
        expected = cross_scores_by_hand(ce, [(queries[q], texts[d]) for d in top])
        assert [docs[d] for d in top] == pytest.approx(expected, abs=1e-5)
        assert list(docs.values()) == sorted(docs.values(), reverse=True)
    # a deeper rerank of the same first stage scores only the pairs it has not seen
    (deeper,) = run([f"rerank:{ce}(hf:{a};top=8)"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    assert deeper.retriever_provenance["rerank"]["pairs"] == {"pairs": 64, "from_cache": 40}


def test_a_cross_encoder_backs_off_out_of_memory_as_the_dense_encoder_does(models, tiny_beir, tmp_path, monkeypatch):
    """The batching loop is one (harness.retrievers.compute.batching): a batch of more than two pairs 'does not
    fit' (a simulated CUDA out-of-memory error); the scores are those of an unconstrained run (grouping moves
    float32 rounding only) and the record keeps each halving of the budget."""
    import torch
    from transformers import BertForSequenceClassification

    a, _, ce = models
    (plain,) = run([f"rerank:{ce}(hf:{a};top=5)"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "plain",
                   log=lambda m: None)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))  # no cached scores: every pair scored again
    real = BertForSequenceClassification.forward

    def tight(self, *args, **kwargs):
        if kwargs["input_ids"].shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BertForSequenceClassification, "forward", tight)
    (tight_rec,) = run([f"rerank:{ce}(hf:{a};top=5)"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "tight",
                       log=lambda m: None)
    backoffs = tight_rec.retriever_provenance["rerank"]["oom_backoffs"]
    assert backoffs and all(b["batch_rows"] > 2 for b in backoffs)
    assert plain.retriever_provenance["rerank"]["oom_backoffs"] == []
    want = read_run(tmp_path / "plain" / plain.dataset / plain.split / plain.run_file)
    got = read_run(tmp_path / "tight" / tight_rec.dataset / tight_rec.split / tight_rec.run_file)
    assert want.keys() == got.keys()
    for q in want:
        assert want[q].keys() == got[q].keys()
        assert [got[q][d] for d in want[q]] == pytest.approx(list(want[q].values()), abs=1e-5)


def test_dense_rescoring_of_first_stage_candidates(models, tiny_beir, tmp_path):
    a, b, _ = models
    out = tmp_path / "r"
    (dense_b,) = run([f"hf:{b}"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    (rec,) = run([f"rerank:hf:{b}(hf:{a};top=6)"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    assert [s["name"] for s in rec.retriever_spec["stages"]] == [resolve_retriever(f"hf:{a}").name, dense_b.retriever]
    full_b = read_run(out / dense_b.dataset / dense_b.split / dense_b.run_file)  # b's exact scores of every doc
    got = read_run(out / rec.dataset / rec.split / rec.run_file)
    for q, docs in got.items():
        assert len(docs) == 6
        for d, s in docs.items():
            if d in full_b[q]:
                assert s == pytest.approx(full_b[q][d], abs=1e-5)


def test_not_a_cross_encoder_is_refused(models, tiny_beir, tmp_path):
    a, _, _ = models
    with pytest.raises(HarnessError, match="not a cross-encoder"):
        run([f"rerank:{a}(hf:{a})"], [str(tiny_beir)], ["ndcg@10"], tmp_path / "r", log=lambda m: None)


@pytest.mark.java
def test_bm25_dense_hybrid_end_to_end(models, tmp_path):
    from tests.conftest import make_tiny_beir

    a, _, _ = models
    ds = make_tiny_beir(tmp_path / "own", seed=77)
    out = tmp_path / "r"
    (rec,) = run([f"fuse:hybrid(hf:{a},bm25;alpha=1.3)"], [str(ds)], ["ndcg@10"], out, log=lambda m: None)
    bm25 = read_run(out / rec.dataset / rec.split / "bm25.trec")
    dense = read_run(out / rec.dataset / rec.split / f"{resolve_retriever(f'hf:{a}').slug}.trec")
    got = read_run(out / rec.dataset / rec.split / rec.run_file)
    for q in got:
        assert got[q] == hybrid_ref(dense[q], bm25.get(q, {}), 1.3, depth=1000)
    assert np.isfinite(rec.metrics["ndcg@10"])


def test_diff_names_the_composition_parameter_and_the_stage(models, tiny_beir, tmp_path):
    from harness.results.diff import diff

    a, b, _ = models
    out = tmp_path / "r"
    (one,) = run([f"fuse:rrf(hf:{a},hf:{b})"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    (two,) = run([f"fuse:rrf(hf:{a},hf:{b};k=10)"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    d = diff(one, two)
    assert any(x.field == "retriever.params.k" and (x.a, x.b) == (60, 10) for x in d.differences)
    assert "the composition differs: k" in d.causes
    (three,) = run([f"fuse:rrf(hf:{a},hf:{a})"], [str(tiny_beir)], ["ndcg@10"], out, log=lambda m: None)
    d = diff(one, three)
    assert any(c.startswith("stage 2 of the composition differs: model") for c in d.causes)


def test_reproduce_lists_splade_and_dpr_hybrid_rows_as_runnable():
    from harness.reproduce import load

    runnable, not_runnable = load(systems=["splade-pp-ed", "DPR-Hybrid"], need_local=False)
    names = {r.retriever for r in runnable}
    assert "splade-pp-ed" in names
    assert {"fuse:hybrid(dpr-nq,bm25;alpha=1.2;hits=1000)", "fuse:hybrid(dpr-multi,bm25;alpha=0.95;hits=1000)"} <= names
    assert all("not a public dataset" in r.reason for r in not_runnable)


def test_a_composition_written_short_is_the_same_retriever_as_its_canonical_name():
    from harness.results.baselines import same_retriever

    canonical = resolve_retriever("fuse:hybrid(dpr-nq,bm25;alpha=1.2;hits=1000)").name
    assert canonical == "fuse:hybrid(dpr-nq,bm25;alpha=1.2;normalization=false;weight_on_dense=false;hits=1000)"
    assert same_retriever(canonical, "fuse:hybrid(dpr-nq, bm25; alpha=1.2; hits=1000)")
    assert not same_retriever(canonical, "fuse:hybrid(dpr-nq,bm25;alpha=1.3;hits=1000)")


@pytest.mark.realdata
@pytest.mark.java
def test_bm25_then_cross_encoder_rerank_on_a_scifact_subset(models, shared_data, tmp_path):
    """The whole SciFact corpus, its first 30 test queries: BM25, then a tiny random cross-encoder over the
    top 20; the record names both stages and the run holds 20 reranked documents per query."""
    import json

    _, _, ce = models
    src = shared_data / "beir" / "scifact"
    sub = tmp_path / "scifact-subset"
    (sub / "qrels").mkdir(parents=True)
    shutil.copy(src / "corpus.jsonl", sub / "corpus.jsonl")
    lines = (src / "qrels" / "test.tsv").read_text().splitlines()
    keep = list(dict.fromkeys(line.split("\t")[0] for line in lines[1:]))[:30]
    (sub / "qrels" / "test.tsv").write_text("\n".join([lines[0], *[ln for ln in lines[1:]
                                                                    if ln.split("\t")[0] in keep]]) + "\n")
    with open(src / "queries.jsonl") as f, open(sub / "queries.jsonl", "w") as out:
        for line in f:
            if json.loads(line)["_id"] in keep:
                out.write(line)
    (rec,) = run([f"rerank:{ce}(bm25;top=20)"], [str(sub)], ["ndcg@10", "recall@100"], tmp_path / "r",
                 log=lambda m: None)
    assert rec.num_queries == 30 and rec.documents_searched == 5183
    assert rec.index["first_stage"]["retriever"] == "bm25"
    assert rec.retriever_spec["stages"][0]["name"] == "bm25" and rec.retriever_provenance["first_stage"] == "bm25"
    run_file = read_run(tmp_path / "r" / rec.dataset / rec.split / rec.run_file)
    bm25 = read_run(tmp_path / "r" / rec.dataset / rec.split / "bm25.trec")
    assert all(sorted(run_file[q]) == sorted(list(bm25[q])[:20]) for q in run_file)
    assert rec.retriever_provenance["rerank"]["pairs"]["pairs"] == 600


# --- rerank settings that would be ignored are refused (issue 27 class 2) ---------------------------------------

def test_a_two_label_classifier_is_not_a_reranker(tmp_path, tiny_beir):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from tests.conftest import make_tiny_bert, word_tokenizer

    base = make_tiny_bert(tmp_path / "base")
    ce = tmp_path / "two"
    ce.mkdir()
    shutil.copy(base / "vocab.txt", ce / "vocab.txt")
    tok = word_tokenizer(ce / "vocab.txt")
    torch.manual_seed(1)
    BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, hidden_size=16, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=32, num_labels=2)
                                  ).save_pretrained(ce)
    tok.save_pretrained(ce)
    config = json.loads((ce / "config.json").read_text())
    config.pop("id2label", None)
    config.pop("label2id", None)  # the labels only in num_labels
    (ce / "config.json").write_text(json.dumps(config))
    with pytest.raises(HarnessError, match="gives 2 logits per pair"):  # its config.json no longer says so
        run([f"rerank:{ce}(hf:{base};top=5)"], [str(tiny_beir)], None, tmp_path / "out",
            execution=Execution(device="cpu", progress=False), log=lambda m: None)


def test_dense_settings_no_stage_reads_are_refused_for_a_cross_encoder(models, tiny_beir, tmp_path):
    a, _, ce = models
    cpu = Execution(device="cpu", progress=False)
    with pytest.raises(HarnessError, match="--max-length would change nothing here"):
        run([f"rerank:{ce}(bm25;top=5)"], [str(tiny_beir)], None, tmp_path / "out",
            settings=EncodeSettings(max_length=64), execution=cpu, log=lambda m: None)
    # a dense first stage reads it: allowed, and the record is its own (a setting of the stage)
    (rec,) = run([f"rerank:{ce}(hf:{a};top=5)"], [str(tiny_beir)], None, tmp_path / "out",
                 settings=EncodeSettings(max_length=64), execution=cpu, log=lambda m: None)
    assert rec.settings == {"max_length": 64}


def test_a_dense_rescorers_cross_encoder_parameters_are_refused(models):
    a, _, _ = models
    with pytest.raises(HarnessError, match="max_length is a cross-encoder parameter"):
        resolve_retriever(f"rerank:hf:{a}(bm25;top=5;max_length=64)")


def test_a_cross_encoder_revision_in_the_name_is_the_one_fetched(monkeypatch, tmp_path):
    """rerank:ID@REV(...) pins the cross-encoder's hub revision (it was passed on as part of the id before); a
    local folder has none."""
    import harness.retrievers.hub as hub
    from harness.retrievers.cross_encoder import CrossEncoderScorer
    from harness.settings import Execution

    spec = resolve_retriever("rerank:cross-encoder/ms-marco-MiniLM-L-6-v2@0a1b2c3(bm25;top=10)")
    assert (spec.model, spec.revision) == ("cross-encoder/ms-marco-MiniLM-L-6-v2", "0a1b2c3")
    assert spec.slug != resolve_retriever("rerank:cross-encoder/ms-marco-MiniLM-L-6-v2(bm25;top=10)").slug
    asked = []

    def offline(name, revision=None, checksums=None):
        asked.append((name, revision))
        raise HarnessError("offline")

    monkeypatch.setattr(hub, "resolve_model", offline)
    with pytest.raises(HarnessError, match="offline"):
        CrossEncoderScorer(spec, Execution(device="cpu"))
    assert asked == [("cross-encoder/ms-marco-MiniLM-L-6-v2", "0a1b2c3")]
    with pytest.raises(HarnessError, match="no revision"):
        resolve_retriever(f"rerank:{tmp_path}@abc(bm25;top=10)")
