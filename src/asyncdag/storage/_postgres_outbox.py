"""Writes that wait for PostgreSQL to come back, in order, and the thread that stores them.

While the database answers, a write goes straight through and its caller sees
its outcome.  When one fails because the connection is gone, it joins a queue
and its caller returns as if it had been stored: the run goes on.  A thread
retries the head of the queue (50 ms, doubling to 2 s) until the server
answers, then stores the queue in order.  While anything is queued, every new
write queues behind it, so a run's final status never lands before its events.

A write is a closure that may run twice: once before the connection died (and
perhaps committed, its acknowledgement lost) and again from the queue; the
second run is told so (``replay=True``) and must be idempotent.

The queue is bounded by ``capacity`` events.  A batch of events that would
overflow it is refused with :class:`StorageError` (the run's recorder keeps it
and tries once more when the run ends).  Final statuses are never refused: they
are tiny, and a run without one would look alive forever.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable

import attrs

from asyncdag.storage._base import StorageError

__all__ = ["Outbox", "PendingWrite"]

_log = logging.getLogger("asyncdag.storage")

#: The pace of retries while the server is unreachable (seconds, doubling up to the second);
#: the LISTEN thread (``_postgres_listen``) reconnects at the same pace.
_FIRST_DELAY = 0.05
_MAX_DELAY = 2.0
#: How long close() waits for a write attempt in flight once it has given up on the queue.
_JOIN_TIMEOUT = 30.0


@attrs.define(eq=False)
class PendingWrite:
    """One write: what it carries and how to apply it."""

    run_id: str
    events: int  # events it stores; 0 for a status change
    what: str  # for messages: "events 10..19 of run 'x'"
    apply: Callable[[bool], None]  # apply(replay): replay=True when it may already be stored
    attempted: bool = False


class Outbox:
    """The queue of writes waiting for the database, and its draining thread."""

    def __init__(
        self, *, capacity: int, where: str, is_transient: Callable[[BaseException], bool]
    ) -> None:
        self._capacity = capacity
        self._where = where
        self._is_transient = is_transient
        self._cond = threading.Condition()
        # Invariant (under _cond): _pending_events is the sum of .events over _queue, and a
        # drainer thread is running whenever _queue is non-empty and _stopping is False.
        self._queue: collections.deque[PendingWrite] = collections.deque()
        self._pending_events = 0
        self._drainer: threading.Thread | None = None
        self._stopping = False
        #: Writes the database refused when the queue replayed them (logged as errors).
        self.dropped: list[tuple[PendingWrite, BaseException]] = []

    @property
    def pending_events(self) -> int:
        """Events waiting for the database."""
        with self._cond:
            return self._pending_events

    @property
    def pending_writes(self) -> int:
        with self._cond:
            return len(self._queue)

    def submit(self, write: PendingWrite) -> None:
        """Store ``write`` now, or queue it; raise when it fails for good or the queue is full."""
        with self._cond:
            if self._queue:
                self._enqueue(write, None)
                return
        write.attempted = True
        try:
            write.apply(False)
        except Exception as exc:
            if not self._is_transient(exc):
                raise
            with self._cond:
                self._enqueue(write, exc)

    def wait_drained(self, timeout: float) -> bool:
        """Wait until every queued write is stored; False if some are still waiting."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue, timeout=timeout)

    def close(self, timeout: float) -> list[PendingWrite]:
        """Give the queue ``timeout`` seconds to drain, then stop; return what was not stored."""
        self.wait_drained(timeout)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            drainer = self._drainer
        if drainer is not None:
            drainer.join(_JOIN_TIMEOUT)  # at most one write attempt away, unless it hangs
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._pending_events = 0
        return left

    def _enqueue(self, write: PendingWrite, error: BaseException | None) -> None:
        if self._stopping:
            raise StorageError(f"run storage {self._where} is closed; {write.what} not stored")
        if write.events and self._pending_events + write.events > self._capacity:
            raise StorageError(
                f"run storage {self._where} is unreachable and {self._pending_events} events "
                f"already wait for it, the most it buffers (max_buffered_events="
                f"{self._capacity}); {write.what} not stored"
            )
        if not self._queue:
            _log.warning(
                "run storage %s unreachable (%s); buffering writes until it is back",
                self._where,
                error or "earlier write failed",
            )
        self._queue.append(write)
        self._pending_events += write.events
        if self._drainer is None:
            self._drainer = threading.Thread(
                target=self._drain, name="asyncdag-postgres-outbox", daemon=True
            )
            self._drainer.start()

    def _drain(self) -> None:
        delay = _FIRST_DELAY
        stored = 0
        while True:
            with self._cond:
                if self._stopping or not self._queue:
                    self._drainer = None
                    self._cond.notify_all()
                    if stored:
                        _log.warning(
                            "run storage %s is back: %d buffered writes stored", self._where, stored
                        )
                    return
                head = self._queue[0]
            replay, head.attempted = head.attempted, True
            try:
                head.apply(replay)
            except Exception as exc:
                if self._is_transient(exc):
                    with self._cond:
                        self._cond.wait_for(lambda: self._stopping, timeout=delay)
                    delay = min(delay * 2, _MAX_DELAY)
                    continue
                _log.error("run storage %s refused %s: %s", self._where, head.what, exc)
                self.dropped.append((head, exc))
            else:
                stored += 1
            delay = _FIRST_DELAY
            with self._cond:
                if self._queue and self._queue[0] is head:  # close() may have given up on it
                    self._queue.popleft()
                    self._pending_events -= head.events
                if not self._queue:
                    self._cond.notify_all()
