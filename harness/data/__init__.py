"""Datasets: registry, readers, fetching. Nothing here imports torch."""
