"""PostgreSQL run storage: one history shared by runs, UIs and schedulers on many hosts.

How it serves asyncio and trio alike without blocking either: psycopg's async
API is asyncio-only, so every call is psycopg's sync API in a worker thread
(``anyio.to_thread``), on one of a few pooled connections (_postgres_pool).
Nothing here imports psycopg until a store opens, so ``import asyncdag.storage``
stays light; install it with ``pip install 'asyncdag[postgres]'``.

The other jobs live in modules of their own:

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
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.to_thread

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage._base import (
    _FINISHED,
    _HOSTNAME,
    RunNotFoundError,
    RunRecord,
    RunStorage,
    StorageError,
    _check_event_run_ids,
    _check_terminal,
    _check_window,
    _duplicate_run_message,
    _duplicate_seq_message,
    _orphan_event,
    _orphan_reason,
    _status_set,
    _type_set,
)
from asyncdag.storage._postgres_codec import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    STEP_KEY_ESCAPED,
    EventRow,
    event_from_row,
    event_rows,
    failure_reason_param,
    record_from_row,
    run_row,
    step_key_param,
)

if TYPE_CHECKING:
    import psycopg

    from asyncdag.storage._postgres_listen import Listener
    from asyncdag.storage._postgres_outbox import Outbox
    from asyncdag.storage._postgres_pool import ConnectionPool

__all__ = ["PostgresStorage"]

T = TypeVar("T")

#: The NOTIFY channel every write of a run's events or status signals, with the run id.
CHANNEL = "asyncdag_run_changes"
_MAX_PAYLOAD = 7900  # NOTIFY payloads stop at 8000 bytes; longer ids wake every reader

#: A batch's first write: COPY is the fastest way in, for the server and for this process.
_COPY_EVENTS = f"COPY asyncdag_events (run_id, {EVENT_COLUMNS}) FROM STDIN"
#: A batch written again (it may be stored already): insert what is missing, count it.
_REPLAY_EVENTS = f"""
WITH inserted AS (
    INSERT INTO asyncdag_events (run_id, {EVENT_COLUMNS})
    SELECT %s, * FROM unnest(
        %s::bigint[], %s::float8[], %s::text[], %s::text[],
        %s::bigint[], %s::text[], %s::text[], %s::smallint[])
    ON CONFLICT (run_id, seq) DO NOTHING
    RETURNING 1
)
SELECT count(*) FROM inserted
"""
_NOTIFY = "SELECT pg_notify(%s, %s)"
_INSERT_RUN = f"""
WITH inserted AS (
    INSERT INTO asyncdag_runs ({RUN_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)
    ON CONFLICT (run_id) DO NOTHING
    RETURNING 1
)
SELECT count(*), pg_notify(%s, %s) FROM inserted
"""
_FINISH_RUN = """
WITH updated AS (
    UPDATE asyncdag_runs SET status = %s, end_time = %s, failure_reason = %s,
        escaped = (escaped & ~1) | %s
    WHERE run_id = %s
    RETURNING 1
)
SELECT count(*), pg_notify(%s, %s) FROM updated
"""


def redact(url: str) -> str:
    """``url`` without its password (``user:***@`` or ``password=***``), fit to print."""
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return "<unparseable storage URL>"
    if password is None and "password=" not in parts.query:
        return url
    if password is not None:
        host = parts.hostname or ""
        if port is not None:
            host = f"{host}:{port}"
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    if "password=" in parts.query:
        query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)]
        parts = parts._replace(query=urlencode(query, safe="*"))
    return urlunsplit(parts)


def _payload(run_id: str) -> str:
    return run_id if len(run_id.encode()) <= _MAX_PAYLOAD else ""


class PostgresStorage(RunStorage):
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
                    self.recovered_on_open = _recover(conn)
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

    async def _read(self, fn: Callable[[psycopg.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._read_sync, fn)

    def _read_sync(self, fn: Callable[[psycopg.Connection], T]) -> T:
        pool, _ = self._opened()
        return self._guarded(pool, lambda conn, retried: fn(conn))

    def _guarded(self, pool: ConnectionPool, fn: Callable[[psycopg.Connection, bool], T]) -> T:
        """``fn`` on a pooled connection, psycopg's errors as :class:`StorageError` (and back)."""
        import psycopg

        try:
            return _on_connection(pool, fn)
        except psycopg.OperationalError:
            raise  # transient: the caller (or the outbox) decides
        except psycopg.Error as exc:
            raise StorageError(f"run storage {self.redacted_url}: {_first_line(exc)}") from exc

    def _unreachable(self, exc: BaseException) -> StorageError:
        return StorageError(
            f"run storage {self.redacted_url} is unreachable: {_first_line(exc)}; "
            "check that the server is up (reads need it; runs buffer their writes)"
        )

    async def _call(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """A read (or a write that needs an answer now): unreachable is a StorageError."""
        import psycopg

        try:
            return await self._read(fn)
        except psycopg.OperationalError as exc:
            raise self._unreachable(exc) from exc

    # -- the RunStorage interface ---------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        def create() -> None:
            import psycopg

            row = run_row(record)
            pool, _ = self._opened()

            def insert(conn: psycopg.Connection, retried: bool) -> None:
                (created, _) = conn.execute(
                    _INSERT_RUN, (*row, CHANNEL, _payload(record.run_id))
                ).fetchone() or (0, None)
                if created:
                    return
                if retried:  # our first attempt may have committed before the connection died
                    stored = conn.execute(
                        f"SELECT {RUN_COLUMNS} FROM asyncdag_runs WHERE run_id = %s",
                        (record.run_id,),
                    ).fetchone()
                    if stored is not None and record_from_row(stored) == record:
                        return
                raise StorageError(_duplicate_run_message(record.run_id))

            try:
                self._guarded(pool, insert)
            except psycopg.OperationalError as exc:
                raise self._unreachable(exc) from exc

        await anyio.to_thread.run_sync(create)

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
        import psycopg
        import psycopg.errors

        def insert(conn: psycopg.Connection, retried: bool) -> None:
            with conn.transaction():
                if replay or retried:
                    _replay_events(conn, run_id, rows)
                else:
                    with conn.cursor().copy(_COPY_EVENTS) as copy:
                        for row in rows:
                            copy.write_row((run_id, *row))
                conn.execute(_NOTIFY, (CHANNEL, _payload(run_id)))

        try:
            self._guarded(pool, insert)
        except StorageError as exc:
            cause = exc.__cause__
            if isinstance(cause, psycopg.errors.ForeignKeyViolation):
                raise RunNotFoundError(run_id, "add events") from cause
            if isinstance(cause, psycopg.errors.UniqueViolation):
                raise StorageError(_duplicate_seq_message(run_id, [r[0] for r in rows])) from cause
            raise

    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        status = _check_terminal(status)

        def submit() -> None:
            from asyncdag.storage._postgres_outbox import PendingWrite

            reason, escaped = failure_reason_param(failure_reason)
            params = (status.value, end_time, reason, escaped, run_id, CHANNEL, _payload(run_id))
            pool, outbox = self._opened()

            def update(conn: psycopg.Connection, retried: bool) -> None:
                (updated, _) = conn.execute(_FINISH_RUN, params).fetchone() or (0, None)
                if not updated:
                    raise RunNotFoundError(run_id, "finish run")

            outbox.submit(
                PendingWrite(
                    run_id=run_id,
                    events=0,
                    what=f"final status {status.value} of run {run_id!r}",
                    apply=lambda replay: self._guarded(pool, update),
                )
            )

        await anyio.to_thread.run_sync(submit)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: psycopg.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM asyncdag_runs WHERE run_id = %s", (run_id,)
            ).fetchone()
            return None if row is None else record_from_row(row)

        return await self._call(get)

    async def list_runs(
        self,
        *,
        pipeline_name: str | None = None,
        status: RunStatus | Collection[RunStatus] | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunRecord]:
        _check_window(limit, offset)
        statuses = _status_set(status)
        if statuses is not None and not statuses:
            return []
        where: list[str] = []
        params: list[Any] = []
        if pipeline_name is not None:
            where.append("pipeline_name = %s")
            params.append(pipeline_name)
        if statuses is not None:
            where.append("status = ANY(%s)")
            params.append([s.value for s in statuses])
        if since is not None:
            where.append("start_time >= %s")
            params.append(since)
        if until is not None:
            where.append("start_time < %s")
            params.append(until)
        query = f"SELECT {RUN_COLUMNS} FROM asyncdag_runs"
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY start_time DESC NULLS LAST, id DESC LIMIT %s OFFSET %s"
        params += [limit, offset]

        def select(conn: psycopg.Connection) -> list[RunRecord]:
            return [record_from_row(row) for row in conn.execute(query, params)]  # type: ignore[arg-type]

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
        query = f"SELECT {EVENT_COLUMNS} FROM asyncdag_events WHERE run_id = %s AND seq > %s"
        params: list[Any] = [run_id, after_seq]
        if step_key is not None:
            stored, escaped = step_key_param(step_key)
            query += f" AND step_key = %s AND (escaped & {STEP_KEY_ESCAPED}) = %s"
            params += [stored, escaped]
        if wanted is not None:
            query += " AND type = ANY(%s)"
            params.append([t.value for t in wanted])
        query += " ORDER BY seq LIMIT %s"
        params.append(limit)

        def select(conn: psycopg.Connection) -> list[Event]:
            rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
            return [event_from_row(run_id, row) for row in rows]

        return await self._call(select)

    async def count_events(self, run_id: str) -> int:
        def count(conn: psycopg.Connection) -> int:
            row = conn.execute(
                "SELECT count(*) FROM asyncdag_events WHERE run_id = %s", (run_id,)
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._call(count)

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: psycopg.Connection) -> bool:
            # Events go with their run: the foreign key cascades.
            cursor = conn.execute("DELETE FROM asyncdag_runs WHERE run_id = %s", (run_id,))
            return cursor.rowcount > 0

        return await self._call(delete)

    async def recover_orphaned_runs(self) -> list[str]:
        return await self._call(_recover)

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
                        functools.partial(_has_news, run_id=run_id, after_seq=after_seq)
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

                listener = Listener(pool.connect, CHANNEL, self.redacted_url)
                self._listener_thread = listener
        listener.wait_listening(self._connect_timeout)
        return listener


def _on_connection(pool: ConnectionPool, fn: Callable[[psycopg.Connection, bool], T]) -> T:
    """``fn(conn, retried)``, once more on a new connection if a reused one had died idle.

    ``retried`` tells ``fn`` that its first attempt may have committed before the
    connection broke, so a write must be idempotent then.
    """
    import psycopg

    with pool.connection() as (conn, reused):
        try:
            return fn(conn, False)
        except psycopg.OperationalError:
            if not (reused and conn.broken):
                raise
    pool.discard_idle()  # its siblings have likely died with it (a server restart)
    with pool.connection() as (conn, _):
        return fn(conn, True)


def _replay_events(conn: psycopg.Connection, run_id: str, rows: list[EventRow]) -> None:
    """Store the rows not stored yet; the ones that are must be these very events."""
    import psycopg.errors

    columns = [list(column) for column in zip(*rows, strict=True)]
    (inserted,) = conn.execute(_REPLAY_EVENTS, (run_id, *columns)).fetchone() or (0,)
    if inserted == len(rows):
        return
    # Committed before the connection died, its acknowledgement lost: the same events
    # are there.  Anything else under these seqs is a genuine duplicate.
    stored = conn.execute(
        f"SELECT {EVENT_COLUMNS} FROM asyncdag_events "
        "WHERE run_id = %s AND seq = ANY(%s) ORDER BY seq",
        (run_id, columns[0]),
    ).fetchall()
    if repr(stored) != repr(sorted(rows)):  # repr: NaN timestamps compare equal
        raise psycopg.errors.UniqueViolation(f"run {run_id!r}: another batch holds these seqs")


def _has_news(conn: psycopg.Connection, *, run_id: str, after_seq: int) -> bool:
    row = conn.execute(
        "SELECT r.status, (SELECT max(seq) FROM asyncdag_events e WHERE e.run_id = r.run_id) "
        "FROM asyncdag_runs r WHERE r.run_id = %s",
        (run_id,),
    ).fetchone()
    if row is None:
        return True
    status, last = row
    return RunStatus(status) in _FINISHED or (last is not None and last > after_seq)


def _recover(conn: psycopg.Connection) -> list[str]:
    """Fail this host's STARTED runs whose process is gone, each once even with two recoverers."""
    recovered: list[str] = []
    with conn.transaction():
        rows = conn.execute(
            f"SELECT {RUN_COLUMNS} FROM asyncdag_runs WHERE status = %s AND hostname = %s "
            "ORDER BY id FOR UPDATE",
            (RunStatus.STARTED.value, _HOSTNAME),
        ).fetchall()
        for row in rows:
            record = record_from_row(row)
            reason = _orphan_reason(record)
            if reason is None:
                continue
            now = time.time()
            (last,) = conn.execute(
                "SELECT max(seq) FROM asyncdag_events WHERE run_id = %s", (record.run_id,)
            ).fetchone() or (None,)
            event = _orphan_event(record.run_id, 0 if last is None else last + 1, reason, now)
            conn.execute(
                f"INSERT INTO asyncdag_events (run_id, {EVENT_COLUMNS}) "
                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                (record.run_id, *event_rows([event])[0]),
            )
            reason_text, escaped = failure_reason_param(reason)
            conn.execute(
                _FINISH_RUN,
                (
                    RunStatus.FAILURE.value,
                    now,
                    reason_text,
                    escaped,
                    record.run_id,
                    CHANNEL,
                    _payload(record.run_id),
                ),
            )
            recovered.append(record.run_id)
    return recovered


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
