"""SQLite run storage: one file shared by every CLI run and the web UI on this machine.

Concurrency, in one place:

* Across processes: WAL journal (readers never block the writer, nor it them)
  and ``busy_timeout`` (a second writer waits for the lock instead of failing).
  Every write opens with ``BEGIN IMMEDIATE``, so it takes the write lock before
  reading anything; a deferred transaction that upgrades from read to write can
  fail with SQLITE_BUSY at once, bypassing the busy timeout.
* Within a process: ONE connection, opened with ``check_same_thread=False`` and
  guarded by a ``threading.Lock``.  ``anyio.to_thread`` runs each call on
  whichever pooled worker thread is free, threads we do not own, so per-thread
  connections could never be closed by ``aclose()`` (a thread-bound connection
  only closes on its own thread) and would pile up with the pool.  The lock
  makes the connection's use strictly serial, which is all SQLite asks of a
  shared connection, and costs nothing real: SQLite serialises writers anyway.
  No transaction spans an ``await``: each method is one function run on a
  thread while it holds the lock.

``synchronous=NORMAL`` in WAL mode survives a crash of the process (what kills
runs); only a power loss can drop the last commits.  That is the right trade
for run history.

Writing events is the one hot path (the engine emits two or more a step), so a
batch of events is one row (schema v3): the events as tuples of plain values,
pickled together (floats in 8 bytes, no JSON per event), with their seq range
and count.  Schemas v1 and v2 made an event a row, three B-tree inserts and a JSON
encoding each: ~67,000 CPU instructions an event against ~6,000 now, which is
what took SQLite storage on W3 from +20 µs to a few µs a step.  Reads decode
whole batches and merge them in seq order; a row is read with an unpickler that
refuses every class, so a tampered file can never run code.  Errors become one line:
:class:`StorageUnavailableError` for what may pass (a lock held past
``busy_timeout``, a full disk), :class:`StorageError` for the rest, each saying
what to do.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from asyncdag._events import Event, EventType, RunStatus
from asyncdag.storage._base import (
    _HOSTNAME,
    RunNotFoundError,
    RunRecord,
    RunStorage,
    StorageError,
    StorageUnavailableError,
    _check_event_run_ids,
    _check_terminal,
    _check_window,
    _duplicate_run_message,
    _duplicate_seq_message,
    _orphan_end,
    _orphan_event,
    _orphan_reason,
    _status_set,
    _type_set,
    default_storage_path,
)
from asyncdag.storage._sqlite_automation import AUTOMATION_SCHEMA, SqliteAutomation
from asyncdag.storage._sqlite_rows import (
    RUN_COLUMNS,
    Batch,
    batches_from_v1_rows,
    decode_batch,
    encode_batch,
    encode_batches,
    record_from_row,
    run_row,
    text,
)

__all__ = ["SCHEMA_VERSION", "SqliteStorage"]

T = TypeVar("T")

# Each entry migrates from version i to i + 1 (SQL statements, or a function for what SQL
# cannot do); the user_version pragma records where a file is.
Migration = tuple[str, ...] | Callable[[sqlite3.Connection], None]


def _events_as_batches(conn: sqlite3.Connection) -> None:
    """v2 -> v3: an event a row becomes a batch of events a row."""
    conn.execute(
        """CREATE TABLE event_batches (
            id INTEGER PRIMARY KEY,
            run INTEGER NOT NULL,
            first_seq INTEGER NOT NULL,
            last_seq INTEGER NOT NULL,
            count INTEGER NOT NULL,
            events BLOB NOT NULL
        )"""
    )
    # Covering: finding the batches a read or a duplicate check needs touches no blob.
    conn.execute("CREATE INDEX event_batches_by_run ON event_batches (run, first_seq, last_seq)")
    for key, run_id in conn.execute("SELECT id, run_id FROM runs").fetchall():
        after = -1
        while True:
            rows = conn.execute(
                "SELECT seq, timestamp, type, step_key, level, message, data FROM events "
                "WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT 5000",
                (run_id, after),
            ).fetchall()
            if not rows:
                break
            after = rows[-1][0]
            for batch in batches_from_v1_rows(rows, _BATCH_ROWS):
                _insert_batch(conn, key, batch)
    conn.execute("DROP TABLE events")


_MIGRATIONS: list[Migration] = [
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_id TEXT NOT NULL UNIQUE,
            pipeline_name TEXT NOT NULL,
            status TEXT NOT NULL,
            run_config TEXT NOT NULL,
            tags TEXT NOT NULL,
            start_time REAL,
            end_time REAL,
            parent_run_id TEXT,
            pid INTEGER,
            hostname TEXT,
            failure_reason TEXT
        )""",
        "CREATE INDEX runs_by_start ON runs (start_time)",
        "CREATE INDEX runs_by_pipeline ON runs (pipeline_name, start_time)",
        "CREATE INDEX runs_by_status ON runs (status, start_time)",
        """CREATE TABLE events (
            run_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            timestamp REAL NOT NULL,
            type TEXT NOT NULL,
            step_key TEXT,
            level INTEGER NOT NULL,
            message TEXT NOT NULL,
            data TEXT,
            PRIMARY KEY (run_id, seq)
        )""",
        "CREATE INDEX events_by_step ON events (run_id, step_key, seq)",
    ),
    AUTOMATION_SCHEMA,  # v2: schedule and sensor state, ticks, run keys, leases
    _events_as_batches,  # v3: a batch of events a row
    (  # v4: the first run of a re-execution chain, and listing a chain by it
        "ALTER TABLE runs ADD COLUMN root_run_id TEXT",
        "CREATE INDEX runs_by_root ON runs (root_run_id, start_time)",
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)

