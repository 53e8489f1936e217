"""Success and failure hooks: code that reacts to a step's outcome (alerts, cleanup, metrics).

A hook is attached to one solid call (``my_solid.with_hooks({alert})(...)``), to
every solid of one graph call (``my_graph.with_hooks({alert})(...)``) or to a
whole pipeline (``@pipeline(hooks={alert})``, ``p.with_hooks({alert})``).  It runs
after the step ended, with the step's context and, for a failure, its exception;
a hook that declares ``required_resources`` finds them in ``context.resources``.  A hook that
raises is recorded (HOOK_ERRORED) and never changes the run's outcome: a hook
reports on a step, it is not part of it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, overload

import attrs

from .._errors import DefinitionError
from ._resources import resource_keys

if TYPE_CHECKING:
    from .._engine import HookContext

__all__ = ["FAILURE", "SUCCESS", "HookDefinition", "failure_hook", "success_hook"]

SUCCESS = "success"
FAILURE = "failure"


@attrs.frozen(eq=False)
class HookDefinition:
    """A function run after a step succeeded (``kind="success"``) or failed (``"failure"``)."""

    name: str
    fn: Callable[[HookContext], Any]
    kind: str
    is_async: bool = False
    required_resources: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return f"<HookDefinition {self.kind} {self.name!r}>"


def _make_hook(
    kind: str,
    fn: Callable[..., Any] | None,
    name: str | None,
    required_resources: Iterable[str] | None,
) -> Any:

    def decorate(func: Callable[..., Any]) -> HookDefinition:
        params = list(inspect.signature(func).parameters.values())
        if len(params) != 1:
            raise DefinitionError(
                f"{kind} hook {func.__name__!r} must take exactly one parameter (the "
                f"HookContext), not {len(params)}"
            )
        return HookDefinition(
            name=name or func.__name__,
            fn=func,
            kind=kind,
            is_async=inspect.iscoroutinefunction(func),
            required_resources=resource_keys(required_resources),
        )

    if fn is not None:
        return decorate(fn)
    return decorate


@overload
def success_hook(fn: Callable[[HookContext], Any], /) -> HookDefinition: ...
@overload
def success_hook(
    *, name: str | None = None, required_resources: Iterable[str] | None = None
) -> Callable[..., HookDefinition]: ...
def success_hook(
    fn: Callable[[HookContext], Any] | None = None,
    /,
    *,
    name: str | None = None,
    required_resources: Iterable[str] | None = None,
) -> Any:
    """Declare a hook run after each step it is attached to succeeds (sync or async)."""
    return _make_hook(SUCCESS, fn, name, required_resources)


@overload
def failure_hook(fn: Callable[[HookContext], Any], /) -> HookDefinition: ...
@overload
def failure_hook(
    *, name: str | None = None, required_resources: Iterable[str] | None = None
) -> Callable[..., HookDefinition]: ...
def failure_hook(
    fn: Callable[[HookContext], Any] | None = None,
    /,
    *,
    name: str | None = None,
    required_resources: Iterable[str] | None = None,
) -> Any:
    """Declare a hook run after each step it is attached to fails; ``context.error`` is why."""
    return _make_hook(FAILURE, fn, name, required_resources)
