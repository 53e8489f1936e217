"""asyncdag: Dagster's programming model on an anyio task group.

Write solids (sync or async functions), wire them into a pipeline by calling
them, and run it with :func:`execute_pipeline` (blocking) or
:func:`execute_pipeline_async` (inside asyncio or trio), or on a clock
(:func:`schedule`) or when something appears (:func:`sensor`).  Everything public
is re-exported here; modules starting with ``_`` are internals.

``import asyncdag`` loads only the exceptions and the version; the engine, the
definitions and the API load together on first use of any other public name,
as ``import anyio`` defers its own.  So ``asyncdag --help``, ``import
asyncdag.storage`` or ``asyncdag.telemetry`` never pay for the engine, and a
program that does use it pays once, at its first ``from asyncdag import ...``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._errors import (
    AsyncdagError,
    ConfigError,
    ConfigErrorItem,
    DefinitionError,
    EventLoopError,
    PipelineRunCanceled,
    ReexecutionError,
    ResourceInitError,
    RetryRequested,
    StepTimeoutError,
    UnknownResourceError,
)
from ._version import __version__

if TYPE_CHECKING:
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
        configured,
        failure_hook,
        graph,
        pipeline,
        resource,
        solid,
        success_hook,
    )
    from ._engine import (
        HookContext,
        InitResourceContext,
        SolidContext,
        StepLog,
        build_solid_context,
    )
    from ._events import ErrorInfo, Event, EventType, RunStatus, StepStatus
    from .automation._context import ScheduleEvaluationContext, SensorEvaluationContext
    from .automation._definitions import (
        RunRequest,
        ScheduleDefinition,
        SensorDefinition,
        SkipReason,
        schedule,
        sensor,
    )
    from .dask._executor import DaskExecutor

__all__ = [
    "AsyncdagError",
    "Backoff",
    "CollectHandle",
    "ConfigError",
    "ConfigErrorItem",
    "DaskExecutor",
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
    "ReexecutionError",
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
    "UnknownResourceError",
    "__version__",
    "build_solid_context",
    "configured",
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

_publish(__name__, globals(), __all__)  # the exceptions now; the rest when they load


def _load_everything() -> None:
    """Import the definitions, engine, events and API and publish every public name at once.

    All at once, so that from the first use of any of them every public class reports
    ``asyncdag`` as its module, whichever name a program happened to touch first.
    """
    from . import _api, _definitions, _engine, _events
    from .automation import _context as _automation_context
    from .automation import _definitions as _automation_definitions
    from .dask import _executor as _dask_executor

    namespace = globals()
    modules = (
        _definitions,
        _api,
        _engine,
        _events,
        _automation_context,
        _automation_definitions,
        _dask_executor,
    )
    for name in __all__:
        if name not in namespace:
            namespace[name] = next(getattr(m, name) for m in modules if hasattr(m, name))
    _publish(__name__, namespace, __all__)


def __getattr__(name: str) -> Any:
    if name in __all__:
        _load_everything()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
