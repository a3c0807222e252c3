"""The steps the benchmarks time in a fresh process each (``_common.measure("name", **kwargs)``), as real
code that the linters read. Each returns a JSON-able result."""

from __future__ import annotations

import os
import runpy
import sys


def beir_scifact(scifact: str, model: str, batch_size: int = 128) -> dict:
    """beir 2.2.0's DenseRetrievalExactSearch + models.SentenceBERT on SciFact test (``batch_size`` 128 is
    beir's default; the benchmark also runs the batch size :func:`beir_batch_search` found fastest)."""
    from beir.datasets.data_loader import GenericDataLoader
    from beir.retrieval import models
    from beir.retrieval.evaluation import EvaluateRetrieval
    from beir.retrieval.search.dense import DenseRetrievalExactSearch

    corpus, queries, qrels = GenericDataLoader(data_folder=scifact).load(split="test")
    dres = DenseRetrievalExactSearch(models.SentenceBERT(model), batch_size=batch_size, corpus_chunk_size=50000)
    retriever = EvaluateRetrieval(dres, score_function="cos_sim", k_values=[10, 100])
    results = retriever.retrieve(corpus, queries)
    ndcg, _map, recall, _p = retriever.evaluate(qrels, results, [10, 100])
    import torch

    return {"ndcg@10": ndcg["NDCG@10"], "recall@100": recall["Recall@100"], "batch_size": batch_size,
            "torch_threads": torch.get_num_threads()}


def beir_batch_search(scifact: str, model: str, batches: list[int], every: int = 5, passes: int = 2) -> dict:
    """Seconds of beir's corpus encoding (``models.SentenceBERT.encode_corpus``, as DRES calls it: longest
    first) at each batch size, on every ``every``-th SciFact document, in one process with the model loaded
    once and warmed up: ``passes`` passes over the batch sizes, alternately in order and reversed (so a drift
    of the host's load does not favour one end). Each batch size's best pass picks the fastest."""
    import time

    import torch
    from beir.datasets.data_loader import GenericDataLoader
    from beir.retrieval import models

    corpus, _queries, _qrels = GenericDataLoader(data_folder=scifact).load(split="test")
    ids = list(corpus)[::every]
    ids.sort(key=lambda k: len(corpus[k].get("title", "") + corpus[k].get("text", "")), reverse=True)
    docs = [corpus[k] for k in ids]
    sbert = models.SentenceBERT(model)
    sbert.encode_corpus(docs[:64], batch_size=32, show_progress_bar=False, convert_to_tensor=True)  # warm-up
    seconds: dict[int, list[float]] = {b: [] for b in batches}
    loads: dict[int, list[float]] = {b: [] for b in batches}
    for p in range(passes):
        for b in (batches if p % 2 == 0 else batches[::-1]):
            loads[b].append(os.getloadavg()[0])
            t = time.perf_counter()
            sbert.encode_corpus(docs, batch_size=b, show_progress_bar=False, convert_to_tensor=True)
            seconds[b].append(time.perf_counter() - t)
    best = min(batches, key=lambda b: min(seconds[b]))
    return {"documents": len(docs), "every": every, "passes": passes, "torch_threads": torch.get_num_threads(),
            "seconds": {str(b): s for b, s in seconds.items()},
            "load_1min_before": {str(b): v for b, v in loads.items()}, "best_batch": best}


def harness_dense(model: str, dataset: str, output: str, precision: str = "fp32",
                  metrics: tuple = ("ndcg@10", "recall@100"), batch_tokens: int | None = None,
                  forward: str = "auto") -> dict:
    """``harness run`` of a dense model on one dataset (``batch_tokens`` None, ``forward`` auto: the defaults)."""
    from harness.runner import run
    from harness.settings import EncodeSettings

    (rec,) = run([f"hf:{model}"], [dataset], list(metrics), output, log=lambda m: None,
                 settings=EncodeSettings(precision=precision, batch_tokens=batch_tokens,
                                                       forward=forward))
    return {**rec.metrics, "compute": rec.retriever_provenance["compute"], "timings": rec.timings,
            "cpu_threads": rec.retriever_provenance.get("cpu_threads")}


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
