"""Resources: shared clients (HTTP sessions, database pools) with a lifecycle per run.

A resource is set up once per run, just before the first step that needs it,
and torn down after the run in reverse order of setup, also when the run fails
or is cancelled.  The definition half (``@resource``) is plain data; the
:class:`ResourceManager` half runs inside the engine.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, overload

import anyio
import attrs

from ._errors import DefinitionError, ResourceInitError

__all__ = ["InitResourceContext", "ResourceDefinition", "Resources", "resource"]

_log = logging.getLogger("asyncdag.resources")


@attrs.frozen(eq=False)
class ResourceDefinition:
    """How to build one resource: a function, a generator, or a context-manager class."""

    fn: Callable[..., Any]
    name: str
    description: str | None = None
    config_schema: Any = None
    required_resources: frozenset[str] = attrs.field(factory=frozenset, converter=frozenset)

    def __repr__(self) -> str:
        return f"<ResourceDefinition {self.name!r}>"


@overload
def resource(fn: Callable[..., Any], /) -> ResourceDefinition: ...


@overload
def resource(
    *,
    config_schema: Any = None,
    description: str | None = None,
    required_resources: Iterable[str] | None = None,
) -> Callable[[Callable[..., Any]], ResourceDefinition]: ...


def resource(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    config_schema: Any = None,
    description: str | None = None,
    required_resources: Iterable[str] | None = None,
) -> ResourceDefinition | Callable[[Callable[..., Any]], ResourceDefinition]:
    """Declare a resource.

    The function receives an :class:`InitResourceContext` when it takes a
    parameter.  It may return the value, ``yield`` it (code after the yield is
    teardown; async generators too), or be a class whose instances are
    (async) context managers.
    """

    def decorate(func: Callable[..., Any]) -> ResourceDefinition:
        if isinstance(required_resources, str):
            needs: frozenset[str] = frozenset((required_resources,))
        else:
            needs = frozenset(required_resources or ())
        return ResourceDefinition(
            fn=func,
            name=getattr(func, "__name__", repr(func)),
            description=description if description is not None else inspect.getdoc(func),
            config_schema=config_schema,
            required_resources=needs,
        )

    if fn is not None:
        return decorate(fn)
    return decorate


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
            raise DefinitionError(
                f"{self._owner} used resource {key!r} without declaring it; add "
                f"required_resources={{{key!r}}} to its definition"
            )
        return self._values[key]

    def __getitem__(self, key: str) -> Any:
        return self.__getattr__(key)

    def __contains__(self, key: object) -> bool:
        return key in self._allowed

    def __dir__(self) -> list[str]:
        return sorted(self._allowed)

    def __repr__(self) -> str:
        return f"<Resources {sorted(self._allowed)}>"


@attrs.frozen
class InitResourceContext:
    """What a resource's function receives: its config, its own resources, a logger, the run id."""

    resource_config: Any
    resources: Resources
    log: logging.Logger | logging.LoggerAdapter[logging.Logger]
    run_id: str
    key: str


Emit = Callable[..., None]


