"""What the CLI and the web UI both need, once, below both: finding the pipelines a user
points at, describing a pipeline as data, and folding a run's events into step summaries."""

from ._arguments import (
    UsageError,
    add_source_arguments,
    loaded_pipelines,
    loaded_workspace,
    selected_pipeline,
    selected_pipeline_with_origin,
)
from ._describe import describe_node, describe_pipeline, pipeline_summary, source_text
from ._errors import find_error
from ._graph import LARGE_GRAPH, graph_view
from ._loader import LoadError, Workspace, load_pipelines, load_workspace, select_pipeline
from ._summary import (
    FINAL_STEP_EVENTS,
    STEP_SUMMARY_EVENTS,
    StepFolder,
    StepSummary,
    summarize_steps,
)

__all__ = [
    "FINAL_STEP_EVENTS",
    "LARGE_GRAPH",
    "STEP_SUMMARY_EVENTS",
    "LoadError",
    "StepFolder",
    "StepSummary",
    "UsageError",
    "Workspace",
    "add_source_arguments",
    "describe_node",
    "describe_pipeline",
    "find_error",
    "graph_view",
    "load_pipelines",
    "load_workspace",
    "loaded_pipelines",
    "loaded_workspace",
    "pipeline_summary",
    "select_pipeline",
    "selected_pipeline",
    "selected_pipeline_with_origin",
    "source_text",
    "summarize_steps",
]
