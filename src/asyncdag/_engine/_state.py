"""A run's mutable state: one :class:`StepState` per step, one :class:`RunState` for the run.

A step runs one attempt at a time, so its state doubles as the attempt a
launcher sees (:class:`~asyncdag._engine._launcher.StepAttempt`): nothing is
allocated per attempt on the engine's hot path.  :class:`RunState` is what
launchers get as :class:`~asyncdag._engine._launcher.RunScope`: the run's
facts, its contexts, and the engine's services to them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

from .._events import ErrorInfo, StepStatus
from ._compute import ContextData
from ._context import HookContext, SolidContext
from ._log import Emit, StepLog
from ._resources import Resources

if TYPE_CHECKING:
    import anyio

    from .._definitions import HookDefinition
    from .._plan import Step
    from ._dynamic import DynamicRuntime
    from ._launcher import StepAttempt
    from ._resources import ResourceManager
    from ._tracing import RunTracer

__all__ = ["NOT_PRODUCED", "RunState", "StepState"]


class _NotProduced:
    """The value of :attr:`StepState.value` until the step succeeds (None is a real output)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NOT_PRODUCED"


NOT_PRODUCED: Any = _NotProduced()


class _OneOutput(MutableMapping[str, Any]):
    """``{"result": value}`` of a single-output step, read from and written to its state."""

    __slots__ = ("_state",)

    def __init__(self, state: StepState) -> None:
        self._state = state

    def __getitem__(self, name: str) -> Any:
        if name != "result":
            raise KeyError(name)
        return self._state.value

    def __setitem__(self, name: str, value: Any) -> None:
        if name != "result":
            raise KeyError(name)
        self._state.value = value

    def __delitem__(self, name: str) -> None:
        raise TypeError("a step's one output cannot be removed")

    def __iter__(self) -> Iterator[str]:
        return iter(("result",))

    def __len__(self) -> int:
        return 1


class StepState:
    """A step's mutable state during one run; during an attempt, also that attempt."""

    __slots__ = (
        "attempts",
        "end",
        "error",
        "exception",
        "inputs",
        "ready_at",
        "remaining",
        "skip_reason",
        "span",
        "span_token",
        "start",
        "status",
        "step",
        "value",
    )

    span_token: Any  # the OTel context token of ``span``, set with it

    def __init__(self, step: Step) -> None:
        self.step = step
        # Upstream steps (and fan-outs to collect) not yet finished; ready at 0.
        self.remaining = len(step.upstream)
        self.status = StepStatus.PENDING
        self.attempts = 0
        self.start: float | None = None
        self.end: float | None = None
        # What the successful attempt returned: the value of the one output ``result`` when
        # ``step.outs`` is None (no dict per step: a run may have 100,000), else the dict of
        # outputs by name.  NOT_PRODUCED until then.
        self.value: Any = NOT_PRODUCED
        self.error: ErrorInfo | None = None
        self.exception: BaseException | None = None
        self.ready_at = 0.0
        self.skip_reason: str | None = None
        # The current attempt (cleared when it ends, so its values are not kept alive).
        # ``span_token`` is set only with a span.
        self.inputs: dict[str, Any] = _NO_INPUTS
        self.span: Any = None

    @property
    def outputs(self) -> dict[str, Any] | None:
        """What the step produced, by output name (None until it succeeded)."""
        value = self.value
        if value is NOT_PRODUCED:
            return None
        return {"result": value} if self.step.outs is None else value

    def output(self, name: str) -> Any:
        """Output ``name`` of a step that produced it (what a dependent step reads)."""
        value = self.value
        return value if self.step.outs is None else value[name]

    @property
    def number(self) -> int:
        """The current attempt's number, from 1."""
        return self.attempts

    def __repr__(self) -> str:
        return f"<StepState {self.step.key!r} {self.status.value}>"


_NO_INPUTS: dict[str, Any] = {}


