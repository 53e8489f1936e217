"""A few PostgreSQL connections shared by the worker threads of one store.

Why not psycopg_pool: its pool reconnects in background threads with a backoff
of its own (1 s, doubling, for minutes), so after an outage buffered run events
would wait up to twice as long as the outage itself, and every store (each CLI
command opens one) would start four threads.  This store needs less and more
exact: connect when asked, at once; keep a handful of idle connections; drop a
connection the moment it is known broken.  Pacing retries is the outbox's job.

Connections are in autocommit mode: a method that needs a transaction opens one
with ``conn.transaction()``, and a connection is idle whenever it is returned.
"""

from __future__ import annotations

import collections
import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg
import psycopg.pq

from asyncdag.storage._base import StorageError

__all__ = ["ConnectionPool", "is_transient"]

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """True when trying again later can succeed: the server is gone, restarting, or unreachable."""
    return isinstance(exc, psycopg.OperationalError)


class ConnectionPool:
    """At most ``max_size`` connections; idle ones are reused newest first.

    ``connection()`` waits up to ``wait_timeout`` for a free slot when all are
    busy, then raises :class:`psycopg.OperationalError` (transient: busy is not
    broken, but trying later helps).
    """

    def __init__(
        self, conninfo: str, *, max_size: int, connect_timeout: float, wait_timeout: float
    ) -> None:
        self._conninfo = conninfo
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(2, round(connect_timeout)),  # libpq's minimum is 2 s
            "application_name": "asyncdag",
        }
        self._slots = threading.BoundedSemaphore(max_size)
        self._wait_timeout = wait_timeout
        self._lock = threading.Lock()
        # Invariant: every connection here is open and idle, and holds no slot.
        self._idle: collections.deque[psycopg.Connection] = collections.deque()
        self._closed = False

    def connect(self) -> psycopg.Connection:
        """A new connection outside the pool (the listener keeps one of its own)."""
        return psycopg.connect(self._conninfo, **self._kwargs)

    @contextlib.contextmanager
    def connection(self) -> Iterator[tuple[psycopg.Connection, bool]]:
        """A connection and whether it was reused (a reused one may have died while idle)."""
        if not self._slots.acquire(timeout=self._wait_timeout):
            raise psycopg.OperationalError(
                f"all run-storage connections stayed busy for {self._wait_timeout:g}s"
            )
        try:
            conn, reused = self._take()
            try:
                yield conn, reused
            except BaseException:
                self._give_back(conn)
                raise
            self._give_back(conn)
        finally:
            self._slots.release()

    def run(self, fn: Callable[[psycopg.Connection, bool], T]) -> T:
        """``fn(conn, retried)``, once more on a new connection if a reused one had died idle.

        ``retried`` tells ``fn`` that its first attempt may have committed before
        the connection broke, so a write must be idempotent then.
        """
        with self.connection() as (conn, reused):
            try:
                return fn(conn, False)
            except psycopg.OperationalError:
                if not (reused and conn.broken):
                    raise
        self.discard_idle()  # its siblings have likely died with it (a server restart)
        with self.connection() as (conn, _):
            return fn(conn, True)

    def discard_idle(self) -> None:
        """Close every idle connection: after one died, its siblings likely did too."""
        with self._lock:
            idle, self._idle = list(self._idle), collections.deque()
        for conn in idle:
            conn.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.discard_idle()

    def _take(self) -> tuple[psycopg.Connection, bool]:
        with self._lock:
            if self._closed:
                raise StorageError(
                    "this PostgresStorage is closed; create a new one to use it again"
                )
            if self._idle:
                return self._idle.pop(), True
        return self.connect(), False

    def _give_back(self, conn: psycopg.Connection) -> None:
        healthy = (
            not conn.closed
            and not conn.broken
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )
        if healthy:
            with self._lock:
                if not self._closed:
                    self._idle.append(conn)
                    return
        conn.close()
