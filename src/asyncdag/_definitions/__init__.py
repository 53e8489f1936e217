"""The definitions layer: what a user declares (solids, pipelines, graphs, outputs, hooks,
resources, retry policies), as plain data, before anything runs.

Nothing in this package imports anyio, storage or the engine.  Other layers import
the names they need from here rather than from the private modules inside.
"""

from ._builder import GraphNode, Node
from ._configured import Configured, configured
from ._graph import GraphDefinition, graph
from ._handles import (
    CollectHandle,
    DynamicHandle,
    GraphInputHandle,
    MultiOutputHandle,
    OutputHandle,
)
from ._hooks import FAILURE, SUCCESS, HookDefinition, failure_hook, success_hook
from ._outputs import DynamicOut, DynamicOutput, Out, Output, OutputError
from ._pipeline import PipelineDefinition, check_resources_bound, pipeline
from ._resources import ResourceDefinition, check_resource_graph, resource
from ._retry import Backoff, Jitter, RetryPolicy
from ._solid import (
    DASK_RESOURCES_TAG,
    EXECUTORS,
    InputDefinition,
    SolidDefinition,
    annotation_name,
    solid,
)
from ._sources import DEFAULT_OUTPUT, Collect, Constant, FanIn, FromOutput, InputSource

__all__ = [
    "DASK_RESOURCES_TAG",
    "DEFAULT_OUTPUT",
    "EXECUTORS",
    "FAILURE",
    "SUCCESS",
    "Backoff",
    "Collect",
    "CollectHandle",
    "Configured",
    "Constant",
    "DynamicHandle",
    "DynamicOut",
    "DynamicOutput",
    "FanIn",
    "FromOutput",
    "GraphDefinition",
    "GraphInputHandle",
    "GraphNode",
    "HookDefinition",
    "InputDefinition",
    "InputSource",
    "Jitter",
    "MultiOutputHandle",
    "Node",
    "Out",
    "Output",
    "OutputError",
    "OutputHandle",
    "PipelineDefinition",
    "ResourceDefinition",
    "RetryPolicy",
    "SolidDefinition",
    "annotation_name",
    "check_resource_graph",
    "check_resources_bound",
    "configured",
    "failure_hook",
    "graph",
    "pipeline",
    "resource",
    "solid",
    "success_hook",
]
