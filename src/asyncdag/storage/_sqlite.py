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
"""

from __future__ import annotations

import contextlib
import functools
import json
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
    _check_event_run_ids,
    _check_terminal,
    _check_window,
    _duplicate_run_message,
    _duplicate_seq_message,
    _orphan_event,
    _orphan_reason,
    _status_set,
    _type_set,
    default_storage_path,
)
from asyncdag.storage._sqlite_automation import AUTOMATION_SCHEMA, SqliteAutomation

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
    AUTOMATION_SCHEMA,  # v2: schedule and sensor state, ticks, run keys, leases
]
SCHEMA_VERSION = len(_MIGRATIONS)

_RUN_COLUMNS = (
    "run_id, pipeline_name, status, run_config, tags, start_time, end_time, "
    "parent_run_id, pid, hostname, failure_reason"
)
_EVENT_COLUMNS = "run_id, seq, timestamp, type, step_key, level, message, data"


class SqliteStorage(SqliteAutomation, RunStorage):
    """Run history in a SQLite file that several processes can read and write at once.

    Construction touches nothing: the file (and its directory) is opened on
    first use, by :meth:`open` or ``async with``, so building one needs no event
    loop.  Opening migrates the schema and, unless ``recover_orphans=False``,
    marks FAILED the STARTED runs whose process on this host has died.
    ``busy_timeout`` (seconds) is how long a write waits for another process's
    write lock before giving up with :class:`StorageError`.
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
                self.recovered_on_open = self._recover(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StorageError(
                f"{self.path} is not a usable asyncdag run database ({exc}); "
                "move it aside or set ASYNCDAG_HOME to another directory"
            ) from exc
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

    # -- every call: to a worker thread, then under the lock ------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await anyio.to_thread.run_sync(self._locked, fn)

    def _locked(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._connection()
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                raise StorageError(
                    f"run storage {self.path}: {exc}; if another process holds the database "
                    "for long, raise busy_timeout"
                ) from exc

    # -- the RunStorage interface ---------------------------------------------------------

    async def create_run(self, record: RunRecord) -> None:
        row = _run_row(record)

        def create(conn: sqlite3.Connection) -> None:
            try:
                with _write(conn):
                    conn.execute(
                        f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)", row
                    )
            except sqlite3.IntegrityError as exc:
                raise StorageError(_duplicate_run_message(record.run_id)) from exc

        await self._run(create)

    async def add_events(self, run_id: str, events: Sequence[Event]) -> None:
        if not events:
            return

        def add(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
            try:
                with _write(conn):
                    if not _run_exists(conn, run_id):
                        raise RunNotFoundError(run_id, "add events")
                    conn.executemany(
                        f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)", rows
                    )
            except sqlite3.IntegrityError as exc:
                raise StorageError(_duplicate_seq_message(run_id, [e.seq for e in events])) from exc

        def check_serialise_add() -> None:
            # Checking and JSON-encoding a batch happen in the worker thread, not on the
            # event loop the engine runs on, and before the connection lock is taken.
            _check_event_run_ids(run_id, events)
            rows = [_event_row(event) for event in events]
            self._locked(functools.partial(add, rows=rows))

        await anyio.to_thread.run_sync(check_serialise_add)

    async def finish_run(
        self, run_id: str, status: RunStatus, *, end_time: float, failure_reason: str | None = None
    ) -> None:
        status = _check_terminal(status)

        def finish(conn: sqlite3.Connection) -> None:
            with _write(conn):
                cursor = conn.execute(
                    "UPDATE runs SET status = ?, end_time = ?, failure_reason = ? WHERE run_id = ?",
                    (status.value, end_time, failure_reason, run_id),
                )
                if cursor.rowcount == 0:
                    raise RunNotFoundError(run_id, "finish run")

        await self._run(finish)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def get(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
            return None if row is None else _record_from_row(row)

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
            params.append(pipeline_name)
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
        sql = f"SELECT {_RUN_COLUMNS} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY start_time DESC, id DESC LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, offset]

        def query(conn: sqlite3.Connection) -> list[RunRecord]:
            return [_record_from_row(row) for row in conn.execute(sql, params)]

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
        sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE run_id = ? AND seq > ?"
        params: list[Any] = [run_id, after_seq]
        if step_key is not None:
            sql += " AND step_key = ?"
            params.append(step_key)
        if wanted is not None:
            sql += f" AND type IN ({','.join('?' * len(wanted))})"
            params.extend(t.value for t in wanted)
        sql += " ORDER BY seq LIMIT ?"
        params.append(-1 if limit is None else limit)

        def query(conn: sqlite3.Connection) -> list[Event]:
            return [_event_from_row(row) for row in conn.execute(sql, params)]

        return await self._run(query)

    async def count_events(self, run_id: str) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT count(*) FROM events WHERE run_id = ?", (run_id,)).fetchone()
            return int(row[0])

        return await self._run(count)

    async def delete_run(self, run_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with _write(conn):
                conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                return conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,)).rowcount > 0

        return await self._run(delete)

    async def recover_orphaned_runs(self) -> list[str]:
        return await self._run(self._recover)

    def _recover(self, conn: sqlite3.Connection) -> list[str]:
        recovered: list[str] = []
        with _write(conn):  # one transaction: two processes opening at once recover each run once
            rows = conn.execute(
                f"SELECT {_RUN_COLUMNS} FROM runs WHERE status = ? AND hostname = ?",
                (RunStatus.STARTED.value, _HOSTNAME),
            ).fetchall()
            for row in rows:
                record = _record_from_row(row)
                reason = _orphan_reason(record)
                if reason is None:
                    continue
                now = time.time()
                (last,) = conn.execute(
                    "SELECT max(seq) FROM events WHERE run_id = ?", (record.run_id,)
                ).fetchone()
                event = _orphan_event(record.run_id, 0 if last is None else last + 1, reason, now)
                conn.execute(
                    f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?)",
                    _event_row(event),
                )
                conn.execute(
                    "UPDATE runs SET status = ?, end_time = ?, failure_reason = ? WHERE run_id = ?",
                    (RunStatus.FAILURE.value, now, reason, record.run_id),
                )
                recovered.append(record.run_id)
        return recovered


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _run_exists(conn: sqlite3.Connection, run_id: str) -> bool:
    return conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None


