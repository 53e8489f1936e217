"""asyncdag: Dagster's programming model on an anyio task group.

Write solids (sync or async functions), wire them into a pipeline by calling
them, and run it with :func:`execute_pipeline` (blocking) or
:func:`execute_pipeline_async` (inside asyncio or trio), or on a clock
(:func:`schedule`) or when something appears (:func:`sensor`).  Everything public
is re-exported here; modules starting with ``_`` are internals.
"""

from __future__ import annotations

from ._api import (
    PipelineRunResult,
    RunHandle,
    StepResult,
    execute_pipeline,
    execute_pipeline_async,
    open_run,
)
from ._definitions import (
    Backoff,
    CollectHandle,
    DynamicHandle,
    DynamicOut,
    DynamicOutput,
    GraphDefinition,
    HookDefinition,
    Jitter,
    MultiOutputHandle,
    Out,
    Output,
    OutputError,
    OutputHandle,
    PipelineDefinition,
    ResourceDefinition,
    RetryPolicy,
    SolidDefinition,
    failure_hook,
    graph,
    pipeline,
    resource,
    solid,
    success_hook,
)
from ._engine import HookContext, InitResourceContext, SolidContext, StepLog
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
from ._version import __version__
from .automation._context import ScheduleEvaluationContext, SensorEvaluationContext
from .automation._definitions import (
    RunRequest,
    ScheduleDefinition,
    SensorDefinition,
    SkipReason,
    schedule,
    sensor,
)

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
    "RunRequest",
    "RunStatus",
    "ScheduleDefinition",
    "ScheduleEvaluationContext",
    "SensorDefinition",
    "SensorEvaluationContext",
    "SkipReason",
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
    "schedule",
    "sensor",
    "solid",
    "success_hook",
]

from ._public import publish as _publish

_publish(__name__, globals(), __all__)
del _publish
