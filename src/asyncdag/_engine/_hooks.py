"""Running a step's success and failure hooks after its outcome is recorded.

The definitions (``@success_hook``, ``@failure_hook``) live in
``asyncdag._definitions._hooks``; this is the run-time half.  A hook that
raises is recorded (HOOK_ERRORED) and never changes the run's outcome.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._events import ErrorInfo, EventType
from ._threads import ThreadCall

if TYPE_CHECKING:
    from .._definitions._hooks import HookDefinition
    from ._context import HookContext
    from ._log import Emit

__all__ = ["run_hooks"]


async def run_hooks(
    hooks: tuple[HookDefinition, ...],
    kind: str,
    emit: Emit,
    make_context: Callable[[HookDefinition], HookContext],
    *,
    limiter: Any = None,
    ensure: Callable[[frozenset[str]], Awaitable[None]] | None = None,
) -> None:
    """Run the hooks of ``kind`` one after another; record each outcome as an event.

    ``ensure`` sets up the resources a hook declared before it runs; one that
    cannot be set up is that hook's error (HOOK_ERRORED), like anything it raises.
    """
    import anyio

    cancelled = anyio.get_cancelled_exc_class()
    for hook in hooks:
        if hook.kind != kind:
            continue
        context = make_context(hook)
        key = context.step_key
        attempt = context.retry_number + 1
        try:
            if hook.required_resources and ensure is not None:
                await ensure(hook.required_resources)
            if hook.is_async:
                await hook.fn(context)
            else:
                call = ThreadCall(functools.partial(hook.fn, context))
                await call.run(limiter=limiter, abandon_on_cancel=False)
        except cancelled:  # the run's cancellation, never swallowed
            raise
        except BaseException as exc:  # KeyboardInterrupt or SystemExit from a hook too
            error = ErrorInfo.from_exception(exc)
            emit(
                EventType.HOOK_ERRORED,
                step_key=key,
                level=logging.ERROR,
                message=f"Hook {hook.name!r} of step {key!r} raised {error.type}: "
                f"{error.message}; the step's outcome stands",
                data={
                    "hook": hook.name,
                    "kind": kind,
                    "attempt": attempt,
                    "error": error.to_dict(),
                },
            )
        else:
            emit(
                EventType.HOOK_COMPLETED,
                step_key=key,
                level=logging.DEBUG,
                message=f"Hook {hook.name!r} of step {key!r} completed.",
                data={"hook": hook.name, "kind": kind, "attempt": attempt},
            )
