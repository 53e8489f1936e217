"""asyncdag: Dagster's programming model on an anyio task group.

Write solids (sync or async functions), wire them into a pipeline by calling
them, and run it with :func:`execute_pipeline` (blocking) or
:func:`execute_pipeline_async` (inside asyncio or trio).  Everything public
is re-exported here; modules starting with ``_`` are internals.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._api import RunHandle, execute_pipeline, execute_pipeline_async, open_run
from ._context import HookContext, SolidContext
from ._definitions import (
    CollectHandle,
    DynamicHandle,
    MultiOutputHandle,
    OutputHandle,
    PipelineDefinition,
    SolidDefinition,
    pipeline,
    solid,
)
from ._errors import (
    AsyncdagError,
    ConfigError,
    ConfigErrorItem,
    DefinitionError,
    EventLoopError,
    PipelineRunCanceled,
    ResourceInitError,
    RetryRequested,
    StepTimeoutError,
)
from ._events import ErrorInfo, Event, EventType, RunStatus, StepStatus
from ._graph import GraphDefinition, graph
from ._hooks import HookDefinition, failure_hook, success_hook
from ._log import StepLog
from ._outputs import DynamicOut, DynamicOutput, Out, Output, OutputError
from ._resources import InitResourceContext, ResourceDefinition, resource
from ._result import PipelineRunResult, StepResult
from ._retry import Backoff, Jitter, RetryPolicy

__all__ = [
    "AsyncdagError",
    "Backoff",
    "CollectHandle",
    "ConfigError",
    "ConfigErrorItem",
    "DefinitionError",
    "DynamicHandle",
    "DynamicOut",
    "DynamicOutput",
    "ErrorInfo",
    "Event",
    "EventLoopError",
    "EventType",
    "GraphDefinition",
    "HookContext",
    "HookDefinition",
    "InitResourceContext",
    "Jitter",
    "MultiOutputHandle",
    "Out",
    "Output",
    "OutputError",
    "OutputHandle",
    "PipelineDefinition",
    "PipelineRunCanceled",
    "PipelineRunResult",
    "ResourceDefinition",
    "ResourceInitError",
    "RetryPolicy",
    "RetryRequested",
    "RunHandle",
    "RunStatus",
    "SolidContext",
    "SolidDefinition",
    "StepLog",
    "StepResult",
    "StepStatus",
    "StepTimeoutError",
    "__version__",
    "execute_pipeline",
    "execute_pipeline_async",
    "failure_hook",
    "graph",
    "open_run",
    "pipeline",
    "resource",
    "solid",
    "success_hook",
]