class RunState:
    """One run's facts and the services the engine offers launchers (a ``RunScope``)."""

    __slots__ = (
        "dynamic",
        "emit",
        "outlived_attempts",
        "pipeline_name",
        "resources",
        "run_config",
        "run_id",
        "solid_configs",
        "states",
        "tags",
        "thread_limiter",
        "tracer",
    )

    def __init__(
        self,
        *,
        run_id: str,
        pipeline_name: str,
        emit: Emit,
        tags: Mapping[str, str],
        run_config: Mapping[str, Any],
        solid_configs: Mapping[str, Any],
        resources: ResourceManager | None,
        tracer: RunTracer | None,
        thread_limiter: anyio.CapacityLimiter | None,
    ) -> None:
        self.run_id = run_id
        self.pipeline_name = pipeline_name
        self.emit = emit
        self.tags = tags
        self.run_config = run_config
        self.solid_configs = solid_configs
        self.resources = resources
        self.tracer = tracer
        self.thread_limiter = thread_limiter
        # Set by the executor when the plan streams (generators or fan-outs).
        self.dynamic: DynamicRuntime | None = None
        # (step, attempt number, still running?) of attempts that left compute running.
        self.outlived_attempts: list[tuple[StepState, int, Callable[[], bool]]] = []
        # The executor's list of step states (it grows while a fan-out yields).
        self.states: list[StepState] = []

    # --- contexts ------------------------------------------------------------------------------

    def solid_context(self, attempt: StepAttempt) -> SolidContext:
        step = attempt.step
        return SolidContext(
            run_id=self.run_id,
            pipeline_name=self.pipeline_name,
            solid_name=step.solid.name,
            step_key=step.key,
            retry_number=attempt.number - 1,
            log=StepLog(self.emit, step.key, attempt.span, attempt=attempt.number),
            solid_config=self.solid_configs.get(step.node.name),
            resources=self._resources_of(step),
            tags=self.tags,
            run_config=self.run_config,
            span=attempt.span,
            mapping_key=step.mapping_key,
            solid_tags=step.node.tags,
        )

    def hook_context(
        self, state: StepState, hook: HookDefinition, error: BaseException | None
    ) -> HookContext:
        """What ``hook`` receives after ``state``'s step ended (its span has ended too)."""
        step = state.step
        attempts = max(state.attempts, 1)
        return HookContext(
            hook_name=hook.name,
            error=error,
            run_id=self.run_id,
            pipeline_name=self.pipeline_name,
            solid_name=step.solid.name,
            step_key=step.key,
            retry_number=attempts - 1,
            log=StepLog(self.emit, step.key, attempt=attempts),
            solid_config=self.solid_configs.get(step.node.name),
            resources=self._resources_of(step, hook.required_resources),
            tags=self.tags,
            run_config=self.run_config,
            mapping_key=step.mapping_key,
            solid_tags=step.node.tags,
            solid_output_values=self.output_values(state) if error is None else None,
        )

    def output_values(self, state: StepState) -> dict[str, Any]:
        """What a step produced, by output name; a dynamic output's items as {mapping_key: value}."""
        values = dict(state.outputs or {})
        if self.dynamic is not None:
            values.update(self.dynamic.items_of(state.step.index))
        return values

    def context_data(self, attempt: StepAttempt) -> ContextData:
        step = attempt.step
        tracer = self.tracer
        return ContextData(
            run_id=self.run_id,
            pipeline_name=self.pipeline_name,
            step_key=step.key,
            solid_name=step.solid.name,
            retry_number=attempt.number - 1,
            solid_config=self.solid_configs.get(step.node.name),
            tags=dict(self.tags),
            run_config=dict(self.run_config),
            mapping_key=step.mapping_key,
            solid_tags=step.node.tags,
            required_resources=step.solid.required_resources,
            trace_context=(
                tracer.carrier(attempt.span)
                if tracer is not None and attempt.span is not None
                else None
            ),
        )

    def _resources_of(self, step: Step, also: frozenset[str] = frozenset()) -> Resources | None:
        """The resources ``step``'s solid declared (and ``also``, a hook's), as its context sees them."""
        required = step.solid.required_resources | also if also else step.solid.required_resources
        if not required or self.resources is None:
            return None
        return Resources(self.resources.values, required, f"solid {step.key!r}")

    # --- services ------------------------------------------------------------------------------

    def fan_out(self, attempt: StepAttempt, output: str, mapping_key: str, value: Any) -> None:
        dynamic = self.dynamic
        assert dynamic is not None, "a generator step in a run with no fan-out bookkeeping"
        assert isinstance(attempt, StepState), "an attempt this engine did not start"
        dynamic.fan_out(attempt, output, mapping_key, value)

    def with_inputs(self, attempt: StepAttempt, inputs: Mapping[str, Any]) -> StepAttempt:
        assert isinstance(attempt, StepState), "an attempt this engine did not start"
        # The attempt is the step's state: its inputs are the attempt's, cleared when it ends.
        attempt.inputs = dict(inputs)
        return attempt

    def outputs(self) -> Iterator[MutableMapping[str, Any]]:
        for state in self.states:
            if state.status is StepStatus.SUCCESS and state.value is not NOT_PRODUCED:
                # A multi-output step's own dict; a single output, kept bare, through a view
                # that writes back to the state (a launcher replaces handles with values).
                yield state.value if state.step.outs is not None else _OneOutput(state)

    def outlived(self, attempt: StepAttempt, still_running: Callable[[], bool]) -> None:
        assert isinstance(attempt, StepState), "an attempt this engine did not start"
        self.outlived_attempts.append((attempt, attempt.attempts, still_running))

    def left_running(self, state: StepState) -> bool:
        """Whether ``state``'s current attempt left its compute running (see outlived())."""
        number = state.attempts
        return any(s is state and n == number for s, n, _ in self.outlived_attempts)
