"""The engine: runs a plan's steps as soon as their inputs are ready, under bounds.

Shape: a ready queue feeds a set of worker tasks that grows on demand up to
``max_concurrency``.  Spawning a task costs more than running a no-op step,
so spawn cost is paid per unit of *parallelism*, not per node: a chain of
10,000 steps runs on one worker.  All bookkeeping (dependency counts, pools,
skips) is synchronous code between awaits, so it needs no locks.

One step's life is :meth:`Executor._run_step`, top to bottom: resources,
inputs, STEP_START, the attempt (with timeout and span), then success, retry
or failure.  Retries wait *outside* the worker, so a step sleeping before its
next attempt does not hold a concurrency slot.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._definitions import FAILURE as HOOK_FAILURE
from .._definitions import SUCCESS as HOOK_SUCCESS
from .._definitions import DynamicOut, HookDefinition, OutputError
from .._definitions._outputs import check_outputs, outputs_from_return
from .._errors import ResourceInitError, RetryRequested, StepTimeoutError
from .._events import ErrorInfo, EventType, RunStatus, StepStatus
from .._plan import INPUT_CONSTANT, INPUT_FAN_IN, INPUT_STEP, ExecutionPlan, Step
from . import _tracing
from ._context import HookContext, SolidContext
from ._dynamic import DynamicRuntime, consumed_missing
from ._hooks import run_hooks
from ._log import StepLog
from ._resources import ResourceManager, Resources

__all__ = ["Executor", "StepState"]

Emit = Callable[[EventType, str | None, int, str, dict[str, Any] | None], Any]

# A worker yields to the event loop at least this often, even when its steps never await.
_STEPS_PER_CHECKPOINT = 32
# Workers that find no work wait for more, up to this many; the rest exit.  Waking a
# waiting worker is cheaper than spawning one, but thousands of idle workers cost memory
# and a thundering herd at the end of the run.
_MAX_IDLE_WORKERS = 16

DEBUG = logging.DEBUG
ERROR = logging.ERROR
WARNING = logging.WARNING


class StepState:
    """A step's mutable state during one run."""

    __slots__ = (
        "attempts",
        "end",
        "error",
        "exception",
        "outputs",
        "ready_at",
        "remaining",
        "skip_reason",
        "start",
        "status",
        "step",
    )

    def __init__(self, step: Step) -> None:
        self.step = step
        self.remaining = len(step.upstream)
        self.status = StepStatus.PENDING
        self.attempts = 0
        self.start: float | None = None
        self.end: float | None = None
        self.outputs: dict[str, Any] | None = None
        self.error: ErrorInfo | None = None
        self.exception: BaseException | None = None
        self.ready_at = 0.0
        self.skip_reason: str | None = None


class _Retry(Exception):
    def __init__(self, delay: float) -> None:
        self.delay = delay


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
    ) -> None:
        self.plan = plan
        self._solid_configs = solid_configs or {}
        self.run_id = run_id
        self._emit = emit
        self._bound = max_concurrency if max_concurrency else math.inf
        self._pool_limits = dict(concurrency_limits or {})
        self._fail_fast = fail_fast
        self._resources = resources
        self._tracer = tracer
        self._tags = dict(tags or {})
        self._run_config = dict(run_config or {})
        self.states = [StepState(step) for step in plan.steps]
        self._ready: deque[StepState] = deque()
        self._pool_running: dict[str, int] = dict.fromkeys(self._pool_limits, 0)
        self._pool_waiting: dict[str, deque[StepState]] = {k: deque() for k in self._pool_limits}
        self._done = 0
        self._workers = 0
        self._idle = 0
        self._arriving = 0
        self._wake = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self._cancel_reason: str | None = None  # "user" or "fail_fast"
        self._failed = False
        self._thread_limiter = anyio.CapacityLimiter(max_concurrency) if max_concurrency else None
        self._cancelled_exc = anyio.get_cancelled_exc_class()
        self.peak_running = 0
        self._running = 0
        # Fan-out bookkeeping, only for plans that stream (None keeps the static path bare).
        self._dyn = DynamicRuntime(self) if plan.groups or plan.streams else None

    def _new_state(self, step: Step) -> StepState:
        """A runtime step (a mapped item's), appended to the run's states."""
        state = StepState(step)
        self.states.append(state)
        return state

    # --- public ------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Cancel the run: running steps see cancellation, pending ones never start."""
        if self._cancel_reason is None:
            self._cancel_reason = "user"
            self._emit(EventType.RUN_CANCELING, None, WARNING, "Run cancellation requested", None)
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def run(self) -> RunStatus:
        """Run every step; return the run's final status.

        Cancellation from an enclosing scope is recorded (steps CANCELED,
        resources closed, RUN_CANCELED emitted) and then re-raised.
        """
        if self._resources is None:
            return await self._run()
        # Each resource lives in a task of its own for the whole run, so one that holds a
        # task group or cancel scope across its yield is entered and exited in one task.
        async with self._resources.hosted():
            return await self._run()

    async def _run(self) -> RunStatus:
        outer_cancel: BaseException | None = None
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                if self._cancel_reason is not None:
                    tg.cancel_scope.cancel()
                for state in self.states:
                    if state.remaining == 0:
                        self._make_ready(state)
                self._spawn_workers(0)
        except self._cancelled_exc as exc:
            outer_cancel = exc
        finally:
            with anyio.CancelScope(shield=True):
                self._finish_unstarted(outer=outer_cancel is not None)
                if self._resources is not None:
                    await self._resources.aclose()
        if outer_cancel is not None:
            raise outer_cancel
        if self._cancel_reason == "user":
            return RunStatus.CANCELED
        return RunStatus.FAILURE if self._failed else RunStatus.SUCCESS

    @property
    def cancelled_by_user(self) -> bool:
        return self._cancel_reason == "user"

    # --- scheduling (synchronous bookkeeping) --------------------------------------------------

    def _make_ready(self, state: StepState) -> None:
        pool = state.step.pool
        if pool is not None and pool in self._pool_limits:
            if self._pool_running[pool] >= self._pool_limits[pool]:
                self._pool_waiting[pool].append(state)
                return
            self._pool_running[pool] += 1
        state.ready_at = time.time()
        self._ready.append(state)

    def _release_pool(self, state: StepState) -> None:
        pool = state.step.pool
        if pool is not None and pool in self._pool_limits:
            self._pool_running[pool] -= 1
            waiting = self._pool_waiting[pool]
            if waiting:
                self._make_ready(waiting.popleft())

    def _spawn_workers(self, freeing: int) -> None:
        """Wake idle workers and start new ones for what the ready queue holds.

        ``freeing`` is 1 when called by a worker about to loop for more work:
        that worker will take one item itself.
        """
        # Workers spawned or woken but not yet running will each take an item too.
        backlog = len(self._ready) - freeing - self._arriving
        if backlog <= 0:
            return
        if self._idle:
            backlog -= self._idle
            self._wake_idle()
        tg = self._tg
        assert tg is not None
        while backlog > 0 and self._workers < self._bound:
            self._workers += 1
            self._arriving += 1
            backlog -= 1
            tg.start_soon(self._worker)

    def _complete(self, state: StepState, missing: bool = False) -> None:
        """A step reached a final state: count it and release or skip what depends on it.

        ``missing``: the step left an optional output out, so what takes that
        output is skipped instead of released.
        """
        self._done += 1
        states = self.states
        if missing:
            produced = state.outputs or {}
            for index in state.step.downstream:
                dependent = states[index]
                if dependent.status is StepStatus.PENDING:
                    absent = consumed_missing(dependent.step, state.step.index, produced)
                    if absent is not None:
                        self._skip(
                            dependent,
                            f"output {absent!r} of step {state.step.key!r} was not produced",
                        )
                        continue
                    dependent.remaining -= 1
                    if dependent.remaining == 0:
                        self._make_ready(dependent)
        elif state.status is StepStatus.SUCCESS:
            for index in state.step.downstream:
                dependent = states[index]
                if dependent.status is StepStatus.PENDING:
                    dependent.remaining -= 1
                    if dependent.remaining == 0:
                        self._make_ready(dependent)
        else:
            reason = f"upstream step {state.step.key!r} did not succeed ({state.status.value})"
            for index in state.step.downstream:
                self._skip(states[index], reason)
        if self._dyn is not None:
            self._dyn.on_complete(state)
        if self._done == len(states) and self._idle:
            self._wake_idle()  # let idle workers see the run is over and exit

    def _wake_idle(self) -> None:
        # Woken workers stop counting as idle now, not when they next run, so that
        # a second call before they run does not count on them twice.
        self._arriving += self._idle
        self._idle = 0
        self._wake.set()
        self._wake = anyio.Event()

    def _skip(self, first: StepState, reason: str) -> None:
        stack = [first]
        states = self.states
        while stack:
            state = stack.pop()
            if state.status is not StepStatus.PENDING:
                continue
            state.status = StepStatus.SKIPPED
            state.skip_reason = reason
            self._done += 1
            self._emit(
                EventType.STEP_SKIPPED,
                state.step.key,
                DEBUG,
                f"Skipped step {state.step.key!r}: {reason}",
                {"reason": reason},
            )
            if self._tracer is not None:
                self._tracer.skip_step(state.step, run_id=self.run_id, reason=reason)
            if self._dyn is not None:
                self._dyn.on_complete(state)
            child_reason = f"upstream step {state.step.key!r} was skipped"
            for index in state.step.downstream:
                if states[index].status is StepStatus.PENDING:
                    states[index].skip_reason = child_reason
                    stack.append(states[index])
            reason = child_reason

    def _finish_unstarted(self, *, outer: bool) -> None:
        """After the task group ends: steps that never ran are CANCELED (or SKIPPED on fail-fast)."""
        cancelled = outer or self._cancel_reason == "user"
        for state in self.states:
            if state.status is StepStatus.PENDING or state.status is StepStatus.RETRYING:
                if cancelled or state.status is StepStatus.RETRYING:
                    state.status = StepStatus.CANCELED
                    self._emit(
                        EventType.STEP_CANCELED,
                        state.step.key,
                        WARNING,
                        f"Step {state.step.key!r} canceled before it could run",
                        None,
                    )
                    if self._tracer is not None:
                        self._tracer.unstarted_step(
                            state.step, run_id=self.run_id, result=_tracing.CANCELLATION
                        )
                else:
                    state.status = StepStatus.SKIPPED
                    state.skip_reason = "the run stopped at the first failure (fail_fast)"
                    self._emit(
                        EventType.STEP_SKIPPED,
                        state.step.key,
                        DEBUG,
                        f"Skipped step {state.step.key!r}: {state.skip_reason}",
                        {"reason": state.skip_reason},
                    )
                    if self._tracer is not None:
                        self._tracer.skip_step(
                            state.step, run_id=self.run_id, reason=state.skip_reason
                        )
                self._done += 1

    # --- workers -------------------------------------------------------------------------------

    async def _worker(self) -> None:
        ready = self._ready
        states = self.states  # grows while a fan-out yields: compare with its length
        streak = 0
        self._arriving -= 1
        try:
            while True:
                if ready:
                    await self._run_step(ready.popleft())
                    self._spawn_workers(1)
                    streak += 1
                    if streak >= _STEPS_PER_CHECKPOINT:
                        # Steps that never await would otherwise hold the loop for the whole
                        # run; a checkpoint lets other tasks (and cancellation) in.
                        streak = 0
                        await anyio.lowlevel.checkpoint()
                    continue
                if self._done >= len(states) or self._idle >= _MAX_IDLE_WORKERS:
                    return
                self._idle += 1
                wake = self._wake
                try:
                    await wake.wait()
                except BaseException:
                    if not wake.is_set():
                        self._idle -= 1
                    raise
                self._arriving -= 1
        finally:
            self._workers -= 1

    async def _requeue_after(self, state: StepState, delay: float) -> None:
        if delay > 0:
            await anyio.sleep(delay)
        self._make_ready(state)
        self._spawn_workers(0)

    # --- one step's life ------------------------------------------------------------------------

    async def _run_step(self, state: StepState) -> None:
        step = state.step
        key = step.key
        emit = self._emit
        solid = step.solid

        if self._resources is not None and solid.required_resources:
            try:
                await self._resources.ensure(solid.required_resources)
            except ResourceInitError as exc:
                self._failed = True
                self._release_pool(state)
                state.status = StepStatus.SKIPPED
                state.skip_reason = str(exc)
                state.exception = exc
                state.error = ErrorInfo.from_exception(exc)
                emit(
                    EventType.STEP_SKIPPED,
                    key,
                    ERROR,
                    f"Step {key!r} did not start: {exc}",
                    {"reason": str(exc), "resource": exc.resource_key},
                )
                if self._tracer is not None:
                    self._tracer.unstarted_step(
                        step, run_id=self.run_id, result=_tracing.ERROR, error=exc
                    )
                self._complete(state)
                return

        kwargs = self._gather_inputs(step)
        state.attempts += 1
        attempt = state.attempts
        now = time.time()
        if state.start is None:
            state.start = now
        state.status = StepStatus.RUNNING
        self._running += 1
        if self._running > self.peak_running:
            self.peak_running = self._running
        emit(
            EventType.STEP_START,
            key,
            DEBUG,
            step.started_message,
            {"attempt": attempt, "waited": now - state.ready_at},
        )

        tracer = self._tracer
        span = token = None
        if tracer is not None:
            span = tracer.start_step(
                step,
                run_id=self.run_id,
                attempt=attempt,
                extra=None
                if step.mapping_key is None
                else {"asyncdag.mapping_key": step.mapping_key},
            )
            token = tracer.use_span(span)
        try:
            value = await self._attempt(state, kwargs, span)
        except self._cancelled_exc:
            state.status = StepStatus.CANCELED
            state.end = time.time()
            emit(
                EventType.STEP_CANCELED,
                key,
                WARNING,
                f"Step {key!r} was canceled.",
                {"attempt": attempt, "duration": state.end - now},
            )
            if tracer is not None:
                tracer.end_step(span, _tracing.CANCELLATION)
            self._done += 1
            raise
        except _Retry as retry:
            state.status = StepStatus.RETRYING
            if tracer is not None:
                tracer.end_step(span, _tracing.FAILURE, state.exception, retry_delay=retry.delay)
                # The wait task must not inherit this attempt's span as its current context.
                tracer.detach(token)
                token = None
            self._release_pool(state)
            assert self._tg is not None
            self._tg.start_soon(self._requeue_after, state, retry.delay)
            return
        except Exception as exc:  # a failed attempt with no retry left
            state.status = StepStatus.FAILURE
            state.end = time.time()
            state.exception = exc
            state.error = error = ErrorInfo.from_exception(exc)
            self._failed = True
            result = _tracing.TIMEOUT if isinstance(exc, StepTimeoutError) else _tracing.FAILURE
            emit(
                EventType.STEP_FAILURE,
                key,
                ERROR,
                f"Execution of step {key!r} failed: {error.type}: {error.message}",
                {
                    "attempt": attempt,
                    "duration": state.end - now,
                    "error": error.to_dict(),
                    "timeout": result == _tracing.TIMEOUT,
                },
            )
            if tracer is not None:
                tracer.end_step(span, result, exc)
            self._release_pool(state)
            self._complete(state)
            if self._fail_fast and self._cancel_reason is None:
                self._cancel_reason = "fail_fast"
                assert self._tg is not None
                self._tg.cancel_scope.cancel()
            if step.hooks:
                await self._run_hooks(state, HOOK_FAILURE)
            return
        else:
            state.status = StepStatus.SUCCESS
            state.end = end = time.time()
            outs = step.outs
            if outs is None:
                state.outputs = {"result": value}
            else:
                state.outputs = value
                for name in value:
                    emit(
                        EventType.STEP_OUTPUT,
                        key,
                        DEBUG,
                        f"Yielded output {name!r}.",
                        {"output": name},
                    )
            emit(
                EventType.STEP_SUCCESS,
                key,
                DEBUG,
                f"{step.finished_prefix}{(end - now) * 1000:.2f}ms.",
                {"attempt": attempt, "duration": end - now},
            )
            if tracer is not None:
                tracer.end_step(span, _tracing.SUCCESS)
            self._release_pool(state)
            if outs is None:
                self._complete(state)
            else:
                self._complete(
                    state,
                    any(
                        name not in value and not isinstance(out, DynamicOut)
                        for name, out in outs.items()
                    ),
                )
            if step.hooks:
                await self._run_hooks(state, HOOK_SUCCESS)
        finally:
            self._running -= 1
            if token is not None:
                tracer.detach(token)  # type: ignore[union-attr]

    def _gather_inputs(self, step: Step) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        states = self.states
        for name, kind, payload in step.inputs:
            if kind == INPUT_CONSTANT:
                kwargs[name] = payload
            elif kind == INPUT_STEP:
                kwargs[name] = states[payload[0]].outputs[payload[1]]  # type: ignore[index]
            elif kind == INPUT_FAN_IN:
                kwargs[name] = [
                    states[ref].outputs[output] if is_step else ref  # type: ignore[index]
                    for is_step, ref, output in payload
                ]
            else:
                kwargs[name] = self._dyn.collect(payload)  # type: ignore[union-attr]
        return kwargs

    def _make_context(
        self,
        step: Step,
        retry_number: int,
        span: Any,
        *,
        cls: type[SolidContext] = SolidContext,
        **extra: Any,
    ) -> SolidContext:
        """The context a solid (or, with ``cls=HookContext``, one of its hooks) receives."""
        solid = step.solid
        resources = None
        if solid.required_resources and self._resources is not None:
            resources = Resources(
                self._resources.values, solid.required_resources, f"solid {step.key!r}"
            )
        return cls(
            run_id=self.run_id,
            pipeline_name=self.plan.pipeline.name,
            solid_name=solid.name,
            step_key=step.key,
            retry_number=retry_number,
            log=StepLog(self._emit, step.key, span),
            solid_config=self._solid_configs.get(step.node.name),
            resources=resources,
            tags=self._tags,
            run_config=self._run_config,
            span=span,
            **extra,
        )

    async def _invoke(
        self, state: StepState, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Call the solid's function the way its kind needs: awaited, drained, or in a thread."""
        solid = state.step.solid
        if solid.is_async:
            return await fn(*args, **kwargs)
        if solid.is_generator:
            return await self._drain(state, fn(*args, **kwargs))
        value = await anyio.to_thread.run_sync(
            functools.partial(fn, *args, **kwargs), limiter=self._thread_limiter
        )
        # A thread cannot be interrupted: if the run was cancelled while it ran, its
        # value arrives too late and the step ends CANCELED, not SUCCESS.
        await anyio.lowlevel.checkpoint_if_cancelled()
        return value

    async def _attempt(self, state: StepState, kwargs: dict[str, Any], span: Any) -> Any:
        """One attempt: call the solid (with its timeout); raise _Retry when another attempt is due."""
        step = state.step
        solid = step.solid
        fn = solid.fn
        args: tuple[Any, ...] = ()
        if solid.takes_context:
            args = (self._make_context(step, state.attempts - 1, span),)
        try:
            if step.timeout is None:
                if solid.is_async:  # the hot path: no extra coroutine frame
                    value = await fn(*args, **kwargs)
                else:
                    value = await self._invoke(state, fn, args, kwargs)
            else:
                with anyio.move_on_after(step.timeout) as scope:
                    value = await self._invoke(state, fn, args, kwargs)
                if scope.cancel_called:
                    raise StepTimeoutError(step.key, step.timeout)
            if step.outs is not None:
                if not solid.is_generator:
                    value = outputs_from_return(step.key, step.outs, value)
                check_outputs(step.key, step.outs, value)
            return value
        except self._cancelled_exc:
            raise
        except Exception as exc:
            delay = self._retry_delay(state, exc)
            if delay is None:
                raise
            if self._dyn is not None and self._dyn.yielded.get(step.index):
                raise OutputError(
                    f"step {step.key!r} failed after yielding "
                    f"{self._dyn.yielded[step.index]} dynamic output(s) and is not retried: "
                    "a retry would yield them again and start their mapped steps twice; "
                    "retry inside the generator instead "
                    f"(it failed with {type(exc).__name__}: {exc})"
                ) from exc
            state.exception = exc
            error = ErrorInfo.from_exception(exc)
            self._emit(
                EventType.STEP_UP_FOR_RETRY,
                step.key,
                WARNING,
                f"Step {step.key!r} failed and will be retried "
                f"(attempt {state.attempts} failed: {error.type}: {error.message}); "
                f"waiting {delay:.3g}s.",
                {"attempt": state.attempts, "delay": delay, "error": error.to_dict()},
            )
            raise _Retry(delay) from exc

    async def _drain(self, state: StepState, gen: Any) -> dict[str, Any]:
        """Run a generator solid, handing each item to the fan-out as it is yielded.

        An async generator is iterated here; a sync one in a worker thread that
        passes each item back to the event loop, so mapped steps start while the
        generator keeps producing.
        """
        dyn = self._dyn
        assert dyn is not None
        outputs: dict[str, Any] = {}
        if state.step.solid.is_async_generator:
            try:
                async for item in gen:
                    dyn.on_item(state, item, outputs)
            finally:
                with anyio.CancelScope(shield=True):
                    await gen.aclose()
        else:
            from anyio import from_thread  # only sync generator solids need it; costly to import

            def drain() -> None:
                try:
                    for item in gen:
                        from_thread.run_sync(dyn.on_item, state, item, outputs)
                        from_thread.check_cancelled()
                finally:
                    gen.close()

            await anyio.to_thread.run_sync(drain, limiter=self._thread_limiter)
            await anyio.lowlevel.checkpoint_if_cancelled()
        return outputs

    async def _run_hooks(self, state: StepState, kind: str) -> None:
        """The step's hooks of ``kind``, after its outcome was recorded (its span has ended)."""
        step = state.step

        def make_context(hook: HookDefinition) -> HookContext:
            # The step's span has ended by now, so hook logs carry none.
            return self._make_context(  # type: ignore[return-value]
                step,
                max(state.attempts - 1, 0),
                None,
                cls=HookContext,
                hook_name=hook.name,
                error=state.exception if kind == HOOK_FAILURE else None,
            )

        await run_hooks(step.hooks, kind, self._emit, make_context, limiter=self._thread_limiter)

    def _retry_delay(self, state: StepState, exc: Exception) -> float | None:
        """Seconds to wait before the next attempt, or None when the step should fail now."""
        retries_done = state.attempts - 1
        if isinstance(exc, RetryRequested):
            if retries_done < exc.max_retries:
                return exc.seconds_to_wait
            return None
        policy = state.step.retry_policy
        if policy is None or retries_done >= policy.max_retries or not policy.should_retry(exc):
            return None
        return policy.delay_for(retries_done + 1)
