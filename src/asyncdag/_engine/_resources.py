"""Resources during a run: set up on first use, shared by steps, torn down in reverse order.

A resource is set up once per run, just before the first step that needs it,
and torn down after the run in reverse order of setup, also when the run fails
or is cancelled.  Only generators and context managers have a teardown: a
value a resource function returns, and a value the run was given ready
(``resources={"http": client}``), belong to whoever made them and are used as
they are.  The declarations (``@resource``) are
``asyncdag._definitions._resources``; this is the run-time half.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import attrs

from .._definitions._resources import ResourceDefinition, check_resource_graph
from .._errors import ResourceInitError, UnknownResourceError
from ._log import Emit, StepLog

if TYPE_CHECKING:
    import anyio.abc

__all__ = ["InitResourceContext", "ResourceLog", "ResourceManager", "Resources"]


class Resources:
    """The resources a step may use, reached by attribute: ``context.resources.http``.

    Only the keys a solid declared in ``required_resources`` are visible, so a
    solid cannot come to depend on a resource by accident.
    """

    __slots__ = ("_allowed", "_owner", "_values")

    def __init__(self, values: Mapping[str, Any], allowed: frozenset[str], owner: str) -> None:
        self._values = values
        self._allowed = allowed
        self._owner = owner

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        if key not in self._allowed:
            raise UnknownResourceError(
                f"{self._owner} used resource {key!r} without declaring it; add "
                f"required_resources={{{key!r}}} to its definition"
            )
        try:
            return self._values[key]
        except KeyError:
            raise UnknownResourceError(
                f"{self._owner} used resource {key!r} before it was set up; resources are "
                "only available while a run executes the step that declares them"
            ) from None

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __contains__(self, key: object) -> bool:
        return key in self._allowed

    def __dir__(self) -> list[str]:
        return sorted(self._allowed)

    def __repr__(self) -> str:
        return f"<Resources {sorted(self._allowed)}>"


class ResourceLog(StepLog):
    """``context.log`` of a resource's setup: messages become the run's LOG events,
    with ``data["resource"]`` naming the resource."""

    __slots__ = ()

    def __init__(self, emit: Emit, key: str) -> None:
        super().__init__(emit, None, extra={"resource": key})


@attrs.frozen
class InitResourceContext:
    """What a resource's function receives: its config, its own resources, a logger, the run id."""

    resource_config: Any
    resources: Resources
    log: ResourceLog
    run_id: str
    key: str


_Exit = Callable[[], Awaitable[Any]]


class ResourceManager:
    """Sets resources up on first use and tears them down in reverse order.

    Concurrent steps that need the same resource wait for one setup; a setup
    that failed stays failed for the rest of the run, so no step retries it.
    Sync code of a resource (a plain function, a generator, ``__enter__`` and
    ``__exit__``) runs in a worker thread so it cannot stall the event loop;
    async code runs on the run's own loop, so an async client can be shared
    by every step.  ``given`` are ready values (the host's own client): steps
    use them at once, with no setup, no thread and no teardown.
    """

    def __init__(
        self,
        definitions: Mapping[str, ResourceDefinition],
        configs: Mapping[str, Any],
        *,
        run_id: str,
        emit: Emit,
        owner: str = "the pipeline",
        given: Mapping[str, Any] | None = None,
    ) -> None:
        given = given or {}
        check_resource_graph(owner, definitions, provided=given.keys())
        self._definitions = definitions
        self._configs = configs
        self._run_id = run_id
        self._emit = emit
        self.values: dict[str, Any] = dict(given)
        self.given: Mapping[str, Any] = dict(given)
        self._failed: dict[str, ResourceInitError] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._exits: list[tuple[str, _Exit | None]] = []
        self._closed = False
        self._host: anyio.abc.TaskGroup | None = None
        self.setup_order: list[str] = []

    @property
    def builds(self) -> bool:
        """Whether the run has resources to set up (and so a host task group to hold them)."""
        return bool(self._definitions)

    @property
    def definitions(self) -> Mapping[str, ResourceDefinition]:
        """The resources the run may set up, by key (what the pipeline declared)."""
        return self._definitions

    @property
    def configs(self) -> Mapping[str, Any]:
        """Each resource's validated config, by key."""
        return self._configs

    async def ensure(self, keys: Iterable[str]) -> None:
        """Make sure every resource in ``keys`` (and what they depend on) is set up.

        Raises the :class:`ResourceInitError` of the first one that could not be.
        """
        values = self.values
        missing = [key for key in keys if key not in values]
        if not missing:
            return
        for key in sorted(missing):
            if key not in values:
                await self._setup(key)
        # Sync setup runs in a thread that finishes even when the step is cancelled
        # meanwhile; do not let a cancelled step go on to start its solid.
        await anyio.lowlevel.checkpoint_if_cancelled()

    async def _setup(self, key: str) -> None:
        if key in self._failed:
            raise self._failed[key]
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            if key in self.values:
                return
            if key in self._failed:
                raise self._failed[key]
            definition = self._definitions[key]
            for dep in sorted(definition.required_resources):
                if dep not in self.values:
                    try:
                        await self._setup(dep)
                    except ResourceInitError as exc:
                        raise self._record_failure(key, exc) from exc
            await self._build(key, definition)

    def _record_failure(self, key: str, exc: BaseException) -> ResourceInitError:
        from .._events import ErrorInfo, EventType

        error = ResourceInitError(key, exc)
        error.__cause__ = exc
        self._failed[key] = error
        self._emit(
            EventType.RESOURCE_INIT_FAILURE,
            step_key=None,
            level=logging.ERROR,
            message=str(error),
            data={"resource": key, "error": ErrorInfo.from_exception(exc).to_dict()},
        )
        return error

    async def _build(self, key: str, definition: ResourceDefinition) -> None:
        from .._events import EventType

        if self._closed:
            raise ResourceInitError(key, RuntimeError("the run's resources were already closed"))
        self._emit(
            EventType.RESOURCE_INIT_STARTED,
            step_key=None,
            level=logging.DEBUG,
            message=f"Setting up resource {key!r}",
            data={"resource": key},
        )
        context = InitResourceContext(
            resource_config=self._configs.get(key),
            resources=Resources(self.values, definition.required_resources, f"resource {key!r}"),
            log=ResourceLog(self._emit, key),
            run_id=self._run_id,
            key=key,
        )
        try:
            if self._host is not None:
                await self._host.start(self._hold, key, definition.fn, context)
            else:
                value, exit_ = await self._enter(definition.fn, context)
                self._register(key, value, exit_)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            raise self._record_failure(key, exc) from exc

    def _register(self, key: str, value: Any, exit_: _Exit | None) -> None:
        """Record a resource that was entered.  Synchronous, and called with no checkpoint
        after entering, so cancellation cannot leave an entered resource without its teardown."""
        from .._events import EventType

        self._exits.append((key, exit_))
        self.values[key] = value
        self.setup_order.append(key)
        self._emit(
            EventType.RESOURCE_INIT_SUCCESS,
            step_key=None,
            level=logging.DEBUG,
            message=f"Resource {key!r} is ready",
            data={"resource": key},
        )

    async def _hold(
        self,
        key: str,
        fn: Callable[..., Any],
        context: InitResourceContext,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """One resource's whole life in one task of the host task group.

        A resource that opens a task group or cancel scope across its ``yield``
        must enter and exit it in the same task; the step task that first
        needed it is gone by teardown time, so the resource gets a task of its own.
        """
        close = anyio.Event()
        closed = anyio.Event()
        failure: list[Exception] = []

        async def exit_hosted() -> None:
            close.set()
            await closed.wait()
            if failure:
                raise failure[0]

        with anyio.CancelScope() as scope:
            value, exit_ = await self._enter(fn, context)
            try:
                # A sync setup finishes in its thread even when the step that wanted it
                # was cancelled meanwhile; then nobody waits for the value: undo it now.
                await anyio.lowlevel.checkpoint_if_cancelled()
            except anyio.get_cancelled_exc_class():
                with anyio.CancelScope(shield=True):
                    await self._teardown(key, exit_)
                raise
            # From here on the resource outlives the step that set it up and is torn
            # down only by aclose(), even when the run is cancelled from outside.
            scope.shield = True
            self._register(key, value, exit_hosted)
            task_status.started()
            try:
                await close.wait()
                if exit_ is not None:
                    await exit_()
            except Exception as exc:
                failure.append(exc)
            finally:
                closed.set()

    @contextlib.asynccontextmanager
    async def hosted(self) -> AsyncIterator[ResourceManager]:
        """Give every resource a task of its own for the run; tear all down on the way out.

        The engine wraps a run in this.  Without it, a resource is entered in the
        task of the step that first needs it and exited in the run's task, which
        breaks resources holding a task group or cancel scope across their ``yield``.
        """
        async with anyio.create_task_group() as host:
            self._host = host
            try:
                yield self
            finally:
                self._host = None
                await self.aclose()

    async def _enter(
        self, fn: Callable[..., Any], context: InitResourceContext
    ) -> tuple[Any, _Exit | None]:
        args = (context,) if _takes_argument(fn) else ()
        if inspect.isclass(fn):
            if hasattr(fn, "__aenter__"):
                return await _enter_object(fn(*args))
            return await _enter_object(await anyio.to_thread.run_sync(fn, *args))
        if inspect.isasyncgenfunction(fn):
            return await _enter_object(contextlib.asynccontextmanager(fn)(*args))
        if inspect.isgeneratorfunction(fn):
            return await _enter_object(contextlib.contextmanager(fn)(*args))
        # A returned value is used as it is: it may be the application's own shared client,
        # which entering here would close after the run ("Cannot reopen a client instance").
        if inspect.iscoroutinefunction(fn):
            return await fn(*args), None
        return await anyio.to_thread.run_sync(fn, *args), None

    async def aclose(self) -> None:
        """Tear everything down in reverse order of setup; shielded, so cancellation cannot skip it.

        A teardown that raises is reported (naming its resource) and the
        others still run.  Closing twice does nothing the second time.
        """
        self._closed = True
        with anyio.CancelScope(shield=True):
            while self._exits:
                key, exit_ = self._exits.pop()
                await self._teardown(key, exit_)

    async def _teardown(self, key: str, exit_: _Exit | None) -> None:
        """Run one resource's teardown and say how it went; never raises an Exception."""
        from .._events import ErrorInfo, EventType

        try:
            if exit_ is not None:
                await exit_()
        except Exception as exc:
            self._emit(
                EventType.RESOURCE_TEARDOWN_FAILURE,
                step_key=None,
                level=logging.ERROR,
                message=f"Teardown of resource {key!r} failed: {type(exc).__name__}: {exc}",
                data={"resource": key, "error": ErrorInfo.from_exception(exc).to_dict()},
            )
        else:
            self._emit(
                EventType.RESOURCE_TEARDOWN,
                step_key=None,
                level=logging.DEBUG,
                message=f"Tore down resource {key!r}",
                data={"resource": key},
            )


async def _enter_object(obj: Any) -> tuple[Any, _Exit | None]:
    """Enter ``obj`` if it is an (async) context manager; return its value and how to exit it."""
    if hasattr(obj, "__aenter__") and hasattr(obj, "__aexit__"):
        value = await obj.__aenter__()

        async def aexit() -> None:
            await obj.__aexit__(None, None, None)

        return value, aexit
    if hasattr(obj, "__enter__") and hasattr(obj, "__exit__"):
        value = await anyio.to_thread.run_sync(obj.__enter__)

        async def exit_in_thread() -> None:
            await anyio.to_thread.run_sync(obj.__exit__, None, None, None)

        return value, exit_in_thread
    return obj, None


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )
