"""The worker side: what runs inside a Dask worker process for one attempt of a step.

It must live in an importable module (this one), never in a user's script:
cloudpickle copies a script's functions *by value, with their globals*, so a
registry kept there would be a fresh, empty copy in every task.  Here it is
one dict per worker process, keyed by run id, holding what a run keeps on a
worker for its whole length:

- a loop thread of the driver's anyio backend (an anyio blocking portal):
  async solids and async resources run there, not on the worker's own event
  loop, so a solid that blocks cannot freeze the worker's heartbeats, code
  written for trio runs under trio, a resource made on that loop is used on
  it, and a cancelled attempt is really cancelled there;
- the run's resources, set up by the engine's own :class:`ResourceManager`
  on that loop the first time a step on this worker needs them (once per
  worker per run), torn down by :func:`teardown_run` when the run ends;
- the cancel flag of each running attempt (``context.is_cancel_requested``);
- the dynamic items generator steps yielded, until :func:`take_item` hands
  each to Dask as a future of its own.

Sync solids run in the Dask worker thread the task was given.  Logs and
events go to the driver on the run's Dask event topic, in order, while the
step runs (:meth:`distributed.Worker.log_event`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import io
import itertools
import os
import pickle
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from .._engine import (
    ResourceManager,
    check_outputs,
    context_from_data,
    outputs_from_value,
    sort_item,
)
from .._errors import StepCanceledError
from .._events import EventType
from ._errors import OutputNotPicklable
from ._protocol import AttemptPayload, Source, Upstream, plain

__all__ = [
    "request_cancel",
    "run_attempt",
    "take_item",
    "teardown_run",
    "worker_activity",
]

_LOCK = threading.Lock()
_RUNS: dict[str, _WorkerRun] = {}
# Runs already torn down here: an attempt that reaches this worker late (its Dask task
# was cancelled while queued) must not bring the run's state back to life.
_CLOSED: collections.deque[str] = collections.deque(maxlen=1024)
_CLOSED_SET: set[str] = set()
# Unpickled code, by its bytes: every attempt of a solid carries the same bytes.
_CODE: dict[bytes, Any] = {}
_CODE_LIMIT = 256


class _WorkerRun:
    """What one run keeps on one worker process, from its first attempt here to its teardown."""

    def __init__(self, run_id: str, topic: str, backend: str) -> None:
        self.run_id = run_id
        self.topic = topic
        self.backend = backend
        self.lock = threading.Lock()
        self.portal: Any = None
        self._portal_cm: Any = None
        self.resources: ResourceManager | None = None
        self._hosted: Any = None
        # Attempt key -> (step key, cancel flag); the condition is notified when one ends.
        self.active: dict[str, tuple[str, threading.Event]] = {}
        self.idle = threading.Condition(_LOCK)
        self.tasks: dict[str, concurrent.futures.Future[Any]] = {}
        self.items: dict[str, Any] = {}
        # Events of the teardown are returned to the driver with its report, not sent.
        self.collected: list[dict[str, Any]] | None = None

    def loop(self) -> Any:
        """The run's loop thread on this worker (started on first use)."""
        with self.lock:
            if self.portal is None:
                from anyio.from_thread import start_blocking_portal

                self._portal_cm = start_blocking_portal(
                    self.backend, name=f"asyncdag-run-{self.run_id[:8]}"
                )
                self.portal = self._portal_cm.__enter__()
            return self.portal

    def send(self, message: dict[str, Any]) -> None:
        if self.collected is not None:
            self.collected.append(message)
            return
        from distributed import get_worker

        get_worker().log_event(self.topic, message)

    def resources_for(self, keys: frozenset[str], payload: AttemptPayload) -> Mapping[str, Any]:
        """The run's resources ``keys`` on this worker, set up on first use, once per run."""
        with self.lock:
            if self.resources is None:
                definitions, configs, given = _load(payload.resources)
                self.resources = ResourceManager(
                    definitions,
                    configs,
                    given=given,
                    run_id=self.run_id,
                    emit=_Emitter(self, ""),  # the run's own events, not a step's
                    owner=f"pipeline {payload.context.pipeline_name!r}",
                )
        portal = self.loop()
        with self.lock:
            if self._hosted is None:
                self._hosted = portal.wrap_async_context_manager(self.resources.hosted())
                self._hosted.__enter__()
        portal.call(self.resources.ensure, keys)
        return self.resources.values

    def close(self, grace: float) -> dict[str, Any]:
        """Cancel what still runs, wait up to ``grace`` seconds for it, tear resources down."""
        with _LOCK:
            for _step, flag in self.active.values():
                flag.set()
            for task in self.tasks.values():
                task.cancel()
            deadline = _now() + grace
            while self.active and _now() < deadline:
                self.idle.wait(max(0.0, deadline - _now()))
            still = sorted(step for step, _flag in self.active.values())
            self.collected = []
        if self._hosted is not None:
            with contextlib.suppress(Exception):
                self._hosted.__exit__(None, None, None)
        if self.portal is not None:
            with contextlib.suppress(RuntimeError):
                self.portal.call(self.portal.stop, True)
            self._portal_cm.__exit__(None, None, None)
        self.items.clear()
        return {"events": self.collected, "still_running": still}


