"""Live tailing across hosts: one connection LISTENing in a thread, waking readers' event loops.

Every write of a run's events or status NOTIFYs the channel with the run id, in
the writing transaction, so the notification arrives when the rows are visible
(PostgreSQL delivers it on commit).  A reader waiting on that run is woken on
its own event loop through ``anyio.from_thread.run_sync`` and the loop's token,
which works the same under asyncio and trio.

The thread waits in ``select`` on the connection's socket and on a pipe that
``stop`` writes to, so stopping is immediate.  When the connection drops it
wakes nobody (a read now would only fail the same way), reconnects with a backoff,
and wakes every waiter once it LISTENs again: a notification sent while
nobody listened is lost, but the readers it was for look again then.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable

import anyio
import anyio.from_thread
import anyio.lowlevel
import attrs
import psycopg
from psycopg import sql

# Reconnecting to LISTEN keeps the pace of the outbox's retries: one server, one policy.
from asyncdag.storage._postgres_outbox import _FIRST_DELAY, _MAX_DELAY

__all__ = ["Listener", "Waiter"]

_log = logging.getLogger("asyncdag.storage")

#: How long the thread waits on a quiet connection before checking it is alive.
_KEEPALIVE = 30.0


@attrs.define(eq=False)
class Waiter:
    """One reader waiting for news of one run, on the event loop it was created in."""

    event: anyio.Event = attrs.field(factory=anyio.Event)
    token: anyio.lowlevel.EventLoopToken = attrs.field(factory=anyio.lowlevel.current_token)
    woken: bool = False

    def wake(self) -> None:
        """From the listener thread: set the event on its loop (a loop gone by now is fine)."""
        if self.woken:
            return
        self.woken = True
        with contextlib.suppress(RuntimeError):  # anyio's RunFinishedError: the loop has ended
            anyio.from_thread.run_sync(self.event.set, token=self.token)


class Listener:
    """LISTEN on ``channel`` in a thread; wake the waiters of the run id each NOTIFY names."""

    def __init__(self, connect: Callable[[], psycopg.Connection], channel: str, where: str) -> None:
        self._connect = connect
        self._channel = channel
        self._where = where
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self._listening = threading.Event()
        self._tried = threading.Event()  # set after the first connection attempt, either way
        self._stopping = False
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(
            target=self._run, name="asyncdag-postgres-listen", daemon=True
        )
        self._thread.start()

    @property
    def listening(self) -> bool:
        """Whether notifications are arriving now (False while reconnecting)."""
        return self._listening.is_set()

    def wait_listening(self, timeout: float) -> bool:
        """Wait for the first connection attempt; True if the thread is listening."""
        self._tried.wait(timeout)
        return self._listening.is_set()

    def add(self, run_id: str, waiter: Waiter) -> None:
        with self._lock:
            self._waiters.setdefault(run_id, set()).add(waiter)

    def remove(self, run_id: str, waiter: Waiter) -> None:
        with self._lock:
            waiting = self._waiters.get(run_id)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiters[run_id]

    def stop(self, timeout: float) -> None:
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        self._thread.join(timeout)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)

    # -- the thread -------------------------------------------------------------------------

    def _wake(self, run_id: str | None) -> None:
        # Copy under the lock, wake outside it: waking waits for the waiter's loop, and that
        # loop may be about to take the lock to remove a waiter.
        with self._lock:
            if run_id is None:
                waiters = [w for ws in self._waiters.values() for w in ws]
            else:
                waiters = list(self._waiters.get(run_id, ()))
        for waiter in waiters:
            waiter.wake()

    def _run(self) -> None:
        delay = _FIRST_DELAY
        while not self._stopping:
            try:
                conn = self._connect()
            except psycopg.Error as exc:
                _log.debug("run storage %s: cannot LISTEN yet: %s", self._where, exc)
                self._tried.set()
                self._pause(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            try:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                self._listening.set()
                self._tried.set()
                delay = _FIRST_DELAY
                self._wake(None)  # whatever was sent while nobody listened: look again
                self._serve(conn)
            except psycopg.Error as exc:
                # Waiters are not woken now: reading would fail the same way.  They are
                # when LISTEN works again (or at their timeout).
                _log.debug("run storage %s: LISTEN connection lost: %s", self._where, exc)
            finally:
                self._listening.clear()
                conn.close()
        self._wake(None)  # stopped: nobody will be told of writes any more

    def _serve(self, conn: psycopg.Connection) -> None:
        while not self._stopping:
            # First what psycopg has already read (notifications that came in with the
            # answer to LISTEN or to a keep-alive wait in its backlog, invisible to select).
            for notify in conn.notifies(timeout=0):
                self._wake(notify.payload or None)
            ready, _, _ = select.select([conn.fileno(), self._wake_r], [], [], _KEEPALIVE)
            if self._stopping:
                return
            if not ready:
                conn.execute("SELECT 1")  # a dead peer only shows when we speak

    def _pause(self, seconds: float) -> None:
        ready, _, _ = select.select([self._wake_r], [], [], seconds)
        del ready
