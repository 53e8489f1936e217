"""The default step launcher: every solid runs in this process.

Async solids run on the event loop, in the worker task that took the step;
sync solids in a worker thread (bounded by the run's ``max_concurrency``);
generator solids are drained here, each dynamic item handed to the fan-out as
it is yielded, so mapped steps start while the generator goes on.

A thread cannot be interrupted.  When a sync solid's attempt is cancelled
(the run's cancel, or the solid's ``timeout``), the attempt ends at once and
its thread is left running; the solid sees the request through
``context.is_cancel_requested``, and the engine gives it a grace period
before the run ends (:meth:`~asyncdag._engine._launcher.RunScope.outlived`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.lowlevel

from ._compute import check_outputs, outputs_from_value, sort_item
from ._launcher import RunScope, StepAttempt
from ._threads import ThreadCall

__all__ = ["InProcessLauncher"]


class InProcessLauncher:
    """Runs each attempt in this process: async on the loop, sync in a thread."""

    __slots__ = ()

    def run_attempt(self, run: RunScope, attempt: StepAttempt) -> Awaitable[Any]:
        step = attempt.step
        solid = step.solid
        if solid.is_async and step.outs is None:
            # The commonest step: hand back the solid's own coroutine, no frame of ours
            # around it (a no-op step costs about ten microseconds; a frame is a tenth).
            if solid.takes_context:
                return solid.fn(run.solid_context(attempt), **attempt.inputs)  # type: ignore[no-any-return]
            return solid.fn(**attempt.inputs)  # type: ignore[no-any-return]
        return _run(run, attempt)

    def open_launcher(self, run: RunScope) -> contextlib.AbstractAsyncContextManager[Any]:
        """As a :class:`~asyncdag._engine._launcher.StepExecutor`: every step of the run here,
        whatever the run config's ``execution`` section names."""
        return _itself(self)

    def __repr__(self) -> str:
        return "InProcessLauncher()"


@contextlib.asynccontextmanager
async def _itself(launcher: InProcessLauncher) -> AsyncIterator[InProcessLauncher]:
    yield launcher


async def _run(run: RunScope, attempt: StepAttempt) -> Any:
    step = attempt.step
    solid = step.solid
    args = (run.solid_context(attempt),) if solid.takes_context else ()
    if solid.is_async_generator:
        return await _drain_async(run, attempt, solid.fn(*args, **attempt.inputs))
    if solid.is_generator:
        return await _drain_in_thread(run, attempt, solid.fn(*args, **attempt.inputs))
    if solid.is_async:
        value = await solid.fn(*args, **attempt.inputs)
    else:
        value = await _in_thread(run, attempt, functools.partial(solid.fn, *args, **attempt.inputs))
    return outputs_from_value(step.key, step.outs, value)


async def _drain_async(run: RunScope, attempt: StepAttempt, gen: Any) -> dict[str, Any]:
    step = attempt.step
    outs = step.outs
    assert outs is not None, "the plan gives every generator step its outs"
    outputs: dict[str, Any] = {}
    try:
        async for item in gen:
            dynamic = sort_item(step.key, outs, item, outputs)
            if dynamic is not None:
                run.fan_out(attempt, *dynamic)
    finally:
        with anyio.CancelScope(shield=True):
            await gen.aclose()
    check_outputs(step.key, outs, outputs)
    return outputs


async def _drain_in_thread(run: RunScope, attempt: StepAttempt, gen: Any) -> dict[str, Any]:
    """A sync generator runs in a worker thread that passes each dynamic item back to the
    event loop, so mapped steps start while the generator keeps producing."""
    from anyio import from_thread  # only sync generator solids need it; costly to import

    step = attempt.step
    outs = step.outs
    assert outs is not None, "the plan gives every generator step its outs"
    outputs: dict[str, Any] = {}

    def drain() -> None:
        try:
            for item in gen:
                dynamic = sort_item(step.key, outs, item, outputs)
                if dynamic is not None:
                    from_thread.run_sync(run.fan_out, attempt, *dynamic)
                from_thread.check_cancelled()
        finally:
            gen.close()

    await _in_thread(run, attempt, drain)
    check_outputs(step.key, outs, outputs)
    return outputs


async def _in_thread(run: RunScope, attempt: StepAttempt, call: Callable[[], Any]) -> Any:
    thread_call = ThreadCall(call)
    try:
        # Abandoned on cancel: the attempt ends on time even when the solid never returns.
        value = await thread_call.run(limiter=run.thread_limiter, abandon_on_cancel=True)
    except BaseException:
        if thread_call.state == 1:  # cancelled while the solid runs on in its thread
            run.outlived(attempt, thread_call.still_running)
        raise
    # A thread cannot be interrupted: if the run was cancelled while it ran, its value
    # arrives too late and the step ends CANCELED, not SUCCESS.
    await anyio.lowlevel.checkpoint_if_cancelled()
    return value
