"""``execute_pipeline`` and its awaitable twin: a run from start to result in one call.

``execute_pipeline`` is a thin shell that starts an event loop and awaits
``execute_pipeline_async``, which opens a run with :func:`open_run`.  There is
one engine and one way a run happens; the entry points differ only at the edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._definitions import PipelineDefinition
from .._engine import Listener
from .._errors import EventLoopError
from ._options import RunOptions
from ._result import PipelineRunResult
from ._run import run_to_end

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from .._engine import StepExecutor
    from ..outputs import OutputStore
    from ..storage import RunStorage

__all__ = ["execute_pipeline", "execute_pipeline_async"]


async def execute_pipeline_async(
    pipeline: PipelineDefinition,
    run_config: Mapping[str, Any] | None = None,
    *,
    max_concurrency: int | None = None,
    concurrency_limits: Mapping[str, int] | None = None,
    raise_on_error: bool = True,
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
) -> PipelineRunResult:
    """Run ``pipeline`` inside the running event loop (asyncio or trio) and return its result.

    With ``raise_on_error=True`` a failed step's own exception is re-raised,
    after the run has ended cleanly (resources closed, events complete).
    Cancelling the calling scope cancels the run; the cancellation propagates
    after the run is recorded as CANCELED.  The run's spans go to the global
    OpenTelemetry tracer provider, or to ``tracer_provider`` when given (a test's
    in-memory exporter, or an application that keeps several providers).

    A library call inside the host's program: it prints nothing unless asked.
    Events go to the ``asyncdag`` logger for the host's own logging handlers;
    ``console=True`` prints them on stderr in Dagster's format when the host
    configured no logging (``None``: only when ``ASYNCDAG_LOG_LEVEL`` is set).
    ``resources={"http": client}`` hands the run objects the host owns, used as
    they are and never closed (a :class:`ResourceDefinition` there is set up and
    torn down by the run instead); they replace the pipeline's definitions of
    those keys.  ``cancel_is_error=False`` ends a cancelled run's and steps' spans
    with status UNSET rather than ERROR, for services where cancelling is routine.

    Stored outputs and re-execution (off unless asked for):

    - ``output_store`` keeps every step's outputs beyond the run (an
      :class:`~asyncdag.outputs.OutputStore`); ``persist_outputs=True`` keeps
      them in the default one, ``$ASYNCDAG_HOME/outputs``.  A value that
      cannot be stored fails its step.
    - ``reexecute_from=RUN_ID`` starts a run of the same pipeline as that
      recorded run (``storage`` must hold it), with its run config and tags
      unless given.  ``from_failure=True`` computes only what did not succeed
      there, and what depends on it; ``step_selection=["fetch*", "+summarize"]``
      only the selected solids.  Either way the others' outputs come from the
      parent run's store (or the run it took them from).  The new run stores
      its own outputs, in ``output_store`` or the default one.
    - ``step_selection`` without ``reexecute_from`` runs only the selected
      solids; inputs they read from other solids come from run config
      (``solids.<name>.inputs``), and a missing one is a ``ConfigError``
      naming it before anything runs.

    ``executor`` says where steps run: in this process (None, unless the run
    config's ``execution`` section says otherwise), or on a Dask cluster with
    ``DaskExecutor(...)``.
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
    return await execute_with_options(pipeline, run_config, options)


async def execute_with_options(
    pipeline: PipelineDefinition, run_config: Mapping[str, Any] | None, options: RunOptions
) -> PipelineRunResult:
    """:func:`execute_pipeline_async` with its options as one value."""
    return await run_to_end(pipeline, run_config, options)


def execute_pipeline(
    pipeline: PipelineDefinition,
    run_config: Mapping[str, Any] | None = None,
    *,
    max_concurrency: int | None = None,
    concurrency_limits: Mapping[str, int] | None = None,
    raise_on_error: bool = True,
    tags: Mapping[str, str] | None = None,
    fail_fast: bool = False,
    storage: RunStorage | None = None,
    run_id: str | None = None,
    parent_run_id: str | None = None,
    tracing: bool = True,
    tracer_provider: TracerProvider | None = None,
    listeners: Iterable[Listener] = (),
    resources: Mapping[str, Any] | None = None,
    console: bool | None = True,
    cancel_is_error: bool = True,
    output_store: OutputStore | None = None,
    persist_outputs: bool = False,
    reexecute_from: str | None = None,
    from_failure: bool = False,
    step_selection: Iterable[str] | None = None,
    executor: StepExecutor | None = None,
    backend: str = "asyncio",
) -> PipelineRunResult:
    """Run ``pipeline`` to the end, starting an event loop (``backend``: asyncio or trio).

    From code that is already inside an event loop, ``await
    execute_pipeline_async(...)`` instead: a blocking call there would stall
    the loop, so this raises :class:`EventLoopError`.  The options are
    :func:`execute_pipeline_async`'s, except that ``console`` defaults to True:
    a script run from a terminal shows what happened.
    :func:`execute_pipeline_async`'s (stored outputs and re-execution included).
    """
    try:
        token = anyio.lowlevel.current_token()
    except anyio.NoEventLoopError:
        library = None
    else:
        library = token.backend_class.__module__.rpartition("._")[2]
    if library is not None:
        raise EventLoopError(
            f"execute_pipeline() was called inside a running {library} event loop, where it "
            "would block the loop; use `await execute_pipeline_async(...)` instead"
        )
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
    return anyio.run(execute_with_options, pipeline, run_config, options, backend=backend)
