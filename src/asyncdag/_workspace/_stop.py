"""Stopping a process that hosts runs (``pipeline execute``, ``asyncdag ui``) when asked to.

The first SIGINT or SIGTERM asks the work to stop gracefully: runs are
cancelled and end CANCELED on their own.  A sync solid stuck in a loop can keep
a run from ever ending (a thread cannot be killed), so a second signal, or the
work still going ``grace`` seconds after the first, abandons it: the runs still
going are recorded CANCELED, with the events they emitted so far and a reason,
and the process leaves at once with ``128 + signal number`` (130 for SIGINT,
143 for SIGTERM), the shell's convention for a process ended by a signal.

Recording here rather than leaving the run STARTED matters: a STARTED run whose
process is gone is later marked FAILURE ("killed?"), which is not what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, NoReturn

import anyio

from asyncdag._events import Event, RunStatus

if TYPE_CHECKING:
    from asyncdag.storage import RunStorage

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "STOP_SIGNALS",
    "add_grace_period_argument",
    "exit_code_for",
    "exit_now",
    "leave",
    "leftover_threads",
    "record_canceled",
    "stop_on_signals",
]

#: Seconds between the first signal and abandoning the work that has not stopped by then.
DEFAULT_GRACE_PERIOD = 10.0
#: The most time spent recording abandoned runs before leaving anyway (a locked database).
_RECORD_TIMEOUT = 5.0
#: The most time spent at exit letting idle worker threads finish before calling them stuck.
_SETTLE = 0.5
#: What :func:`stop_on_signals` expects its signal receiver to listen to.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def add_grace_period_argument(parser: argparse.ArgumentParser, *, what: str) -> None:
    """``--grace-period SECONDS``: how long ``what`` may take to wind down after a signal."""
    parser.add_argument(
        "--grace-period",
        type=_seconds,
        default=DEFAULT_GRACE_PERIOD,
        metavar="SECONDS",
        help=f"after Ctrl-C or SIGTERM, how long {what} may take to wind down before the "
        "process exits without waiting, recording as CANCELED what still runs "
        f"(default {DEFAULT_GRACE_PERIOD:g})",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds, got {text!r}")
    return value


def exit_code_for(signum: int) -> int:
    """``128 + signum``: what a shell reports for a process ended by that signal."""
    return 128 + int(signum)


async def stop_on_signals(
    signals: AsyncIterator[int],
    *,
    grace: float,
    stop: Callable[[signal.Signals], object],
    abandon: Callable[[signal.Signals, str], Awaitable[NoReturn]],
) -> None:
    """Turn SIGINT/SIGTERM into a graceful stop, then, if that does not end the work, an exit.

    ``stop(sig)`` is called on the first signal and must not block (cancel the
    run, tell the server to shut down).  ``abandon(sig, when)`` is awaited on a
    second signal, or once ``grace`` seconds have passed since the first (``when``
    says which: "on a second SIGINT", "10s after SIGTERM"); it records what must
    be recorded and ends the process.  The caller cancels
    this task when its work ends, which is the normal way out.
    """
    first: signal.Signals | None = None
    async for signum in signals:
        first = signal.Signals(signum)
        break
    if first is None:
        return
    stop(first)
    second: signal.Signals | None = None
    with anyio.move_on_after(grace):
        async for signum in signals:
            second = signal.Signals(signum)
            break
    if second is not None:
        await abandon(second, f"on a second {second.name}")
    else:
        await abandon(first, f"{grace:g}s after {first.name}")


async def record_canceled(
    storage: RunStorage,
    run_id: str,
    events: Sequence[Event],
    *,
    reason: str,
    timeout: float = _RECORD_TIMEOUT,
) -> bool:
    """Store the events of an abandoned run not yet stored, then mark it CANCELED with ``reason``.

    The run's own recorder may be writing at the same moment: its batches are
    all-or-none and in order, so the stored count is the next seq to write; a
    batch that lands between counting and writing makes the write fail, and the
    next try counts again.  Returns False when storage did not answer within
    ``timeout`` or kept failing (the run then stays STARTED, and is marked
    FAILURE by the next command that opens the history).
    """
    from asyncdag.storage import StorageError  # sqlite3 and friends: only when recording

    events = list(events)
    with anyio.move_on_after(timeout):
        for _ in range(5):
            with contextlib.suppress(StorageError):
                stored = await storage.count_events(run_id)
                if stored < len(events):
                    await storage.add_events(run_id, events[stored:])
                break
        try:
            await storage.finish_run(
                run_id, RunStatus.CANCELED, end_time=time.time(), failure_reason=reason
            )
        except StorageError:
            return False
        return True
    return False


def leftover_threads(*, settle: float = _SETTLE) -> list[threading.Thread]:
    """Threads that would keep the interpreter from exiting: alive, not daemon, not this one.

    A sync solid abandoned by a timeout or a cancel goes on in such a thread (anyio's
    asyncio workers are not daemon threads), and Python waits for it at exit.  Idle
    workers were told to stop when the event loop ended and do within a moment, so
    each thread gets up to ``settle`` seconds (in all) to finish before it counts.
    """
    current = threading.current_thread()
    deadline = time.monotonic() + settle
    left = []
    for thread in threading.enumerate():
        if thread.daemon or thread is current or thread is threading.main_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            left.append(thread)
    return left


def leave(code: int, *, prog: str) -> int:
    """``code``, or exit with it now when threads left behind would hold the process open."""
    threads = leftover_threads()
    if not threads:
        return code
    names = ", ".join(sorted({t.name for t in threads}))
    print(
        f"{prog}: exiting without waiting for {len(threads)} thread(s) still running "
        f"({names}): a sync solid that ignored its timeout or cancellation, or a thread it "
        "started",
        file=sys.stderr,
    )
    exit_now(code)


def exit_now(code: int) -> NoReturn:
    """Flush what was printed and end the process without waiting for any thread."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
