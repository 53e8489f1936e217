"""A run in progress: :func:`open_run` starts one and hands back its :class:`RunHandle`.

Every way of running a pipeline (``execute_pipeline*``, the CLI, the UI) goes
through here, so there is one engine and one way a run happens.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._definitions import PipelineDefinition, ResourceDefinition, check_resources_bound
from .._engine import EventBus, Executor, Listener, ResourceManager, _tracing
from .._errors import AsyncdagError, DefinitionError, PipelineRunCanceled
from .._events import Event, RunStatus, StepStatus
from .._plan import ExecutionPlan
from ._console import run_log_listener
from ._lineage import Lineage, pipeline_origin, prepare_lineage
from ._options import RunOptions
from ._result import (
    LazyMapping,
    PipelineRunResult,
    RunSteps,
    StepOutputs,
    StepResults,
    mapped_outputs,
)

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .._engine import StepExecutor
    from ..config import ExecutionConfig
    from ..outputs import OutputStore
    from ..storage import RunStorage

__all__ = ["RunHandle", "open_run", "run_to_end"]


class RunHandle:
    """A run in progress: watch its events, cancel it, await its result.

    Get one from ``async with open_run(pipeline) as run:``.  Leaving the block
    waits for the run to end; an exception in the block cancels the run first.
    """

    def __init__(
        self,
        pipeline: PipelineDefinition,
        run_config: Mapping[str, Any] | None,
        options: RunOptions,
        lineage: Lineage | None = None,
    ) -> None:
        if not isinstance(pipeline, PipelineDefinition):
            raise DefinitionError(
                f"expected a pipeline made with @pipeline, got {pipeline!r}; decorate the "
                "pipeline's body function with @pipeline"
            )
        max_concurrency = options.max_concurrency
        if max_concurrency is not None and max_concurrency < 1:
            raise AsyncdagError(
                f"max_concurrency must be >= 1 (or None for no bound), got {max_concurrency}"
            )
        self.pipeline = pipeline
        self.options = options
        run_id = options.run_id
        if run_id is None:
            import uuid  # imported on first run: it drags in platform and random

            run_id = str(uuid.uuid4())
        self.run_id = run_id
        if lineage is None:
            lineage = Lineage(parent_run_id=options.parent_run_id, tags=options.tags)
        else:
            run_config = lineage.run_config
        self.lineage = lineage
        self.parent_run_id = lineage.parent_run_id
        self.root_run_id = lineage.root_run_id
        tags = lineage.tags or {}
        self.tags = {**pipeline.tags, **{str(k): str(v) for k, v in tags.items()}}

        # Everything that can be wrong with the input is found here, before anything runs.
        from ..config import resolve_run_config

        definitions, given = _run_resources(pipeline, options.resources)
        subset = lineage.subset
        resolved = resolve_run_config(
            pipeline,
            run_config,
            resource_defs=definitions if options.resources else None,
            given_resources=given.keys(),
            computed=subset.computed if subset is not None else None,
            cut=subset.cut if subset is not None else None,
        )
        self.run_config: dict[str, Any] = dict(resolved.raw)
        configured = [(name, resolved.solids[name]) for name in resolved.configured]
        self.plan = ExecutionPlan.for_pipeline(
            pipeline,
            input_values={name: sc.inputs for name, sc in configured if sc.inputs},
            subset=subset,
        )
        #: Where this run stores its outputs (None: it keeps none).
        self.output_store = _output_store(options, reads=bool(self.plan.reused))
        limits = dict(resolved.execution.concurrency_limits)
        limits.update(options.concurrency_limits or {})
        for pool, limit in limits.items():
            if not isinstance(limit, int) or limit < 1:
                raise AsyncdagError(
                    f"concurrency_limits[{pool!r}] must be an int >= 1, got {limit!r}"
                )
        self.max_concurrency = (
            max_concurrency if max_concurrency is not None else resolved.execution.max_concurrency
        )
        self.concurrency_limits = limits

        self._bus = EventBus(self.run_id)
        log = run_log_listener(pipeline.name, console=options.console)
        if log is not None:
            self._bus.add_listener(log[0], min_level=log[1])
        for listener in options.listeners:
            self._bus.add_listener(listener)

        self._resources = (
            ResourceManager(
                definitions,
                resolved.resources,
                run_id=self.run_id,
                emit=self._bus.emit,
                owner=f"pipeline {pipeline.name!r}",
                given=given,
            )
            if definitions or given
            else None
        )
        self._tracer = _tracing.run_tracer(
            enabled=options.tracing,
            tracer_provider=options.tracer_provider,
            cancel_is_error=options.cancel_is_error,
        )
        io = None
        start_data = lineage.run_start_data()
        if self.output_store is not None:
            from ._stored import StoreIO

            io = StoreIO(self.output_store)
            start_data["outputs_stored"] = True
        origin = options.origin if options.origin is not None else pipeline_origin(pipeline)
        if origin:
            start_data["origin"] = dict(origin)
        self._executor = Executor(
            self.plan,
            run_id=self.run_id,
            emit=self._bus.emit,
            max_concurrency=self.max_concurrency,
            concurrency_limits=limits,
            fail_fast=options.fail_fast,
            resources=self._resources,
            tracer=self._tracer,
            tags=self.tags,
            run_config=self.run_config,
            solid_configs={name: sc.config for name, sc in configured if sc.config is not None},
            launcher=options.launcher,
            emit_step=self._bus.emit_step,
            outputs=io,
            run_start_data=start_data,
            step_executor=(
                options.executor
                if options.executor is not None
                else _executor_from_config(resolved.execution)
            ),
        )
        self.status = RunStatus.NOT_STARTED
        self._result: PipelineRunResult | None = None
        self._finished: anyio.Event | None = None  # made by the first result() that waits

    # --- what users call -----------------------------------------------------------------------

    def events(self, *, after: int = -1) -> AsyncGenerator[Event, None]:
        """Every event of the run from the start (or after seq ``after``), then live ones until it ends."""
        return self._bus.stream(after=after)

    @property
    def event_log(self) -> Sequence[Event]:
        """The events emitted so far: a live, read-only list that grows as the run goes on."""
        return self._bus.events

    def cancel(self) -> None:
        """Ask the run to stop: running steps are cancelled, pending ones never start.

        The run then ends CANCELED, with resources torn down.  Safe to call at
        any time, more than once, and after the run ended.
        """
        if self._result is None:
            self._executor.cancel()

    async def result(self) -> PipelineRunResult:
        """Wait for the run to end and return its result.

        When the run was opened with ``raise_on_error=True``, a run that did not
        succeed raises instead: a failed step's own exception (the first in plan
        order), or :class:`~asyncdag.PipelineRunCanceled` for a cancelled run.
        """
        if self._result is None:
            if self._finished is None:
                self._finished = anyio.Event()
            await self._finished.wait()
        else:
            await anyio.lowlevel.checkpoint()  # as waiting on an event already set does
        assert self._result is not None
        if self.options.raise_on_error:
            raise_for(self._result)
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
        storage = self.options.storage
        if storage is not None:
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
                root_run_id=self.root_run_id,
                pid=os.getpid(),
                hostname=socket.gethostname(),
                failure_reason=None,
            )
            recorder = RunRecorder(storage, record)
        async with recorder as sink:
            if sink is not None:
                self._bus.add_listener(sink)
            self.status = RunStatus.STARTED
            status = RunStatus.CANCELED
            try:
                status = await self._executor.run()
            finally:
                self._set_result(status)

    def _set_result(self, status: RunStatus) -> None:
        """The run ended (its last event is out): build its result and wake whoever waits.

        Nothing here is per step: outputs and step results are read from the
        run's states when asked for.
        """
        executor = self._executor
        states = executor.states
        self.status = status
        exceptions = {
            state.step.key: state.exception
            for state in executor.raised
            if state.status is not StepStatus.SUCCESS and state.exception is not None
        }
        steps = RunSteps(states, self.plan.by_key, executor.dynamic)
        self._result = PipelineRunResult(
            run_exception=executor.run_error,
            run_id=self.run_id,
            pipeline_name=self.pipeline.name,
            status=status,
            events=self._bus.events,
            step_results=StepResults(steps),
            start_time=executor.start_time,
            end_time=executor.end_time,
            trace_id=self.trace_id,
            outputs=StepOutputs(steps),
            exceptions=exceptions,
            mapped=LazyMapping(lambda: mapped_outputs(self.pipeline, states)),
            graphs=self.pipeline.graphs,
        )
        self._bus.close()
        if self._finished is not None:
            self._finished.set()


def _executor_from_config(execution: ExecutionConfig) -> StepExecutor | None:
    """The executor the run config's ``execution`` section names (None: in this process)."""
    if execution.dask is None:
        return None
    from ..dask import DaskExecutor

    return DaskExecutor.from_config(execution.dask)


