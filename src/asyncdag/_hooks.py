"""Success and failure hooks: code that reacts to a step's outcome (alerts, cleanup, metrics).

A hook is attached to one solid call (``my_solid.with_hooks({alert})(...)``) or
to a whole pipeline (``@pipeline(hooks={alert})``).  It runs after the step
ended, with the step's context and, for a failure, its exception.  A hook that
raises is recorded (HOOK_ERRORED) and never changes the run's outcome: a hook
reports on a step, it is not part of it.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, overload

import attrs

from ._errors import DefinitionError
from ._events import ErrorInfo, EventType

if TYPE_CHECKING:
    from ._context import HookContext

__all__ = ["HookDefinition", "failure_hook", "run_hooks", "success_hook"]

SUCCESS = "success"
FAILURE = "failure"


@attrs.frozen(eq=False)
class HookDefinition:
    """A function run after a step succeeded (``kind="success"``) or failed (``"failure"``)."""

    name: str
    fn: Callable[[HookContext], Any]
    kind: str
    is_async: bool = False

    def __repr__(self) -> str:
        return f"<HookDefinition {self.kind} {self.name!r}>"


def _make_hook(kind: str, fn: Callable[..., Any] | None, name: str | None) -> Any:
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
        )

    if fn is not None:
        return decorate(fn)
    return decorate


@overload
def success_hook(fn: Callable[[HookContext], Any], /) -> HookDefinition: ...
@overload
def success_hook(*, name: str | None = None) -> Callable[..., HookDefinition]: ...
def success_hook(
    fn: Callable[[HookContext], Any] | None = None, /, *, name: str | None = None
) -> Any:
    """Declare a hook run after each step it is attached to succeeds (sync or async)."""
    return _make_hook(SUCCESS, fn, name)


@overload
def failure_hook(fn: Callable[[HookContext], Any], /) -> HookDefinition: ...
@overload
def failure_hook(*, name: str | None = None) -> Callable[..., HookDefinition]: ...
def failure_hook(
    fn: Callable[[HookContext], Any] | None = None, /, *, name: str | None = None
) -> Any:
    """Declare a hook run after each step it is attached to fails; ``context.error`` is why."""
    return _make_hook(FAILURE, fn, name)


async def run_hooks(
    hooks: tuple[HookDefinition, ...],
    kind: str,
    emit: Callable[..., Any],
    make_context: Callable[[HookDefinition], HookContext],
    *,
    limiter: Any = None,
) -> None:
    """Run the hooks of ``kind`` one after another; record each outcome as an event."""
    import anyio.to_thread

    cancelled = anyio.get_cancelled_exc_class()
    for hook in hooks:
        if hook.kind != kind:
            continue
        context = make_context(hook)
        key = context.step_key
        try:
            if hook.is_async:
                await hook.fn(context)
            else:
                await anyio.to_thread.run_sync(functools.partial(hook.fn, context), limiter=limiter)
        except cancelled:
            raise
        except Exception as exc:
            error = ErrorInfo.from_exception(exc)
            emit(
                EventType.HOOK_ERRORED,
                key,
                logging.ERROR,
                f"Hook {hook.name!r} of step {key!r} raised {error.type}: {error.message}; "
                "the step's outcome stands",
                {"hook": hook.name, "kind": kind, "error": error.to_dict()},
            )
        else:
            emit(
                EventType.HOOK_COMPLETED,
                key,
                logging.DEBUG,
                f"Hook {hook.name!r} of step {key!r} completed.",
                {"hook": hook.name, "kind": kind},
            )
