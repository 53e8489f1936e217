"""The run's event log and its fan-out to listeners and live readers.

Emitting is synchronous and cheap (one object, one append, a loop over
listeners), because the engine emits from its hot path; a step's STEP_START
and STEP_SUCCESS that no listener wants are appended as compact records
(:mod:`~asyncdag._engine._eventlog`).  Listeners must not block: storage
buffers, the console logger formats.  Async readers wait on an
``anyio.Event`` that exists only while someone waits.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import anyio

from .._events import Event, EventType, StepStartEvent, StepSuccessEvent
from ._eventlog import EventLog

__all__ = ["EventBus", "Listener"]

Listener = Callable[[Event], Any]

_log = logging.getLogger("asyncdag.events")
_new_event = tuple.__new__
DEBUG = logging.DEBUG
_NOBODY = sys.maxsize  # the floor when no listener listens


class EventBus:
    """Numbers events, keeps them in order, and tells listeners and readers."""

    __slots__ = (
        "_closed",
        "_failures",
        "_floor",
        "_listeners",
        "_loop_thread",
        "_records",
        "_waiter",
        "events",
        "run_id",
    )

    def __init__(self, run_id: str, listeners: Iterable[Listener] = ()) -> None:
        self.run_id = run_id
        self._loop_thread = threading.get_ident()
        self.events = EventLog(run_id)
        self._records = self.events.records
        self._listeners: list[tuple[Listener, int]] = [(listener, 0) for listener in listeners]
        # The lowest level any listener wants: events below it need no call at all.
        self._floor = 0 if self._listeners else _NOBODY
        self._waiter: anyio.Event | None = None
        self._closed = False
        # id(listener) -> (failures so far, listener)
        self._failures: dict[int, tuple[int, Listener]] = {}

    def add_listener(self, listener: Listener, *, min_level: int = 0) -> None:
        """Call ``listener`` with every event at ``min_level`` or above, in order."""
        self._listeners.append((listener, min_level))
        self._floor = min(self._floor, min_level)

    def emit(
        self,
        type: EventType,
        /,
        *,
        step_key: str | None = None,
        level: int = logging.DEBUG,
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> Event:
        """Record one event and tell listeners and readers (from any thread; see the module doc)."""
        if threading.get_ident() != self._loop_thread:
            # A sync solid logging from its worker thread: numbering, listeners and waking
            # readers all belong to the event loop's thread, so hop there and wait.
            import functools

            import anyio.from_thread

            return anyio.from_thread.run_sync(
                functools.partial(
                    self.emit, type, step_key=step_key, level=level, message=message, data=data
                )
            )
        records = self._records
        # tuple.__new__ skips the named tuple's Python-level __new__: a third of the cost.
        event = _new_event(
            Event, (self.run_id, len(records), time.time(), type, step_key, level, message, data)
        )
        records.append(event)
        if level >= self._floor or self._waiter is not None:
            self._tell(event, level)
        return event

    def emit_step(
        self,
        kind: type[StepStartEvent] | type[StepSuccessEvent],
        step_key: str,
        timestamp: float,
        attempt: int,
        since: float,
    ) -> None:
        """Record a step's STEP_START or STEP_SUCCESS (``kind``), at DEBUG, on the event
        loop's thread: the engine's own, twice a step.  Unless a listener wants DEBUG, it
        is kept as a compact record, and its message and data are built only when read."""
        records = self._records
        if self._floor <= DEBUG:
            event = _new_event(
                kind,
                (self.run_id, len(records), timestamp, kind.TYPE, step_key, DEBUG, attempt, since),
            )
            records.append(event)
            self._tell(event, DEBUG)
            return
        records.append((kind is StepSuccessEvent, timestamp, step_key, attempt, since))
        if self._waiter is not None:
            self._wake()

    def _tell(self, event: Event, level: int) -> None:
        """Hand a recorded event to the listeners that want its level, and wake readers."""
        for listener, min_level in self._listeners:
            if level < min_level:
                continue
            try:
                listener(event)
            except BaseException as exc:  # never out of here: see _listener_failed
                self._listener_failed(listener, event, exc)
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        assert waiter is not None
        self._waiter = None
        waiter.set()

    def _listener_failed(self, listener: Listener, event: Event, exc: BaseException) -> None:
        """A listener raised: the run goes on, and every other listener still hears everything.

        Whatever it raised (a broken pipe, a bug, even ``KeyboardInterrupt`` or
        ``SystemExit``) stays here: a listener is an observer and never changes a
        run's outcome.  A listener is called synchronously, so no cancellation of
        the event loop can come out of it.  The first failure of each listener is
        logged with its traceback (on the ``asyncdag.events`` logger); the rest are
        counted and summed up when the run ends, so a listener that fails on
        every event does not flood the log.
        """
        failures = self._failures
        count = failures.get(id(listener), (0, listener))[0] + 1
        failures[id(listener)] = (count, listener)
        if count > 1:
            return
        with contextlib.suppress(Exception):  # a logging setup that fails too: nothing to do
            _log.error(
                "event listener %r raised on %s (seq %d); the run goes on without its "
                "view of this event",
                listener,
                event.type,
                event.seq,
                exc_info=exc,
            )

    def close(self) -> None:
        """No more events will come; wake readers so they can finish."""
        for count, listener in self._failures.values():
            if count > 1:
                with contextlib.suppress(Exception):
                    _log.error("event listener %r raised on %d events of this run", listener, count)
        self._failures.clear()
        self._closed = True
        if self._waiter is not None:
            self._wake()

    @property
    def closed(self) -> bool:
        return self._closed

    async def stream(self, *, after: int = -1) -> AsyncGenerator[Event, None]:
        """Every event after sequence number ``after``, then live ones until the run ends."""
        index = after + 1
        while True:
            events = self.events
            while index < len(events):
                yield events[index]
                index += 1
            if self._closed:
                return
            if self._waiter is None:
                self._waiter = anyio.Event()
            await self._waiter.wait()
