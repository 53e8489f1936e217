"""The driver's side of a run on Dask: the launcher the engine hands each attempt to.

The engine keeps everything it does for any launcher (dependencies, bounds,
pools, retries, timeouts, cancellation, events, spans, hooks); this launcher
only decides where an attempt's compute runs and how its values travel:

- A step's outputs stay on the worker that made them.  The launcher returns
  :class:`Remote` handles (a Dask future and an output name), the engine
  passes them on as inputs, and a downstream task receives the values on its
  worker, from its peers.  The driver fetches a value only when it needs one:
  for a solid pinned to the driver (``@solid(executor="local")``), and when the
  run ends, so that ``result.output_for_solid`` works as in process
  (``DaskExecutor(fetch_outputs=False)`` leaves them on the cluster).
- Worker logs and events come back on the run's Dask event topic and are
  emitted as the run's own, in order, while the step runs; all of an
  attempt's have arrived when its future finishes.
- A generator step's dynamic items stay on its worker too: the worker
  announces each mapping key as it is yielded, the driver makes the item a
  future of its own at once (a small task on that worker) and fans out, so
  mapped steps start while the generator goes on, wherever Dask places them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from .._definitions import DASK_RESOURCES_TAG
from .._engine import InProcessLauncher, RunScope, StepAttempt
from .._events import EventType
from ._bridge import ClientHost
from ._code import CodeShipper
from ._errors import DaskUnavailable
from ._protocol import AttemptPayload, Source, Upstream
from ._session import DaskSession

if TYPE_CHECKING:
    from .._engine import ResourceManager
    from .._plan import Step
    from ._executor import DaskExecutor

__all__ = ["DaskLauncher", "Remote", "open_launcher"]


class Remote:
    """A value that stays on a Dask worker: output ``name`` of an attempt's future (or, with
    ``name`` None, the future's whole value: a dynamic item)."""

    __slots__ = ("future", "label", "name")

    def __init__(self, future: Any, name: str | None, label: str) -> None:
        self.future = future
        self.name = name
        self.label = label

    def __repr__(self) -> str:
        return f"<{self.label} on the Dask cluster (not fetched)>"


class _Sink:
    """What arrives from the worker for one running attempt."""

    __slots__ = ("attempt", "error", "names", "run")

    def __init__(self, run: RunScope, attempt: StepAttempt) -> None:
        self.run = run
        self.attempt = attempt
        self.names: list[str] | None = None
        self.error: BaseException | None = None


@contextlib.asynccontextmanager
async def open_launcher(executor: DaskExecutor, run: RunScope) -> AsyncIterator[DaskLauncher]:
    """The run's launcher, connected to the cluster for the run's length (see
    :meth:`~asyncdag.DaskExecutor.open_launcher`)."""
    try:
        import cloudpickle  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise DaskUnavailable(
            f"DaskExecutor needs Dask's distributed scheduler ({exc}); install it with "
            "pip install 'asyncdag[dask]'"
        ) from exc
    async with ClientHost(executor.bridge) as host:
        launcher = DaskLauncher(executor, host, run)
        try:
            await host.call(launcher.session.start)
            launcher.announce()
            yield launcher
            if executor.fetch_outputs:
                await launcher.fetch_outputs()
        finally:
            with anyio.CancelScope(shield=True):
                await launcher.close()


class DaskLauncher:
    """Runs a run's attempts on a Dask cluster (and those pinned to the driver, here)."""

    def __init__(self, executor: DaskExecutor, host: ClientHost, run: RunScope) -> None:
        self.executor = executor
        self.host = host
        self.run = run
        self.session = DaskSession(executor, run.run_id, self._on_message)
        self._local = InProcessLauncher()
        self._code = CodeShipper()
        self._backend = _backend_name()
        self._sinks: dict[str, _Sink] = {}
        self._inbox: deque[dict[str, Any]] = deque()
        self._drain_scheduled = False
        self._dask_resources: dict[int, tuple[Any, Mapping[str, float] | None]] = {}

    def __repr__(self) -> str:
        return f"<DaskLauncher run={self.run.run_id} scheduler={self.session.address}>"

    # --- the StepLauncher contract --------------------------------------------------------------

    def uses_run_resources(self, step: Step) -> bool:
        """Only steps pinned to the driver use resources set up here; the others get
        theirs on their worker."""
        return step.solid.executor == "local"

    def run_attempt(self, run: RunScope, attempt: StepAttempt) -> Awaitable[Any]:
        if attempt.step.solid.executor == "local":
            return self._run_here(run, attempt)
        return self._run_on_cluster(run, attempt)

    async def _run_here(self, run: RunScope, attempt: StepAttempt) -> Any:
        """A solid pinned to the driver: its inputs' values come here first."""
        inputs = attempt.inputs
        if any(_has_remote(value) for value in inputs.values()):
            attempt = run.with_inputs(attempt, await self._fetch_inputs(inputs))
        return await self._local.run_attempt(run, attempt)

    async def _run_on_cluster(self, run: RunScope, attempt: StepAttempt) -> Any:
        step = attempt.step
        payload, upstream = self._payload(run, attempt)
        sink = self._sinks[payload.key] = _Sink(run, attempt)
        try:
            future = await self.host.call(
                self.session.attempt, payload, upstream, self._resources_of(step)
            )
        except Exception as exc:
            if sink.error is not None:
                raise sink.error from exc
            raise
        finally:
            self._drain()  # what arrived with the attempt's end, before the engine goes on
            del self._sinks[payload.key]
        if sink.error is not None:
            raise sink.error
        if step.outs is None:
            return Remote(future, "result", f"output of step {step.key!r}")
        names = sink.names
        if names is None:  # the worker's word did not arrive: ask the value itself
            names = await self.host.call(self.session.output_names, future)
        return {
            name: Remote(future, name, f"output {name!r} of step {step.key!r}") for name in names
        }

    # --- what an attempt sends ------------------------------------------------------------------

    def _payload(self, run: RunScope, attempt: StepAttempt) -> tuple[AttemptPayload, list[Any]]:
        step = attempt.step
        solid = step.solid
        upstream: list[Any] = []
        positions: dict[Any, int] = {}
        constants: list[Any] = []

        def source(value: Any) -> Source:
            if isinstance(value, Remote):
                index = positions.get(value.future.key)
                if index is None:
                    index = positions[value.future.key] = len(upstream)
                    upstream.append(value.future)
                return Upstream(index, value.name)
            constants.append(value)
            return len(constants) - 1

        inputs: dict[str, Source] = {}
        for name, value in attempt.inputs.items():
            if isinstance(value, list) and any(isinstance(part, Remote) for part in value):
                inputs[name] = tuple(source(part) for part in value)  # type: ignore[misc]
            else:
                inputs[name] = source(value)
        shipper = self._code
        try:
            code = shipper.dumps(solid, (solid, step.outs), [solid.fn])
            resources = b""
            if solid.required_resources and run.resources is not None:
                resources = self._resources_blob(run.resources, step)
            extra = _dumps(tuple(constants)) if constants else b""
        except Exception as exc:
            from .._errors import DefinitionError

            raise DefinitionError(
                f"solid {solid.name!r} (step {step.key!r}) cannot be sent to the Dask cluster: "
                f"pickling it, its resources or its inputs failed ({type(exc).__name__}: {exc}); "
                "a solid that runs on Dask must pickle with the globals it uses, or be pinned "
                "to the driver with @solid(executor='local')"
            ) from exc
        payload = AttemptPayload(
            context=run.context_data(attempt),
            key=f"{self.session.prefix}{step.key}-{attempt.number}-{uuid.uuid4().hex[:8]}",
            topic=self.session.topic,
            backend=self._backend,
            inputs=inputs,
            code=code,
            resources=resources,
            constants=extra,
            check_pickle=self.executor.check_pickle,
        )
        return payload, upstream

    def _resources_blob(self, manager: ResourceManager, step: Step) -> bytes:
        """The run's resources as the workers set them up: definitions, configs, and the
        ready values the run was given (``resources=``), which must pickle to get there."""
        definitions = manager.definitions
        try:
            return self._code.dumps(
                manager,
                (dict(definitions), dict(manager.configs), dict(manager.given)),
                [d.fn for d in definitions.values()],
            )
        except Exception:
            for key, value in manager.given.items():
                try:
                    _dumps(value)
                except Exception as exc:
                    from .._errors import DefinitionError

                    raise DefinitionError(
                        f"resource {key!r} was given to the run as a ready value "
                        f"({type(value).__name__}), which cannot be sent to a Dask worker "
                        f"({type(exc).__name__}: {exc}); pin solid {step.solid.name!r} to the "
                        "driver with @solid(executor='local'), or give a ResourceDefinition "
                        "the workers can set up"
                    ) from exc
            raise

    def _resources_of(self, step: Step) -> Mapping[str, float] | None:
        """The Dask worker resources the solid asks for (its ``dask/resources`` tag)."""
        solid = step.solid
        cached = self._dask_resources.get(id(solid))
        if cached is None or cached[0] is not solid:
            text = solid.tags.get(DASK_RESOURCES_TAG)
            cached = (solid, json.loads(text) if text else None)
            self._dask_resources[id(solid)] = cached
        return cached[1]

    # --- what comes back from the workers (on the driver's loop) -------------------------------

    def _on_message(self, message: dict[str, Any]) -> None:
        """From the client's loop: queue a worker's message, wake the driver to emit it."""
        self._inbox.append(message)
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self.host.wake(self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        inbox = self._inbox
        while inbox:
            message = inbox.popleft()
            kind = message.get("k")
            key = message.get("key", "")
            sink = self._sinks.get(key)
            if kind == "ev":
                if sink is not None or not key:
                    self._emit(message)
            elif sink is None:
                continue  # an attempt that already ended (cancelled, say): nobody listens
            elif kind == "item":
                self._fan_out(sink, key, message)
            elif kind == "outs":
                sink.names = list(message["names"])

    def _emit(self, message: dict[str, Any]) -> None:
        data = message.get("data")
        if not message.get("key") and message.get("worker"):
            data = {**(data or {}), "dask_worker": message["worker"]}
        self.run.emit(
            EventType(message["type"]),
            step_key=message.get("step_key"),
            level=int(message.get("level") or logging.INFO),
            message=str(message.get("message", "")),
            data=data,
        )

    def _fan_out(self, sink: _Sink, key: str, message: dict[str, Any]) -> None:
        step = sink.attempt.step
        mapping_key = message["mapping_key"]
        item = Remote(
            message["future"],
            None,
            f"item {mapping_key!r} of output {message['output']!r} of step {step.key!r}",
        )
        if sink.error is not None:
            return
        try:
            sink.run.fan_out(sink.attempt, message["output"], mapping_key, item)
        except Exception as exc:  # a mapping key yielded twice: the step fails with it
            sink.error = exc
            self.host.spawn(self.session.stop_attempt, key)

    # --- values at the driver -------------------------------------------------------------------

    async def _fetch_inputs(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        remotes = [
            part
            for value in inputs.values()
            for part in (value if isinstance(value, list) else [value])
            if isinstance(part, Remote)
        ]
        values = await self._fetch(remotes)
        resolved = dict(zip(map(id, remotes), values, strict=True))

        def value_of(value: Any) -> Any:
            return resolved[id(value)] if isinstance(value, Remote) else value

        return {
            name: [value_of(p) for p in value] if isinstance(value, list) else value_of(value)
            for name, value in inputs.items()
        }

    async def _fetch(self, remotes: list[Remote]) -> list[Any]:
        """The values of ``remotes``: each future fetched once; raises when one is lost."""
        futures = list({r.future.key: r.future for r in remotes}.values())
        values = await self.host.call(self.session.gather, futures)
        by_key = {}
        for future, value in zip(futures, values, strict=True):
            if isinstance(value, BaseException):
                raise value
            by_key[future.key] = value
        return [
            by_key[r.future.key] if r.name is None else by_key[r.future.key][r.name]
            for r in remotes
        ]

    async def values_of(self, value: Any) -> Any:
        """The values behind the handles in a step's outputs (one output, a dict of them, or a
        list), fetched to the driver for a run that stores its outputs; the handles themselves
        stay what downstream steps receive, so data still moves worker to worker."""
        if isinstance(value, Remote):
            return (await self._fetch([value]))[0]
        if isinstance(value, list) and _has_remote(value):
            return (await self._fetch_inputs({"items": value}))["items"]
        if isinstance(value, dict) and any(_has_remote(part) for part in value.values()):
            return await self._fetch_inputs(value)
        return value

    async def fetch_outputs(self) -> None:
        """The run is over: bring every output still on the cluster to the driver, so the
        run's result holds values.  One that cannot be had (its worker died) stays a
        :class:`Remote`, and the run says so."""
        held = [
            (outputs, name, value)
            for outputs in self.run.outputs()
            for name, value in outputs.items()
            if isinstance(value, Remote)
        ]
        if not held:
            return
        futures = list({value.future.key: value.future for _o, _n, value in held}.values())
        try:
            values = await self.host.call(self.session.gather, futures)
        except Exception as exc:
            self._warn(f"The run's outputs stay on the Dask cluster: fetching them failed ({exc})")
            return
        by_key = dict(zip((f.key for f in futures), values, strict=True))
        lost = []
        for outputs, name, value in held:
            fetched = by_key[value.future.key]
            if isinstance(fetched, BaseException):
                lost.append(value.label)
            else:
                outputs[name] = fetched if value.name is None else fetched[value.name]
        if lost:
            self._warn(f"Could not fetch {len(lost)} output(s) from the Dask cluster: {lost[:5]}")

    # --- the run's end --------------------------------------------------------------------------

    def announce(self) -> None:
        cluster = "a local Dask cluster" if self.session.own_cluster is not None else "Dask"
        self.run.emit(
            EventType.LOG,
            level=logging.INFO,
            message=f"Running steps on {cluster} at {self.session.address}",
            data={"dask_scheduler": self.session.address},
        )

    async def close(self) -> None:
        """Tear the run down on every worker (its resources; what still runs) and disconnect;
        the workers' teardown events become the run's."""
        reports = await self.host.call(self.session.stop, self.executor.teardown_grace)
        self._drain()
        for worker, report in sorted(reports.items()):
            if not isinstance(report, dict):
                self._warn(f"Tearing the run down on Dask worker {worker} failed: {report}")
                continue
            for message in report.get("events", ()):
                self._emit({**message, "worker": worker})
            if report.get("still_running"):
                self._warn(
                    f"Steps {report['still_running']} still run on Dask worker {worker} "
                    f"{self.executor.teardown_grace:g}s after the run ended (a sync solid sees "
                    "cancellation through context.is_cancel_requested)"
                )

    def _warn(self, message: str) -> None:
        self.run.emit(EventType.LOG, level=logging.WARNING, message=message)


def _has_remote(value: Any) -> bool:
    if isinstance(value, list):
        return any(isinstance(part, Remote) for part in value)
    return isinstance(value, Remote)


def _dumps(value: Any) -> bytes:
    import cloudpickle

    return cloudpickle.dumps(value)  # type: ignore[no-any-return]


def _backend_name() -> str:
    """The driver's anyio backend: worker-side loops for async solids use the same."""
    native = anyio.lowlevel.current_token().native_token
    return "asyncio" if isinstance(native, asyncio.AbstractEventLoop) else "trio"
