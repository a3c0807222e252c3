"""MTEB's names for the datasets it has retrieval tasks for: a model object that follows MTEB's encoder
protocol is told its task by name (``harness.retrievers.model_protocols``), and records are exported in MTEB's
result format under them (``harness.results.exchange``)."""

from __future__ import annotations

#: BEIR ids -> MTEB task names (MTEB's retrieval tasks built from BEIR)
MTEB_TASKS = {
    "beir/arguana": "ArguAna", "beir/climate-fever": "ClimateFEVER", "beir/dbpedia-entity": "DBPedia",
    "beir/fever": "FEVER", "beir/fiqa": "FiQA2018", "beir/hotpotqa": "HotpotQA", "beir/msmarco": "MSMARCO",
    "beir/nfcorpus": "NFCorpus", "beir/nq": "NQ", "beir/quora": "QuoraRetrieval", "beir/scidocs": "SCIDOCS",
    "beir/scifact": "SciFact", "beir/webis-touche2020": "Touche2020", "beir/trec-covid": "TRECCOVID",
    **{f"beir/cqadupstack/{f}": f"CQADupstack{f.capitalize()}Retrieval"
       for f in ("android", "english", "gaming", "gis", "mathematica", "physics", "programmers", "stats", "tex",
                 "unix", "webmasters", "wordpress")},
}