def raise_for(result: PipelineRunResult) -> None:
    """Raise what ``raise_on_error=True`` promises for a run that did not succeed."""
    if result.status is RunStatus.CANCELED:
        raise PipelineRunCanceled(
            f"run {result.run_id} of {result.pipeline_name!r} was canceled; "
            "pass raise_on_error=False to get its result instead",
            run_id=result.run_id,
        )
    if result.status is not RunStatus.FAILURE:
        return
    steps = result.step_results.values()
    failed = [step for step in steps if step.status is StepStatus.FAILURE]
    for step in [*failed, *steps]:  # a failed step's own exception first, in plan order
        exc = result.exception_for_step(step.key)
        if exc is not None:
            raise exc
    if result.run_exception is not None:  # no step failed: its executor did not start
        raise result.run_exception
    raise AsyncdagError(f"run {result.run_id} of {result.pipeline_name!r} failed")


def _run_resources(
    pipeline: PipelineDefinition, resources: Mapping[str, Any] | None
) -> tuple[Mapping[str, ResourceDefinition], dict[str, Any]]:
    """The resource definitions a run sets up, and the ready values it was given.

    A value in ``resources`` replaces the pipeline's definition of its key (or adds
    the key): a :class:`ResourceDefinition` is set up and torn down by the run like
    the pipeline's own, anything else is used as it is.  Raises
    :class:`DefinitionError` when a solid requires a key neither bound nor given
    (the :class:`ResourceManager` checks what resources require).
    """
    if not resources:
        check_resources_bound(pipeline, pipeline.resource_defs)
        return pipeline.resource_defs, {}
    definitions = dict(pipeline.resource_defs)
    given: dict[str, Any] = {}
    for key, value in resources.items():
        if not isinstance(key, str) or not key:
            raise DefinitionError(
                f"resources= keys are the resource keys solids require, got {key!r}; "
                "use the key of required_resources={...}"
            )
        if isinstance(value, ResourceDefinition):
            definitions[key] = value
        else:
            definitions.pop(key, None)
            given[key] = value
    check_resources_bound(pipeline, definitions, given.keys())
    return definitions, given


