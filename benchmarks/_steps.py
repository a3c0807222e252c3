"""The steps the benchmarks time in a fresh process each (``_common.measure("name", **kwargs)``), as real
code that the linters read. Each returns a JSON-able result."""

from __future__ import annotations

import os
import runpy
import sys


def beir_scifact(scifact: str, model: str) -> dict:
    """beir 2.2.0's DenseRetrievalExactSearch + models.SentenceBERT on SciFact test."""
    from beir.datasets.data_loader import GenericDataLoader
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    corpus, queries, qrels = GenericDataLoader(data_folder=scifact).load(split="test")
    dres = DenseRetrievalExactSearch(models.SentenceBERT(model), batch_size=128, corpus_chunk_size=50000)
    retriever = EvaluateRetrieval(dres, score_function="cos_sim", k_values=[10, 100])
    results = retriever.retrieve(corpus, queries)
    ndcg, _map, recall, _p = retriever.evaluate(qrels, results, [10, 100])
    return {"ndcg@10": ndcg["NDCG@10"], "recall@100": recall["Recall@100"]}


def harness_dense(model: str, dataset: str, output: str, precision: str = "fp32",
                  metrics: tuple = ("ndcg@10", "recall@100")) -> dict:
    """``harness run`` of a dense model on one dataset."""
    from harness.runner import run
    from harness.settings import EncodeSettings

    (rec,) = run([f"hf:{model}"], [dataset], list(metrics), output, log=lambda m: None,
                 settings=EncodeSettings(precision=precision))
    return {**rec.metrics, "compute": rec.retriever_provenance["compute"], "timings": rec.timings}


def harness_bm25(dataset: str, output: str) -> dict:
    """``harness run --retriever bm25`` on one dataset, with what the Lucene workers reported."""
    from harness.runner import run

    (rec,) = run(["bm25"], [dataset], ["ndcg@10"], output, log=lambda m: None)
    prov = rec.retriever_provenance
    return {"ndcg@10": rec.metrics["ndcg@10"], "documents": rec.corpus["documents"], "queries": rec.num_queries,
            "index_worker_peak_rss_mb": prov["indexing_worker"].get("worker_peak_rss_mb"),
            "search_worker_peak_rss_mb": prov.get("worker_peak_rss_mb"), "heap_mb": prov.get("heap_bytes", 0) / 2**20,
            "index_s": rec.timings["index_s"], "search_s": rec.timings["search_s"]}


def pyserini_cli(module: str, args: list[str]) -> None:
    """One of pyserini's own command-line tools (``python -m MODULE ARGS``), on the harness's JVM setup."""
    from harness.retrievers import jvm

    jvm.start_jvm()
    os.environ.setdefault("OPENAI_API_KEY", "unused")
    sys.argv = ["pyserini", *args]
    try:
        runpy.run_module(module, run_name="__main__")
    except SystemExit:
        pass
    return None
