"""The step-launcher seam: where one attempt of a step's compute runs.

The engine decides *when* a step runs: it waits for the step's inputs, takes
a worker and a pool slot, sets up the resources the solid declared, emits
STEP_START, opens the attempt's span and applies the solid's timeout.  Then it
hands the attempt to a :class:`StepLauncher`, which decides *where* the
solid's function runs and gives back its outputs.  Whatever the launcher
raises, the engine turns into the attempt's outcome: retry (with the solid's
policy and a wait that holds no slot), failure, cancellation; then events,
the span's end, hooks, and the steps that wait on it.  So every launcher gets
retries, timeouts, pools, events and spans for free, and this is the place
another executor plugs in.

:class:`~asyncdag._engine._inprocess.InProcessLauncher` is the default: async
solids on the event loop, sync ones in a worker thread, generators drained
with their dynamic items handed back as they are yielded.  A launcher that
runs compute elsewhere (a Dask worker, say) builds the solid's context there
from :meth:`RunScope.context_data` and shapes its outputs with the helpers
of :mod:`asyncdag._engine._compute`, the same ones the in-process launcher
uses, so a solid behaves the same wherever it runs.  A launcher may also
serve some steps itself and hand the others to another launcher (a solid
pinned to this process, a step whose outputs are loaded from a parent run's
store instead of computed): :meth:`StepLauncher.run_attempt` simply returns
the other launcher's awaitable, and says with ``uses_run_resources(step)``
that the engine need not set the run's resources up in this process for the
steps it sends elsewhere.

A launcher that needs the whole run around it (a client connected to a
cluster, worker processes started and stopped) comes from a
:class:`StepExecutor`, what ``execute_pipeline(..., executor=...)`` takes: the
engine opens it once per run, after RUN_START, and closes it after the last
step, before the event that ends the run.

Stored outputs and re-execution sit around the launcher, not in it
(:mod:`~asyncdag._engine._keeper`): a step a re-execution reuses never
reaches any launcher (the engine hands out the parent run's stored values),
and when the run keeps an output store, the engine writes what
``run_attempt`` returned after it returned.  A launcher whose outputs are
handles of its own (a remote future) must give values in a run that stores
outputs: its ``values_of`` gives them for the store (see :class:`StepLauncher`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import anyio

    from .._events import EventType
    from .._plan import Step
    from ._compute import ContextData
    from ._context import SolidContext
    from ._resources import ResourceManager

__all__ = ["RunScope", "StepAttempt", "StepExecutor", "StepLauncher"]


class StepAttempt(Protocol):
    """One attempt of one step, as the engine hands it to a launcher.

    Read-only for launchers.  The engine keeps it for the attempt's length
    only (inputs are released when the attempt ends).
    """

    @property
    def step(self) -> Step:
        """What runs: ``step.solid`` (its function and kind), ``step.key``,
        ``step.outs`` (None: the single output ``result``), ``step.mapping_key``."""
        ...

    @property
    def number(self) -> int:
        """1 for the first attempt, 2 for the first retry... (``context.retry_number + 1``)."""
        ...

    @property
    def inputs(self) -> Mapping[str, Any]:
        """The solid's input values by parameter name.

        An input fed by another step's output is whatever that step's launcher
        returned for it, so a launcher may pass handles of its own (a remote
        future) from step to step without fetching the value.
        """
        ...

    @property
    def span(self) -> Any:
        """The attempt's OpenTelemetry span, current while the engine awaits the launcher
        (None when the run is not traced)."""
        ...


class RunScope(Protocol):
    """The run an attempt belongs to, and the engine's services to a launcher."""

    run_id: str
    pipeline_name: str
    tags: Mapping[str, str]
    run_config: Mapping[str, Any]
    thread_limiter: anyio.CapacityLimiter | None
    """Bounds the threads sync solids use (the run's ``max_concurrency``; None: anyio's default)."""
    resources: ResourceManager | None
    """The run's resources (None: the pipeline declares none).  ``definitions`` and
    ``configs`` let a launcher set them up where its steps run instead."""

    def emit(
        self,
        type: EventType,
        /,
        *,
        step_key: str | None = None,
        level: int = ...,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> Any:
        """Record an event of the run (a log line that came back from a worker, say).

        Call it on the event loop's thread; from another thread it hops there.
        """
        ...

    def solid_context(self, attempt: StepAttempt) -> SolidContext:
        """The ``context`` for a solid running in this process: logs become this run's
        events at once, resources are this run's, the span is the attempt's."""
        ...

    def context_data(self, attempt: StepAttempt) -> ContextData:
        """The same context as plain, picklable data, for a solid running in another
        process (:func:`~asyncdag._engine._compute.context_from_data` rebuilds it there)."""
        ...

    def fan_out(self, attempt: StepAttempt, output: str, mapping_key: str, value: Any) -> None:
        """A generator solid yielded a dynamic item: start its mapped steps now.

        Call it on the event loop's thread, in the order items were yielded,
        with ``output`` and ``mapping_key`` as
        :func:`~asyncdag._engine._compute.sort_item` returned them; it raises
        :class:`~asyncdag.OutputError` for a mapping key yielded twice and
        once the attempt has ended.
        """
        ...

    def with_inputs(self, attempt: StepAttempt, inputs: Mapping[str, Any]) -> StepAttempt:
        """The attempt with other input values: a launcher that fetched its own handles'
        values hands this to another launcher (the in-process one, say)."""
        ...

    def outputs(self) -> Iterator[MutableMapping[str, Any]]:
        """The outputs (``{output name: value}``) of every step that succeeded so far.

        They write through to the engine's own state: a launcher whose outputs are
        handles of its own may replace them with their values before its run ends, so
        the run's result holds values (``result.output_for_solid``).
        """
        ...

    def outlived(self, attempt: StepAttempt, still_running: Callable[[], bool]) -> None:
        """The attempt was cancelled (or timed out) but left its compute running, since
        a thread cannot be interrupted.

        Call it before the cancellation propagates.  The step's STEP_CANCELED or
        STEP_FAILURE event says ``"thread_abandoned": true``; the run then gives
        the compute a short grace period to notice (``context.is_cancel_requested``)
        and finish, polling ``still_running``, before it tears resources down
        and ends, and says which steps still run if they have not finished by then.
        """
        ...


class StepLauncher(Protocol):
    """Runs one attempt of a step's compute and returns its outputs.

    ``run_attempt`` is an async method, or a plain one returning an awaitable
    (the in-process launcher returns an async solid's own coroutine, so the
    commonest step pays for no frame of ours).  Its contract:

    - Return the attempt's outputs: for a step whose ``step.outs`` is None,
      the solid's return value (its one output, ``result``); otherwise a dict
      ``{output name: value}`` of what it produced, shaped and checked as
      :func:`~asyncdag._engine._compute.outputs_from_value` does (a generator
      solid's dynamic items go to :meth:`RunScope.fan_out` as they come instead).
      Values may be handles of the launcher's own, as for :attr:`StepAttempt.inputs`.
    - Raise what the solid raised (any exception, ``BaseException`` included):
      the engine decides retries and records failures.  Never retry inside.
    - On cancellation (the run's, or the solid's timeout), stop the compute and
      let the backend's cancellation exception propagate; if the compute cannot
      be stopped, say so with :meth:`RunScope.outlived` first.
    - Emit no STEP_* events and open no spans: the engine does.  Logs of the
      solid go through its ``context.log``.

    A launcher may also define ``uses_run_resources(step) -> bool``: False for
    a step whose solid does not run in this process, so the engine does not set
    the run's resources up here for it (the launcher does, where it runs).
    Without it, every step uses them.  A launcher whose outputs are handles of
    its own defines ``async values_of(outputs) -> outputs``, the values behind
    them: the engine calls it only in a run that stores its outputs, for the
    store alone (downstream steps still receive the handles).
    """

    def run_attempt(self, run: RunScope, attempt: StepAttempt) -> Awaitable[Any]: ...


class StepExecutor(Protocol):
    """Where a run's steps run, as ``executor=`` takes it: opened once per run.

    ``open_launcher(run)`` is entered after RUN_START, inside the run's span,
    and gives the :class:`StepLauncher` every step of the run goes to; it is
    exited once every step has ended (also when the run failed or was
    cancelled), before the event that ends the run, so what it set up
    elsewhere is torn down by then.  An exception from entering it fails the
    run with that error, and no step starts.
    """

    def open_launcher(self, run: RunScope) -> AbstractAsyncContextManager[StepLauncher]: ...
