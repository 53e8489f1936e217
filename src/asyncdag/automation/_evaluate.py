"""Calling a user's schedule or sensor function, whatever its kind, within a time limit.

A function may be sync or async, plain or a generator; sync ones run in a
worker thread so a slow one never stalls the loop (or the web UI sharing it).
Whatever it returns is normalised to run requests or a skip, and anything else
is an error naming the schedule and saying what to return instead.  The time
limit is measured on the scheduler's clock; a sync function past it is
abandoned in its thread (a thread cannot be killed), an async one cancelled.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import anyio
import anyio.to_thread
import attrs

from asyncdag._errors import AsyncdagError

from ._clock import Clock
from ._definitions import RunRequest, SkipReason

__all__ = ["EvaluationError", "Outcome", "evaluate"]


class EvaluationError(AsyncdagError):
    """A schedule or sensor function returned something unusable, or took too long."""


@attrs.frozen
class Outcome:
    """What one evaluation asks for: runs, or a reason to start none."""

    requests: tuple[RunRequest, ...] = ()
    skip_reason: str | None = None


async def evaluate(
    fn: Callable[..., Any],
    context: Any,
    *,
    takes_context: bool,
    kind: str,
    name: str,
    clock: Clock,
    timeout: float | None,
    allow_config: bool,
) -> Outcome:
    """Call ``fn`` (with ``context`` if it takes one) and normalise its result."""
    args = (context,) if takes_context else ()
    call = functools.partial(_call, fn, args)
    result = await _within(call, clock, timeout, f"{kind} {name!r}")
    return _normalise(result, kind=kind, name=name, allow_config=allow_config)


async def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        if inspect.isasyncgenfunction(fn):
            return [item async for item in fn(*args)]
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        result = await anyio.to_thread.run_sync(_call_sync, fn, args, abandon_on_cancel=True)
        if inspect.isawaitable(result):
            return await result
        return result
    except (SystemExit, KeyboardInterrupt) as exc:
        # Caught here, in our own frame: asyncio would let these tear through the event
        # loop (and the web UI sharing it). From user code they fail the tick.
        raise EvaluationError(f"the function raised {type(exc).__name__}({exc})") from exc


def _call_sync(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    try:
        result = fn(*args)
        if inspect.isgenerator(result):
            return list(result)  # a generator's body runs here too, off the event loop
        return result
    except (SystemExit, KeyboardInterrupt) as exc:
        raise EvaluationError(f"the function raised {type(exc).__name__}({exc})") from exc


async def _within(call: Callable[[], Any], clock: Clock, timeout: float | None, what: str) -> Any:
    """Await ``call()``; past ``timeout`` seconds on ``clock``, cancel it and raise EvaluationError.

    The call runs as a child task and hands back its result or exception, so an
    error from user code comes out as itself, not wrapped in an ExceptionGroup;
    a BaseException from user code (SystemExit...) is an error of the tick too.
    """
    done: list[Any] = []
    failed: list[BaseException] = []
    timed_out = False
    cancelled = anyio.get_cancelled_exc_class()

    async with anyio.create_task_group() as tg:

        async def run() -> None:
            try:
                done.append(await call())
            except cancelled:
                raise
            except BaseException as exc:
                failed.append(exc)
            finally:
                tg.cancel_scope.cancel()

        async def watchdog(limit: float) -> None:
            nonlocal timed_out
            await clock.sleep_until(clock.now() + limit)
            timed_out = True
            tg.cancel_scope.cancel()

        tg.start_soon(run)
        if timeout is not None:
            tg.start_soon(watchdog, timeout)
    if failed:
        raise failed[0]
    if done:
        return done[0]
    if timed_out:
        raise EvaluationError(
            f"{what} did not return within {timeout:g} s; it was abandoned (a sync function "
            "keeps its thread until it returns). Make it faster, or raise the scheduler's "
            "evaluation_timeout"
        )
    raise EvaluationError(f"{what} was cancelled before it returned")


def _normalise(result: Any, *, kind: str, name: str, allow_config: bool) -> Outcome:
    if isinstance(result, SkipReason):
        return Outcome(skip_reason=result.skip_message or f"the {kind} function skipped this tick")
    if isinstance(result, RunRequest):
        return Outcome(requests=(result,))
    if allow_config and isinstance(result, dict):
        return Outcome(requests=(RunRequest(run_config=result),))
    if result is None:
        if kind == "sensor":
            return Outcome(skip_reason="the sensor function requested no run")
        raise EvaluationError(
            f"schedule {name!r} returned None; return run config (a dict, {{}} for none), "
            "a RunRequest, or a SkipReason"
        )
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | dict):
        requests: list[RunRequest] = []
        skips: list[str] = []
        for item in result:
            if isinstance(item, RunRequest):
                requests.append(item)
            elif isinstance(item, SkipReason):
                skips.append(item.skip_message or "")
            elif allow_config and isinstance(item, dict):
                requests.append(RunRequest(run_config=item))
            else:
                raise _unusable(item, kind, name)
        if requests:
            return Outcome(requests=tuple(requests))
        reason = "; ".join(s for s in skips if s) or f"the {kind} function requested no run"
        return Outcome(skip_reason=reason)
    raise _unusable(result, kind, name)


def _unusable(value: Any, kind: str, name: str) -> EvaluationError:
    wanted = (
        "run config (a dict), a RunRequest (or a list of them) or a SkipReason"
        if kind == "schedule"
        else "RunRequest objects (return or yield them) or a SkipReason"
    )
    return EvaluationError(
        f"{kind} {name!r} returned {type(value).__name__} {value!r:.80}; return {wanted}"
    )
