"""SQLite's automation half: schedule and sensor state, ticks, run keys and leases in four tables.

A mixin of :class:`~asyncdag.storage.SqliteStorage`, kept apart from the runs and
events so each can change without the other.  Every method is one
``BEGIN IMMEDIATE`` transaction run through the storage's one connection (see
``_sqlite``), so a claim, a run-key check or a lease hand-over is atomic across
every process sharing the file: the write lock is taken before anything is read.

The tables arrive with schema version 2 (:data:`AUTOMATION_SCHEMA`, applied by
``SqliteStorage``'s migrations after the runs and events of version 1).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Collection, Iterator
from typing import Any, TypeVar

from asyncdag._events import ErrorInfo, RunStatus
from asyncdag.storage._automation import (
    AutomationStorage,
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    Lease,
    TickRecord,
    TickStatus,
    _abandoned,
    _check_ttl,
    _tick_filter,
)
from asyncdag.storage._sql_where import ticks_where

__all__ = ["AUTOMATION_SCHEMA", "SqliteAutomation"]

T = TypeVar("T")

#: Schema version 2: what schedules and sensors keep.
AUTOMATION_SCHEMA: tuple[str, ...] = (
    """CREATE TABLE automation_state (
        name TEXT PRIMARY KEY,
        instigator_type TEXT NOT NULL,
        status TEXT,
        last_tick_time REAL,
        cursor TEXT,
        updated_at REAL
    )""",
    """CREATE TABLE automation_ticks (
        id INTEGER PRIMARY KEY,
        instigator_name TEXT NOT NULL,
        instigator_type TEXT NOT NULL,
        tick_time REAL NOT NULL,
        status TEXT NOT NULL,
        owner TEXT NOT NULL,
        start_time REAL NOT NULL,
        end_time REAL,
        run_ids TEXT NOT NULL,
        run_keys TEXT NOT NULL,
        skip_reason TEXT,
        error TEXT,
        cursor TEXT,
        UNIQUE (instigator_name, tick_time)
    )""",
    """CREATE TABLE automation_runs (
        instigator_name TEXT NOT NULL,
        run_id TEXT NOT NULL,
        run_key TEXT,
        tick_time REAL,
        created_at REAL NOT NULL,
        PRIMARY KEY (instigator_name, run_id),
        UNIQUE (instigator_name, run_key)
    )""",
    """CREATE TABLE automation_leases (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    )""",
)

_STATE_COLUMNS = "name, instigator_type, status, last_tick_time, cursor, updated_at"
_TICK_COLUMNS = (
    "instigator_name, instigator_type, tick_time, status, owner, start_time, end_time, "
    "run_ids, run_keys, skip_reason, error, cursor"
)
_ACTIVE = (RunStatus.NOT_STARTED.value, RunStatus.STARTED.value)


@contextlib.contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    # The storage's own transaction helper (BEGIN IMMEDIATE, and whatever retry policy it
    # has), imported when called: _sqlite imports this module to build SqliteStorage.
    from asyncdag.storage._sqlite import _write as write

    with write(conn):
        yield


class SqliteAutomation(AutomationStorage):
    """The automation methods of :class:`~asyncdag.storage.SqliteStorage`."""

    # Provided by SqliteStorage: run ``fn(conn)`` on a worker thread under the connection lock.
    _run: Callable[..., Any]

    async def get_instigator_state(self, name: str) -> InstigatorState | None:
        def get(conn: sqlite3.Connection) -> InstigatorState | None:
            return _get_state(conn, name)

        result: InstigatorState | None = await self._run(get)
        return result

    async def list_instigator_states(self) -> list[InstigatorState]:
        def query(conn: sqlite3.Connection) -> list[InstigatorState]:
            sql = f"SELECT {_STATE_COLUMNS} FROM automation_state ORDER BY name"
            return [_state_from_row(row) for row in conn.execute(sql)]

        result: list[InstigatorState] = await self._run(query)
        return result

    async def set_instigator_status(
        self,
        name: str,
        instigator_type: InstigatorType,
        status: InstigatorStatus,
        *,
        now: float,
        last_tick_time: float | None = None,
    ) -> InstigatorState:
        status = InstigatorStatus(status)

        def set_status(conn: sqlite3.Connection) -> InstigatorState:
            with _write(conn):
                _ensure_state(conn, name, instigator_type)
                conn.execute(
                    "UPDATE automation_state SET status = ?, updated_at = ?, "
                    "last_tick_time = coalesce(?, last_tick_time) WHERE name = ?",
                    (status.value, now, last_tick_time, name),
                )
                state = _get_state(conn, name)
            assert state is not None
            return state

        result: InstigatorState = await self._run(set_status)
        return result

    async def update_instigator_cursor(
        self,
        name: str,
        instigator_type: InstigatorType,
        *,
        last_tick_time: float,
        cursor: str | None = None,
        now: float,
    ) -> None:
        def update(conn: sqlite3.Connection) -> None:
            with _write(conn):
                _ensure_state(conn, name, instigator_type)
                conn.execute(
                    "UPDATE automation_state SET last_tick_time = max(coalesce(last_tick_time, ?), ?), "
                    "cursor = ?, updated_at = ? WHERE name = ?",
                    (last_tick_time, last_tick_time, cursor, now, name),
                )

        await self._run(update)

    async def claim_tick(self, tick: TickRecord) -> TickRecord:
        def claim(conn: sqlite3.Connection) -> TickRecord:
            with _write(conn):
                stored = _get_tick(conn, tick.instigator_name, tick.tick_time)
                if stored is None:
                    conn.execute(
                        f"INSERT INTO automation_ticks ({_TICK_COLUMNS}) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        _tick_row(tick, status=TickStatus.STARTED),
                    )
                elif stored.status is TickStatus.STARTED and _abandoned(
                    _get_lease(conn, tick.instigator_name), stored, tick
                ):
                    conn.execute(
                        "UPDATE automation_ticks SET owner = ? "
                        "WHERE instigator_name = ? AND tick_time = ?",
                        (tick.owner, tick.instigator_name, tick.tick_time),
                    )
                else:
                    return stored
                claimed = _get_tick(conn, tick.instigator_name, tick.tick_time)
            assert claimed is not None
            return claimed

        result: TickRecord = await self._run(claim)
        return result

    async def update_tick(self, tick: TickRecord) -> None:
        row = _tick_row(tick)

        def update(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    f"INSERT OR REPLACE INTO automation_ticks ({_TICK_COLUMNS}) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    row,
                )

        await self._run(update)

    async def list_ticks(
        self,
        name: str,
        *,
        limit: int | None = None,
        before: float | None = None,
        statuses: Collection[TickStatus] | None = None,
    ) -> list[TickRecord]:
        wanted = _tick_filter(limit, statuses)
        if wanted is not None and not wanted:
            return []
        where, params = ticks_where("?", name=name, before=before, statuses=wanted)
        sql = f"SELECT {_TICK_COLUMNS} FROM automation_ticks{where}"
        sql += " ORDER BY tick_time DESC LIMIT ?"
        params.append(-1 if limit is None else limit)

        def query(conn: sqlite3.Connection) -> list[TickRecord]:
            return [_tick_from_row(row) for row in conn.execute(sql, params)]

        result: list[TickRecord] = await self._run(query)
        return result

    async def add_instigator_run(
        self,
        name: str,
        run_id: str,
        *,
        run_key: str | None,
        tick_time: float | None,
        now: float,
    ) -> str | None:
        def add(conn: sqlite3.Connection) -> str | None:
            with _write(conn):
                if run_key is not None:
                    row = conn.execute(
                        "SELECT run_id FROM automation_runs "
                        "WHERE instigator_name = ? AND run_key = ?",
                        (name, run_key),
                    ).fetchone()
                    if row is not None:
                        return str(row[0])
                conn.execute(
                    "INSERT OR IGNORE INTO automation_runs "
                    "(instigator_name, run_id, run_key, tick_time, created_at) VALUES (?,?,?,?,?)",
                    (name, run_id, run_key, tick_time, now),
                )
                return None

        result: str | None = await self._run(add)
        return result

    async def remove_instigator_run(self, name: str, run_id: str) -> None:
        def remove(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "DELETE FROM automation_runs WHERE instigator_name = ? AND run_id = ?",
                    (name, run_id),
                )

        await self._run(remove)

    async def active_instigator_runs(self, name: str) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT a.run_id FROM automation_runs a JOIN runs r ON r.run_id = a.run_id "
                "WHERE a.instigator_name = ? AND r.status IN (?, ?) ORDER BY a.created_at",
                (name, *_ACTIVE),
            )
            return [str(row[0]) for row in rows]

        result: list[str] = await self._run(query)
        return result

    async def acquire_lease(self, name: str, owner: str, *, now: float, ttl: float) -> Lease:
        _check_ttl(ttl)

        def acquire(conn: sqlite3.Connection) -> Lease:
            with _write(conn):
                lease = _get_lease(conn, name)
                if lease is None or lease.owner == owner or lease.expires_at <= now:
                    lease = Lease(name=name, owner=owner, expires_at=now + ttl)
                    conn.execute(
                        "INSERT OR REPLACE INTO automation_leases (name, owner, expires_at) "
                        "VALUES (?,?,?)",
                        (name, owner, lease.expires_at),
                    )
                return lease

        result: Lease = await self._run(acquire)
        return result

    async def release_lease(self, name: str, owner: str) -> None:
        def release(conn: sqlite3.Connection) -> None:
            with _write(conn):
                conn.execute(
                    "DELETE FROM automation_leases WHERE name = ? AND owner = ?", (name, owner)
                )

        await self._run(release)


# -- rows ------------------------------------------------------------------------------------


def _ensure_state(conn: sqlite3.Connection, name: str, instigator_type: InstigatorType) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO automation_state (name, instigator_type) VALUES (?, ?)",
        (name, InstigatorType(instigator_type).value),
    )


def _get_state(conn: sqlite3.Connection, name: str) -> InstigatorState | None:
    row = conn.execute(
        f"SELECT {_STATE_COLUMNS} FROM automation_state WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else _state_from_row(row)


def _state_from_row(row: tuple[Any, ...]) -> InstigatorState:
    return InstigatorState(
        name=row[0],
        instigator_type=row[1],
        status=row[2],
        last_tick_time=row[3],
        cursor=row[4],
        updated_at=row[5],
    )


def _get_tick(conn: sqlite3.Connection, name: str, tick_time: float) -> TickRecord | None:
    row = conn.execute(
        f"SELECT {_TICK_COLUMNS} FROM automation_ticks WHERE instigator_name = ? AND tick_time = ?",
        (name, tick_time),
    ).fetchone()
    return None if row is None else _tick_from_row(row)


def _get_lease(conn: sqlite3.Connection, name: str) -> Lease | None:
    row = conn.execute(
        "SELECT name, owner, expires_at FROM automation_leases WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else _lease_from_row(row)


def _lease_from_row(row: tuple[Any, ...]) -> Lease:
    return Lease(name=row[0], owner=row[1], expires_at=row[2])


def _tick_row(tick: TickRecord, *, status: TickStatus | None = None) -> tuple[Any, ...]:
    return (
        tick.instigator_name,
        tick.instigator_type.value,
        tick.tick_time,
        (status or tick.status).value,
        tick.owner,
        tick.start_time,
        tick.end_time,
        json.dumps(list(tick.run_ids)),
        json.dumps(list(tick.run_keys)),
        tick.skip_reason,
        None if tick.error is None else json.dumps(tick.error.to_dict()),
        tick.cursor,
    )


def _tick_from_row(row: tuple[Any, ...]) -> TickRecord:
    return TickRecord(
        instigator_name=row[0],
        instigator_type=row[1],
        tick_time=row[2],
        status=row[3],
        owner=row[4],
        start_time=row[5],
        end_time=row[6],
        run_ids=json.loads(row[7]),
        run_keys=json.loads(row[8]),
        skip_reason=row[9],
        error=None if row[10] is None else ErrorInfo.from_dict(json.loads(row[10])),
        cursor=row[11],
    )