class _Emitter:
    """The engine's ``Emit``, sending each event to the run's topic; ``key`` is the
    attempt's Dask key ("" for the run's own events: its resources')."""

    __slots__ = ("key", "run")

    def __init__(self, run: _WorkerRun, key: str) -> None:
        self.run = run
        self.key = key

    def __call__(
        self,
        type: EventType,
        /,
        *,
        step_key: str | None = None,
        level: int = 10,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        self.run.send(_event(self.key, type, step_key, level, message, data))


def _now() -> float:
    import time

    return time.monotonic()


def _event(
    key: str,
    type: EventType,
    step_key: str | None,
    level: int,
    message: str,
    data: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "k": "ev",
        "key": key,
        "type": type.value,
        "step_key": step_key,
        "level": level,
        "message": message,
        "data": plain(data) if data else None,
    }


def _run_for(payload: AttemptPayload) -> _WorkerRun:
    run_id = payload.context.run_id
    with _LOCK:
        if run_id in _CLOSED_SET:
            raise RuntimeError(
                f"{payload.describe()} reached this worker after run {run_id} ended here"
            )
        run = _RUNS.get(run_id)
        if run is None:
            run = _RUNS[run_id] = _WorkerRun(run_id, payload.topic, payload.backend)
        return run


def _load(blob: bytes) -> Any:
    """cloudpickle ``blob``, unpickled once per worker process."""
    with _LOCK:
        loaded = _CODE.get(blob)
    if loaded is None:
        import cloudpickle

        loaded = cloudpickle.loads(blob)
        with _LOCK:
            if len(_CODE) >= _CODE_LIMIT:
                _CODE.clear()
            _CODE[blob] = loaded
    return loaded


# --- the Dask task ------------------------------------------------------------------------


def run_attempt(payload: AttemptPayload, *upstreams: Any) -> dict[str, Any]:
    """One attempt of one step, in a Dask worker thread: the task every attempt submits.

    ``upstreams`` are the values of the upstream futures, which Dask brought to
    this worker (from its peers when needed; never through the driver).  The
    returned ``{output name: value}`` stays in this worker's memory until a
    downstream task (or the driver) asks for it.
    """
    run = _run_for(payload)
    key = payload.key
    step_key = payload.context.step_key
    cancel = threading.Event()
    with _LOCK:
        run.active[key] = (step_key, cancel)
    try:
        run.send({"k": "start", "key": key, "pid": os.getpid()})
        solid, outs = _load(payload.code)
        inputs = _inputs(payload, upstreams)
        required = payload.context.required_resources
        resources = run.resources_for(required, payload) if required else None

        with _span(payload) as span:
            context = context_from_data(
                payload.context,
                emit=_Emitter(run, key),
                resources=resources,
                span=span,
                cancel_requested=cancel.is_set,
            )
            args = (context,) if solid.takes_context else ()
            if solid.is_async_generator or solid.is_async:
                value = _on_run_loop(run, payload, solid, outs, args, inputs, cancel)
            elif solid.is_generator:
                value = _drain(run, payload, outs, solid.fn(*args, **inputs), cancel)
            else:
                value = outputs_from_value(step_key, outs, solid.fn(*args, **inputs))
        outputs = {"result": value} if outs is None else value
        if payload.check_pickle:
            for name, output in outputs.items():
                _check_pickles(payload, f"output {name!r}", output)
        if outs is not None:
            run.send({"k": "outs", "key": key, "names": list(outputs)})
        return outputs  # type: ignore[no-any-return]
    finally:
        with _LOCK:
            run.active.pop(key, None)
            run.idle.notify_all()


def _inputs(payload: AttemptPayload, upstreams: tuple[Any, ...]) -> dict[str, Any]:
    constants: tuple[Any, ...] = _load(payload.constants) if payload.constants else ()

    def value(source: Source) -> Any:
        if isinstance(source, Upstream):
            up = upstreams[source.index]
            return up if source.name is None else up[source.name]
        if isinstance(source, int):
            return constants[source]
        return [value(part) for part in source]

    return {name: value(source) for name, source in payload.inputs.items()}


def _on_run_loop(
    run: _WorkerRun,
    payload: AttemptPayload,
    solid: Any,
    outs: Any,
    args: tuple[Any, ...],
    inputs: dict[str, Any],
    cancel: threading.Event,
) -> Any:
    """An async solid (or async generator) on the run's loop thread; this Dask thread waits.

    The driver's cancel cancels it there (:func:`request_cancel`), and the
    current span follows it into that loop.
    """
    trace_context = _current_trace_context()
    step_key = payload.context.step_key

    async def call() -> Any:
        with _attached(trace_context):
            if solid.is_async_generator:
                return await _drain_async(run, payload, outs, solid.fn(*args, **inputs))
            return outputs_from_value(step_key, outs, await solid.fn(*args, **inputs))

    portal = run.loop()
    task = portal.start_task_soon(call)
    with _LOCK:
        run.tasks[payload.key] = task
    if cancel.is_set():  # cancelled before it was registered
        task.cancel()
    try:
        return task.result()
    except concurrent.futures.CancelledError:
        raise StepCanceledError(step_key) from None
    finally:
        with _LOCK:
            run.tasks.pop(payload.key, None)


def _drain(
    run: _WorkerRun, payload: AttemptPayload, outs: Any, gen: Any, cancel: threading.Event
) -> dict[str, Any]:
    """A sync generator solid, here: each dynamic item is kept on this worker and announced."""
    step_key = payload.context.step_key
    outputs: dict[str, Any] = {}
    numbers = itertools.count(1)
    try:
        for item in gen:
            dynamic = sort_item(step_key, outs, item, outputs)
            if dynamic is not None:
                _keep_item(run, payload, dynamic, next(numbers))
            if cancel.is_set():
                raise StepCanceledError(step_key)
    finally:
        gen.close()
    check_outputs(step_key, outs, outputs)
    return outputs


async def _drain_async(run: _WorkerRun, payload: AttemptPayload, outs: Any, gen: Any) -> Any:
    step_key = payload.context.step_key
    outputs: dict[str, Any] = {}
    numbers = itertools.count(1)
    try:
        async for item in gen:
            dynamic = sort_item(step_key, outs, item, outputs)
            if dynamic is not None:
                _keep_item(run, payload, dynamic, next(numbers))
    finally:
        import anyio

        with anyio.CancelScope(shield=True):
            await gen.aclose()
    check_outputs(step_key, outs, outputs)
    return outputs


def _keep_item(
    run: _WorkerRun, payload: AttemptPayload, dynamic: tuple[str, str, Any], number: int
) -> None:
    """Keep a yielded item here and tell the driver, which makes it a Dask future
    (:func:`take_item`) and starts its mapped steps at once."""
    output, mapping_key, value = dynamic
    if payload.check_pickle:
        _check_pickles(payload, f"output {output!r} item {mapping_key!r}", value)
    item_id = f"{payload.key}/{number}"
    with _LOCK:
        run.items[item_id] = value
    run.send(
        {
            "k": "item",
            "key": payload.key,
            "output": output,
            "mapping_key": mapping_key,
            "item": item_id,
        }
    )


def take_item(run_id: str, item_id: str) -> Any:
    """A dynamic item, out of the run's keep on this worker: the task that makes it a future."""
    with _LOCK:
        run = _RUNS.get(run_id)
        if run is not None and item_id in run.items:
            return run.items.pop(item_id)
    raise RuntimeError(
        f"dynamic item {item_id} of run {run_id} is no longer on this worker "
        "(the run ended, or the worker restarted)"
    )


def describe_value(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


class _NullSink(io.RawIOBase):
    """Pickling into this costs the walk of the object, not a copy of its bytes."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        return len(memoryview(data))


def _check_pickles(payload: AttemptPayload, what: str, value: Any) -> None:
    """Fail the step now, naming what cannot be pickled: later, a consumer on another worker
    would wait for it forever (Dask marks the transfer failed and keeps the task waiting)."""
    import cloudpickle

    try:
        cloudpickle.CloudPickler(_NullSink(), protocol=pickle.HIGHEST_PROTOCOL).dump(value)
    except Exception as exc:
        raise OutputNotPicklable(
            f"step {payload.context.step_key!r}: {what} of type {describe_value(value)} cannot "
            f"be pickled, so it cannot leave its Dask worker ({type(exc).__name__}: {exc}); "
            "return plain data, or pin the solid and its consumers to the driver with "
            "@solid(executor='local')"
        ) from None


# --- tracing --------------------------------------------------------------------------------


@contextlib.contextmanager
def _span(payload: AttemptPayload) -> Iterator[Any]:
    """The worker's span for the attempt, a child of the driver's step span (W3C trace
    context).  It is recorded when this worker process has a tracer provider and an
    exporter (``OTEL_*`` variables, or a worker plugin); the context propagates anyway."""
    carrier = payload.context.trace_context
    if carrier is None:
        yield None
        return
    from opentelemetry import trace
    from opentelemetry.propagate import extract

    tracer = trace.get_tracer("asyncdag.dask")
    with tracer.start_as_current_span(
        f"dask {payload.context.step_key}",
        context=extract(dict(carrier)),
        attributes={
            "asyncdag.run_id": payload.context.run_id,
            "asyncdag.step_key": payload.context.step_key,
            "asyncdag.attempt": payload.context.retry_number + 1,
            "dask.key": payload.key,
        },
    ) as span:
        yield span


def _current_trace_context() -> Any:
    from opentelemetry import context

    return context.get_current()


@contextlib.contextmanager
def _attached(trace_context: Any) -> Iterator[None]:
    from opentelemetry import context

    token = context.attach(trace_context)
    try:
        yield
    finally:
        context.detach(token)


# --- control, from the driver (client.run: on the worker's event loop, must not block) -----


def request_cancel(run_id: str, key: str) -> str:
    """The driver cancelled attempt ``key``: flag it for a sync solid, cancel an async one."""
    with _LOCK:
        run = _RUNS.get(run_id)
        entry = run.active.get(key) if run is not None else None
        if run is None or entry is None:
            return "not here"
        entry[1].set()
        task = run.tasks.get(key)
    if task is not None:
        task.cancel()
        return "cancelled"
    return "flagged"


async def teardown_run(run_id: str, grace: float) -> dict[str, Any]:
    """The run ended: cancel its attempts still here, wait up to ``grace`` seconds for them,
    tear its resources down (in a thread: the worker's loop keeps serving heartbeats)."""
    with _LOCK:
        run = _RUNS.pop(run_id, None)
        if run_id not in _CLOSED_SET:
            if len(_CLOSED) == _CLOSED.maxlen:
                _CLOSED_SET.discard(_CLOSED[0])
            _CLOSED.append(run_id)
            _CLOSED_SET.add(run_id)
    if run is None:
        return {"events": [], "still_running": []}
    return await asyncio.to_thread(run.close, grace)


def worker_activity(dask_worker: Any = None) -> dict[str, Any]:
    """What this worker runs now (for tests and diagnostics: ``client.run(worker_activity)``)."""
    with _LOCK:
        runs = {run_id: sorted(s for s, _f in run.active.values()) for run_id, run in _RUNS.items()}
    return {"executing": dask_worker.state.executing_count, "runs": runs}
