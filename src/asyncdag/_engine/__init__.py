"""The engine layer: runs a plan's steps under bounds, with retries, timeouts, cancellation,
resources, hooks, the solid ``context`` and one span per step (opentelemetry-api only).

It never imports storage, the CLI, the UI or the OpenTelemetry SDK: it emits events
and never knows who listens.  Where a step's compute runs is a launcher's business
(``_launcher``: the contract; ``_inprocess``: the default).
"""

from ._bus import EventBus, Listener
from ._compute import ContextData, check_outputs, context_from_data, outputs_from_value, sort_item
from ._context import HookContext, SolidContext
from ._executor import Executor
from ._inprocess import InProcessLauncher
from ._invocation import DirectSolidContext, build_solid_context
from ._launcher import RunScope, StepAttempt, StepLauncher
from ._log import Emit, StepLog
from ._resources import InitResourceContext, ResourceManager, Resources
from ._state import RunState, StepState
from ._tracing import RunTracer, run_tracer

__all__ = [
    "ContextData",
    "DirectSolidContext",
    "Emit",
    "EventBus",
    "Executor",
    "HookContext",
    "InProcessLauncher",
    "InitResourceContext",
    "Listener",
    "ResourceManager",
    "Resources",
    "RunScope",
    "RunState",
    "RunTracer",
    "SolidContext",
    "StepAttempt",
    "StepLauncher",
    "StepLog",
    "StepState",
    "build_solid_context",
    "check_outputs",
    "context_from_data",
    "outputs_from_value",
    "run_tracer",
    "sort_item",
]
