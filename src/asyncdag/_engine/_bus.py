"""The run's event log and its fan-out to listeners and live readers.

Emitting is synchronous and cheap (one object, one append, a loop over
listeners), because the engine emits from its hot path.  Listeners must not
block: storage buffers, the console logger formats.  Async readers wait on an
``anyio.Event`` that exists only while someone waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import anyio

from .._events import Event, EventType

__all__ = ["EventBus", "Listener"]

Listener = Callable[[Event], Any]

_log = logging.getLogger("asyncdag.events")
_new_event = tuple.__new__


class EventBus:
    """Numbers events, keeps them in order, and tells listeners and readers."""

    __slots__ = ("_closed", "_listeners", "_loop_thread", "_waiter", "events", "run_id")

    def __init__(self, run_id: str, listeners: Iterable[Listener] = ()) -> None:
        self.run_id = run_id
        self._loop_thread = threading.get_ident()
        self.events: list[Event] = []
        self._listeners: list[tuple[Listener, int]] = [(listener, 0) for listener in listeners]
        self._waiter: anyio.Event | None = None
        self._closed = False

    def add_listener(self, listener: Listener, *, min_level: int = 0) -> None:
        """Call ``listener`` with every event at ``min_level`` or above, in order."""
        self._listeners.append((listener, min_level))

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
        events = self.events
        # tuple.__new__ skips the named tuple's Python-level __new__: a third of the cost.
        event = _new_event(
            Event, (self.run_id, len(events), time.time(), type, step_key, level, message, data)
        )
        events.append(event)
        for listener, min_level in self._listeners:
            if level < min_level:
                continue
            try:
                listener(event)
            except Exception:  # a listener's bug must not take the run down with it
                _log.exception("event listener %r failed on %s", listener, event.type)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()
        return event

    def close(self) -> None:
        """No more events will come; wake readers so they can finish."""
        self._closed = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

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