#: Most events a row: a write of more (a recorder catching up) becomes several rows.
_BATCH_ROWS = 1000
_RUN_KEY = "SELECT id FROM runs WHERE run_id = ?"

# SQLite's primary result codes (the low byte of an extended code), by what they mean for us.
_BUSY = {5, 6, 15}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL
_FULL, _IOERR = 13, 10
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_DENIED = {3, 8, 14, 23}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH


class SqliteStorage(SqliteAutomation, RunStorage):
    """Run history in a SQLite file that several processes can read and write at once.

    Construction touches nothing: the file (and its directory) is opened on
    first use, by :meth:`open` or ``async with``, so building one needs no event
    loop.  Opening migrates the schema and, unless ``recover_orphans=False``,
    marks FAILED the STARTED runs whose process on this host has died (when the
    file is locked by another process, that waits for the next opening).
    ``busy_timeout`` (seconds) is how long one call waits for another process's
    write lock before giving up with :class:`StorageUnavailableError`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        busy_timeout: float = 10.0,
        recover_orphans: bool = True,
    ) -> None:
        self.path = Path(path) if path is not None else default_storage_path()
        self._busy_timeout = busy_timeout
        self._recover_on_open = recover_orphans
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        #: Run ids that opening marked FAILED as orphans.
        self.recovered_on_open: list[str] = []

    def __repr__(self) -> str:
        return f"SqliteStorage({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)  # where the runs are, as the CLI and UI print it

    # -- opening and closing: sync, so the CLI needs no loop for them ----------------------

    def open(self) -> None:
        """Open now (idempotent) rather than on first use, to surface a bad path early."""
        with self._lock:
            self._connection()

    def close(self) -> None:
        """Close the connection.  Safe to call twice; the storage cannot be reopened."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteStorage:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> SqliteStorage:
        await anyio.to_thread.run_sync(self.open)
        return self

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self.close)

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StorageError(f"{self!r} is closed; create a new SqliteStorage to use it again")
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        memory = str(self.path) == ":memory:"
        try:
            if not memory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self._busy_timeout,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # guarded by self._lock; see the module docstring
            )
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(
                f"cannot open run storage at {self.path}: {exc}; "
                "set ASYNCDAG_HOME to a writable directory"
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate(conn)
            if self._recover_on_open:
                try:
                    self.recovered_on_open = self._recover(conn)
                except sqlite3.OperationalError as exc:
                    if _primary_code(exc) not in _BUSY:
                        raise
                    # Locked by another process: leave the orphans to the next opening
                    # rather than fail a command that only reads.
        except sqlite3.Error as exc:
            conn.close()
            raise self._error(exc) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        if _user_version(conn) == SCHEMA_VERSION:
            return
        with _write(conn):
            version = _user_version(conn)  # another process may have migrated meanwhile
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has run-history schema v{version}, newer than this asyncdag "
                    f"understands (v{SCHEMA_VERSION}); upgrade asyncdag, or set ASYNCDAG_HOME "
                    "to keep this version's history elsewhere"
                )
            for migration in _MIGRATIONS[version:]:
                if callable(migration):
                    migration(conn)
                    continue
                for statement in migration:
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _error(self, exc: sqlite3.Error) -> StorageError:
        """One line saying what went wrong with the file and what to do about it."""
        code = _primary_code(exc)
        where = f"run history {self.path}"
        if code in _BUSY:
            return StorageUnavailableError(
                f"{where} is locked by another process ({exc}); try again once it is free, "
                f"or raise busy_timeout (now {self._busy_timeout:g}s) to wait longer"
            )
        if code == _FULL:
            return StorageUnavailableError(f"{where}: the disk is full ({exc}); free some space")
        if code == _IOERR:
            return StorageUnavailableError(f"{where}: disk I/O error ({exc}); check the disk")
        if code in _DAMAGED:
            return StorageError(
                f"{self.path} is not a usable asyncdag run database: it is damaged ({exc}); "
                "move it aside (`sqlite3 FILE .recover` may save its runs) and a new one is "
                "started, or set ASYNCDAG_HOME to another directory"
            )
        if code in _DENIED:
            return StorageError(
                f"cannot write {where} ({exc}); check its permissions, or set ASYNCDAG_HOME "
                "to a writable directory"
            )
        return StorageError(f"{where}: {exc}")

    # -- every call: to a worker thread, then under the lock ------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._locked, fn)

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._connection()
            try:
                return fn(conn)
            except sqlite3.IntegrityError:
                raise  # a duplicate: the caller says which
            except sqlite3.Error as exc:
                raise self._error(exc) from exc

    # -- the RunStorage interface ---------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        row = run_row(record)

        def create(conn: sqlite3.Connection) -> None:
            try:
                with _write(conn):
                    conn.execute(
                        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", row
                    )
            except sqlite3.IntegrityError as exc:
                raise StorageError(_duplicate_run_message(record.run_id)) from exc

        await self._run(create)

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return

        def add(conn: sqlite3.Connection, batches: list[Batch], seqs: set[int]) -> None:
            try:
                with _write(conn):  # one transaction: every row of the write, or none
                    key = _run_key(conn, run_id)
                    if key is None:
                        raise RunNotFoundError(run_id, "add events")
                    for batch in batches:
                        if _overlaps(conn, run_id, key, batch, seqs):
                            raise _Duplicate
                        _insert_batch(conn, key, batch)
            except _Duplicate:
                raise StorageError(_duplicate_seq_message(run_id, sorted(seqs))) from None

        def check_encode_add() -> None:
            # Checking and encoding a batch happen in the worker thread, not on the event
            # loop the engine runs on, and before the connection lock is taken.
            _check_event_run_ids(run_id, events)
            seqs = {event.seq for event in events}
            if len(seqs) != len(events):
                raise StorageError(_duplicate_seq_message(run_id, [e.seq for e in events]))
            batches = encode_batches(events, _BATCH_ROWS)
            self._locked(functools.partial(add, batches=batches, seqs=seqs))

        await anyio.to_thread.run_sync(check_encode_add)

    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        status = _check_terminal(status)

        def finish(conn: sqlite3.Connection) -> None:
            with _write(conn):
                cursor = conn.execute(
                    "UPDATE runs SET status = ?, end_time = ?, failure_reason = ? WHERE run_id = ?",
                    (status.value, end_time, text(failure_reason), text(run_id)),
                )
                if cursor.rowcount == 0:
                    raise RunNotFoundError(run_id, "finish run")

        await self._run(finish)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?", (text(run_id),)
            ).fetchone()
            return None if row is None else record_from_row(row)

        return await self._run(get)

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
        where: list[str] = []
        params: list[Any] = []
        if pipeline_name is not None:
            where.append("pipeline_name = ?")
            params.append(text(pipeline_name))
        if root_run_id is not None:
            where.append("(root_run_id = ? OR run_id = ?)")
            params += [text(root_run_id), text(root_run_id)]
        if statuses is not None:
            where.append(f"status IN ({','.join('?' * len(statuses))})")
            params.extend(s.value for s in statuses)
        if since is not None:
            where.append("start_time >= ?")
            params.append(since)
        if until is not None:
            where.append("start_time < ?")
            params.append(until)
        # DESC puts NULL start times last: SQLite sorts NULL below every number.
        sql = f"SELECT {RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, id DESC LIMIT ? OFFSET ?"
        params += [_sql_int(limit), _sql_int(offset)]

        def query(conn: sqlite3.Connection) -> list[RunRecord]:
            return [record_from_row(row) for row in conn.execute(sql, params)]

        return await self._run(query)

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
        if (wanted is not None and not wanted) or limit == 0:
            return []
        after = min(max(after_seq, -1), 2**63 - 1)

        def query(conn: sqlite3.Connection) -> list[Event]:
            key = _run_key(conn, run_id)
            if key is None:
                return []
            rows = conn.execute(
                "SELECT first_seq, last_seq, events FROM event_batches "
                "WHERE run = ? AND last_seq > ? ORDER BY first_seq",
                (key, after),
            )
            found: list[Event] = []
            for event in _in_seq_order(run_id, rows, after):
                if step_key is not None and event.step_key != step_key:
                    continue
                if wanted is not None and event.type not in wanted:
                    continue
                found.append(event)
                if limit is not None and len(found) >= limit:
                    break
            return found

        return await self._run(query)

    async def count_events(self, run_id: str) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                f"SELECT coalesce(sum(count), 0) FROM event_batches WHERE run = ({_RUN_KEY})",
                (text(run_id),),
            ).fetchone()
            return int(row[0])

        return await self._run(count)

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                key = _run_key(conn, run_id)
                if key is None:
                    return False
                conn.execute("DELETE FROM event_batches WHERE run = ?", (key,))
                conn.execute("DELETE FROM runs WHERE id = ?", (key,))
                return True

        return await self._run(delete)

    async def recover_orphaned_runs(self) -> list[str]:
        return await self._run(self._recover)

    def _recover(self, conn: sqlite3.Connection) -> list[str]:
        if not self._orphans(conn):  # a read first: no write lock unless there is work
            return []
        recovered: list[str] = []
        with _write(conn):  # one transaction: two processes opening at once recover each run once
            for key, record in self._orphans(conn):
                reason = _orphan_reason(record)
                assert reason is not None
                now = time.time()
                last = _last_event(conn, record.run_id, key)
                last_time = last.timestamp if last is not None else None
                if not isinstance(last_time, int | float) or last_time != last_time:
                    last_time = None
                end = _orphan_end(record, last_time, now)
                seq = 0 if last is None else last.seq + 1
                event = _orphan_event(record.run_id, seq, reason, end, now)
                _insert_batch(conn, key, encode_batch([event]))
                conn.execute(
                    "UPDATE runs SET status = ?, end_time = ?, failure_reason = ? WHERE id = ?",
                    (RunStatus.FAILURE.value, end, text(reason), key),
                )
                recovered.append(record.run_id)
        return recovered

    def _orphans(self, conn: sqlite3.Connection) -> list[tuple[int, RunRecord]]:
        rows = conn.execute(
            f"SELECT id, {RUN_COLUMNS} FROM runs WHERE status = ? AND hostname = ?",
            (RunStatus.STARTED.value, text(_HOSTNAME)),
        ).fetchall()
        found = [(row[0], record_from_row(row[1:])) for row in rows]
        return [(key, record) for key, record in found if _orphan_reason(record) is not None]


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # COMMIT itself may fail (busy): never leave one open
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _primary_code(exc: sqlite3.Error) -> int:
    return (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _run_key(conn: sqlite3.Connection, run_id: str) -> int | None:
    row = conn.execute(_RUN_KEY, (text(run_id),)).fetchone()
    return None if row is None else int(row[0])


class _Duplicate(Exception):
    pass


def _insert_batch(conn: sqlite3.Connection, key: int, batch: Batch) -> None:
    conn.execute(
        "INSERT INTO event_batches (run, first_seq, last_seq, count, events) VALUES (?,?,?,?,?)",
        (key, *batch),
    )


def _overlaps(
    conn: sqlite3.Connection, run_id: str, key: int, batch: Batch, seqs: set[int]
) -> bool:
    """Whether a stored event of the run has one of ``seqs``; only batches whose seq range
    meets the new one's are looked into (for a run written in order, none)."""
    rows = conn.execute(
        "SELECT first_seq, last_seq, count, events FROM event_batches "
        "WHERE run = ? AND last_seq >= ? AND first_seq <= ?",
        (key, batch.first_seq, batch.last_seq),
    )
    for first, last, count, blob in rows:
        if count == last - first + 1:  # contiguous: every seq of its range is taken
            if any(first <= seq <= last for seq in seqs):
                return True
        elif any(e.seq in seqs for e in decode_batch(run_id, first, last, blob)):
            return True
    return False


def _in_seq_order(run_id: str, rows: Iterable[Sequence[Any]], after: int) -> Iterator[Event]:
    """The events of ``rows`` (batches ordered by first seq) after ``after``, in seq order.

    A run's batches are usually disjoint and in order, and are passed through as they
    are; batches written out of order overlap, and are merged: an event is final once
    no batch still to come starts at or before its seq.
    """
    pending: list[tuple[int, Event]] = []
    batches = iter(rows)
    current = next(batches, None)
    while current is not None:
        following = next(batches, None)
        first, last, blob = current
        bound = following[0] if following is not None else math.inf
        events = decode_batch(run_id, first, last, blob)
        if not pending and last < bound:
            yield from (e for e in events if e.seq > after)
        else:
            for event in events:
                if event.seq > after:
                    heapq.heappush(pending, (event.seq, event))
            while pending and pending[0][0] < bound:
                yield heapq.heappop(pending)[1]
        current = following
    while pending:
        yield heapq.heappop(pending)[1]


def _last_event(conn: sqlite3.Connection, run_id: str, key: int) -> Event | None:
    row = conn.execute(
        "SELECT first_seq, last_seq, events FROM event_batches "
        "WHERE run = ? ORDER BY last_seq DESC LIMIT 1",
        (key,),
    ).fetchone()
    if row is None:
        return None
    return max(decode_batch(run_id, *row), key=lambda e: e.seq)


def _sql_int(value: int | None) -> int:
    """A LIMIT or OFFSET SQLite takes: -1 for none, huge values clamped to 64 bits."""
    return -1 if value is None else min(value, 2**63 - 1)
