"""harness: an evaluation-first benchmark harness for dense retrieval."""

__version__ = "0.1.0"
