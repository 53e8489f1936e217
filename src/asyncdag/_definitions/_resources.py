"""Declaring resources: shared clients (HTTP sessions, database pools) a run sets up for its steps.

This is the definition half (``@resource``, plain data, and the check that a
pipeline's resources can be set up in some order).  Setting them up and tearing
them down during a run is ``asyncdag._engine._resources``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, overload

import attrs

from .._errors import DefinitionError

if TYPE_CHECKING:
    from ._configured import Configured

__all__ = ["ResourceDefinition", "check_resource_graph", "resource", "resource_keys"]


def resource_keys(value: Iterable[str] | None) -> frozenset[str]:
    """``required_resources=`` as a set of keys: one key alone, or any iterable of them."""
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


@attrs.frozen(eq=False)
class ResourceDefinition:
    """How to build one resource: a function, a generator, or a context-manager class."""

    fn: Callable[..., Any]
    name: str
    description: str | None = None
    config_schema: Any = None
    required_resources: frozenset[str] = attrs.field(factory=frozenset, converter=resource_keys)
    # Set on a copy made by ``configured()``: how its config becomes the original's.
    config_mapping: Configured | None = None

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
    """Declare a resource: how a run builds a value its solids share (a client, a pool).

    The function receives an :class:`InitResourceContext` when it takes a
    parameter.  Who owns the value's life depends on the form:

    - a (sync or async) generator: the run owns it; code after the ``yield`` is
      its teardown, run after the run's last step, also on failure and cancellation;
    - a class whose instances are (async) context managers: the run enters one
      and exits it the same way;
    - a function that *returns* a value: the value is used as it is, never
      entered nor closed.  Return an object the application owns and shares
      between runs (its ``httpx.AsyncClient``, a connection pool) this way, or
      pass it to the run itself: ``execute_pipeline_async(p, resources={"http": client})``.
    """

    def decorate(func: Callable[..., Any]) -> ResourceDefinition:
        return ResourceDefinition(
            fn=func,
            name=getattr(func, "__name__", repr(func)),
            description=description if description is not None else inspect.getdoc(func),
            config_schema=config_schema,
            required_resources=resource_keys(required_resources),
        )

    if fn is not None:
        return decorate(fn)
    return decorate


def check_resource_graph(
    owner: str, definitions: Mapping[str, Any], *, provided: Collection[str] | None = ()
) -> None:
    """Raise :class:`DefinitionError` for a binding that is not a resource, an unbound need, or a cycle.

    ``provided``: keys a run is given as ready values, which a definition may
    require; None skips the unbound check (a pipeline being defined: a run may
    still give the missing keys).  Called before anything runs, so a run never
    finds out halfway through that two resources wait for each other.
    """
    for key, definition in definitions.items():
        if not isinstance(definition, ResourceDefinition):
            raise DefinitionError(
                f"{owner} binds resource {key!r} to {definition!r}, which is not a resource; "
                "decorate its factory with @resource"
            )
        if provided is None:
            continue
        for dep in sorted(definition.required_resources):
            if dep not in definitions and dep not in provided:
                raise DefinitionError(
                    f"resource {key!r} requires resource {dep!r} that {owner} does not bind "
                    f"(bound: {sorted({*definitions, *provided})}); add it to "
                    "@pipeline(resources={...}) or pass it to the run (resources={...})"
                )
    done: set[str] = set()
    for root in sorted(definitions):
        # Iterative depth-first search; ``path`` is the chain of keys being visited.
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            key, leaving = stack.pop()
            if leaving:
                path.pop()
                on_path.discard(key)
                done.add(key)
                continue
            if key in done:
                continue
            if key in on_path:
                cycle = " -> ".join((*path[path.index(key) :], key))
                raise DefinitionError(
                    f"resources of {owner} depend on each other in a cycle: {cycle}; "
                    "break it by removing one of these required_resources"
                )
            path.append(key)
            on_path.add(key)
            stack.append((key, True))
            for dep in sorted(definitions[key].required_resources, reverse=True):
                if dep not in done and dep in definitions:  # given or unbound: no needs
                    stack.append((dep, False))