class ResourceManager:
    """Sets resources up on first use and tears them down in reverse order.

    Concurrent steps that need the same resource wait for one setup; a setup
    that failed stays failed for the rest of the run, so no step retries it.
    """

    def __init__(
        self,
        definitions: Mapping[str, ResourceDefinition],
        configs: Mapping[str, Any],
        *,
        run_id: str,
        emit: Emit,
    ) -> None:
        self._definitions = definitions
        self._configs = configs
        self._run_id = run_id
        self._emit = emit
        self.values: dict[str, Any] = {}
        self._failed: dict[str, ResourceInitError] = {}
        self._locks: dict[str, anyio.Lock] = {}
        self._stack = contextlib.AsyncExitStack()
        self.setup_order: list[str] = []

    async def ensure(self, keys: Iterable[str]) -> None:
        """Make sure every resource in ``keys`` (and what they depend on) is set up."""
        for key in sorted(keys):
            if key not in self.values:
                await self._setup(key, chain=())

    async def _setup(self, key: str, chain: tuple[str, ...]) -> None:
        if key in self._failed:
            raise self._failed[key]
        if key in chain:
            cycle = " -> ".join((*chain, key))
            raise DefinitionError(f"resources depend on each other in a cycle: {cycle}")
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            if key in self.values:
                return
            if key in self._failed:
                raise self._failed[key]
            definition = self._definitions[key]
            for dep in sorted(definition.required_resources):
                if dep not in self.values:
                    await self._setup(dep, (*chain, key))
            await self._build(key, definition)

    async def _build(self, key: str, definition: ResourceDefinition) -> None:
        from ._events import EventType

        self._emit(
            EventType.RESOURCE_INIT_STARTED,
            None,
            logging.DEBUG,
            f"Setting up resource {key!r}",
            {"resource": key},
        )
        context = InitResourceContext(
            resource_config=self._configs.get(key),
            resources=Resources(self.values, definition.required_resources, f"resource {key!r}"),
            log=logging.LoggerAdapter(_log, {"resource": key, "run_id": self._run_id}),
            run_id=self._run_id,
            key=key,
        )
        try:
            value = await self._enter(definition, context)
        except anyio.get_cancelled_exc_class():
            raise
        except Exception as exc:
            from ._events import ErrorInfo

            error = ResourceInitError(key, exc)
            error.__cause__ = exc
            self._failed[key] = error
            self._emit(
                EventType.RESOURCE_INIT_FAILURE,
                None,
                logging.ERROR,
                str(error),
                {"resource": key, "error": ErrorInfo.from_exception(exc).to_dict()},
            )
            raise error from exc
        self.values[key] = value
        self.setup_order.append(key)
        self._emit(
            EventType.RESOURCE_INIT_SUCCESS,
            None,
            logging.DEBUG,
            f"Resource {key!r} is ready",
            {"resource": key},
        )

    async def _enter(self, definition: ResourceDefinition, context: InitResourceContext) -> Any:
        fn = definition.fn
        if inspect.isclass(fn):
            instance = fn(context) if _takes_argument(fn.__init__, skip_self=True) else fn()
            return await self._enter_object(instance)
        args = (context,) if _takes_argument(fn) else ()
        if inspect.isasyncgenfunction(fn):
            return await self._stack.enter_async_context(contextlib.asynccontextmanager(fn)(*args))
        if inspect.isgeneratorfunction(fn):
            manager = contextlib.contextmanager(fn)(*args)
            value = await anyio.to_thread.run_sync(manager.__enter__)
            self._stack.push_async_exit(_sync_exit_in_thread(manager))
            return value
        if inspect.iscoroutinefunction(fn):
            result = await fn(*args)
        else:
            result = await anyio.to_thread.run_sync(fn, *args)
        return await self._enter_object(result) if _is_context_manager(result) else result

    async def _enter_object(self, obj: Any) -> Any:
        if hasattr(obj, "__aenter__"):
            return await self._stack.enter_async_context(obj)
        if hasattr(obj, "__enter__"):
            return self._stack.enter_context(obj)
        return obj

    async def aclose(self) -> None:
        """Tear everything down in reverse order of setup; shielded, so cancellation cannot skip it."""
        from ._events import ErrorInfo, EventType

        with anyio.CancelScope(shield=True):
            try:
                await self._stack.aclose()
            except Exception as exc:
                self._emit(
                    EventType.RESOURCE_TEARDOWN_FAILURE,
                    None,
                    logging.ERROR,
                    f"Resource teardown failed: {type(exc).__name__}: {exc}",
                    {"error": ErrorInfo.from_exception(exc).to_dict()},
                )
            else:
                if self.setup_order:
                    self._emit(
                        EventType.RESOURCE_TEARDOWN,
                        None,
                        logging.DEBUG,
                        f"Tore down resources {list(reversed(self.setup_order))}",
                        {"resources": list(reversed(self.setup_order))},
                    )


def _sync_exit_in_thread(manager: Any) -> Callable[..., Any]:
    async def exit_(exc_type: Any, exc: Any, tb: Any) -> bool:
        return bool(await anyio.to_thread.run_sync(manager.__exit__, exc_type, exc, tb))

    return exit_


def _is_context_manager(value: Any) -> bool:
    return hasattr(value, "__aenter__") or (
        hasattr(value, "__enter__") and hasattr(value, "__exit__")
    )


def _takes_argument(fn: Callable[..., Any], *, skip_self: bool = False) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if skip_self and params and params[0].name == "self":
        params = params[1:]
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )
