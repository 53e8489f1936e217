"""A run in progress: :func:`open_run` starts one and hands back its :class:`RunHandle`.

Every way of running a pipeline (``execute_pipeline*``, the CLI, the UI) goes
through here, so there is one engine and one way a run happens.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import Any

import anyio
import anyio.lowlevel

from .._definitions import PipelineDefinition
from .._engine import EventBus, Executor, Listener, ResourceManager, _tracing
from .._errors import AsyncdagError, DefinitionError
from .._events import Event, EventType, RunStatus, StepStatus
from .._plan import ExecutionPlan
from ._console import console_listener, install_default_handler
from ._result import LazyMapping, PipelineRunResult, StepResult

__all__ = ["RunHandle", "open_run"]

_RUN_END_EVENTS = {
    RunStatus.SUCCESS: (EventType.RUN_SUCCESS, logging.DEBUG),
    RunStatus.FAILURE: (EventType.RUN_FAILURE, logging.ERROR),
    RunStatus.CANCELED: (EventType.RUN_CANCELED, logging.WARNING),
}


class RunHandle:
    """A run in progress: watch its events, cancel it, await its result.

    Get one from ``async with open_run(pipeline) as run:``.  Leaving the block
    waits for the run to end; an exception in the block cancels the run first.
    """

    def __init__(
        self,
        pipeline: PipelineDefinition,
        *,
        run_config: Mapping[str, Any] | None,
        max_concurrency: int | None,
        concurrency_limits: Mapping[str, int] | None,
        tags: Mapping[str, str] | None,
        fail_fast: bool,
        storage: Any,
        run_id: str | None,
        parent_run_id: str | None,
        tracing: bool,
        tracer_provider: Any = None,
        listeners: Iterable[Listener],
    ) -> None:
        if not isinstance(pipeline, PipelineDefinition):
            raise DefinitionError(
                f"expected a pipeline made with @pipeline, got {pipeline!r}; decorate the "
                "pipeline's body function with @pipeline"
            )
        if max_concurrency is not None and max_concurrency < 1:
            raise AsyncdagError(
                f"max_concurrency must be >= 1 (or None for no bound), got {max_concurrency}"
            )
        self.pipeline = pipeline
        if run_id is None:
            import uuid  # imported on first run: it drags in platform and random

            run_id = str(uuid.uuid4())
        self.run_id = run_id
        self.parent_run_id = parent_run_id
        self.tags = {**pipeline.tags, **{str(k): str(v) for k, v in (tags or {}).items()}}
        self._storage = storage

        # Everything that can be wrong with the input is found here, before anything runs.
        from ..config import resolve_run_config

        resolved = resolve_run_config(pipeline, run_config)
        self.run_config: dict[str, Any] = dict(resolved.raw)
        self.plan = ExecutionPlan.for_pipeline(
            pipeline,
            input_values={name: sc.inputs for name, sc in resolved.solids.items() if sc.inputs},
        )
        limits = dict(resolved.execution.concurrency_limits)
        limits.update(concurrency_limits or {})
        for pool, limit in limits.items():
            if not isinstance(limit, int) or limit < 1:
                raise AsyncdagError(
                    f"concurrency_limits[{pool!r}] must be an int >= 1, got {limit!r}"
                )
        self.max_concurrency = (
            max_concurrency if max_concurrency is not None else resolved.execution.max_concurrency
        )
        self.concurrency_limits = limits

        install_default_handler()
        self._bus = EventBus(self.run_id)
        console = console_listener(pipeline.name)
        if console is not None:
            self._bus.add_listener(console[0], min_level=console[1])
        for listener in listeners:
            self._bus.add_listener(listener)

        self._resources = (
            ResourceManager(
                pipeline.resource_defs,
                resolved.resources,
                run_id=self.run_id,
                emit=self._bus.emit,
                owner=f"pipeline {pipeline.name!r}",
            )
            if pipeline.resource_defs
            else None
        )
        self._tracer = _tracing.run_tracer(enabled=tracing, tracer_provider=tracer_provider)
        self._executor = Executor(
            self.plan,
            run_id=self.run_id,
            emit=self._bus.emit,
            max_concurrency=self.max_concurrency,
            concurrency_limits=limits,
            fail_fast=fail_fast,
            resources=self._resources,
            tracer=self._tracer,
            tags=self.tags,
            run_config=self.run_config,
            solid_configs={
                name: sc.config for name, sc in resolved.solids.items() if sc.config is not None
            },
        )
        self.status = RunStatus.NOT_STARTED
        self._result: PipelineRunResult | None = None
        self._finished = anyio.Event()
        self._start_time = 0.0

    # --- what users call -----------------------------------------------------------------------

    def events(self, *, after: int = -1) -> AsyncGenerator[Event, None]:
        """Every event of the run from the start (or after seq ``after``), then live ones until it ends."""
        return self._bus.stream(after=after)

    @property
    def event_log(self) -> list[Event]:
        """The events emitted so far (a live list: do not mutate)."""
        return self._bus.events

    def cancel(self) -> None:
        """Ask the run to stop: running steps are cancelled, pending ones never start.

        The run then ends CANCELED, with resources torn down.  Safe to call at
        any time, more than once, and after the run ended.
        """
        if self._result is None:
            self._executor.cancel()

    async def result(self) -> PipelineRunResult:
        """Wait for the run to end and return its result."""
        await self._finished.wait()
        assert self._result is not None
        return self._result

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def trace_id(self) -> str | None:
        return self._tracer.trace_id if self._tracer is not None else None

    # --- the run itself --------------------------------------------------------------------------

    async def _execute(self) -> None:
        recorder: Any = contextlib.nullcontext()
        if self._storage is not None:
            import socket

            from ..storage import RunRecord, RunRecorder

            record = RunRecord(
                run_id=self.run_id,
                pipeline_name=self.pipeline.name,
                status=RunStatus.STARTED,
                run_config=self.run_config,
                tags=self.tags,
                start_time=time.time(),
                end_time=None,
                parent_run_id=self.parent_run_id,
                pid=os.getpid(),
                hostname=socket.gethostname(),
                failure_reason=None,
            )
            recorder = RunRecorder(self._storage, record)
        async with recorder as sink:
            if sink is not None:
                self._bus.add_listener(sink)
            await self._execute_recorded()

    async def _execute_recorded(self) -> None:
        bus = self._bus
        tracer = self._tracer
        self._start_time = time.time()
        self.status = RunStatus.STARTED
        token = None
        if tracer is not None:
            tracer.start_run(pipeline_name=self.pipeline.name, run_id=self.run_id, tags=self.tags)
            token = tracer.attach_run()
        data: dict[str, Any] = {
            "pipeline_name": self.pipeline.name,
            "step_count": len(self.plan),
            "max_concurrency": self.max_concurrency,
            "tags": self.tags,
        }
        if tracer is not None:
            data["trace_id"] = tracer.trace_id
        bus.emit(
            EventType.RUN_START,
            None,
            logging.DEBUG,
            f"Started execution of run for {self.pipeline.name!r}.",
            data,
        )
        status = RunStatus.CANCELED
        try:
            status = await self._executor.run()
        finally:
            with anyio.CancelScope(shield=True):
                self._finish(status)
                if token is not None:
                    tracer.detach(token)  # type: ignore[union-attr]

    def _finish(self, status: RunStatus) -> None:
        end = time.time()
        states = self._executor.states
        failed = [s.step.key for s in states if s.status is StepStatus.FAILURE]
        skipped = sum(1 for s in states if s.status is StepStatus.SKIPPED)
        event_type, level = _RUN_END_EVENTS[status]
        if status is RunStatus.SUCCESS:
            message = f"Finished execution of run for {self.pipeline.name!r}."
        elif status is RunStatus.FAILURE:
            message = (
                f"Execution of run for {self.pipeline.name!r} failed. "
                f"Failed steps: {failed or 'none'}; skipped: {skipped}."
            )
        else:
            message = f"Execution of run for {self.pipeline.name!r} was canceled."
        self._bus.emit(
            event_type,
            None,
            level,
            message,
            {"duration": end - self._start_time, "failed_steps": failed, "skipped": skipped},
        )
        if self._tracer is not None:
            result = {
                RunStatus.SUCCESS: _tracing.SUCCESS,
                RunStatus.FAILURE: _tracing.FAILURE,
                RunStatus.CANCELED: _tracing.CANCELLATION,
            }[status]
            self._tracer.end_run(result)
        self.status = status
        outputs = {}
        exceptions = {}
        for state in states:
            if state.outputs is not None:
                outputs[state.step.key] = state.outputs
            if state.exception is not None and state.status is not StepStatus.SUCCESS:
                exceptions[state.step.key] = state.exception

        def step_results() -> dict[str, StepResult]:
            return {
                state.step.key: StepResult(
                    key=state.step.key,
                    solid_name=state.step.solid.name,
                    status=state.status,
                    attempts=state.attempts,
                    start_time=state.start,
                    end_time=state.end,
                    error=state.error,
                    skip_reason=state.skip_reason,
                )
                for state in states
            }

        self._result = PipelineRunResult(
            run_id=self.run_id,
            pipeline_name=self.pipeline.name,
            status=status,
            events=self._bus.events,
            step_results=LazyMapping(step_results),
            start_time=self._start_time,
            end_time=end,
            trace_id=self.trace_id,
            outputs=outputs,
            exceptions=exceptions,
        )
        self._bus.close()
        self._finished.set()


@contextlib.asynccontextmanager
async def open_run(
    pipeline: PipelineDefinition,
    run_config: Mapping[str, Any] | None = None,
    *,
    max_concurrency: int | None = None,
    concurrency_limits: Mapping[str, int] | None = None,
    tags: Mapping[str, str] | None = None,
    fail_fast: bool = False,
    storage: Any = None,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    tracing: bool = True,
    tracer_provider: Any = None,
    listeners: Iterable[Listener] = (),
) -> AsyncIterator[RunHandle]:
    """Start a run in the current task and hand back its :class:`RunHandle`.

    Config and wiring are checked before the block is entered (raising
    ``ConfigError`` / ``DefinitionError``, with nothing run).  Leaving the
    block waits for the run to end; an exception raised in the block cancels
    the run and propagates once the run has wound down.
    """
    handle = RunHandle(
        pipeline,
        run_config=run_config,
        max_concurrency=max_concurrency,
        concurrency_limits=concurrency_limits,
        tags=tags,
        fail_fast=fail_fast,
        storage=storage,
        run_id=run_id,
        parent_run_id=parent_run_id,
        tracing=tracing,
        tracer_provider=tracer_provider,
        listeners=listeners,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(handle._execute)
        try:
            yield handle
        except BaseException:
            handle.cancel()
            raise
