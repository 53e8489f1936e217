"""The engine: runs a plan's steps as soon as their inputs are ready, under bounds.

A run's life is :meth:`Executor.run`: RUN_START and the run's span, every step,
then the one event that ends the run.  Ready steps go to a
:class:`~asyncdag._engine._workers.WorkerPool`, whose workers each run one
step's life, :meth:`Executor._run_step`, top to bottom::

    resources → inputs → _start (STEP_START, span) → launcher.run_attempt (under the timeout)
        → _on_success | _on_retry | _on_failure | _on_cancel → _finish

The launcher (:mod:`~asyncdag._engine._launcher`) decides where the solid's
function runs; everything around it (retries, timeouts, pools, events, spans,
hooks) is here, the same for every launcher.  All bookkeeping (dependency
counts, pools, skips) is synchronous code between awaits, so it needs no
locks.  Retries wait *outside* the worker, so a step sleeping before its next
attempt does not hold a concurrency slot.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import anyio

from .._definitions import FAILURE as HOOK_FAILURE
from .._definitions import SUCCESS as HOOK_SUCCESS
from .._definitions import DynamicOut, Output, OutputError
from .._definitions._outputs import single_output_value
from .._errors import ResourceInitError, RetryRequested, StepTimeoutError
from .._events import (
    ErrorInfo,
    EventType,
    RunStatus,
    StepStartEvent,
    StepStatus,
    StepSuccessEvent,
)
from .._plan import ExecutionPlan, Step, consumed_missing, input_values
from . import _tracing
from ._dynamic import DynamicRuntime
from ._hooks import run_hooks
from ._inprocess import InProcessLauncher
from ._keeper import OutputIO, OutputKeeper, describe_size
from ._launcher import StepExecutor, StepLauncher
from ._log import Emit, EmitStep, formatting_emit_step
from ._resources import ResourceManager
from ._state import _NO_INPUTS, NOT_PRODUCED, RunState, StepState
from ._workers import ReadyQueue, WorkerPool, ready_queue

__all__ = ["OUTLIVED_GRACE", "Executor"]

DEBUG = logging.DEBUG
INFO = logging.INFO
ERROR = logging.ERROR
WARNING = logging.WARNING
# Enum members as module globals: the step's hot path reads them often, and a global is
# read faster than a class attribute.
PENDING = StepStatus.PENDING
RUNNING = StepStatus.RUNNING
RETRYING = StepStatus.RETRYING
SUCCESS = StepStatus.SUCCESS
FAILURE = StepStatus.FAILURE
SKIPPED = StepStatus.SKIPPED
CANCELED = StepStatus.CANCELED

# Seconds a run waits, before it tears resources down and ends, for compute that a cancelled
# attempt left running (a sync solid's thread) to notice the cancellation and return.
OUTLIVED_GRACE = 2.0
_OUTLIVED_POLL = 0.01

_SPAN_RESULTS = {
    SUCCESS: _tracing.SUCCESS,
    FAILURE: _tracing.FAILURE,  # the tracer tells a timeout from a failure
    RETRYING: _tracing.FAILURE,
    CANCELED: _tracing.CANCELLATION,
}
_RUN_SPAN_RESULTS = {
    RunStatus.SUCCESS: _tracing.SUCCESS,
    RunStatus.FAILURE: _tracing.FAILURE,
    RunStatus.CANCELED: _tracing.CANCELLATION,
}
_RUN_END_EVENTS = {
    RunStatus.SUCCESS: (EventType.RUN_SUCCESS, DEBUG),
    RunStatus.FAILURE: (EventType.RUN_FAILURE, ERROR),
    RunStatus.CANCELED: (EventType.RUN_CANCELED, WARNING),
}


class Executor:
    """Executes one plan once.  Create, then ``await run()``; ``cancel()`` from anywhere in the loop."""

    def __init__(
        self,
        plan: ExecutionPlan,
        *,
        run_id: str,
        emit: Emit,
        max_concurrency: int | None = None,
        concurrency_limits: Mapping[str, int] | None = None,
        fail_fast: bool = False,
        resources: ResourceManager | None = None,
        tracer: _tracing.RunTracer | None = None,
        tags: Mapping[str, str] | None = None,
        run_config: Mapping[str, Any] | None = None,
        solid_configs: Mapping[str, Any] | None = None,
        launcher: StepLauncher | None = None,
        emit_step: EmitStep | None = None,
        outputs: OutputIO | None = None,
        run_start_data: Mapping[str, Any] | None = None,
        step_executor: StepExecutor | None = None,
    ) -> None:
        self.plan = plan
        self.run_id = run_id
        self.emit = emit
        # STEP_START and STEP_SUCCESS, whose text and data are built only when read.
        self._emit_step = emit_step if emit_step is not None else formatting_emit_step(emit)
        self.max_concurrency = max_concurrency
        self._fail_fast = fail_fast
        self._resources = resources
        self._tracer = tracer
        self._launcher: StepLauncher = launcher if launcher is not None else InProcessLauncher()
        # Stores what steps produce and reads what reused steps stood for (None: nothing kept).
        self._keeper = (
            OutputKeeper(outputs, run_id=run_id, emit=emit, reads=bool(plan.reused))
            if outputs is not None
            else None
        )
        if plan.reused and self._keeper is None:
            raise ValueError("a plan that reuses stored outputs needs outputs= to read them")
        self._run_start_data = dict(run_start_data or {})
        # Opened by run() when given: its launcher replaces ``launcher`` for the run.
        self._step_executor = step_executor
        self._uses_run_resources = getattr(self._launcher, "uses_run_resources", None)
        self._opening: anyio.CancelScope | None = None
        # Why the run failed when no step did (its executor could not start); else None.
        self.run_error: BaseException | None = None
        self.states = [StepState(step) for step in plan.steps]
        run_state = self._run = RunState(
            run_id=run_id,
            pipeline_name=plan.pipeline.name,
            emit=emit,
            tags=dict(tags or {}),
            run_config=dict(run_config or {}),
            solid_configs=solid_configs or {},
            resources=resources,
            tracer=tracer,
            thread_limiter=anyio.CapacityLimiter(max_concurrency) if max_concurrency else None,
        )
        run_state.states = self.states
        # Ready steps wait in priority order when the plan has priorities, else in a deque.
        prioritized = plan.prioritized
        self._workers = WorkerPool(
            self._run_step, self.states, bound=max_concurrency, ready=ready_queue(prioritized)
        )
        self._ready = self._workers.ready
        # Named concurrency pools: steps running in each, and steps ready but waiting for a slot.
        self._pool_limits = dict(concurrency_limits or {})
        self._pool_running: dict[str, int] = dict.fromkeys(self._pool_limits, 0)
        self._pool_waiting: dict[str, ReadyQueue] = {
            k: ready_queue(prioritized) for k in self._pool_limits
        }
        self._tg: anyio.abc.TaskGroup | None = None
        self._cancel_reason: str | None = None  # "user" or "fail_fast"
        self._failed = False
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        # Fan-out bookkeeping, only for plans that stream (None keeps the static path bare).
        self._dyn = DynamicRuntime(self, self._keeper) if plan.groups or plan.streams else None
        self._run.dynamic = self._dyn
        self._collect = self._dyn.collect if self._dyn is not None else None
        self.start_time = 0.0
        self.end_time = 0.0
        # Steps whose attempt raised (or whose resources failed), once each, and how many
        # steps were skipped: the run's end and its result need no scan of every step.
        self.raised: list[StepState] = []
        self._skipped = 0

    @property
    def dynamic(self) -> DynamicRuntime | None:
        """The run's fan-out bookkeeping (None when the plan neither streams nor maps)."""
        return self._dyn

    # --- the run -------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the run: running steps see cancellation, pending ones never start."""
        if self._cancel_reason is None:
            self._cancel_reason = "user"
            # INFO: asked for, not gone wrong; the run's end (RUN_CANCELED) is the one WARNING.
            self.emit(EventType.RUN_CANCELING, level=INFO, message="Run cancellation requested")
        if self._tg is not None:
            self._tg.cancel_scope.cancel()
        if self._opening is not None:
            self._opening.cancel()

    async def run(self) -> RunStatus:
        """The whole run: RUN_START and the run's span, every step, the event that ends it.

        Cancellation from an enclosing scope is recorded (steps CANCELED,
        resources closed, RUN_CANCELED emitted) and then re-raised.
        """
        token = self._start_run()
        status = RunStatus.CANCELED
        try:
            if self._step_executor is None:
                status = await self._run_hosted()
            else:
                status = await self._run_on(self._step_executor)
        finally:
            self._end_run(status)
            if token is not None:
                self._tracer.detach(token)  # type: ignore[union-attr]
        return status

    async def _run_hosted(self) -> RunStatus:
        if self._resources is None or not self._resources.builds:
            return await self._run_steps()
        # Each resource lives in a task of its own for the whole run, so one that holds a
        # task group or cancel scope across its yield is entered and exited in one task.
        async with self._resources.hosted():
            return await self._run_steps()

    async def _run_on(self, step_executor: StepExecutor) -> RunStatus:
        """The run's steps on the launcher ``step_executor`` opens for this run.

        Opening it (connecting to a cluster, starting one) can take seconds, so
        :meth:`cancel` interrupts it; an error while opening fails the run with
        that error and no step starts.  It is closed (shielded) once every step
        has ended, whatever the outcome, before the run's last event.
        """
        scope = self._opening = anyio.CancelScope()
        if self._cancel_reason is not None:
            scope.cancel()
        try:
            with scope:
                manager = step_executor.open_launcher(self._run)
                launcher = await manager.__aenter__()
        except Exception as exc:
            self._opening = None
            self.run_error = exc
            self._finish_unstarted(outer=False, reason=f"the run's executor did not start: {exc}")
            return RunStatus.FAILURE
        except BaseException:
            self._opening = None
            self._finish_unstarted(outer=True)
            raise
        self._opening = None
        if scope.cancelled_caught:
            self._finish_unstarted(outer=True)
            return RunStatus.CANCELED
        self._launcher = launcher
        self._uses_run_resources = getattr(launcher, "uses_run_resources", None)
        if self._keeper is not None:
            self._keeper.fetch = getattr(launcher, "values_of", None)
        try:
            status = await self._run_hosted()
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._close_launcher(manager, exc)
            raise
        with anyio.CancelScope(shield=True):
            await self._close_launcher(manager, None)
        return status

    async def _close_launcher(self, manager: Any, exc: BaseException | None) -> None:
        try:
            if exc is None:
                await manager.__aexit__(None, None, None)
            else:
                await manager.__aexit__(type(exc), exc, exc.__traceback__)
        except Exception as error:
            if error is exc:
                return
            self.emit(
                EventType.LOG,
                level=ERROR,
                message=f"Closing the run's executor failed: {type(error).__name__}: {error}",
                data={"error": ErrorInfo.from_exception(error).to_dict()},
            )

    def _start_run(self) -> Any:
        """RUN_START, and the run's span made current for every task the run starts."""
        self.start_time = time.time()
        run = self._run
        tracer = self._tracer
        token = None
        data: dict[str, Any] = {
            "pipeline_name": run.pipeline_name,
            "step_count": len(self.plan),
            "max_concurrency": self.max_concurrency,
            "tags": run.tags,
            **self._run_start_data,
        }
        if tracer is not None:
            tracer.start_run(pipeline_name=run.pipeline_name, run_id=self.run_id, tags=run.tags)
            token = tracer.attach_run()
            data["trace_id"] = tracer.trace_id
        self.emit(
            EventType.RUN_START,
            level=DEBUG,
            message=f"Started execution of run for {run.pipeline_name!r}.",
            data=data,
        )
        return token

    async def _run_steps(self) -> RunStatus:
        outer_cancel: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._keeper is not None:
                    self._keeper.task_group = tg
                if self._cancel_reason is not None:
                    tg.cancel_scope.cancel()
                roots = [state for state in self.states if state.remaining == 0]
                if self.plan.prioritized:  # as the plan orders each step's dependents
                    roots.sort(key=lambda state: -state.step.priority)
                now = time.time()
                for state in roots:
                    self.make_ready(state, now)
                self._workers.start(tg)
        except self._cancelled_exc as exc:
            outer_cancel = exc
        finally:
            with anyio.CancelScope(shield=True):
                self._finish_unstarted(outer=outer_cancel is not None)
                await self._wait_for_outlived()
                if self._resources is not None:
                    await self._resources.aclose()
        if outer_cancel is not None:
            raise outer_cancel
        if self._cancel_reason == "user":
            return RunStatus.CANCELED
        return RunStatus.FAILURE if self._failed else RunStatus.SUCCESS

    def _end_run(self, status: RunStatus) -> None:
        """The run's last event (RUN_SUCCESS, RUN_FAILURE or RUN_CANCELED) and its span's end."""
        self.end_time = end = time.time()
        name = self._run.pipeline_name
        failed = [
            s.step.key
            for s in sorted(self.raised, key=lambda s: s.step.index)
            if s.status is FAILURE
        ]
        skipped = self._skipped
        if status is RunStatus.SUCCESS:
            message = f"Finished execution of run for {name!r}."
        elif status is RunStatus.FAILURE:
            message = (
                f"Execution of run for {name!r} failed. "
                f"Failed steps: {failed or 'none'}; skipped: {skipped}."
            )
            if self.run_error is not None:
                error = ErrorInfo.from_exception(self.run_error)
                message += f" {error.type}: {error.message}"
        else:
            message = f"Execution of run for {name!r} was canceled."
        event_type, level = _RUN_END_EVENTS[status]
        data: dict[str, Any] = {
            "duration": end - self.start_time,
            "failed_steps": failed,
            "skipped": skipped,
        }
        if self.run_error is not None:
            data["error"] = ErrorInfo.from_exception(self.run_error).to_dict()
        self.emit(event_type, level=level, message=message, data=data)
        if self._tracer is not None:
            self._tracer.end_run(_RUN_SPAN_RESULTS[status])

    # --- scheduling (synchronous bookkeeping; also what the fan-out calls) --------------------

    def make_ready(self, state: StepState, now: float | None = None) -> None:
        """Queue a step whose inputs are all there, once its pool (if any) has a free slot.

        ``now``: when it became ready, if the caller knows (the end of the step it
        waited for last; one time for all the run's first steps).
        """
        pool = state.step.pool
        if pool is not None and pool in self._pool_limits:
            if self._pool_running[pool] >= self._pool_limits[pool]:
                self._pool_waiting[pool].append(state)
                return
            self._pool_running[pool] += 1
            now = None  # it became ready now, with its slot
        state.ready_at = time.time() if now is None else now
        self._ready.append(state)

    def dispatch(self) -> None:
        """Start workers for steps queued outside a worker (by a retry's wait, by a fan-out)."""
        self._workers.spawn()

    def add_step(self, step: Step) -> StepState:
        """A runtime step (a mapped item's), appended to the run's states; not yet scheduled."""
        state = StepState(step)
        self.states.append(state)
        return state

    def skip(self, state: StepState, reason: str) -> None:
        """Skip a pending step (and so, what depends on it) for ``reason``."""
        if state.status is PENDING:
            self._mark_skipped(state, reason)
            self._settle(state)

    def _release_pool(self, state: StepState) -> None:
        pool = state.step.pool
        if pool in self._pool_limits:
            self._pool_running[pool] -= 1
            waiting = self._pool_waiting[pool]
            if waiting:
                self.make_ready(waiting.popleft())

    def _mark_skipped(self, state: StepState, reason: str) -> None:
        state.status = SKIPPED
        self._skipped += 1
        state.skip_reason = reason
        key = state.step.key
        self.emit(
            EventType.STEP_SKIPPED,
            step_key=key,
            level=DEBUG,
            message=f"Skipped step {key!r}: {reason}",
            data={"reason": reason},
        )
        if self._tracer is not None:
            self._tracer.skip_step(state.step, run_id=self.run_id, reason=reason)

    def _settle(self, state: StepState) -> None:
        """``state`` reached its final status: count it, and settle what depends on it.

        The only place a step is counted done.  A success releases its
        dependents; a failure or a skip skips them, and their dependents in
        turn, depth-first with a stack rather than recursion (a chain can be
        10,000 steps long); a cancelled step's dependents are settled by the
        run's end.
        """
        states = self.states
        workers = self._workers
        stack: list[tuple[StepState, str]] | None = None
        while True:
            workers.done += 1
            status = state.status
            step = state.step
            if status is SUCCESS:
                if step.outs is None:  # one output, produced: every dependent takes it
                    for index in step.downstream:
                        dependent = states[index]
                        if dependent.status is PENDING:
                            dependent.remaining -= 1
                            if dependent.remaining == 0:
                                self.make_ready(dependent, state.end)
                else:
                    stack = self._release_dependents(state, stack)
            elif status is not CANCELED and step.downstream:
                if status is SKIPPED and state.error is None:
                    reason = f"upstream step {step.key!r} was skipped"
                else:
                    reason = f"upstream step {step.key!r} did not succeed ({status.value})"
                if stack is None:
                    stack = []
                for index in reversed(step.downstream):
                    stack.append((states[index], reason))
            if self._dyn is not None and status is not CANCELED:
                self._dyn.on_complete(state)
            while stack:
                state, reason = stack.pop()
                if state.status is PENDING:
                    self._mark_skipped(state, reason)
                    break
            else:
                if workers.done == len(states):
                    workers.last_step_done()
                return

    def _release_dependents(
        self, state: StepState, stack: list[tuple[StepState, str]] | None
    ) -> list[tuple[StepState, str]] | None:
        """A multi-output step succeeded: release its dependents, except those taking an
        optional output it left out, which are put on ``stack`` to be skipped."""
        step = state.step
        produced = state.value
        assert isinstance(produced, dict) and step.outs is not None
        missing = any(
            name not in produced and not isinstance(out, DynamicOut)
            for name, out in step.outs.items()
        )
        for index in step.downstream:
            dependent = self.states[index]
            if dependent.status is not PENDING:
                continue
            if missing:
                absent = consumed_missing(dependent.step.inputs, step.index, produced)
                if absent is not None:
                    reason = f"output {absent!r} of step {step.key!r} was not produced"
                    stack = stack or []
                    stack.append((dependent, reason))
                    continue
            dependent.remaining -= 1
            if dependent.remaining == 0:
                self.make_ready(dependent, state.end)
        return stack

    def _finish_unstarted(self, *, outer: bool, reason: str | None = None) -> None:
        """After the task group ended: steps that never ran are CANCELED (or SKIPPED on
        fail-fast, or for ``reason``).

        Nothing counts them done: the workers are gone.
        """
        if self._workers.done == len(self.states):
            return  # every step reached a final state
        cancelled = outer or self._cancel_reason == "user"
        for state in self.states:
            if state.status is PENDING or state.status is RETRYING:
                if cancelled or state.status is RETRYING:
                    state.status = CANCELED
                    self.emit(
                        EventType.STEP_CANCELED,
                        step_key=state.step.key,
                        level=DEBUG,  # the run's own RUN_CANCELED says it once, as a WARNING
                        message=f"Step {state.step.key!r} canceled before it could run",
                    )
                    if self._tracer is not None:
                        self._tracer.unstarted_step(
                            state.step, run_id=self.run_id, result=_tracing.CANCELLATION
                        )
                else:
                    self._mark_skipped(
                        state, reason or "the run stopped at the first failure (fail_fast)"
                    )

    async def _wait_for_outlived(self) -> None:
        """Give compute that cancelled attempts left running a grace period to finish.

        A sync solid's thread cannot be interrupted; it is told through its
        context and usually returns at once.  One that does not is left behind,
        and the run says so.
        """
        outlived = self._run.outlived_attempts
        if not outlived:
            return
        deadline = anyio.current_time() + OUTLIVED_GRACE
        while any(still() for _, _, still in outlived) and anyio.current_time() < deadline:
            await anyio.sleep(_OUTLIVED_POLL)
        for state, number, still in outlived:
            if still():
                key = state.step.key
                self.emit(
                    EventType.LOG,
                    step_key=key,
                    level=WARNING,
                    message=(
                        f"The thread of step {key!r} is still running {OUTLIVED_GRACE:g}s after "
                        "it was cancelled; the run ends without it (a sync solid sees "
                        "cancellation through context.is_cancel_requested)"
                    ),
                    data={"attempt": number, "thread_abandoned": True},
                )

    # --- one step's life -------------------------------------------------------------------------

    async def _run_step(self, state: StepState) -> None:
        """One step, top to bottom: resources, inputs, start, the attempt, its outcome, hooks."""
        step = state.step
        if step.reuse is not None:
            self._reuse(state)
            return
        needs = step.solid.required_resources
        if (
            needs
            and self._resources is not None
            and (self._uses_run_resources is None or self._uses_run_resources(step))
            and not await self._set_up_resources(state)
        ):
            return
        if step.inputs:
            state.inputs = input_values(step.inputs, self.states, self._collect)
        started = self._start(state)
        keeper = self._keeper
        stored = None
        try:
            if keeper is not None and keeper.reads:
                await keeper.resolve(state)
            if step.timeout is None:
                value = await self._launcher.run_attempt(self._run, state)
            else:
                value = await self._attempt_with_timeout(state, step.timeout)
            if value.__class__ is Output and step.outs is None:
                # ``return Output(v)`` with no outs declared: v is the one output.
                value = single_output_value(step.key, value)
            if keeper is not None:
                stored = await keeper.save(state, value)
        except self._cancelled_exc:  # the run's cancellation, never swallowed
            self._on_cancel(state, started)
            raise
        except BaseException as exc:  # whatever the solid raised, KeyboardInterrupt included
            error, delay = self._decide_retry(state, exc)
            if delay is not None:
                self._on_retry(state, error, delay)
                return
            self._on_failure(state, error, started)
        else:
            self._on_success(state, value, started, stored)
        if step.hooks:
            await self._run_hooks(state)

    async def _set_up_resources(self, state: StepState) -> bool:
        """The resources the solid declared; False when one failed, so the step never starts."""
        assert self._resources is not None
        step = state.step
        try:
            await self._resources.ensure(step.solid.required_resources)
        except ResourceInitError as exc:
            self._failed = True
            state.skip_reason = str(exc)
            self._raised(state, exc)
            state.error = ErrorInfo.from_exception(exc)
            self.emit(
                EventType.STEP_SKIPPED,
                step_key=step.key,
                level=ERROR,
                message=f"Step {step.key!r} did not start: {exc}",
                data={"reason": str(exc), "resource": exc.resource_key},
            )
            if self._tracer is not None:
                self._tracer.unstarted_step(
                    step, run_id=self.run_id, result=_tracing.ERROR, error=exc
                )
            self._skipped += 1
            self._finish(state, SKIPPED)
            return False
        return True

    def _start(self, state: StepState) -> float:
        """STEP_START: the attempt begins and its span becomes current.  Returns its start time."""
        step = state.step
        state.attempts += 1
        now = time.time()
        if state.start is None:
            state.start = now
        state.status = RUNNING
        self._emit_step(StepStartEvent, step.key, now, state.attempts, state.ready_at)
        tracer = self._tracer
        if tracer is not None:
            state.span = span = tracer.start_step(
                step,
                run_id=self.run_id,
                attempt=state.attempts,
                extra=None
                if step.mapping_key is None
                else {"asyncdag.mapping_key": step.mapping_key},
            )
            state.span_token = tracer.use_span(span)
        return now

    async def _attempt_with_timeout(self, state: StepState, timeout: float) -> Any:
        with anyio.move_on_after(timeout):
            return await self._launcher.run_attempt(self._run, state)
        raise StepTimeoutError(state.step.key, timeout)

    def _decide_retry(
        self, state: StepState, exc: BaseException
    ) -> tuple[BaseException, float | None]:
        """Whether a failed attempt is tried again: the error the step now carries, and the
        seconds to wait before its next attempt (None: the step fails with that error).

        Only an ``Exception`` is retried: a solid raising ``KeyboardInterrupt``,
        ``SystemExit`` or a bare ``BaseException`` fails its step at once.
        """
        step = state.step
        retries_done = state.attempts - 1
        delay: float | None = None
        if not isinstance(exc, Exception):
            return exc, None
        if isinstance(exc, RetryRequested):
            if retries_done < exc.max_retries:
                delay = exc.seconds_to_wait
        else:
            policy = step.retry_policy
            if (
                policy is not None
                and retries_done < policy.max_retries
                and policy.should_retry(exc)
            ):
                delay = policy.delay_for(retries_done + 1)
        if delay is None:
            return exc, None
        yielded = self._dyn.yielded.get(step.index) if self._dyn is not None else None
        if yielded:
            error = OutputError(
                f"step {step.key!r} failed after yielding {yielded} dynamic output(s) and is "
                "not retried: a retry would yield them again and start their mapped steps "
                f"twice; retry inside the generator instead (it failed with "
                f"{type(exc).__name__}: {exc})"
            )
            error.__cause__ = exc
            return error, None
        return exc, delay

    # --- the four outcomes, each ending in _finish ------------------------------------------------

    def _on_success(
        self,
        state: StepState,
        value: Any,
        started: float,
        stored: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        step = state.step
        key = step.key
        state.value = value
        if step.outs is None:
            if stored is not None:
                self._output_event(state, "result", stored["result"])
        else:
            for name in value:
                self._output_event(state, name, stored[name] if stored is not None else None)
        # Read after the outputs' events: STEP_SUCCESS is stamped with it, and a run's
        # timestamps never go back.
        state.end = end = time.time()
        self._emit_step(StepSuccessEvent, key, end, state.attempts, started)
        self._finish(state, SUCCESS)

    def _output_event(self, state: StepState, name: str, stored: dict[str, Any] | None) -> None:
        if stored is None:
            message = f"Yielded output {name!r}."
            data = {"output": name, "attempt": state.attempts}
        else:
            message = (
                f"Yielded output {name!r}, stored at {stored.get('path')} "
                f"({describe_size(stored.get('size'))})."
            )
            data = {"output": name, "attempt": state.attempts, **stored}
        self.emit(
            EventType.STEP_OUTPUT, step_key=state.step.key, level=DEBUG, message=message, data=data
        )

    def _reuse(self, state: StepState) -> None:
        """A step this run does not compute: its outputs (and fan-out items) are what an earlier
        run stored, read only if a computed step reads them.  No STEP_START, no span, no hooks:
        one STEP_OUTPUT per output, then STEP_SUCCESS, both saying ``loaded_from``."""
        step = state.step
        reuse = step.reuse
        keeper = self._keeper
        assert reuse is not None and keeper is not None
        key = step.key
        state.status = RUNNING
        outs = step.outs or {}
        outputs: dict[str, Any] = {}
        for name, record in reuse.outputs.items():
            outputs[name] = keeper.handle(record, outs.get(name))
            self.emit(
                EventType.STEP_OUTPUT,
                step_key=key,
                level=DEBUG,
                message=f"Reused output {name!r} that run {record.run_id} stored at "
                f"{record.location} ({describe_size(record.size)}).",
                data=_reused_data(record, name),
            )
        # As _on_success keeps them: the one output ``result`` bare, else the dict by name.
        if step.outs is None:
            state.value = outputs.get("result", NOT_PRODUCED)
        else:
            state.value = outputs
        if reuse.items:
            assert self._dyn is not None, "a reused generator step in a run with no fan-out"
            for record in reuse.items:
                assert record.mapping_key is not None
                self._dyn.fan_out(
                    state,
                    record.output,
                    record.mapping_key,
                    keeper.handle(record, outs.get(record.output)),
                    stored=_reused_data(record, record.output),
                )
        state.end = time.time()
        self.emit(
            EventType.STEP_SUCCESS,
            step_key=key,
            level=DEBUG,
            message=f"Reused step {key!r}: its outputs come from run {reuse.run_id}.",
            data={"loaded_from": reuse.run_id},
        )
        self._finish(state, SUCCESS)

    def _on_retry(self, state: StepState, exc: BaseException, delay: float) -> None:
        key = state.step.key
        self._raised(state, exc)
        error = ErrorInfo.from_exception(exc)
        self.emit(
            EventType.STEP_UP_FOR_RETRY,
            step_key=key,
            level=WARNING,
            message=f"Step {key!r} failed and will be retried "
            f"(attempt {state.attempts} failed: {error.type}: {error.message}); "
            f"waiting {delay:.3g}s.",
            data=self._ended_attempt(state, delay=delay, error=error.to_dict()),
        )
        self._finish(state, RETRYING, exc, retry_delay=delay)

    def _on_failure(self, state: StepState, exc: BaseException, started: float) -> None:
        key = state.step.key
        state.end = end = time.time()
        self._raised(state, exc)
        state.error = error = ErrorInfo.from_exception(exc)
        self._failed = True
        self.emit(
            EventType.STEP_FAILURE,
            step_key=key,
            level=ERROR,
            message=f"Execution of step {key!r} failed: {error.type}: {error.message}",
            data=self._ended_attempt(
                state,
                duration=end - started,
                error=error.to_dict(),
                timeout=isinstance(exc, StepTimeoutError),
            ),
        )
        self._finish(state, FAILURE, exc)
        if self._fail_fast and self._cancel_reason is None:
            self._cancel_reason = "fail_fast"
            assert self._tg is not None
            self._tg.cancel_scope.cancel()

    def _on_cancel(self, state: StepState, started: float) -> None:
        key = state.step.key
        state.end = end = time.time()
        self.emit(
            EventType.STEP_CANCELED,
            step_key=key,
            level=DEBUG,  # one line per step would flood a host cancelling many runs
            message=f"Step {key!r} was canceled.",
            data=self._ended_attempt(state, duration=end - started),
        )
        self._finish(state, CANCELED)

    def _raised(self, state: StepState, exc: BaseException) -> None:
        if state.exception is None:
            self.raised.append(state)
        state.exception = exc

    def _ended_attempt(self, state: StepState, **fields: Any) -> dict[str, Any]:
        """The data of an event ending an attempt that did not succeed: its number, ``fields``,
        and ``thread_abandoned`` when its compute was left running."""
        data = {"attempt": state.attempts, **fields}
        if self._run.outlived_attempts and self._run.left_running(state):
            data["thread_abandoned"] = True
        return data

    def _finish(
        self,
        state: StepState,
        status: StepStatus,
        error: BaseException | None = None,
        *,
        retry_delay: float | None = None,
    ) -> None:
        """How every attempt (and a step that could not start) ends: its status, its span,
        its pool slot, then the step settled for good, or its next attempt scheduled."""
        state.status = status
        state.inputs = _NO_INPUTS  # do not keep the input values alive for the rest of the run
        span = state.span
        if span is not None:
            tracer = self._tracer
            assert tracer is not None
            tracer.end_step(span, _SPAN_RESULTS[status], error, retry_delay=retry_delay)
            # Before the retry's wait task starts: it must not inherit this attempt's span.
            tracer.detach(state.span_token)
            state.span = state.span_token = None
        if state.step.pool is not None:
            self._release_pool(state)
        if status is RETRYING:
            assert self._tg is not None and retry_delay is not None
            self._tg.start_soon(self._requeue_after, state, retry_delay)
        else:
            self._settle(state)

    async def _requeue_after(self, state: StepState, delay: float) -> None:
        if delay > 0:
            await anyio.sleep(delay)
        self.make_ready(state)
        self.dispatch()

    async def _run_hooks(self, state: StepState) -> None:
        """The step's hooks for its outcome, after it was recorded (its span has ended)."""
        if state.status is SUCCESS:
            kind, error = HOOK_SUCCESS, None
        else:
            kind, error = HOOK_FAILURE, state.exception
        await run_hooks(
            state.step.hooks,
            kind,
            self.emit,
            lambda hook: self._run.hook_context(state, hook, error),
            limiter=self._run.thread_limiter,
            ensure=self._resources.ensure if self._resources is not None else None,
        )


def _reused_data(record: Any, name: str) -> dict[str, Any]:
    data = {
        "output": name,
        "loaded_from": record.run_id,
        "path": record.location,
        "size": record.size,
        "serializer": record.serializer,
    }
    if record.mapping_key is not None:
        data["mapping_key"] = record.mapping_key
    return data