@contextlib.asynccontextmanager
async def open_run(
    pipeline: PipelineDefinition,
    run_config: Mapping[str, Any] | None = None,
    *,
    max_concurrency: int | None = None,
    concurrency_limits: Mapping[str, int] | None = None,
    raise_on_error: bool = False,
    tags: Mapping[str, str] | None = None,
    fail_fast: bool = False,
    storage: RunStorage | None = None,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    listeners: Iterable[Listener] = (),
    resources: Mapping[str, Any] | None = None,
    console: bool | None = None,
    cancel_is_error: bool = True,
    output_store: OutputStore | None = None,
    persist_outputs: bool = False,
    reexecute_from: str | None = None,
    from_failure: bool = False,
    step_selection: Iterable[str] | None = None,
    executor: StepExecutor | None = None,
) -> AsyncIterator[RunHandle]:
    """Start a run in the current task and hand back its :class:`RunHandle`.

    Config and wiring are checked before the block is entered (raising
    ``ConfigError`` / ``DefinitionError`` / ``ReexecutionError``, with nothing
    run).  Leaving the block waits for the run to end; an exception raised in
    the block cancels the run and propagates once the run has wound down.
    The other options are :func:`~asyncdag.execute_pipeline_async`'s.

    A handle is for watching a run, so by default ``await run.result()``
    returns whatever the outcome.  With ``raise_on_error=True`` it raises
    instead when the run did not succeed: the failed step's own exception, or
    :class:`~asyncdag.PipelineRunCanceled` when the run was cancelled.
    Leaving the block never raises for the run's outcome.
    ``executor`` says where steps run (see :func:`~asyncdag.execute_pipeline_async`).
    """
    options = RunOptions(
        max_concurrency=max_concurrency,
        concurrency_limits=concurrency_limits,
        raise_on_error=raise_on_error,
        tags=tags,
        fail_fast=fail_fast,
        storage=storage,
        run_id=run_id,
        parent_run_id=parent_run_id,
        tracing=tracing,
        tracer_provider=tracer_provider,
        listeners=listeners,
        resources=resources,
        console=console,
        cancel_is_error=cancel_is_error,
        output_store=output_store,
        persist_outputs=persist_outputs,
        reexecute_from=reexecute_from,
        from_failure=from_failure,
        step_selection=step_selection,
        executor=executor,
    )
    async with run_with_options(pipeline, run_config, options) as handle:
        yield handle


async def run_to_end(
    pipeline: PipelineDefinition, run_config: Mapping[str, Any] | None, options: RunOptions
) -> PipelineRunResult:
    """One run from start to result in the caller's own task (``execute_pipeline_async``).

    Nobody else watches the run while it goes, so it needs no task of its own nor a
    task group to hold one: a web service awaiting hundreds of runs at once saves
    their cost on every run.
    """
    handle = RunHandle(pipeline, run_config, options, await _lineage(pipeline, run_config, options))
    try:
        await handle._execute()
    except Exception as exc:
        # What callers got when the run had a task of its own: its error in a group.
        raise BaseExceptionGroup("unhandled errors in a TaskGroup", [exc]) from None
    result = handle._result
    assert result is not None
    if options.raise_on_error:
        raise_for(result)
    return result


@contextlib.asynccontextmanager
async def run_with_options(
    pipeline: PipelineDefinition, run_config: Mapping[str, Any] | None, options: RunOptions
) -> AsyncIterator[RunHandle]:
    """:func:`open_run` with its options as one value (what the other entry points call)."""
    handle = RunHandle(pipeline, run_config, options, await _lineage(pipeline, run_config, options))
    async with anyio.create_task_group() as tg:
        tg.start_soon(handle._execute)
        try:
            yield handle
        except BaseException:
            handle.cancel()
            raise


async def _lineage(
    pipeline: PipelineDefinition, run_config: Mapping[str, Any] | None, options: RunOptions
) -> Lineage | None:
    """What a re-execution or a step selection runs and reuses (None: a plain run)."""
    if (
        options.reexecute_from is not None
        or options.step_selection is not None
        or options.from_failure
    ):
        return await prepare_lineage(pipeline, run_config, options)
    return None


def _output_store(options: RunOptions, *, reads: bool) -> OutputStore | None:
    """The store a run keeps its outputs in: the one given; the default location when asked
    (``persist_outputs``), or when it reuses an earlier run's outputs (it reads them from there
    and keeps its own beside them, so it can be re-executed in turn)."""
    if options.output_store is not None:
        return options.output_store
    if options.persist_outputs or reads or options.reexecute_from is not None:
        from ..outputs import FilesystemOutputStore

        return FilesystemOutputStore()
    return None