def _dumps(value: Any, what: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StorageError(
            f"{what} is not JSON-serialisable ({exc}); keep it to dicts, lists, strings, "
            "numbers, booleans and None"
        ) from exc


def _run_row(record: RunRecord) -> tuple[Any, ...]:
    return (
        record.run_id,
        record.pipeline_name,
        record.status.value,
        _dumps(record.run_config, f"run {record.run_id!r}'s run_config"),
        _dumps(record.tags, f"run {record.run_id!r}'s tags"),
        record.start_time,
        record.end_time,
        record.parent_run_id,
        record.pid,
        record.hostname,
        record.failure_reason,
    )


def _record_from_row(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        pipeline_name=row[1],
        status=RunStatus(row[2]),
        run_config=json.loads(row[3]),
        tags=json.loads(row[4]),
        start_time=row[5],
        end_time=row[6],
        parent_run_id=row[7],
        pid=row[8],
        hostname=row[9],
        failure_reason=row[10],
    )


def _event_row(event: Event) -> tuple[Any, ...]:
    data = None
    if event.data is not None:
        data = _dumps(event.data, f"data of run {event.run_id!r} event seq {event.seq}")
    return (
        event.run_id,
        event.seq,
        event.timestamp,
        event.type.value,
        event.step_key,
        event.level,
        event.message,
        data,
    )


def _event_from_row(row: tuple[Any, ...]) -> Event:
    return Event(
        run_id=row[0],
        seq=row[1],
        timestamp=row[2],
        type=EventType(row[3]),
        step_key=row[4],
        level=row[5],
        message=row[6],
        data=None if row[7] is None else json.loads(row[7]),
    )
