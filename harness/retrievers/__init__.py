"""Retrievers: the registry (importable without torch) and the two interfaces.

A ``Retriever`` indexes a corpus and searches queries into a run; a ``TextEncoder`` turns texts into
vectors. BM25 (Lucene through pyserini) and the dense retrievers both satisfy ``Retriever``.
"""
