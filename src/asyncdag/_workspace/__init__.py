"""What the CLI and the web UI both need, once, below both: finding the pipelines a user
points at, describing a pipeline as data, and folding a run's events into step summaries."""

from ._loader import LoadError, load_pipelines, select_pipeline

__all__ = ["LoadError", "load_pipelines", "select_pipeline"]
