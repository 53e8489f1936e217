"""PostgreSQL run storage: one history shared by runs, UIs and schedulers on many hosts.

How it serves asyncio and trio alike without blocking either: psycopg's async
API is asyncio-only, so every call is psycopg's sync API in a worker thread
(``anyio.to_thread``), on one of a few pooled connections (_postgres_pool).
Nothing here imports psycopg until a store opens, so ``import asyncdag.storage``
stays light; install it with ``pip install 'asyncdag[postgres]'``.

This module decides where each call runs and what its errors become; the other
jobs live in modules of their own:

* _postgres_sql: the statements, one function per statement or transaction.
* _postgres_schema: versioned migrations applied on open, and the refusal of a
  database whose schema is newer than this code.
* _postgres_codec: runs and events to rows and back, exactly (NUL characters
  and lone surrogates included).
* _postgres_outbox: when the connection drops mid-run, writes queue (bounded)
  and a thread stores them in order once the server is back; a write that may
  have committed before the drop is replayed idempotently, keyed by
  ``(run_id, seq)``, so nothing is lost or stored twice.
* _postgres_listen: LISTEN/NOTIFY, so a reader on one host sees a run on
  another host write its events as they commit (:meth:`wait_for_events`).
* _postgres_automation: what schedules and sensors keep (state, ticks, run
  keys, leases), atomic across hosts by the database's keys and row locks.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Self, TypeVar

import anyio
import anyio.to_thread

from asyncdag._events import Event, EventType, RunStatus
from asyncdag._public import publish
from asyncdag.storage import _postgres_sql as sql
from asyncdag.storage._base import (
    RunRecord,
    RunStorage,
    StorageError,
    StorageUnavailableError,
    _check_event_run_ids,
    _check_terminal,
    _check_window,
    _duplicate_seq_message,
    _status_set,
    _type_set,
)
from asyncdag.storage._postgres_automation import PostgresAutomation
from asyncdag.storage._postgres_codec import EventRow, event_rows
from asyncdag.storage._url import redact

if TYPE_CHECKING:
    import psycopg

    from asyncdag.storage._postgres_listen import Listener
    from asyncdag.storage._postgres_outbox import Outbox
    from asyncdag.storage._postgres_pool import ConnectionPool

__all__ = ["PostgresStorage"]

T = TypeVar("T")


class PostgresStorage(PostgresAutomation, RunStorage):
    """Run history in a PostgreSQL database that runs, UIs and schedulers on many hosts share.

    ::

        storage = PostgresStorage("postgresql://asyncdag@db.internal/asyncdag")
        result = await execute_pipeline_async(my_pipeline, storage=storage)

    Construction touches nothing: the first call (or :meth:`open`, ``with``,
    ``async with``) connects, migrates the schema and, unless
    ``recover_orphans=False``, marks FAILED the STARTED runs whose process on
    this host has died.  Close it (:meth:`close`, :meth:`aclose`, or leave the
    ``with`` block) to store what is still buffered.

    ``max_connections`` bounds the connections this store opens (plus one for
    :meth:`wait_for_events`, once a reader waits).  ``connect_timeout`` bounds
    each connection attempt (seconds).

    If the database becomes unreachable while a run goes on, the run does not
    stop: its events (and final status) are buffered in this process, at most
    ``max_buffered_events`` of them, and stored in order as soon as the server
    answers again.  A batch that would overflow the buffer is refused with
    :class:`StorageError`; the run's recorder keeps it and tries once more when
    the run ends, and if the server is still away then, the run's exit raises
    :class:`StorageError` naming the first event lost.  Closing waits up to
    ``close_timeout`` seconds for the buffer to drain, then raises
    :class:`StorageError` saying what was not stored.  Starting a run needs the
    database (its id must be known unique), and so do reads.
    """

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 4,
        connect_timeout: float = 10.0,
        max_buffered_events: int = 100_000,
        close_timeout: float = 30.0,
        recover_orphans: bool = True,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if max_buffered_events < 0:
            raise ValueError(f"max_buffered_events must be >= 0, got {max_buffered_events}")
        self._url = url
        self.redacted_url = redact(url)
        self._max_connections = max_connections
        self._connect_timeout = connect_timeout
        self._capacity = max_buffered_events
        self._close_timeout = close_timeout
        self._recover_on_open = recover_orphans
        self._lock = threading.Lock()
        self._pool: ConnectionPool | None = None
        self._outbox: Outbox | None = None
        self._listener_thread: Listener | None = None
        self._closed = False
        #: Run ids that opening marked FAILED as orphans.
        self.recovered_on_open: list[str] = []
        #: The schema version the database was at when this store opened it.
        self.schema_version_found: int | None = None

    def __repr__(self) -> str:
        return f"PostgresStorage({self.redacted_url!r})"

    def __str__(self) -> str:
        return self.redacted_url

    @property
    def buffered_events(self) -> int:
        """Events waiting for the database to come back (0 while it answers)."""
        outbox = self._outbox
        return 0 if outbox is None else outbox.pending_events

    # -- opening and closing: sync, so the CLI needs no loop for them ----------------------

    def open(self) -> None:
        """Connect and migrate now (idempotent) rather than on first use, to fail early."""
        self._opened()

    def close(self) -> None:
        """Store what is buffered (waiting up to ``close_timeout``), then disconnect.

        Safe to call twice; the storage cannot be reopened.  Raises
        :class:`StorageError` when buffered writes could not be stored in time.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pool, outbox, listener = self._pool, self._outbox, self._listener_thread
        if listener is not None:
            listener.stop(timeout=self._connect_timeout)
        left = [] if outbox is None else outbox.close(self._close_timeout)
        if pool is not None:
            pool.close()
        if left:
            events = sum(w.events for w in left)
            shown = "; ".join(w.what for w in left[:5])
            more = f"; and {len(left) - 5} more writes" if len(left) > 5 else ""
            raise StorageError(
                f"run storage {self.redacted_url} stayed unreachable for close_timeout="
                f"{self._close_timeout:g}s: {len(left)} buffered writes ({events} events) are "
                f"lost: {shown}{more}"
            )

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        await anyio.to_thread.run_sync(self.open)
        return self

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def _opened(self) -> tuple[ConnectionPool, Outbox]:
        with self._lock:
            if self._closed:
                raise StorageError(
                    f"{self!r} is closed; create a new PostgresStorage to use it again"
                )
            if self._pool is None or self._outbox is None:
                self._pool, self._outbox = self._connect()
            return self._pool, self._outbox

    def _connect(self) -> tuple[ConnectionPool, Outbox]:
        try:
            import psycopg
        except ImportError as exc:
            raise StorageError(
                "PostgresStorage needs psycopg 3; install it with: pip install 'asyncdag[postgres]'"
            ) from exc
        from asyncdag.storage._postgres_outbox import Outbox
        from asyncdag.storage._postgres_pool import ConnectionPool, is_transient
        from asyncdag.storage._postgres_schema import migrate

        pool = ConnectionPool(
            self._url,
            max_size=self._max_connections,
            connect_timeout=self._connect_timeout,
            wait_timeout=max(self._connect_timeout, 30.0),
        )
        try:
            with pool.connection() as (conn, _):
                self.schema_version_found = migrate(conn, f"database {self.redacted_url}")
                if self._recover_on_open:
                    self.recovered_on_open = sql.recover_orphans(conn)
        except psycopg.Error as exc:
            pool.close()
            raise StorageError(
                f"cannot open run storage {self.redacted_url}: {_first_line(exc)}; check the "
                "URL, that the server is up and accepts this host and user"
            ) from exc
        except BaseException:
            pool.close()
            raise
        outbox = Outbox(capacity=self._capacity, where=self.redacted_url, is_transient=is_transient)
        return pool, outbox

    # -- every call: a worker thread, a pooled connection ---------------------------------

    def _guarded(self, pool: ConnectionPool, fn: Callable[[psycopg.Connection, bool], T]) -> T:
        """``fn`` on a pooled connection; psycopg's errors as :class:`StorageError`, except
        connection failures, which pass as they are for the caller (or the outbox) to judge."""
        import psycopg

        try:
            return pool.run(fn)
        except psycopg.OperationalError:
            raise  # transient: the caller (or the outbox) decides
        except psycopg.Error as exc:
            raise StorageError(f"run storage {self.redacted_url}: {_first_line(exc)}") from exc

    def _answered(self, fn: Callable[[psycopg.Connection, bool], T]) -> T:
        """``fn`` now, for a caller waiting on its answer: an unreachable server is an error."""
        import psycopg

        pool, _ = self._opened()
        try:
            return self._guarded(pool, fn)
        except psycopg.OperationalError as exc:
            raise StorageUnavailableError(  # it may pass: the recorder retries it
                f"run storage {self.redacted_url} is unreachable: {_first_line(exc)}; "
                "check that the server is up (reads need it; runs buffer their writes)"
            ) from exc

    async def _call(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """A read (or a write that needs no replay), in a worker thread."""
        return await anyio.to_thread.run_sync(self._answered, lambda conn, retried: fn(conn))

    # -- the RunStorage interface ---------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        def insert(conn: psycopg.Connection, retried: bool) -> None:
            sql.insert_run(conn, record, retried=retried)

        await anyio.to_thread.run_sync(self._answered, insert)

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return

        def submit() -> None:
            # Checking and encoding happen here, in the worker thread, off the event loop.
            from asyncdag.storage._postgres_outbox import PendingWrite

            _check_event_run_ids(run_id, events)
            seqs = [e.seq for e in events]
            if len(set(seqs)) != len(seqs):
                raise StorageError(_duplicate_seq_message(run_id, seqs))
            rows = event_rows(events)
            pool, outbox = self._opened()
            outbox.submit(
                PendingWrite(
                    run_id=run_id,
                    events=len(events),
                    what=f"events {min(seqs)}..{max(seqs)} of run {run_id!r}",
                    apply=functools.partial(self._insert_events, pool, run_id, rows),
                )
            )

        await anyio.to_thread.run_sync(submit)

    def _insert_events(
        self, pool: ConnectionPool, run_id: str, rows: list[EventRow], replay: bool
    ) -> None:
        import psycopg.errors

        def insert(conn: psycopg.Connection, retried: bool) -> None:
            sql.insert_events(conn, run_id, rows, replay=replay or retried)

        try:
            self._guarded(pool, insert)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.errors.UniqueViolation):
                raise StorageError(_duplicate_seq_message(run_id, [r[0] for r in rows])) from cause
            raise

    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        status = _check_terminal(status)

        def submit() -> None:
            from asyncdag.storage._postgres_outbox import PendingWrite

            pool, outbox = self._opened()

            def finish(conn: psycopg.Connection, retried: bool) -> None:
                sql.finish_run(
                    conn, run_id, status, end_time=end_time, failure_reason=failure_reason
                )

            outbox.submit(
                PendingWrite(
                    run_id=run_id,
                    events=0,
                    what=f"final status {status.value} of run {run_id!r}",
                    apply=lambda replay: self._guarded(pool, finish),
                )
            )

        await anyio.to_thread.run_sync(submit)

    async def get_run(self, run_id: str) -> RunRecord | None:
        return await self._call(functools.partial(sql.select_run, run_id=run_id))

    async def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        offset: int = 0,
        root_run_id: str | None = None,
    ) -> list[RunRecord]:
        _check_window(limit, offset)
        statuses = _status_set(status)
        if statuses is not None and not statuses:
            return []
        select = functools.partial(
            sql.select_runs,
            pipeline_name=pipeline_name,
            statuses=statuses,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            root_run_id=root_run_id,
        )
        return await self._call(select)

    async def get_events(
        self,
        run_id: str,
        *,
        after_seq: int = -1,
        limit: int | None = None,
        step_key: str | None = None,
        types: Collection[EventType] | None = None,
    ) -> list[Event]:
        _check_window(limit, 0)
        wanted = _type_set(types)
        if wanted is not None and not wanted:
            return []
        select = functools.partial(
            sql.select_events,
            run_id=run_id,
            after_seq=after_seq,
            limit=limit,
            step_key=step_key,
            types=wanted,
        )
        return await self._call(select)

    async def count_events(self, run_id: str) -> int:
        return await self._call(functools.partial(sql.count_events, run_id=run_id))

    async def delete_run(self, run_id: str) -> bool:
        return await self._call(functools.partial(sql.delete_run, run_id=run_id))

    async def recover_orphaned_runs(self) -> list[str]:
        return await self._call(sql.recover_orphans)

    async def wait_for_events(self, run_id: str, *, after_seq: int, timeout: float) -> None:
        """Return as soon as a write of ``run_id``'s events or status commits, on any host.

        LISTEN/NOTIFY: no polling while the database answers.  Returns at once
        when the run already has events after ``after_seq``, is finished, or is
        unknown; at the latest after ``timeout`` seconds.
        """
        if timeout <= 0:
            return
        from asyncdag.storage._postgres_listen import Waiter

        listener = await anyio.to_thread.run_sync(self._listener)
        waiter = Waiter()
        listener.add(run_id, waiter)
        try:
            # Registered first, checked second: a commit in between still wakes us.  While
            # the LISTEN connection is down, wait for it to come back rather than read.
            if listener.listening:
                try:
                    if await self._call(
                        functools.partial(sql.has_news, run_id=run_id, after_seq=after_seq)
                    ):
                        return
                except StorageError:
                    pass  # the server just went away: its return will wake us
            with anyio.move_on_after(timeout):
                await waiter.event.wait()
        finally:
            listener.remove(run_id, waiter)

    def _listener(self) -> Listener:
        """The LISTEN thread, started on first use and given one try to connect."""
        pool, _ = self._opened()
        with self._lock:
            listener = self._listener_thread
            if listener is None:
                from asyncdag.storage._postgres_listen import Listener

                listener = Listener(pool.connect, sql.CHANNEL, self.redacted_url)
                self._listener_thread = listener
        listener.wait_listening(self._connect_timeout)
        return listener


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# Imported lazily by asyncdag.storage (its __getattr__), after that module published its
# names: say so here, so reprs, pickles and tracebacks name asyncdag.storage.PostgresStorage.
publish("asyncdag.storage", globals(), __all__)
