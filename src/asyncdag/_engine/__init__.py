"""The engine layer: runs a plan's steps under bounds, with retries, timeouts, cancellation,
resources, hooks, the solid ``context`` and one span per step (opentelemetry-api only).

It never imports storage, the CLI, the UI or the OpenTelemetry SDK: it emits events
and never knows who listens.
"""

from ._bus import EventBus, Listener
from ._context import HookContext, SolidContext
from ._executor import Executor, StepState
from ._log import StepLog
from ._resources import InitResourceContext, ResourceManager, Resources
from ._tracing import RunTracer, run_tracer

__all__ = [
    "EventBus",
    "Executor",
    "HookContext",
    "InitResourceContext",
    "Listener",
    "ResourceManager",
    "Resources",
    "RunTracer",
    "SolidContext",
    "StepLog",
    "StepState",
    "run_tracer",
]
