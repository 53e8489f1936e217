"""The engine layer: runs a plan's steps under bounds, with retries, timeouts, cancellation,
resources, hooks, the solid ``context`` and one span per step (opentelemetry-api only).

It never imports storage, the CLI, the UI or the OpenTelemetry SDK: it emits events
and never knows who listens.  Where a step's compute runs is a launcher's business
(``_launcher``: the contract; ``_inprocess``: the default); what outputs outlive the run
is ``_keeper``'s, through an :class:`OutputIO` the API layer gives it.
"""

from ._bus import EventBus, Listener
from ._compute import ContextData, check_outputs, context_from_data, outputs_from_value, sort_item
from ._context import HookContext, SolidContext
from ._executor import Executor
from ._inprocess import InProcessLauncher
from ._invocation import DirectSolidContext, build_solid_context
from ._keeper import OutputIO, OutputKeeper, StoredValue
from ._launcher import RunScope, StepAttempt, StepExecutor, StepLauncher
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
    "OutputIO",
    "OutputKeeper",
    "ResourceManager",
    "Resources",
    "RunScope",
    "RunState",
    "RunTracer",
    "SolidContext",
    "StepAttempt",
    "StepExecutor",
    "StepLauncher",
    "StepLog",
    "StepState",
    "StoredValue",
    "build_solid_context",
    "check_outputs",
    "context_from_data",
    "outputs_from_value",
    "run_tracer",
    "sort_item",
]
