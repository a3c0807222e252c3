"""Open-domain QA (DPR / Spider convention): Wikipedia passages, questions with answer strings, top-k accuracy.

Modules: ``formats`` (passages TSV and question files), ``match`` (DPR's has_answer), ``dataset``
(``OdqaDataset``), ``evaluate`` (accuracy@k and first-hit ranks), ``shards`` (sharded encoding, merge,
memory/disk planning), ``index`` (FAISS index choices). Nothing here imports torch at module level.
"""
