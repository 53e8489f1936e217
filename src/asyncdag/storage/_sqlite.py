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

Writing events is the one hot path (the engine emits two or more a step): one
``executemany`` a batch in one transaction, into a table keyed by the run's
integer id and the event's seq, ``WITHOUT ROWID`` and with no other index, so
each event is one B-tree insert (schema v1 made three, keyed by the 36-character
run id); JSON comes from one C encoder built once.  Errors become one line:
:class:`StorageUnavailableError` for what may pass (a lock held past
``busy_timeout``, a full disk), :class:`StorageError` for the rest, each saying
what to do.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
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
from asyncdag.storage._sqlite_rows import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    event_from_row,
    event_rows,
    record_from_row,
    run_row,
    text,
)

__all__ = ["SCHEMA_VERSION", "SqliteStorage"]

T = TypeVar("T")

# Each entry migrates from version i to i + 1; the user_version pragma records where a file is.
_MIGRATIONS: list[tuple[str, ...]] = [
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
    # v2: events keyed by (runs.id, seq) in one B-tree; reading a step's events scans its run.
    (
        """CREATE TABLE events_v2 (
            run INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            timestamp REAL NOT NULL,
            type TEXT NOT NULL,
            step_key TEXT,
            level INTEGER NOT NULL,
            message TEXT NOT NULL,
            data TEXT,
            PRIMARY KEY (run, seq)
        ) WITHOUT ROWID""",
        """INSERT INTO events_v2
            SELECT runs.id, e.seq, e.timestamp, e.type, e.step_key, e.level, e.message, e.data
            FROM events AS e JOIN runs ON runs.run_id = e.run_id""",
        "DROP TABLE events",
        "ALTER TABLE events_v2 RENAME TO events",
    ),
]
SCHEMA_VERSION = len(_MIGRATIONS)

_INSERT_EVENTS = f"INSERT INTO events (run, {EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)"
_RUN_KEY = "SELECT id FROM runs WHERE run_id = ?"

# SQLite's primary result codes (the low byte of an extended code), by what they mean for us.
_BUSY = {5, 6, 15}  # SQLITE_BUSY, SQLITE_LOCKED, SQLITE_PROTOCOL
_FULL, _IOERR = 13, 10
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_DENIED = {3, 8, 14, 23}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN, SQLITE_AUTH
_NOT_NULL = 1299  # SQLITE_CONSTRAINT_NOTNULL: a NaN timestamp, which SQLite turns into NULL


class SqliteStorage(RunStorage):
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
            for statements in _MIGRATIONS[version:]:
                for statement in statements:
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
                        f"INSERT INTO runs ({RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row
                    )
            except sqlite3.IntegrityError as exc:
                raise StorageError(_duplicate_run_message(record.run_id)) from exc

        await self._run(create)

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return

        def add(conn: sqlite3.Connection, *, safe: bool) -> None:
            with _write(conn):
                key = _run_key(conn, run_id)
                if key is None:
                    raise RunNotFoundError(run_id, "add events")
                conn.executemany(_INSERT_EVENTS, event_rows(key, events, safe=safe))

        def check_serialise_add() -> None:
            # Checking and JSON-encoding a batch happen in the worker thread, not on the
            # event loop the engine runs on.
            _check_event_run_ids(run_id, events)
            for safe in (False, True):
                try:
                    self._locked(functools.partial(add, safe=safe))
                    return
                except (UnicodeEncodeError, OverflowError):
                    if safe:
                        raise
                except sqlite3.IntegrityError as exc:
                    if exc.sqlite_errorcode == _NOT_NULL and not safe:
                        continue
                    seqs = [e.seq for e in events]
                    raise StorageError(_duplicate_seq_message(run_id, seqs)) from exc

        await anyio.to_thread.run_sync(check_serialise_add)

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
        if wanted is not None and not wanted:
            return []
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE run = ({_RUN_KEY}) AND seq > ?"
        params: list[Any] = [text(run_id), min(max(after_seq, -1), 2**63 - 1)]
        if step_key is not None:
            sql += " AND step_key = ?"
            params.append(text(step_key))
        if wanted is not None:
            sql += f" AND type IN ({','.join('?' * len(wanted))})"
            params.extend(t.value for t in wanted)
        sql += " ORDER BY seq LIMIT ?"
        params.append(_sql_int(limit))

        def query(conn: sqlite3.Connection) -> list[Event]:
            return [event_from_row(run_id, row) for row in conn.execute(sql, params)]

        return await self._run(query)

    async def count_events(self, run_id: str) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                f"SELECT count(*) FROM events WHERE run = ({_RUN_KEY})", (text(run_id),)
            ).fetchone()
            return int(row[0])

        return await self._run(count)

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                key = _run_key(conn, run_id)
                if key is None:
                    return False
                conn.execute("DELETE FROM events WHERE run = ?", (key,))
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
                last_seq, last_time = conn.execute(
                    "SELECT seq, timestamp FROM events WHERE run = ? ORDER BY seq DESC LIMIT 1",
                    (key,),
                ).fetchone() or (None, None)
                if not isinstance(last_time, int | float):
                    last_time = None
                end = _orphan_end(record, last_time, now)
                seq = 0 if last_seq is None else last_seq + 1
                event = _orphan_event(record.run_id, seq, reason, end, now)
                conn.executemany(_INSERT_EVENTS, event_rows(key, [event], safe=True))
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


def _sql_int(value: int | None) -> int:
    """A LIMIT or OFFSET SQLite takes: -1 for none, huge values clamped to 64 bits."""
    return -1 if value is None else min(value, 2**63 - 1)
