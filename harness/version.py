"""The harness version (its own module, so that no module needs the package face)."""

__version__ = "0.1.0"
