"""Where the scheduler's time comes from: the system clock, or a clock a test moves by hand.

Everything in automation that depends on time (when a tick is due, when a
lease expires, when a sensor is next evaluated, when an evaluation has taken
too long) asks a :class:`Clock`, never ``time.time()`` or ``anyio.sleep``, so a
test drives a week of ticks, a daylight-saving change or a lease expiry in
microseconds with :class:`ManualClock`, the way trio's ``MockClock`` lets its
own tests skip time.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

import anyio
import anyio.lowlevel

__all__ = ["Clock", "ManualClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Wall-clock time for the scheduler: seconds since the epoch, and a way to wait for one."""

    def now(self) -> float:
        """The current time, seconds since the epoch (what ``time.time()`` returns)."""
        ...

    async def sleep_until(self, deadline: float) -> None:
        """Return once ``now() >= deadline`` (at once if it already is); cancellable."""
        ...


class SystemClock:
    """The real clock: ``time.time()``, and sleeping until a wall-clock deadline.

    A long sleep is taken in slices of at most ``max_slice`` seconds and
    rechecked, so a wall clock that jumps (NTP, a suspended laptop) is noticed
    within a slice instead of after the whole sleep.
    """

    def __init__(self, *, max_slice: float = 60.0) -> None:
        self._max_slice = max_slice

    def now(self) -> float:
        return time.time()

    async def sleep_until(self, deadline: float) -> None:
        while True:
            left = deadline - time.time()
            if left <= 0:
                await anyio.lowlevel.checkpoint()
                return
            await anyio.sleep(min(left, self._max_slice))


class ManualClock:
    """A clock that moves only when told to: for tests of schedules, sensors and leases.

    ``advance(seconds)`` or ``set(t)`` moves it and wakes every sleeper whose
    deadline has come.  It is safe to share between tasks of one event loop.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (deadline, next(self._order), event))
        await event.wait()

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0) and wake the sleepers now due."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got advance({seconds})")
        self.set(self._now + seconds)

    def set(self, t: float) -> None:
        """Move the clock to ``t`` (not before the current time) and wake the sleepers now due."""
        if t < self._now:
            raise ValueError(f"a clock only moves forward; it is at {self._now}, not {t}")
        self._now = float(t)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            heapq.heappop(self._sleepers)[2].set()

    @property
    def next_deadline(self) -> float | None:
        """The earliest deadline a task sleeps until (a cancelled sleeper may still count)."""
        return self._sleepers[0][0] if self._sleepers else None
